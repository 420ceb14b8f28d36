/**
 * The resolver gate with a controllable resolver: every lookup waits until
 * the test settles it, so caps, FIFO order, fairness, deadlines and
 * cancellation are observed exactly, without timing.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { outcome, type LookupOutcome } from '../../src/lookup/tlsa-answer.js';
import type { TlsaResolver } from '../../src/lookup/tlsa-resolver.js';
import { ResolverGate, zoneKeyOf } from '../../src/lookup/resolver-gate.js';
import { TlsaCache } from '../../src/lookup/cache.js';

/** A resolver whose lookups stay pending until answer(name) is called. */
class HeldResolver implements TlsaResolver {
  readonly started: string[] = [];
  readonly aborted: string[] = [];
  private readonly pending = new Map<string, Array<(o: LookupOutcome) => void>>();

  lookup(name: string, signal?: AbortSignal): Promise<LookupOutcome> {
    this.started.push(name);
    return new Promise((resolve, reject) => {
      const list = this.pending.get(name) ?? [];
      list.push(resolve);
      this.pending.set(name, list);
      signal?.addEventListener('abort', () => {
        this.aborted.push(name);
        reject(signal.reason);
      });
    });
  }

  answer(name: string): void {
    const list = this.pending.get(name);
    const next = list?.shift();
    if (!next) throw new Error(`no pending lookup of ${name}`);
    next(outcome('no-tlsa', `answer for ${name}`, { ttl: 60 }));
  }
}

/** Two turns of the event loop: a freed slot is handed to a queued lookup on the turn after it is freed. */
const flush = async (): Promise<void> => {
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
};

describe('zoneKeyOf', () => {
  it.each([
    ['a._device.example.com', '_device.example.com'],
    ['example.com', 'com'],
    ['com', 'com'],
  ])('%s → %s', (name, zone) => expect(zoneKeyOf(name)).toBe(zone));
});

describe('ResolverGate', () => {
  let inner: HeldResolver;
  beforeEach(() => {
    inner = new HeldResolver();
  });

  it('passes lookups through while under the caps', async () => {
    const gate = new ResolverGate(inner, { maxInFlight: 4, maxInFlightPerZone: 2 });
    const a = gate.lookup('a.z1.test');
    const b = gate.lookup('b.z2.test');
    await flush();
    expect(inner.started).toEqual(['a.z1.test', 'b.z2.test']);
    expect(gate.stats()).toMatchObject({ inFlight: 2, queued: 0, zonesInFlight: 2 });
    inner.answer('a.z1.test');
    inner.answer('b.z2.test');
    expect((await a).kind).toBe('no-tlsa');
    expect((await b).kind).toBe('no-tlsa');
    expect(gate.stats()).toMatchObject({ inFlight: 0, queued: 0, zonesInFlight: 0 });
  });

  it('queues beyond the per-zone cap, FIFO within the zone, and a slow zone does not block others', async () => {
    const gate = new ResolverGate(inner, { maxInFlight: 10, maxInFlightPerZone: 2, maxQueued: 10, maxQueuedPerZone: 5 });
    const slow = ['s1', 's2', 's3', 's4'].map((l) => gate.lookup(`${l}.slow.test`));
    const fast = gate.lookup('f1.fast.test');
    await flush();
    // Two slow ones in flight, two queued; the fast zone went straight through.
    expect(inner.started).toEqual(['s1.slow.test', 's2.slow.test', 'f1.fast.test']);
    expect(gate.stats()).toMatchObject({ inFlight: 3, queued: 2, zonesSaturated: 1 });
    inner.answer('f1.fast.test');
    expect((await fast).kind).toBe('no-tlsa');
    inner.answer('s2.slow.test');
    await flush();
    expect(inner.started.slice(3)).toEqual(['s3.slow.test']);
    inner.answer('s1.slow.test');
    await flush();
    expect(inner.started.slice(4)).toEqual(['s4.slow.test']);
    for (const n of ['s3', 's4']) inner.answer(`${n}.slow.test`);
    expect((await Promise.all(slow)).map((o) => o.kind)).toEqual(['no-tlsa', 'no-tlsa', 'no-tlsa', 'no-tlsa']);
  });

  it('skips queued lookups of a saturated zone so an eligible one behind them runs (fairness under the global cap)', async () => {
    const gate = new ResolverGate(inner, { maxInFlight: 2, maxInFlightPerZone: 1, maxQueued: 10, maxQueuedPerZone: 10 });
    void gate.lookup('a1.a.test');
    const b1 = gate.lookup('b1.b.test');
    void gate.lookup('a2.a.test'); // queued: zone a at its cap
    const c1 = gate.lookup('c1.c.test'); // queued: global cap
    await flush();
    expect(inner.started).toEqual(['a1.a.test', 'b1.b.test']);
    inner.answer('b1.b.test');
    await b1;
    await flush();
    // a2 is first in the queue but zone a is still at its cap: c1 runs.
    expect(inner.started).toEqual(['a1.a.test', 'b1.b.test', 'c1.c.test']);
    inner.answer('c1.c.test');
    await c1;
  });

  it('refuses at once when the zone queue is full, and when the whole queue is full', async () => {
    const gate = new ResolverGate(inner, { maxInFlight: 2, maxInFlightPerZone: 1, maxQueued: 2, maxQueuedPerZone: 1 });
    void gate.lookup('a1.a.test');
    void gate.lookup('a2.a.test');
    const zoneFull = await gate.lookup('a3.a.test');
    expect(zoneFull).toMatchObject({ kind: 'over-capacity', detail: 'zone a.test has 1 queries in flight and 1 waiting (limits 1/1)' });
    void gate.lookup('b1.b.test');
    void gate.lookup('b2.b.test');
    const queueFull = await gate.lookup('c1.c.test');
    expect(queueFull.kind).toBe('over-capacity');
    expect(queueFull.detail).toBe('resolver gate full: 2 queries in flight, 2 waiting (limit 2)');
    expect(gate.stats().refused).toEqual({ queueFull: 1, zoneQueueFull: 1, waitExpired: 0 });
    expect(inner.started).toEqual(['a1.a.test', 'b1.b.test']);
  });

  describe('deadlines', () => {
    beforeEach(() => {
      vi.useFakeTimers();
    });
    afterEach(() => {
      vi.useRealTimers();
    });

    it('a queued lookup that gets no slot within maxQueueWaitMs is refused, without a query', async () => {
      const gate = new ResolverGate(inner, { maxInFlight: 1, maxInFlightPerZone: 1, maxQueued: 4, maxQueuedPerZone: 4, maxQueueWaitMs: 500 });
      void gate.lookup('a1.a.test');
      const waiting = gate.lookup('a2.a.test');
      await vi.advanceTimersByTimeAsync(499);
      expect(gate.stats().queued).toBe(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(await waiting).toMatchObject({ kind: 'over-capacity', detail: 'no resolver slot within 500 ms (zone a.test)' });
      expect(gate.stats()).toMatchObject({ queued: 0, refused: { waitExpired: 1 } });
      inner.answer('a1.a.test');
      await vi.advanceTimersByTimeAsync(0);
      expect(inner.started).toEqual(['a1.a.test']);
    });
  });

  it('a caller that aborts while queued is dropped: no query is ever sent for it', async () => {
    const gate = new ResolverGate(inner, { maxInFlight: 1, maxInFlightPerZone: 1, maxQueued: 4, maxQueuedPerZone: 4 });
    void gate.lookup('a1.a.test');
    const controller = new AbortController();
    const queued = gate.lookup('a2.a.test', controller.signal);
    controller.abort(new Error('client went away'));
    await expect(queued).rejects.toThrow('client went away');
    expect(gate.stats()).toMatchObject({ queued: 0, cancelled: 1 });
    inner.answer('a1.a.test');
    await flush();
    expect(inner.started).toEqual(['a1.a.test']);
  });

  it('a burst of closes: the in-flight caller and the queued one go away one after the other; the queued lookup is never started', async () => {
    const gate = new ResolverGate(inner, { maxInFlight: 1, maxInFlightPerZone: 1, maxQueued: 4, maxQueuedPerZone: 4 });
    const first = new AbortController();
    const second = new AbortController();
    const running = gate.lookup('b1.b.test', first.signal);
    const queued = gate.lookup('b2.b.test', second.signal);
    first.abort(new Error('client 1 went away'));
    // The first's slot is freed in this turn's microtasks; the second's close is the next I/O event of the same burst.
    await Promise.resolve();
    await expect(running).rejects.toThrow('client 1 went away');
    second.abort(new Error('client 2 went away'));
    await expect(queued).rejects.toThrow('client 2 went away');
    await flush();
    expect(inner.started).toEqual(['b1.b.test']);
    expect(gate.stats()).toMatchObject({ inFlight: 0, queued: 0, cancelled: 1 });
  });

  it('through the cache: when every waiting client disconnects, the queued lookup is dropped; one left keeps it', async () => {
    const gate = new ResolverGate(inner, { maxInFlight: 1, maxInFlightPerZone: 1, maxQueued: 4, maxQueuedPerZone: 4 });
    const cache = new TlsaCache(gate);
    void cache.lookup('busy.a.test');
    const first = new AbortController();
    const second = new AbortController();
    const p1 = cache.lookup('x.a.test', first.signal);
    const p2 = cache.lookup('x.a.test', second.signal);
    await flush();
    expect(gate.stats().queued).toBe(1);
    first.abort(new Error('first left'));
    await expect(p1).rejects.toThrow('first left');
    expect(gate.stats().queued).toBe(1);
    second.abort(new Error('second left'));
    await expect(p2).rejects.toThrow('second left');
    await flush();
    expect(gate.stats()).toMatchObject({ queued: 0, cancelled: 1 });
    expect(cache.pendingCount).toBe(1);
    inner.answer('busy.a.test');
    await flush();
    expect(inner.started).toEqual(['busy.a.test']);
    // A later lookup of the same name starts afresh.
    const again = cache.lookup('x.a.test');
    await flush();
    inner.answer('x.a.test');
    expect((await again).outcome.kind).toBe('no-tlsa');
  });

  it('over-capacity outcomes are never cached', async () => {
    const gate = new ResolverGate(inner, { maxInFlight: 1, maxInFlightPerZone: 1, maxQueued: 0, maxQueuedPerZone: 0 });
    const cache = new TlsaCache(gate);
    void cache.lookup('a1.a.test');
    expect((await cache.lookup('a2.a.test')).outcome.kind).toBe('over-capacity');
    inner.answer('a1.a.test');
    await flush();
    await new Promise((r) => setTimeout(r, 5));
    const retry = cache.lookup('a2.a.test');
    await flush();
    inner.answer('a2.a.test');
    expect(await retry).toMatchObject({ cache: 'miss', outcome: { kind: 'no-tlsa' } });
  });

  it.each([
    [{ maxInFlight: 0 }, 'resolver gate maxInFlight must be an integer >= 1, got 0'],
    [{ maxQueued: -1 }, 'resolver gate maxQueued must be an integer >= 0, got -1'],
    [{ maxInFlight: 2, maxInFlightPerZone: 3 }, 'resolver gate maxInFlightPerZone must not exceed maxInFlight'],
    [{ maxQueued: 1, maxQueuedPerZone: 2 }, 'resolver gate maxQueuedPerZone must not exceed maxQueued'],
  ])('rejects options %j', (options, message) => {
    expect(() => new ResolverGate(inner, options)).toThrow(new RangeError(message));
  });
});
