import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CACHE_DEFAULTS, cacheLifetimeSeconds, TlsaCache } from '../../src/lookup/cache.js';
import { outcome, type LookupOutcome, type LookupOutcomeKind } from '../../src/lookup/tlsa-answer.js';
import type { TlsaResolver } from '../../src/lookup/tlsa-resolver.js';

const record = { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(32, 1) };

describe('cacheLifetimeSeconds', () => {
  const o = (kind: LookupOutcomeKind, ttl?: number): LookupOutcome => outcome(kind, 'x', { ttl, records: kind === 'secure' ? [record] : [] });
  it.each<[string, LookupOutcome, number]>([
    ['secure: the RRset TTL', o('secure', 300), 300],
    ['secure: clamped to maxPositiveTtlSeconds', o('secure', 86_400), 3600],
    ['secure: TTL 0 is not cached', o('secure', 0), 0],
    ['no-tlsa: RFC 2308 negative TTL', o('no-tlsa', 30), 30],
    ['no-tlsa: clamped to maxNegativeTtlSeconds', o('no-tlsa', 86_400), 300],
    ['no-tlsa: raised to minNegativeTtlSeconds', o('no-tlsa', 0), 1],
    ['no-tlsa without SOA: default', o('no-tlsa'), 60],
    ['insecure: as negative', o('insecure', 20), 20],
    ['timeout: failure TTL', o('timeout'), 5],
    ['bogus: failure TTL', o('bogus'), 5],
    ['malformed: failure TTL', o('malformed'), 5],
    ['server-error: failure TTL', o('server-error'), 5],
  ])('%s', (_label, input, expected) => {
    expect(cacheLifetimeSeconds(input, CACHE_DEFAULTS)).toBe(expected);
  });
});

/** A resolver that answers when told to, counting queries: lets the test control timing exactly. */
class ControlledResolver implements TlsaResolver {
  readonly queries: string[] = [];
  private pending: Array<{ name: string; resolve: (o: LookupOutcome) => void }> = [];
  lookup(name: string): Promise<LookupOutcome> {
    this.queries.push(name);
    return new Promise((resolve) => this.pending.push({ name, resolve }));
  }
  answer(name: string, o: LookupOutcome): void {
    const waiting = this.pending.filter((p) => p.name === name);
    this.pending = this.pending.filter((p) => p.name !== name);
    for (const p of waiting) p.resolve(o);
  }
}

describe('TlsaCache', () => {
  it('coalesces concurrent lookups of one name into one query', async () => {
    const resolver = new ControlledResolver();
    const cache = new TlsaCache(resolver);
    const lookups = Array.from({ length: 50 }, () => cache.lookup('a.example.test'));
    expect(resolver.queries).toEqual(['a.example.test']);
    resolver.answer('a.example.test', outcome('secure', 'ok', { records: [record], ttl: 300 }));
    const results = await Promise.all(lookups);
    expect(results.map((r) => r.cache)).toEqual(['miss', ...Array(49).fill('coalesced')]);
    expect(results.every((r) => r.outcome.records[0] === record)).toBe(true);
    const again = await cache.lookup('a.example.test');
    expect(again.cache).toBe('hit');
    expect(resolver.queries).toEqual(['a.example.test']);
  });

  it('remembers failures briefly: a hostile name is not queried again at once', async () => {
    const resolver = new ControlledResolver();
    const cache = new TlsaCache(resolver, { failureTtlSeconds: 0.05 });
    const first = cache.lookup('slow.example.test');
    resolver.answer('slow.example.test', outcome('timeout', 'no answer'));
    expect((await first).outcome.kind).toBe('timeout');
    const second = await cache.lookup('slow.example.test');
    expect(second).toMatchObject({ cache: 'hit', outcome: { kind: 'timeout' } });
    expect(resolver.queries).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 80));
    const third = cache.lookup('slow.example.test');
    expect(resolver.queries).toHaveLength(2);
    resolver.answer('slow.example.test', outcome('bogus', 'SERVFAIL'));
    expect((await third).cache).toBe('miss');
  });

  it('does not keep an answer with TTL 0 beyond the lookups waiting for it', async () => {
    const resolver = new ControlledResolver();
    const cache = new TlsaCache(resolver);
    const first = cache.lookup('zero.example.test');
    resolver.answer('zero.example.test', outcome('secure', 'ok', { records: [record], ttl: 0 }));
    await first;
    await new Promise((r) => setTimeout(r, 5));
    void cache.lookup('zero.example.test');
    expect(resolver.queries).toHaveLength(2);
    resolver.answer('zero.example.test', outcome('secure', 'ok', { records: [record], ttl: 0 }));
  });

  it('bounds the number of entries', async () => {
    const resolver = new ControlledResolver();
    const cache = new TlsaCache(resolver, { maxEntries: 3 });
    for (let i = 0; i < 10; i++) {
      const p = cache.lookup(`n${i}.example.test`);
      resolver.answer(`n${i}.example.test`, outcome('no-tlsa', 'NODATA', { ttl: 60 }));
      await p;
    }
    expect(cache.size).toBe(3);
  });

  it('lets one caller stop waiting without cancelling the shared query', async () => {
    const resolver = new ControlledResolver();
    const cache = new TlsaCache(resolver);
    const controller = new AbortController();
    const leaving = cache.lookup('b.example.test', controller.signal);
    const staying = cache.lookup('b.example.test');
    controller.abort(new Error('client went away'));
    await expect(leaving).rejects.toThrow('client went away');
    resolver.answer('b.example.test', outcome('secure', 'ok', { records: [record], ttl: 60 }));
    expect((await staying).outcome.kind).toBe('secure');
    expect(resolver.queries).toEqual(['b.example.test']);
  });

  it('prepares a secure RRset for matching once, however many connections use it, within maxTlsaRecords', async () => {
    const resolver = new ControlledResolver();
    const cache = new TlsaCache(resolver, { maxTlsaRecords: 2 });
    const records = [record, record, record];
    const first = cache.lookup('p.example.test');
    resolver.answer('p.example.test', outcome('secure', 'ok', { records, ttl: 60 }));
    const a = await first;
    const b = await cache.lookup('p.example.test');
    expect(b.cache).toBe('hit');
    expect(a.prepared).toBeDefined();
    expect(b.prepared).toBe(a.prepared);
    expect(a.prepared?.entries.map((e) => e.verdict)).toEqual([undefined, undefined, 'over-record-limit']);
    const negative = cache.lookup('n.example.test');
    resolver.answer('n.example.test', outcome('no-tlsa', 'NODATA', { ttl: 60 }));
    expect((await negative).prepared).toBeUndefined();
  });

  it('rejects invalid options', () => {
    for (const maxTlsaRecords of [0, 1.5, 257]) {
      expect(() => new TlsaCache(new ControlledResolver(), { maxTlsaRecords })).toThrow('cache maxTlsaRecords must be an integer from 1 to 256');
    }
    expect(() => new TlsaCache(new ControlledResolver(), { maxEntries: 0 })).toThrow('cache maxEntries must be at least 1');
    expect(() => new TlsaCache(new ControlledResolver(), { failureTtlSeconds: -1 })).toThrow('cache failureTtlSeconds must be a non-negative number');
  });
});

describe('TlsaCache: how long the answer stays fresh (expiresInMs)', () => {
  // lru-cache reads its time from the global performance object: holding that clock still makes every lifetime exact.
  let clock = 0;
  beforeEach(() => {
    clock = 1_000_000;
    vi.spyOn(performance, 'now').mockImplementation(() => clock);
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  /** Move the held clock; then let lru-cache's 1 ms memo of the time lapse (real time). */
  const advance = async (ms: number): Promise<void> => {
    clock += ms;
    await new Promise((r) => setTimeout(r, 5));
  };
  const answered = async (cache: TlsaCache, resolver: ControlledResolver, name: string, o: LookupOutcome) => {
    const pending = cache.lookup(name);
    resolver.answer(name, o);
    return pending;
  };

  it('miss and coalesced: the lifetime the entry was given; hit: what is left of it; expired: a miss with a new lifetime', async () => {
    const resolver = new ControlledResolver();
    const cache = new TlsaCache(resolver);
    const first = cache.lookup('t.example.test');
    const second = cache.lookup('t.example.test');
    resolver.answer('t.example.test', outcome('secure', 'ok', { records: [record], ttl: 300 }));
    expect([await first, await second].map((r) => [r.cache, r.expiresInMs])).toEqual([
      ['miss', 300_000],
      ['coalesced', 300_000],
    ]);
    await advance(120_000);
    expect(await cache.lookup('t.example.test')).toMatchObject({ cache: 'hit', expiresInMs: 180_000 });
    await advance(179_999);
    expect(await cache.lookup('t.example.test')).toMatchObject({ cache: 'hit', expiresInMs: 1 });
    await advance(2);
    const again = await answered(cache, resolver, 't.example.test', outcome('secure', 'ok', { records: [record], ttl: 60 }));
    expect([again.cache, again.expiresInMs, resolver.queries.length]).toEqual(['miss', 60_000, 2]);
  });

  it.each<[string, LookupOutcome, number]>([
    ['secure: clamped to maxPositiveTtlSeconds', outcome('secure', 'ok', { records: [record], ttl: 86_400 }), 3_600_000],
    ['no-tlsa: the negative TTL', outcome('no-tlsa', 'NODATA', { ttl: 30 }), 30_000],
    ['insecure without SOA: the default negative lifetime', outcome('insecure', 'AD=0'), 60_000],
    ['timeout: the failure lifetime', outcome('timeout', 'no answer'), 5_000],
    ['secure with TTL 0: 1 ms (for the waiters only)', outcome('secure', 'ok', { records: [record], ttl: 0 }), 1],
    ['over-capacity: 1 ms (never remembered)', outcome('over-capacity', 'gate full'), 1],
  ])('%s', async (_label, answer, expected) => {
    const resolver = new ControlledResolver();
    const cache = new TlsaCache(resolver);
    expect((await answered(cache, resolver, 'k.example.test', answer)).expiresInMs).toBe(expected);
  });

  it('a negative hit counts down like a positive one', async () => {
    const resolver = new ControlledResolver();
    const cache = new TlsaCache(resolver);
    await answered(cache, resolver, 'gone.example.test', outcome('no-tlsa', 'NXDOMAIN', { ttl: 30 }));
    await advance(10_000);
    expect(await cache.lookup('gone.example.test')).toMatchObject({ cache: 'hit', outcome: { kind: 'no-tlsa' }, expiresInMs: 20_000 });
  });
});
