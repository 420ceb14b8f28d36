/** Token buckets, penalty box, concurrency caps, TLS handshake slots and admission, on a fake clock. */
import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/ratelimit/admission.js';
import { REASONS, type RefusalReason } from '../../src/reasons.js';
import { ConcurrencyLimiter } from '../../src/ratelimit/concurrency.js';
import { PenaltyBox } from '../../src/ratelimit/penalty-box.js';
import { PerKeySlots, type SlotTicket } from '../../src/ratelimit/slot-queue.js';
import { PerKeyTokenBuckets, TokenBucket } from '../../src/ratelimit/token-bucket.js';

function fakeClock(start = 1000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

const takeN = (take: () => boolean, n: number): boolean[] => Array.from({ length: n }, () => take());

describe('TokenBucket', () => {
  it('allows a burst, then refills at the rate, never above the burst', () => {
    const clock = fakeClock();
    const bucket = new TokenBucket({ ratePerSecond: 2, burst: 3 }, clock.now);
    expect(takeN(() => bucket.take(), 4)).toEqual([true, true, true, false]);
    clock.advance(499);
    expect(bucket.take()).toBe(false);
    clock.advance(1);
    expect(takeN(() => bucket.take(), 2)).toEqual([true, false]);
    clock.advance(60_000);
    expect(takeN(() => bucket.take(), 4)).toEqual([true, true, true, false]);
  });

  it('a clock that goes backwards adds no tokens', () => {
    const clock = fakeClock();
    const bucket = new TokenBucket({ ratePerSecond: 1, burst: 1 }, clock.now);
    expect(bucket.take()).toBe(true);
    clock.advance(-10_000);
    expect(bucket.take()).toBe(false);
  });

  it.each([
    [{ ratePerSecond: 0, burst: 1 }, 'token bucket ratePerSecond must be > 0, got 0'],
    [{ ratePerSecond: 1, burst: 0.5 }, 'token bucket burst must be an integer >= 1, got 0.5'],
  ])('rejects %j', (options, message) => {
    expect(() => new TokenBucket(options)).toThrow(new RangeError(message));
  });
});

describe('PerKeyTokenBuckets', () => {
  it('keeps one bucket per key', () => {
    const clock = fakeClock();
    const buckets = new PerKeyTokenBuckets({ ratePerSecond: 1, burst: 2, maxKeys: 10 }, clock.now);
    expect(takeN(() => buckets.take('a'), 3)).toEqual([true, true, false]);
    expect(takeN(() => buckets.take('b'), 3)).toEqual([true, true, false]);
    clock.advance(1000);
    expect(takeN(() => buckets.take('a'), 2)).toEqual([true, false]);
  });

  it('is bounded: the least recently used key is forgotten', () => {
    const buckets = new PerKeyTokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys: 2 }, fakeClock().now);
    for (const key of ['a', 'b', 'c']) buckets.take(key);
    expect(buckets.size).toBe(2);
    // 'a' was evicted, so it starts with a full bucket again.
    expect(buckets.take('a')).toBe(true);
    expect(buckets.take('c')).toBe(false);
  });
});

describe('PenaltyBox', () => {
  const options = { failures: 3, windowMs: 10_000, banMs: 60_000, maxKeys: 100 };

  it('bans after `failures` failures within the window, for banMs', () => {
    const clock = fakeClock();
    const box = new PenaltyBox(options, clock.now);
    expect([box.recordFailure('ip'), box.recordFailure('ip'), box.recordFailure('ip')]).toEqual([false, false, true]);
    expect(box.bannedFor('ip')).toBe(60_000);
    expect(box.bannedFor('other')).toBe(0);
    clock.advance(59_999);
    expect(box.bannedFor('ip')).toBe(1);
    clock.advance(1);
    expect(box.bannedFor('ip')).toBe(0);
  });

  it('failures spread wider than the window never ban', () => {
    const clock = fakeClock();
    const box = new PenaltyBox(options, clock.now);
    for (let i = 0; i < 10; i++) {
      expect(box.recordFailure('ip')).toBe(false);
      clock.advance(5_000);
      if (i % 2 === 1) clock.advance(5_000);
    }
    expect(box.bannedFor('ip')).toBe(0);
  });

  it('is bounded by maxKeys', () => {
    const box = new PenaltyBox({ ...options, maxKeys: 2 }, fakeClock().now);
    for (const key of ['a', 'b', 'c']) box.recordFailure(key);
    expect(box.size).toBe(2);
  });

  it('rejects a zero option', () => {
    expect(() => new PenaltyBox({ ...options, banMs: 0 })).toThrow(new RangeError('penalty box banMs must be an integer >= 1, got 0'));
  });

  it('a weighted failure counts as that many', () => {
    const box = new PenaltyBox(options, fakeClock().now);
    expect(box.recordFailure('ip', 2)).toBe(false);
    expect(box.recordFailure('ip', 1)).toBe(true);
    expect(box.recordFailure('other', 5)).toBe(true);
    // A weight below 1 still counts once.
    const third = new PenaltyBox(options, fakeClock().now);
    expect([third.recordFailure('ip', 0), third.recordFailure('ip', 0.5), third.recordFailure('ip')]).toEqual([false, false, true]);
  });

  it('ban() puts a key in the box at once, for banMs, and a later failure does not extend it', () => {
    const clock = fakeClock();
    const box = new PenaltyBox(options, clock.now);
    box.ban('ip');
    expect(box.bannedFor('ip')).toBe(60_000);
    clock.advance(10_000);
    box.recordFailure('ip');
    expect(box.bannedFor('ip')).toBe(50_000);
    clock.advance(50_000);
    expect(box.bannedFor('ip')).toBe(0);
  });
});

describe('ConcurrencyLimiter', () => {
  it('caps per key and in total; release is idempotent', () => {
    const limiter = new ConcurrencyLimiter({ maxTotal: 3, maxPerKey: 2 });
    const a1 = limiter.tryAcquire('a');
    const a2 = limiter.tryAcquire('a');
    expect(limiter.tryAcquire('a')).toEqual({ ok: false, cap: 'per-key', limit: 2 });
    const b1 = limiter.tryAcquire('b');
    expect(limiter.tryAcquire('c')).toEqual({ ok: false, cap: 'total', limit: 3 });
    expect([a1.ok, a2.ok, b1.ok]).toEqual([true, true, true]);
    if (a1.ok) {
      a1.release();
      a1.release();
    }
    expect(limiter.current).toBe(2);
    expect(limiter.heldBy('a')).toBe(1);
    expect(limiter.tryAcquire('c').ok).toBe(true);
    expect(limiter.tryAcquire('c')).toEqual({ ok: false, cap: 'total', limit: 3 });
  });
});

describe('Admission', () => {
  const limits = {
    handshakes: { maxConcurrent: 4, maxConcurrentPerIp: 2 },
    newConnectionsPerIp: { ratePerSecond: 1, burst: 3 },
    penaltyBox: { failures: 2, windowMs: 10_000, banMs: 30_000 },
    maxConnectionsPerIdentity: 1,
    trackedAddresses: 100,
  };

  it('refuses by handshake budget per address and in total, and frees it on release', () => {
    const admission = new Admission({ ...limits, newConnectionsPerIp: undefined }, fakeClock().now);
    const a = [admission.admitConnection('10.0.0.1'), admission.admitConnection('10.0.0.1')];
    expect(admission.admitConnection('10.0.0.1')).toEqual({ ok: false, reason: 'handshake-budget-ip', detail: '2 connections from 10.0.0.1 are already between accept and decision' });
    admission.admitConnection('10.0.0.2');
    admission.admitConnection('10.0.0.3');
    expect(admission.admitConnection('10.0.0.4')).toEqual({ ok: false, reason: 'handshake-budget', detail: '4 connections are already between accept and decision' });
    expect(admission.handshakesInProgress).toBe(4);
    const first = a[0];
    if (first?.ok) first.release();
    expect(admission.admitConnection('10.0.0.4').ok).toBe(true);
  });

  it('rate-limits new connections per address', () => {
    const clock = fakeClock();
    const admission = new Admission({ ...limits, handshakes: { maxConcurrent: 100, maxConcurrentPerIp: 100 } }, clock.now);
    const results = takeN(() => admission.admitConnection('10.0.0.1').ok, 4);
    expect(results).toEqual([true, true, true, false]);
    expect(admission.admitConnection('10.0.0.1')).toEqual({ ok: false, reason: 'rate-limited', detail: 'more than 1/s new connections (burst 3) from 10.0.0.1' });
    expect(admission.admitConnection('10.0.0.2').ok).toBe(true);
    clock.advance(1000);
    expect(admission.admitConnection('10.0.0.1').ok).toBe(true);
  });

  it('puts an address that keeps failing in the penalty box', () => {
    const clock = fakeClock();
    const admission = new Admission(limits, clock.now);
    admission.recordFailure('10.0.0.9');
    expect(admission.admitConnection('10.0.0.9').ok).toBe(true);
    admission.recordFailure('10.0.0.9');
    expect(admission.admitConnection('10.0.0.9')).toEqual({ ok: false, reason: 'penalty-box', detail: '10.0.0.9 failed authentication too often; refused for 30 s more' });
    clock.advance(30_000);
    expect(admission.admitConnection('10.0.0.9').ok).toBe(true);
  });

  it('caps connections per verified identity, when configured', () => {
    const admission = new Admission(limits, fakeClock().now);
    const first = admission.admitIdentity('meter1._device.example.test');
    expect(first.ok).toBe(true);
    expect(admission.admitIdentity('meter1._device.example.test')).toEqual({ ok: false, reason: 'identity-limit', detail: 'meter1._device.example.test already has 1 connections' });
    if (first.ok) first.release();
    expect(admission.admitIdentity('meter1._device.example.test').ok).toBe(true);
    const unlimited = new Admission({ ...limits, maxConnectionsPerIdentity: undefined }, fakeClock().now);
    expect(takeN(() => unlimited.admitIdentity('x').ok, 50).every(Boolean)).toBe(true);
  });

  it('banAddress: into the penalty box now, and every undecided connection of that address (only) is told once', () => {
    const clock = fakeClock();
    const admission = new Admission({ ...limits, newConnectionsPerIp: undefined, handshakes: { maxConcurrent: 10, maxConcurrentPerIp: 5 } }, clock.now);
    const told: string[] = [];
    const a1 = admission.admitConnection('10.0.0.1', (why) => told.push(`a1: ${why}`));
    const a2 = admission.admitConnection('10.0.0.1', (why) => told.push(`a2: ${why}`));
    const decided = admission.admitConnection('10.0.0.1', (why) => told.push(`decided: ${why}`));
    const other = admission.admitConnection('10.0.0.2', (why) => told.push(`other: ${why}`));
    const silent = admission.admitConnection('10.0.0.1');
    expect([a1.ok, a2.ok, decided.ok, other.ok, silent.ok]).toEqual([true, true, true, true, true]);
    if (decided.ok) decided.release();
    expect(admission.banAddress('10.0.0.1', 'sent a chain over limits')).toBe(2);
    expect(told).toEqual(['a1: sent a chain over limits', 'a2: sent a chain over limits']);
    expect(admission.admitConnection('10.0.0.1')).toEqual({ ok: false, reason: 'penalty-box', detail: '10.0.0.1 failed authentication too often; refused for 30 s more' });
    // Told once: a second ban finds nobody left; releasing the told connections afterwards is harmless.
    expect(admission.banAddress('10.0.0.1', 'again')).toBe(0);
    for (const held of [a1, a2, silent]) if (held.ok) held.release();
    expect(admission.handshakesInProgress).toBe(1);
    expect(admission.admitConnection('10.0.0.2').ok).toBe(true);
  });

  it('banAddress without a penalty box still ends the undecided connections', () => {
    const admission = new Admission({ ...limits, penaltyBox: undefined, newConnectionsPerIp: undefined }, fakeClock().now);
    const told: string[] = [];
    admission.admitConnection('10.0.0.1', (why) => told.push(why));
    expect(admission.banAddress('10.0.0.1', 'why')).toBe(1);
    expect(told).toEqual(['why']);
    expect(admission.admitConnection('10.0.0.1').ok).toBe(true);
  });

  it('client chain limits: defaults 10 certificates and 16384 bytes, configurable', () => {
    expect(new Admission(limits).clientChain).toEqual({ maxCertificates: 10, maxFlightBytes: 16_384 });
    const custom = new Admission({ ...limits, handshakes: { ...limits.handshakes, maxClientCertificates: 3, maxClientFlightBytes: 8192 } });
    expect(custom.clientChain).toEqual({ maxCertificates: 3, maxFlightBytes: 8192 });
  });

  it('the catalog penalises the client-caused refusals only, never DNS outcomes or capacity', () => {
    const penalized = (reason: RefusalReason): boolean => REASONS[reason].penalized;
    for (const reason of ['no-matching-record', 'not-allowed', 'client-hello-invalid', 'handshake-timeout'] as const) expect(penalized(reason)).toBe(true);
    for (const reason of ['dns-no-tlsa', 'dns-insecure', 'dns-timeout', 'dns-bogus', 'dns-over-capacity', 'rate-limited', 'handshake-budget', 'client-closed'] as const) {
      expect(penalized(reason)).toBe(false);
    }
    expect('authenticated' in REASONS).toBe(false);
  });
});

/**
 * PerKeySlots as a little script: `enter id key` asks for a slot (`enter!`:
 * its onGranted releases it at once; `enter+ id key new`: its onGranted
 * enters `new` for the same key), `release id` gives it back. Checked after
 * the script: the order of grants, what is held and waiting per key; then
 * every ticket is released and nothing may be left.
 */
type Step = readonly ['enter' | 'enter!', string, string] | readonly ['enter+', string, string, string] | readonly ['release', string];

function runSlots(max: number, steps: readonly Step[]): { granted: string[]; slots: PerKeySlots; tickets: Map<string, SlotTicket>; states: Record<string, string> } {
  const slots = new PerKeySlots(max);
  const granted: string[] = [];
  const tickets = new Map<string, SlotTicket>();
  const enter = (id: string, key: string, then?: (t: SlotTicket) => void): void => {
    tickets.set(
      id,
      slots.enter(key, (t) => {
        expect(t.state).toBe('held');
        granted.push(id);
        then?.(t);
      }),
    );
  };
  for (const step of steps) {
    if (step[0] === 'enter') enter(step[1], step[2]);
    else if (step[0] === 'enter!') enter(step[1], step[2], (t) => t.release());
    else if (step[0] === 'enter+') enter(step[1], step[2], () => enter(step[3], step[2]));
    else tickets.get(step[1])?.release();
  }
  return { granted, slots, tickets, states: Object.fromEntries([...tickets].map(([id, t]) => [id, t.state])) };
}

describe('PerKeySlots (TLS handshakes per address)', () => {
  it.each<[string, number, Step[], string[], Record<string, [held: number, waiting: number]>]>([
    [
      'free slots are granted at once, in order; the rest wait',
      2,
      [
        ['enter', 'a1', 'A'],
        ['enter', 'a2', 'A'],
        ['enter', 'a3', 'A'],
        ['enter', 'a4', 'A'],
      ],
      ['a1', 'a2'],
      { A: [2, 2] },
    ],
    [
      'a release hands the slot to the first waiter (FIFO)',
      2,
      [
        ['enter', 'a1', 'A'],
        ['enter', 'a2', 'A'],
        ['enter', 'a3', 'A'],
        ['enter', 'a4', 'A'],
        ['release', 'a2'],
      ],
      ['a1', 'a2', 'a3'],
      { A: [2, 1] },
    ],
    [
      'keys are independent',
      1,
      [
        ['enter', 'a1', 'A'],
        ['enter', 'b1', 'B'],
        ['enter', 'a2', 'A'],
        ['enter', 'b2', 'B'],
        ['release', 'b1'],
      ],
      ['a1', 'b1', 'b2'],
      { A: [1, 1], B: [1, 0] },
    ],
    [
      'a waiter that leaves is never granted, and frees no slot',
      1,
      [
        ['enter', 'a1', 'A'],
        ['enter', 'a2', 'A'],
        ['enter', 'a3', 'A'],
        ['release', 'a2'],
        ['release', 'a1'],
      ],
      ['a1', 'a3'],
      { A: [1, 0] },
    ],
    [
      'a second release of a holder frees nothing more',
      1,
      [
        ['enter', 'a1', 'A'],
        ['enter', 'a2', 'A'],
        ['enter', 'a3', 'A'],
        ['release', 'a1'],
        ['release', 'a1'],
      ],
      ['a1', 'a2'],
      { A: [1, 1] },
    ],
    [
      'a second release of a waiter is harmless',
      1,
      [
        ['enter', 'a1', 'A'],
        ['enter', 'a2', 'A'],
        ['release', 'a2'],
        ['release', 'a2'],
        ['enter', 'a3', 'A'],
      ],
      ['a1'],
      { A: [1, 1] },
    ],
    [
      'a release of an unknown or already forgotten key is harmless',
      1,
      [
        ['enter', 'a1', 'A'],
        ['release', 'a1'],
        ['release', 'a1'],
        ['enter', 'a2', 'A'],
      ],
      ['a1', 'a2'],
      { A: [1, 0] },
    ],
    [
      'a newcomer queues behind waiters even when a slot has just been freed',
      1,
      [
        ['enter', 'a1', 'A'],
        ['enter', 'a2', 'A'],
        ['release', 'a1'],
        ['enter', 'a3', 'A'],
      ],
      ['a1', 'a2'],
      { A: [1, 1] },
    ],
    [
      'a grantee that releases at once: the next ones are granted in order',
      1,
      [
        ['enter', 'a1', 'A'],
        ['enter!', 'a2', 'A'],
        ['enter!', 'a3', 'A'],
        ['enter', 'a4', 'A'],
        ['release', 'a1'],
      ],
      ['a1', 'a2', 'a3', 'a4'],
      { A: [1, 0] },
    ],
    [
      'a grantee that enters another ticket: it queues behind the earlier waiters',
      1,
      [
        ['enter', 'a1', 'A'],
        ['enter+', 'a2', 'A', 'a9'],
        ['enter', 'a3', 'A'],
        ['release', 'a1'],
        ['release', 'a2'],
      ],
      ['a1', 'a2', 'a3'],
      { A: [1, 1] },
    ],
    [
      'everything released: nothing held, nothing waiting',
      3,
      [
        ['enter', 'a1', 'A'],
        ['enter', 'a2', 'A'],
        ['release', 'a2'],
        ['release', 'a1'],
      ],
      ['a1', 'a2'],
      { A: [0, 0] },
    ],
  ])('%s', (_label, max, steps, granted, counts) => {
    const run = runSlots(max, steps);
    expect(run.granted).toEqual(granted);
    for (const [key, [held, waiting]] of Object.entries(counts)) {
      expect(run.slots.heldBy(key), `held by ${key}`).toBe(held);
      expect(run.slots.waitingFor(key), `waiting for ${key}`).toBe(waiting);
    }
    // Granted once each, never more than max per key at once (checked by the counts); then leak-free.
    expect(new Set(run.granted).size).toBe(run.granted.length);
    // Unbound, as the listener keeps it.
    for (const { release } of run.tickets.values()) release();
    expect(run.slots.keys).toBe(0);
    for (const t of run.tickets.values()) expect(t.state).toBe('released');
  });

  it('random scripts: at most max held per key, each ticket granted at most once and in arrival order, nothing left at the end', () => {
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const max = 1 + random(3);
      const slots = new PerKeySlots(max);
      const live: Array<{ id: number; key: string; ticket: SlotTicket }> = [];
      const grants = new Map<string, number[]>();
      const enteredOrder = new Map<string, number[]>();
      let next = 0;
      for (let step = 0; step < 60; step++) {
        if (live.length === 0 || random(3) > 0) {
          const key = `k${random(3)}`;
          const id = next++;
          enteredOrder.set(key, [...(enteredOrder.get(key) ?? []), id]);
          const ticket = slots.enter(key, () => {
            grants.set(key, [...(grants.get(key) ?? []), id]);
            expect(slots.heldBy(key)).toBeLessThanOrEqual(max);
          });
          live.push({ id, key, ticket });
        } else {
          const [gone] = live.splice(random(live.length), 1);
          gone?.ticket.release();
        }
        for (const key of ['k0', 'k1', 'k2']) {
          expect(slots.heldBy(key)).toBeLessThanOrEqual(max);
          const waiting = slots.waitingFor(key);
          // Nobody waits while a slot of the key is free.
          if (waiting > 0) expect(slots.heldBy(key)).toBe(max);
        }
      }
      for (const [key, ids] of grants) {
        expect(new Set(ids).size).toBe(ids.length);
        // Grants follow arrival order (some left the queue before their turn: a subsequence).
        const order = enteredOrder.get(key) ?? [];
        expect([...ids].sort((a, b) => order.indexOf(a) - order.indexOf(b))).toEqual(ids);
      }
      for (const { ticket } of live) ticket.release();
      expect(slots.keys).toBe(0);
    }
  });

  it.each([0, -1, 1.5, Number.NaN])('rejects %s slots per key', (max) => {
    expect(() => new PerKeySlots(max)).toThrow(RangeError);
  });
});

describe('Admission: TLS handshakes per address', () => {
  const limits = {
    handshakes: { maxConcurrent: 100, maxConcurrentPerIp: 10, maxTlsHandshakesPerIp: 2 },
    newConnectionsPerIp: undefined,
    penaltyBox: { failures: 2, windowMs: 10_000, banMs: 30_000 },
    maxConnectionsPerIdentity: undefined,
    trackedAddresses: 100,
  };

  it.each<[string, { maxConcurrentPerIp: number; maxTlsHandshakesPerIp?: number }, number]>([
    ['default 4', { maxConcurrentPerIp: 256 }, 4],
    ['default capped by the per-address budget', { maxConcurrentPerIp: 2 }, 2],
    ['configured', { maxConcurrentPerIp: 256, maxTlsHandshakesPerIp: 9 }, 9],
  ])('%s', (_label, handshakes, expected) => {
    expect(new Admission({ ...limits, handshakes: { maxConcurrent: 1000, ...handshakes } }).maxTlsHandshakesPerIp).toBe(expected);
  });

  it('the third connection of an address waits for a slot, the next address does not; FIFO on release; nothing left after', () => {
    const admission = new Admission(limits, fakeClock().now);
    const events: string[] = [];
    const enter = (id: string, address: string): SlotTicket =>
      admission.enterTlsPhase(
        address,
        () => events.push(`${id} granted`),
        (why) => events.push(`${id} banned: ${why}`),
      );
    const [a1, a2, a3, a4] = ['a1', 'a2', 'a3', 'a4'].map((id) => enter(id, '10.0.0.1'));
    const b1 = enter('b1', '10.0.0.2');
    expect(events).toEqual(['a1 granted', 'a2 granted', 'b1 granted']);
    expect(admission.tlsHandshakesOf('10.0.0.1')).toEqual({ held: 2, waiting: 2 });
    a2?.release();
    expect(events.at(-1)).toBe('a3 granted');
    for (const t of [a1, a2, a3, a4, b1]) t?.release();
    expect(admission.tlsHandshakeAddresses).toBe(0);
  });

  it('an address put in the penalty box while its connections wait: they are told, never granted, and their slots move on', () => {
    const clock = fakeClock();
    const admission = new Admission(limits, clock.now);
    const events: string[] = [];
    const tickets = ['a1', 'a2', 'a3', 'a4'].map((id) =>
      admission.enterTlsPhase(
        '10.0.0.1',
        () => events.push(`${id} granted`),
        (why) => events.push(`${id} banned: ${why}`),
      ),
    );
    // A ban through failures (no banAddress, so nobody is told now): the waiting ones find out at their turn.
    admission.recordFailure('10.0.0.1', 2);
    tickets[0]?.release();
    expect(events).toEqual([
      'a1 granted',
      'a2 granted',
      'a3 banned: 10.0.0.1 was put in the penalty box before this connection could start its TLS handshake; refused for 30 s more',
      'a4 banned: 10.0.0.1 was put in the penalty box before this connection could start its TLS handshake; refused for 30 s more',
    ]);
    expect(tickets.map((t) => t.state)).toEqual(['released', 'held', 'released', 'released']);
    expect(admission.tlsHandshakesOf('10.0.0.1')).toEqual({ held: 1, waiting: 0 });
    tickets[1]?.release();
    expect(admission.tlsHandshakeAddresses).toBe(0);
    // After the ban: slots are granted again.
    clock.advance(30_000);
    const after = admission.enterTlsPhase(
      '10.0.0.1',
      () => events.push('after granted'),
      () => events.push('after banned'),
    );
    expect(events.at(-1)).toBe('after granted');
    after.release();
  });

  it('banAddress tells the waiting connections (admitConnection) and, once they release, nothing is left', () => {
    const admission = new Admission(limits, fakeClock().now);
    const events: string[] = [];
    const connections = ['a1', 'a2', 'a3'].map((id) => {
      const admitted = admission.admitConnection('10.0.0.1', (why) => {
        events.push(`${id} ended: ${why}`);
        // What the listener does: its decision releases the budget and the ticket.
        ticket.release();
        if (admitted.ok) admitted.release();
      });
      const ticket = admission.enterTlsPhase(
        '10.0.0.1',
        () => events.push(`${id} granted`),
        () => events.push(`${id} banned`),
      );
      return { admitted, ticket };
    });
    expect(events).toEqual(['a1 granted', 'a2 granted']);
    expect(admission.banAddress('10.0.0.1', 'chain over limits')).toBe(3);
    // a1's release frees a slot, and a3's turn finds the address banned; then a3 is told too (the listener's handler is idempotent).
    expect(events.slice(2)).toEqual(['a1 ended: chain over limits', 'a3 banned', 'a2 ended: chain over limits', 'a3 ended: chain over limits']);
    // a3 waited: ended, never granted.
    expect(events.filter((e) => e === 'a3 granted')).toEqual([]);
    expect(connections.map((c) => c.ticket.state)).toEqual(['released', 'released', 'released']);
    expect(admission.tlsHandshakeAddresses).toBe(0);
    expect(admission.handshakesInProgress).toBe(0);
  });
});
