import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { UpstreamGate, type GateResult } from '../../src/forward/upstream-gate.js';

const options = { maxInFlight: 2, maxPerClient: 2, maxWaitMs: 1000, maxQueued: 2 };

function released(result: GateResult): () => void {
  if (!result.ok) throw new Error(`refused: ${result.detail}`);
  return result.release;
}

describe('UpstreamGate', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('grants up to maxInFlight at once, then queues in FIFO order and hands freed slots on', async () => {
    const gate = new UpstreamGate(options);
    const a = released(await gate.acquire('a'));
    released(await gate.acquire('b'));
    const order: string[] = [];
    const c = gate.acquire('c').then((r) => (order.push('c'), r));
    const d = gate.acquire('d').then((r) => (order.push('d'), r));
    expect([gate.active, gate.waiting]).toEqual([2, 2]);
    a();
    a(); // a second release is a no-op
    expect((await c).ok).toBe(true);
    expect([gate.active, gate.waiting]).toEqual([2, 1]);
    expect(order).toEqual(['c']);
    void d;
  });

  it.each([
    ['a client past its cap is refused at once, even with free connections', { ...options, maxInFlight: 10 }, ['a', 'a', 'a'], 'client-limit'],
    ['a full queue refuses at once', { ...options, maxPerClient: 10, maxQueued: 1 }, ['a', 'b', 'c', 'd'], 'queue-full'],
  ] as const)('%s', async (_label, opts, keys, reason) => {
    const gate = new UpstreamGate(opts);
    const results = keys.map((k) => gate.acquire(k));
    const last = await results[results.length - 1];
    expect(last).toMatchObject({ ok: false, reason });
  });

  it('a waiter past maxWaitMs is refused (wait-timeout) and leaves the queue and its client count', async () => {
    const gate = new UpstreamGate({ ...options, maxPerClient: 3 });
    const a = released(await gate.acquire('a'));
    released(await gate.acquire('a'));
    const waiting = gate.acquire('a');
    vi.advanceTimersByTime(999);
    expect(gate.waiting).toBe(1);
    vi.advanceTimersByTime(1);
    expect(await waiting).toEqual({ ok: false, reason: 'wait-timeout', detail: 'no upstream connection became free within 1000 ms' });
    expect(gate.waiting).toBe(0);
    a();
    // The timed-out waiter no longer counts against 'a': two more fit (one granted, one queued).
    expect((await gate.acquire('a')).ok).toBe(true);
  });

  it('a waiter whose client goes away leaves the queue (aborted)', async () => {
    const gate = new UpstreamGate(options);
    released(await gate.acquire('a'));
    released(await gate.acquire('b'));
    const abort = new AbortController();
    const waiting = gate.acquire('c', abort.signal);
    abort.abort();
    expect(await waiting).toMatchObject({ ok: false, reason: 'aborted' });
    expect(gate.waiting).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('releasing everything leaves no state behind', async () => {
    const gate = new UpstreamGate(options);
    const releases = [released(await gate.acquire('a')), released(await gate.acquire('b'))];
    const queued = gate.acquire('c');
    for (const r of releases) r();
    released(await queued)();
    expect([gate.active, gate.waiting, vi.getTimerCount()]).toEqual([0, 0, 0]);
  });
});
