/**
 * The penalty box: an address that fails authentication `failures` times
 * within `windowMs` is refused outright for `banMs`. Bounded LRU of
 * addresses. Pure apart from the clock.
 */
import { LRUCache } from 'lru-cache';
import { monotonicClock, type Clock } from './clock.js';

export interface PenaltyBoxOptions {
  readonly failures: number;
  readonly windowMs: number;
  readonly banMs: number;
  readonly maxKeys: number;
}

interface Record {
  windowStartMs: number;
  failures: number;
  bannedUntilMs: number;
}

export class PenaltyBox {
  private readonly records: LRUCache<string, Record>;

  constructor(
    private readonly options: PenaltyBoxOptions,
    private readonly clock: Clock = monotonicClock,
  ) {
    for (const key of ['failures', 'windowMs', 'banMs', 'maxKeys'] as const) {
      if (!Number.isInteger(options[key]) || options[key] < 1) throw new RangeError(`penalty box ${key} must be an integer >= 1, got ${options[key]}`);
    }
    this.records = new LRUCache({ max: options.maxKeys });
  }

  /** Milliseconds of ban left for `key`, or 0. */
  bannedFor(key: string): number {
    const r = this.records.get(key);
    if (r === undefined) return 0;
    return Math.max(0, r.bannedUntilMs - this.clock());
  }

  /** Put `key` in the box now, for `banMs` (a failure no legitimate client makes, such as a chain over limits). */
  ban(key: string): void {
    const now = this.clock();
    this.records.set(key, { windowStartMs: now, failures: 0, bannedUntilMs: now + this.options.banMs });
  }

  /** Count a failure (`weight` failures at once, an integer >= 1); returns true when it puts `key` in the box. */
  recordFailure(key: string, weight = 1): boolean {
    const now = this.clock();
    let r = this.records.get(key);
    if (r === undefined || now - r.windowStartMs >= this.options.windowMs) {
      r = { windowStartMs: now, failures: 0, bannedUntilMs: r?.bannedUntilMs ?? 0 };
      this.records.set(key, r);
    }
    r.failures += Math.max(1, Math.floor(weight));
    if (r.failures >= this.options.failures && r.bannedUntilMs <= now) {
      r.bannedUntilMs = now + this.options.banMs;
      r.failures = 0;
      r.windowStartMs = now;
      return true;
    }
    return false;
  }

  /**
   * Lift `key`'s ban and forget its failures (an operator's decision).
   * Returns what was lifted: the ban time that was left (0: not banned)
   * and the failures counted towards one; undefined when nothing was known of `key`.
   */
  unban(key: string): { readonly bannedForMs: number; readonly failures: number } | undefined {
    const r = this.records.get(key);
    if (r === undefined) return undefined;
    const now = this.clock();
    const inWindow = now - r.windowStartMs < this.options.windowMs;
    this.records.delete(key);
    return { bannedForMs: Math.ceil(Math.max(0, r.bannedUntilMs - now)), failures: inWindow ? r.failures : 0 };
  }

  get size(): number {
    return this.records.size;
  }
}
