/**
 * Per-connection state without sockets: the decision record emitted exactly
 * once (log sink and decision channel), the penalty box fed by the
 * catalog's penalized flag (never by DNS outcomes), the order ban → release
 * → record, and the timings.
 */
import { describe, expect, it } from 'vitest';
import { decisionChannel } from '../../../src/connection/channels.js';
import { Connection, type ConnectionEnv } from '../../../src/connection/connection.js';
import type { DecisionRecord } from '../../../src/connection/decision-log.js';
import { REASONS, REFUSAL_REASONS, type RefusalReason } from '../../../src/reasons.js';

function harness(clock?: () => number) {
  const events: string[] = [];
  const failures: Array<[string, number]> = [];
  const records: DecisionRecord[] = [];
  const env: ConnectionEnv = {
    listener: 'api',
    admission: {
      recordFailure: (source, weight = 1) => {
        failures.push([source, weight]);
        events.push('penalty');
      },
      banAddress: (source) => {
        events.push(`ban ${source}`);
        return 0;
      },
    },
    log: (record) => {
      records.push(record);
      events.push(`log ${record.reason}`);
    },
    now: () => new Date('2030-01-02T03:04:05.678Z'),
    clock,
  };
  const c = new Connection(env, { address: '192.0.2.9', port: 5555 });
  c.holdBudget(() => events.push('budget released'));
  c.holdTlsSlot(() => events.push('slot released'));
  return { c, events, failures, records };
}

describe('the penalty box is fed by the catalog', () => {
  it('a dns-insecure refusal does not count (a resolver that does not validate bans nobody)', () => {
    const { c, failures } = harness();
    c.decide('refused', 'dns-insecure', 'AD=0');
    expect(failures).toEqual([]);
  });

  it('a not-allowed refusal counts once, with the connection weight', () => {
    const { c, failures } = harness();
    c.penaltyWeight = 3;
    c.decide('refused', 'not-allowed', 'x is not on the allowlist');
    expect(failures).toEqual([['192.0.2.9', 3]]);
  });

  it.each(REFUSAL_REASONS.map((reason) => [reason, REASONS[reason].penalized] as const))('%s refused: penalised %s', (reason: RefusalReason, penalized) => {
    const { c, failures } = harness();
    c.decide('refused', reason, 'why');
    expect(failures.length).toBe(penalized ? 1 : 0);
  });

  it('nothing forwarded counts, not even unauthenticated under policy optional; nor a weight of 0', () => {
    const forwarded = harness();
    forwarded.c.decide('forwarded', 'not-allowed', 'unauthenticated: x');
    forwarded.c.decide('forwarded', 'authenticated', 'again');
    expect(forwarded.failures).toEqual([]);
    const ours = harness();
    ours.c.penaltyWeight = 0;
    ours.c.decide('refused', 'handshake-timeout', 'no TLS handshake slot');
    expect(ours.failures).toEqual([]);
  });
});

describe('one decision per connection', () => {
  it('the first decision wins; the record is logged and published once; penalty before release before the record', () => {
    const { c, events, records } = harness();
    const published: DecisionRecord[] = [];
    const unsubscribe = decisionChannel.subscribe((r) => published.push(r));
    try {
      expect(c.decide('refused', 'no-matching-record', 'no-matching-record: record 1 ee-mismatch')).toBe(true);
      expect(c.decide('refused', 'client-closed', 'later')).toBe(false);
      c.closed();
    } finally {
      unsubscribe();
    }
    expect(events).toEqual(['penalty', 'slot released', 'budget released', 'log no-matching-record']);
    expect(records.length).toBe(1);
    expect(published).toEqual(records.filter((r) => r.listener === 'api'));
    expect(c.decision?.reason).toBe('no-matching-record');
  });

  it('the published record is bounded', () => {
    const { c } = harness();
    const published: DecisionRecord[] = [];
    const unsubscribe = decisionChannel.subscribe((r) => published.push(r));
    try {
      c.note({ sni: 'x'.repeat(5000) });
      c.decide('refused', 'no-route', 'y'.repeat(5000));
    } finally {
      unsubscribe();
    }
    expect(published.length).toBe(1);
    expect(Buffer.byteLength(published[0]?.detail ?? '')).toBeLessThanOrEqual(1024);
    expect(Buffer.byteLength(published[0]?.sni ?? '')).toBeLessThanOrEqual(253);
  });

  it('the record: fields noted by the stages, the client address, the durations of each phase', () => {
    let t = 100;
    const { c, records } = harness(() => t);
    c.clientAddress = '198.51.100.1';
    c.clientPort = 443;
    t = 103;
    c.phaseDone('clientHello');
    c.note({ sni: 'api.example.test', route: 'default' });
    t = 110.4;
    c.phaseDone('handshake');
    c.note({ tlsVersion: 'TLSv1.3', nameSource: 'san', claimedName: 'a.example.test', cache: 'miss', tlsa: '3 1 1' });
    c.dnsTook(2.4);
    t = 112;
    c.decide('forwarded', 'authenticated', 'record 1 of 1 matched');
    expect(records).toEqual([
      {
        time: '2030-01-02T03:04:05.678Z',
        connectionId: c.id,
        listener: 'api',
        route: 'default',
        source: '198.51.100.1:443',
        sni: 'api.example.test',
        tlsVersion: 'TLSv1.3',
        claimedName: 'a.example.test',
        nameSource: 'san',
        tlsa: '3 1 1',
        cache: 'miss',
        outcome: 'forwarded',
        reason: 'authenticated',
        detail: 'record 1 of 1 matched',
        durationsMs: { clientHello: 3, handshake: 7, dns: 2, total: 12 },
      },
    ]);
  });
});

describe('bans', () => {
  it('a chain over limits: the ban first, then the release, then its own record; its own ban notice is ignored; no second penalty', () => {
    const { c, events, failures, records } = harness();
    const destroyed: string[] = [];
    c.useSocket({ destroy: () => destroyed.push('socket') });
    c.overLimits('the client sent more than 10 certificates');
    c.banned('ended: 192.0.2.9 sent a client chain over limits on another connection');
    expect(events).toEqual(['ban 192.0.2.9', 'slot released', 'budget released', 'log chain-over-limits']);
    expect(failures).toEqual([]);
    expect(destroyed).toEqual([]);
    expect(records.map((r) => r.reason)).toEqual(['chain-over-limits']);
  });

  it('banned by another connection: refused as penalty-box and its socket destroyed', () => {
    const { c, records } = harness();
    const destroyed: string[] = [];
    c.useSocket({ destroy: () => destroyed.push('raw') });
    c.banned('ended: 192.0.2.9 sent a client chain over limits on another connection');
    expect(records.map((r) => [r.reason, r.detail])).toEqual([['penalty-box', 'ended: 192.0.2.9 sent a client chain over limits on another connection']]);
    expect(destroyed).toEqual(['raw']);
  });
});

describe('deadline and close', () => {
  it('the deadline runs what it means at expiry, and a decision clears it', async () => {
    const { c, records } = harness();
    c.startDeadline(5, () => c.decide('refused', 'handshake-timeout', 'first meaning'));
    c.expiryMeans(() => c.decide('refused', 'handshake-timeout', 'second meaning'));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(records.map((r) => r.detail)).toEqual(['second meaning']);
    const other = harness();
    other.c.startDeadline(5, () => other.c.decide('refused', 'handshake-timeout', 'late'));
    other.c.decide('refused', 'client-closed', 'gone');
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(other.records.map((r) => r.reason)).toEqual(['client-closed']);
  });

  it('closed: releases once and aborts the lookup signal', () => {
    const { c, events } = harness();
    c.closed();
    c.closed();
    expect(events).toEqual(['slot released', 'budget released']);
    expect(c.signal.aborted).toBe(true);
  });
});
