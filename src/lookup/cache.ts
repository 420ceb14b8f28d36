/**
 * TLSA lookup cache on lru-cache: bounded entry count, one query for any
 * number of concurrent lookups of a name (fetch() coalescing), lifetimes
 * from the answer (positive: RRset TTL; negative: RFC 2308), clamped, and a
 * short memory of failures so a hostile zone cannot make us ask again at once.
 */
import { LRUCache } from 'lru-cache';
import type { LookupOutcome } from './tlsa-answer.js';
import { DEFAULT_MAX_TLSA_RECORDS, MAX_TLSA_RECORDS_LIMIT, prepareTlsaSet, type PreparedTlsaSet } from '../dane/match.js';
import type { TlsaResolver } from './tlsa-resolver.js';

export interface TlsaCacheOptions {
  /** Most names kept. */
  readonly maxEntries?: number;
  /** Upper bound on a positive entry's lifetime, seconds. */
  readonly maxPositiveTtlSeconds?: number;
  /** Bounds on a negative (no-tlsa / insecure) entry's lifetime, seconds. */
  readonly minNegativeTtlSeconds?: number;
  readonly maxNegativeTtlSeconds?: number;
  /** Negative lifetime when the answer carries no SOA, seconds. */
  readonly defaultNegativeTtlSeconds?: number;
  /** Lifetime of a failure (timeout, bogus, malformed, server error), seconds. */
  readonly failureTtlSeconds?: number;
  /** Records of one RRset considered for matching (the rest are ignored), 1..256. */
  readonly maxTlsaRecords?: number;
}

export const CACHE_DEFAULTS = {
  maxEntries: 10_000,
  maxPositiveTtlSeconds: 3600,
  minNegativeTtlSeconds: 1,
  maxNegativeTtlSeconds: 300,
  defaultNegativeTtlSeconds: 60,
  failureTtlSeconds: 5,
  maxTlsaRecords: DEFAULT_MAX_TLSA_RECORDS,
} as const satisfies Required<TlsaCacheOptions>;

export type CacheStatus = 'hit' | 'miss' | 'coalesced';

export interface CachedLookup {
  readonly outcome: LookupOutcome;
  readonly cache: CacheStatus;
  /** A secure answer's records, prepared for matching once per cached RRset (capped at maxTlsaRecords). */
  readonly prepared?: PreparedTlsaSet;
  /**
   * How long this answer stays fresh in the cache, milliseconds: the lifetime
   * its entry was given (miss, coalesced), or what is left of it (hit). An
   * uncachable answer (TTL 0, over-capacity) says 1.
   */
  readonly expiresInMs: number;
}

/** How long an outcome may be cached, in seconds (0 = not beyond the queries already waiting for it). Pure. */
export function cacheLifetimeSeconds(o: LookupOutcome, options: Required<TlsaCacheOptions>): number {
  switch (o.kind) {
    case 'secure':
      return Math.max(0, Math.min(o.ttl ?? 0, options.maxPositiveTtlSeconds));
    case 'no-tlsa':
    case 'insecure':
      return Math.min(Math.max(o.ttl ?? options.defaultNegativeTtlSeconds, options.minNegativeTtlSeconds), options.maxNegativeTtlSeconds);
    case 'over-capacity':
      // Our own momentary state, not an answer about the name: never remembered.
      return 0;
    default:
      return options.failureTtlSeconds;
  }
}

/** The lifetime a cache entry for `o` is given, milliseconds: at least 1 (lru-cache reads a ttl of 0 as "forever"). Pure. */
function entryLifetimeMs(o: LookupOutcome, options: Required<TlsaCacheOptions>): number {
  return Math.max(1, Math.round(cacheLifetimeSeconds(o, options) * 1000));
}

/** A lookup being fetched, and how many callers still wait for it. */
interface PendingLookup {
  readonly controller: AbortController;
  waiters: number;
}

export class TlsaCache {
  private readonly options: Required<TlsaCacheOptions>;
  private readonly lru: LRUCache<string, LookupOutcome>;
  private readonly pending = new Map<string, PendingLookup>();

  constructor(
    private readonly resolver: TlsaResolver,
    options: TlsaCacheOptions = {},
  ) {
    this.options = { ...CACHE_DEFAULTS, ...options };
    for (const [key, value] of Object.entries(this.options)) {
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`cache ${key} must be a non-negative number`);
    }
    if (this.options.maxEntries < 1) throw new RangeError('cache maxEntries must be at least 1');
    const cap = this.options.maxTlsaRecords;
    if (!Number.isInteger(cap) || cap < 1 || cap > MAX_TLSA_RECORDS_LIMIT) {
      throw new RangeError(`cache maxTlsaRecords must be an integer from 1 to ${MAX_TLSA_RECORDS_LIMIT}`);
    }
    this.lru = new LRUCache<string, LookupOutcome>({
      max: this.options.maxEntries,
      fetchMethod: async (name, _stale, { options, signal }) => {
        const result = await this.resolver.lookup(name, signal);
        // An uncachable answer gets 1 ms, enough for the waiters only.
        options.ttl = entryLifetimeMs(result, this.options);
        return result;
      },
    });
  }

  /**
   * Look up `name` (canonical), from the cache when fresh. Concurrent lookups
   * of one name share one query. Rejects only when `signal` aborts this
   * caller's wait; when every caller waiting for a query has gone, the query
   * itself is aborted (a queued one is dropped from the resolver gate).
   */
  async lookup(name: string, signal?: AbortSignal): Promise<CachedLookup> {
    if (signal?.aborted) throw signal.reason;
    let entry = this.pending.get(name);
    let status: CacheStatus;
    if (entry !== undefined) status = 'coalesced';
    else if (this.lru.has(name)) status = 'hit';
    else status = 'miss';
    // Read now, with has(): the fetch below answers a fresh entry from the cache as it is at this moment.
    const remainingMs = status === 'hit' ? Math.max(0, this.lru.getRemainingTTL(name)) : undefined;
    let shared: Promise<LookupOutcome | undefined>;
    if (status === 'miss') {
      const created: PendingLookup = { controller: new AbortController(), waiters: 0 };
      entry = created;
      this.pending.set(name, created);
      shared = this.lru.fetch(name, { signal: created.controller.signal });
      const done = (): void => {
        if (this.pending.get(name) === created) this.pending.delete(name);
      };
      shared.then(done, done);
    } else {
      shared = this.lru.fetch(name);
    }
    if (entry === undefined) return this.settle(name, shared, signal, status, remainingMs);
    const waiting = entry;
    waiting.waiters++;
    try {
      return await this.settle(name, shared, signal, status, remainingMs);
    } finally {
      waiting.waiters--;
      if (waiting.waiters === 0 && signal?.aborted && this.pending.get(name) === waiting) {
        // Nobody is left to use the answer: stop asking.
        this.pending.delete(name);
        waiting.controller.abort(new Error(`every caller waiting for the TLSA lookup of ${name} went away`));
      }
    }
  }

  /** `remainingMs`: a hit's remaining lifetime; a miss or coalesced lookup has its entry's whole lifetime. */
  private async settle(name: string, shared: Promise<LookupOutcome | undefined>, signal: AbortSignal | undefined, cache: CacheStatus, remainingMs: number | undefined): Promise<CachedLookup> {
    const result = await raceAbort(shared, signal);
    if (result === undefined) throw new Error(`TLSA lookup for ${name} produced no result`);
    const expiresInMs = remainingMs ?? entryLifetimeMs(result, this.options);
    if (result.kind !== 'secure' || result.records.length === 0) return { outcome: result, cache, expiresInMs };
    // Memoised on the cached records array: anchors are parsed once per cached RRset.
    return { outcome: result, cache, prepared: prepareTlsaSet(result.records, this.options.maxTlsaRecords), expiresInMs };
  }

  /** Lookups currently being fetched (for tests and metrics). */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Forget everything (configuration reload). */
  clear(): void {
    this.lru.clear();
  }

  get size(): number {
    return this.lru.size;
  }
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
