/**
 * The lookup chain's observability: the cache publishes one lookupChannel
 * event per lookup (with its cache status), the chain behind the cache one
 * resolveChannel event per lookup that went past it. Subscribers (metrics,
 * tests) see them through node:diagnostics_channel.
 */
import { TlsaCache, type CachedLookup } from './cache.js';
import { lookupChannel, resolveChannel } from './channels.js';
import type { LookupOutcome } from './tlsa-answer.js';
import type { TlsaResolver } from './tlsa-resolver.js';

/** A TlsaCache that publishes every completed lookup (an aborted wait publishes nothing). */
export class PublishingTlsaCache extends TlsaCache {
  override async lookup(name: string, signal?: AbortSignal): Promise<CachedLookup> {
    const result = await super.lookup(name, signal);
    lookupChannel.publish({ name, cache: result.cache, outcome: result.outcome.kind });
    return result;
  }
}

/** `inner`, publishing the outcome and duration of every lookup it answers. */
export function publishingResolver(inner: TlsaResolver): TlsaResolver {
  return {
    async lookup(name: string, signal?: AbortSignal): Promise<LookupOutcome> {
      const started = performance.now();
      const result = await inner.lookup(name, signal);
      resolveChannel.publish({ outcome: result.kind, seconds: (performance.now() - started) / 1000 });
      return result;
    },
  };
}
