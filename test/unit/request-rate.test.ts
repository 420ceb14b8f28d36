/**
 * Requests per identity: a burst, then one request per 1/rate seconds, per
 * key; Retry-After never sends a client back before a token is there.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_RATE_KEYS, RequestRateLimiter, requestRateKey } from '../../src/forward/request-rate.js';

function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('RequestRateLimiter', () => {
  it('burst, then refused with Retry-After 1 until a token flows in; other keys are untouched', () => {
    const clock = fakeClock();
    const limiter = new RequestRateLimiter({ ratePerSecond: 10, burst: 3 }, { clock: clock.now });
    const a = 'ops-1._device.example.com';
    const b = 'ops-2._device.example.com';
    expect([limiter.take(a), limiter.take(a), limiter.take(a), limiter.take(a)]).toEqual([{ ok: true }, { ok: true }, { ok: true }, { ok: false, retryAfterSeconds: 1 }]);
    expect(limiter.take(b)).toEqual({ ok: true });
    clock.advance(99);
    expect(limiter.take(a)).toEqual({ ok: false, retryAfterSeconds: 1 });
    clock.advance(1);
    expect([limiter.take(a), limiter.take(a)]).toEqual([{ ok: true }, { ok: false, retryAfterSeconds: 1 }]);
    // A long pause refills to the burst, not beyond.
    clock.advance(60_000);
    expect([limiter.take(a), limiter.take(a), limiter.take(a), limiter.take(a)].map((v) => v.ok)).toEqual([true, true, true, false]);
  });

  it.each([
    [0.5, 2],
    [0.1, 10],
    [0.3, 4],
    [1, 1],
    [1000, 1],
  ])('rate %d/s: Retry-After %d s, and a token is there by then', (ratePerSecond, retryAfterSeconds) => {
    const clock = fakeClock();
    const limiter = new RequestRateLimiter({ ratePerSecond, burst: 1 }, { clock: clock.now });
    expect(limiter.take('k')).toEqual({ ok: true });
    expect(limiter.take('k')).toEqual({ ok: false, retryAfterSeconds });
    clock.advance(retryAfterSeconds * 1000);
    expect(limiter.take('k')).toEqual({ ok: true });
  });

  it('keys are bounded: the least recently used key is forgotten (and starts again with a full bucket)', () => {
    const clock = fakeClock();
    const limiter = new RequestRateLimiter({ ratePerSecond: 1, burst: 1 }, { clock: clock.now, maxKeys: 2 });
    expect(['a', 'b', 'a', 'c'].map((k) => limiter.take(k).ok)).toEqual([true, true, false, true]);
    expect(limiter.size).toBe(2);
    // 'b' was pushed out by 'c'; 'a' (used more recently) is still empty.
    expect([limiter.take('a').ok, limiter.take('b').ok]).toEqual([false, true]);
  });

  it('the default bound is 100000 keys', () => {
    const limiter = new RequestRateLimiter({ ratePerSecond: 1, burst: 1 }, { clock: () => 0 });
    for (let i = 0; i < DEFAULT_MAX_RATE_KEYS + 10; i++) limiter.take(`k${i}`);
    expect(limiter.size).toBe(100_000);
  });

  it.each([
    [{ ratePerSecond: 0, burst: 1 }, 'token bucket ratePerSecond must be > 0, got 0'],
    [{ ratePerSecond: 1, burst: 0 }, 'token bucket burst must be an integer >= 1, got 0'],
    [{ ratePerSecond: Number.NaN, burst: 1 }, 'token bucket ratePerSecond must be > 0, got NaN'],
  ])('refuses %j', (rate, message) => {
    expect(() => new RequestRateLimiter(rate)).toThrow(new RangeError(message));
  });
});

describe('requestRateKey', () => {
  it('the verified name, or the address in a form no name has', () => {
    expect([requestRateKey('1.2.3.4', '1.2.3.4'), requestRateKey(undefined, '1.2.3.4'), requestRateKey(undefined, '::1')]).toEqual(['1.2.3.4', 'addr:1.2.3.4', 'addr:::1']);
  });
});
