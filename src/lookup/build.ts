/**
 * The TLSA lookup chain, built in exactly one place from the configuration:
 *
 *   cache → local TLSA file → resolver gate → TLSA query → DNS exchange
 *
 * Every caller (the running proxy, `dancegate check`, readiness and the
 * validation probe) builds its resolver here, so the config → resolver
 * mapping and its checks exist once.
 */
import type { DnsClient } from '../dns/exchange.js';
import type { ResolverOptions } from '../dns/resolver.js';
import type { TlsaCache, TlsaCacheOptions } from './cache.js';
import { LocalFirstResolver } from './local-resolver.js';
import type { LocalTlsa } from './local-tlsa.js';
import { PublishingTlsaCache, publishingResolver } from './published.js';
import { ResolverGate, type ResolverGateOptions } from './resolver-gate.js';
import { DnsTlsaResolver } from './tlsa-query.js';
import type { TlsaResolver } from './tlsa-resolver.js';

/** What the chain needs of the resolver configuration (src/config's ResolverConfig has this shape). */
export interface LookupSettings {
  /** May be empty only when localTlsa is set. */
  readonly servers: ResolverOptions['servers'];
  readonly attemptTimeoutMs?: number;
  readonly totalTimeoutMs?: number;
  readonly allowRemotePlainResolver?: boolean;
  readonly localTlsa?: LocalTlsa | undefined;
  readonly localTlsaFile?: string | undefined;
  readonly cache?: TlsaCacheOptions;
}

export interface LookupLimits {
  /** undefined: no resolver gate (only for comparison benchmarks). */
  readonly resolverGate: ResolverGateOptions | undefined;
}

export interface BuildLookupOptions {
  /** Replaces the DNS TLSA query (tests: a fake resolver); the gate and the local file stay in front of it. */
  readonly dnsResolver?: TlsaResolver;
  /** Replaces the DNS exchange under the TLSA query (tests: a fake DNS server). */
  readonly dnsClient?: DnsClient;
}

export interface Lookup {
  /** The front of the chain; publishes lookupChannel. */
  readonly cache: TlsaCache;
  /** undefined when the gate is disabled or there is no DNS resolver. */
  readonly gate: ResolverGate | undefined;
  /** The bare DNS TLSA query (no cache, no gate, no local file), for probes; undefined without resolver servers. */
  readonly dns: TlsaResolver | undefined;
}

/**
 * The DNS TLSA query for resolver settings, or undefined when there are no
 * servers. Throws ResolverConfigError (naming the server or setting) for
 * settings the resolver refuses.
 */
export function buildDnsQuery(settings: Pick<LookupSettings, 'servers' | 'attemptTimeoutMs' | 'totalTimeoutMs' | 'allowRemotePlainResolver'>, client?: DnsClient): TlsaResolver | undefined {
  if (client !== undefined) return new DnsTlsaResolver(client);
  if (settings.servers.length === 0) return undefined;
  return new DnsTlsaResolver({
    servers: settings.servers,
    attemptTimeoutMs: settings.attemptTimeoutMs,
    totalTimeoutMs: settings.totalTimeoutMs,
    allowRemotePlainResolver: settings.allowRemotePlainResolver,
  });
}

/** Build the chain; throws when there is neither a resolver nor a local TLSA file, or when a setting is refused. */
export function buildLookup(settings: LookupSettings, limits: LookupLimits, options: BuildLookupOptions = {}): Lookup {
  const dns = options.dnsResolver ?? buildDnsQuery(settings, options.dnsClient);
  const gate = dns !== undefined && limits.resolverGate !== undefined ? new ResolverGate(dns, limits.resolverGate) : undefined;
  const gated = gate ?? dns;
  let behindCache: TlsaResolver;
  if (settings.localTlsa !== undefined) behindCache = new LocalFirstResolver(settings.localTlsa, settings.localTlsaFile ?? 'local TLSA', gated);
  else if (gated !== undefined) behindCache = gated;
  else throw new Error('resolver: no servers and no local TLSA file');
  const cache = new PublishingTlsaCache(publishingResolver(behindCache), settings.cache);
  return { cache, gate, dns };
}
