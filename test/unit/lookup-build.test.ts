/**
 * buildLookup: the one place the TLSA lookup chain is built (cache → local
 * file → gate → TLSA query → DNS exchange), what it publishes, and the
 * cache status of each call.
 */
import * as dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import type { DnsClient, ExchangeResult } from '../../src/dns/exchange.js';
import type { DnsQuestion } from '../../src/dns/message.js';
import { buildDnsQuery, buildLookup } from '../../src/lookup/build.js';
import { lookupChannel, resolveChannel, type LookupEvent, type ResolveEvent } from '../../src/lookup/channels.js';
import { RESOLVER_GATE_DEFAULTS } from '../../src/lookup/resolver-gate.js';
import { outcome, type LookupOutcome } from '../../src/lookup/tlsa-answer.js';
import type { TlsaResolver } from '../../src/lookup/tlsa-resolver.js';

const record = { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(32, 7) };
const LOCAL = new Map([['*._device.local.test', [record]]]);
const SERVERS = [{ host: '127.0.0.1', port: 5353, transport: 'udp' as const }];

/** A resolver that answers when told to and counts queries. */
class HeldResolver implements TlsaResolver {
  readonly queries: string[] = [];
  private waiting: Array<{ name: string; resolve: (o: LookupOutcome) => void }> = [];
  lookup(name: string): Promise<LookupOutcome> {
    this.queries.push(name);
    return new Promise((resolve) => this.waiting.push({ name, resolve }));
  }
  answer(o: LookupOutcome): void {
    for (const w of this.waiting.splice(0)) w.resolve(o);
  }
}

const unsubscribe: Array<() => void> = [];
afterEach(() => {
  for (const u of unsubscribe.splice(0)) u();
});
function collect(): { lookups: LookupEvent[]; resolves: ResolveEvent[] } {
  const seen = { lookups: [] as LookupEvent[], resolves: [] as ResolveEvent[] };
  unsubscribe.push(lookupChannel.subscribe((e) => seen.lookups.push(e)));
  unsubscribe.push(resolveChannel.subscribe((e) => seen.resolves.push(e)));
  return seen;
}

const secure = (ttl = 300): LookupOutcome => outcome('secure', '1 TLSA record(s)', { records: [record], ttl });

describe('buildLookup', () => {
  it('a name in the local file is answered from it; any other goes through the gate to DNS', async () => {
    const dns = new HeldResolver();
    const { cache, gate } = buildLookup({ servers: SERVERS, localTlsa: LOCAL, localTlsaFile: 'pins.txt' }, { resolverGate: RESOLVER_GATE_DEFAULTS }, { dnsResolver: dns });
    const local = await cache.lookup('a._device.local.test');
    expect(local.outcome).toMatchObject({ kind: 'secure', detail: '1 TLSA record(s) from the local file pins.txt', records: [record] });
    const pending = cache.lookup('b.dns.test');
    expect(gate?.stats().inFlight).toBe(1);
    dns.answer(outcome('no-tlsa', 'secure NXDOMAIN'));
    expect((await pending).outcome.kind).toBe('no-tlsa');
    expect(dns.queries).toEqual(['b.dns.test']);
    expect(gate?.stats().inFlight).toBe(0);
  });

  it.each<[string, Parameters<typeof buildLookup>[0], Parameters<typeof buildLookup>[1], { gate: boolean; dns: boolean }]>([
    ['servers and a gate', { servers: SERVERS }, { resolverGate: RESOLVER_GATE_DEFAULTS }, { gate: true, dns: true }],
    ['servers, gate disabled', { servers: SERVERS }, { resolverGate: undefined }, { gate: false, dns: true }],
    ['local file only: no gate, no DNS', { servers: [], localTlsa: LOCAL }, { resolverGate: RESOLVER_GATE_DEFAULTS }, { gate: false, dns: false }],
  ])('%s', (_label, settings, limits, expected) => {
    const built = buildLookup(settings, limits);
    expect({ gate: built.gate !== undefined, dns: built.dns !== undefined }).toEqual(expected);
  });

  it('a local file only answers other names no-tlsa, without DNS', async () => {
    const { cache } = buildLookup({ servers: [], localTlsa: LOCAL, localTlsaFile: 'pins.txt' }, { resolverGate: RESOLVER_GATE_DEFAULTS });
    expect((await cache.lookup('x.other.test')).outcome).toMatchObject({
      kind: 'no-tlsa',
      detail: 'no records for x.other.test in the local file pins.txt and no resolver configured',
    });
  });

  it('refuses a chain with nothing to ask, and resolver settings the resolver refuses', () => {
    expect(() => buildLookup({ servers: [] }, { resolverGate: undefined })).toThrow('resolver: no servers and no local TLSA file');
    expect(() => buildLookup({ servers: SERVERS, totalTimeoutMs: 120_000 }, { resolverGate: undefined })).toThrow('resolver totalTimeoutMs: must be a number of milliseconds from 1 to 60000');
    expect(() => buildDnsQuery({ servers: [{ host: '192.0.2.1', port: 53, transport: 'udp' }] })).toThrow('cannot protect the AD bit');
    expect(buildDnsQuery({ servers: [] })).toBeUndefined();
  });

  it('the TLSA query judges the exchange answer and names the server', async () => {
    const questions: DnsQuestion[] = [];
    const client: DnsClient = {
      query(question): Promise<ExchangeResult> {
        questions.push(question);
        const packet = dnsPacket.decode(
          dnsPacket.encode({
            type: 'response',
            id: 1,
            flags: dnsPacket.AUTHENTIC_DATA,
            questions: [{ type: 'TLSA', class: 'IN', name: question.name }],
            answers: [{ type: 'TLSA', class: 'IN', name: question.name, ttl: 120, data: { usage: 3, selector: 1, matchingType: 1, certificate: record.data } }],
          }),
        );
        return Promise.resolve({
          ok: true,
          response: { packet, rcode: 0, rcodeName: 'NOERROR', authenticData: true, server: SERVERS[0]!, from: 'udp://127.0.0.1:5353', note: 'UDP answer truncated, retried over TCP' },
        });
      },
    };
    const { cache } = buildLookup({ servers: [] }, { resolverGate: undefined }, { dnsClient: client });
    const r = await cache.lookup('s.dns.test');
    expect(questions).toEqual([{ name: 's.dns.test', type: 'TLSA', dnssecOk: true, authenticData: true, checkingDisabled: false }]);
    expect(r.outcome).toMatchObject({ kind: 'secure', ttl: 120, detail: '1 TLSA record(s) (UDP answer truncated, retried over TCP) from udp://127.0.0.1:5353' });
    expect(r.outcome.records).toEqual([record]);
  });

  it('a transport failure of the exchange is the lookup outcome, verbatim', async () => {
    const client: DnsClient = { query: () => Promise.resolve({ ok: false, kind: 'timeout', detail: 'no answer within 5000 ms' }) };
    const { cache } = buildLookup({ servers: [] }, { resolverGate: undefined }, { dnsClient: client });
    expect((await cache.lookup('t.dns.test')).outcome).toEqual(outcome('timeout', 'no answer within 5000 ms'));
  });
});

describe('cache status per call, and what the chain publishes', () => {
  it('miss the first time, coalesced while it is fetched, hit after; one lookup event per call, one resolve event per miss', async () => {
    const seen = collect();
    const dns = new HeldResolver();
    const { cache } = buildLookup({ servers: SERVERS }, { resolverGate: undefined }, { dnsResolver: dns });
    const first = cache.lookup('a.status.test');
    const second = cache.lookup('a.status.test');
    dns.answer(secure());
    expect([(await first).cache, (await second).cache]).toEqual(['miss', 'coalesced']);
    expect((await cache.lookup('a.status.test')).cache).toBe('hit');
    expect((await cache.lookup('a.status.test')).cache).toBe('hit');
    expect(dns.queries).toEqual(['a.status.test']);
    expect(seen.lookups).toEqual([
      { name: 'a.status.test', cache: 'miss', outcome: 'secure' },
      { name: 'a.status.test', cache: 'coalesced', outcome: 'secure' },
      { name: 'a.status.test', cache: 'hit', outcome: 'secure' },
      { name: 'a.status.test', cache: 'hit', outcome: 'secure' },
    ]);
    expect(seen.resolves.map((e) => e.outcome)).toEqual(['secure']);
    expect(seen.resolves[0]?.seconds).toBeGreaterThanOrEqual(0);
  });

  it('an answer that may not be cached (over capacity) is a miss again next time', async () => {
    const seen = collect();
    const dns = new HeldResolver();
    const { cache } = buildLookup({ servers: SERVERS }, { resolverGate: undefined }, { dnsResolver: dns });
    for (let i = 0; i < 2; i++) {
      const pending = cache.lookup('b.status.test');
      dns.answer(outcome('over-capacity', 'gate full'));
      expect((await pending).cache).toBe('miss');
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(seen.lookups.map((e) => e.cache)).toEqual(['miss', 'miss']);
    expect(seen.resolves.map((e) => e.outcome)).toEqual(['over-capacity', 'over-capacity']);
  });

  it('a caller that gives up publishes no lookup event', async () => {
    const seen = collect();
    const dns = new HeldResolver();
    const { cache } = buildLookup({ servers: SERVERS }, { resolverGate: undefined }, { dnsResolver: dns });
    const controller = new AbortController();
    const gone = cache.lookup('c.status.test', controller.signal);
    controller.abort(new Error('client left'));
    await expect(gone).rejects.toThrow('client left');
    expect(seen.lookups).toEqual([]);
  });
});
