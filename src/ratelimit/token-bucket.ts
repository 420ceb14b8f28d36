/**
 * Token buckets: `ratePerSecond` tokens flow in continuously up to `burst`;
 * each admission takes one. Per-key buckets (one per source IP) live in a
 * bounded LRU: an address not seen for a while, or pushed out by newer
 * ones, starts again with a full bucket. Pure apart from the clock.
 */
import { LRUCache } from 'lru-cache';
import { monotonicClock, type Clock } from './clock.js';

export interface TokenBucketOptions {
  readonly ratePerSecond: number;
  readonly burst: number;
}

interface BucketState {
  tokens: number;
  updatedMs: number;
}

function checkBucketOptions(o: TokenBucketOptions): void {
  if (!(Number.isFinite(o.ratePerSecond) && o.ratePerSecond > 0)) throw new RangeError(`token bucket ratePerSecond must be > 0, got ${o.ratePerSecond}`);
  if (!(Number.isInteger(o.burst) && o.burst >= 1)) throw new RangeError(`token bucket burst must be an integer >= 1, got ${o.burst}`);
}

/** Refill `state` to `nowMs` and take one token if there is one. */
function takeToken(state: BucketState, o: TokenBucketOptions, nowMs: number): boolean {
  const elapsed = Math.max(0, nowMs - state.updatedMs);
  state.tokens = Math.min(o.burst, state.tokens + (elapsed * o.ratePerSecond) / 1000);
  state.updatedMs = nowMs;
  if (state.tokens < 1) return false;
  state.tokens -= 1;
  return true;
}

export class TokenBucket {
  private readonly state: BucketState;

  constructor(
    private readonly options: TokenBucketOptions,
    private readonly clock: Clock = monotonicClock,
  ) {
    checkBucketOptions(options);
    this.state = { tokens: options.burst, updatedMs: clock() };
  }

  take(): boolean {
    return takeToken(this.state, this.options, this.clock());
  }
}

export class PerKeyTokenBuckets {
  private readonly buckets: LRUCache<string, BucketState>;

  constructor(
    private readonly options: TokenBucketOptions & { readonly maxKeys: number },
    private readonly clock: Clock = monotonicClock,
  ) {
    checkBucketOptions(options);
    this.buckets = new LRUCache({ max: options.maxKeys });
  }

  /** Take one token from `key`'s bucket; false when it is empty. */
  take(key: string): boolean {
    const now = this.clock();
    let state = this.buckets.get(key);
    if (state === undefined) {
      state = { tokens: this.options.burst, updatedMs: now };
      this.buckets.set(key, state);
    }
    return takeToken(state, this.options, now);
  }

  get size(): number {
    return this.buckets.size;
  }
}
