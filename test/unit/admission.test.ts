/** Token buckets, penalty box, concurrency caps and admission, on a fake clock. */
import { describe, expect, it } from 'vitest';
import { Admission, PENALIZED_REASONS } from '../../src/ratelimit/admission.js';
import { ConcurrencyLimiter } from '../../src/ratelimit/concurrency.js';
import { PenaltyBox } from '../../src/ratelimit/penalty-box.js';
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

  it('penalises the client-caused refusals only, never temporary DNS trouble or capacity', () => {
    for (const reason of ['no-matching-record', 'not-allowed', 'client-hello-invalid', 'handshake-timeout', 'dns-no-tlsa']) expect(PENALIZED_REASONS.has(reason)).toBe(true);
    for (const reason of ['dns-timeout', 'dns-bogus', 'dns-over-capacity', 'rate-limited', 'handshake-budget', 'authenticated', 'client-closed']) {
      expect(PENALIZED_REASONS.has(reason)).toBe(false);
    }
  });
});
