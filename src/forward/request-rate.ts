/**
 * Requests per identity: one token bucket per verified name (or, for an
 * unauthenticated request, per client address), in the bounded per-key LRU
 * of src/ratelimit. An empty bucket answers 429 with Retry-After.
 */
import type { RateConfig } from '../config/types.js';
import { monotonicClock, type Clock } from '../ratelimit/clock.js';
import { PerKeyTokenBuckets } from '../ratelimit/token-bucket.js';

export const DEFAULT_MAX_RATE_KEYS = 100_000;

export type RateVerdict = { ok: true } | { ok: false; retryAfterSeconds: number };

const TAKEN: RateVerdict = { ok: true };

/**
 * Whose request it is, for the request rate and the upstream gate's
 * per-client share: the verified name, or the address marked so that it
 * never equals a name ('1.2.3.4' is a valid client name; ':' is in no name).
 */
export function requestRateKey(identity: string | undefined, address: string): string {
  return identity ?? `addr:${address}`;
}

export class RequestRateLimiter {
  private readonly buckets: PerKeyTokenBuckets;
  private readonly retryAfterSeconds: number;

  constructor(rate: RateConfig, options: { maxKeys?: number; clock?: Clock } = {}) {
    this.buckets = new PerKeyTokenBuckets({ ratePerSecond: rate.ratePerSecond, burst: rate.burst, maxKeys: options.maxKeys ?? DEFAULT_MAX_RATE_KEYS }, options.clock ?? monotonicClock);
    // A refused take leaves between 0 and 1 token, so one token is at most 1/rate seconds away: the
    // bucket does not say how much less, and telling a client to come back early only earns another 429.
    this.retryAfterSeconds = Math.max(1, Math.ceil(1 / rate.ratePerSecond));
  }

  take(key: string): RateVerdict {
    return this.buckets.take(key) ? TAKEN : { ok: false, retryAfterSeconds: this.retryAfterSeconds };
  }

  /** Keys held (at most maxKeys). */
  get size(): number {
    return this.buckets.size;
  }
}
