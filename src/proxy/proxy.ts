/**
 * The running proxy: one shared TLSA cache, resolver gate, resolver and
 * admission control; one DaneListener per configured listener. Lookups go
 * cache → local TLSA file → resolver gate → validating resolver.
 */
import { TlsaCache } from '../dane/cache.js';
import { LocalFirstResolver } from '../dane/local-resolver.js';
import { DnsTlsaResolver, type TlsaResolver } from '../dane/resolver.js';
import type { DancegateConfig } from '../config/types.js';
import { DecisionCounters } from '../metrics/decision-counters.js';
import { Admission } from '../ratelimit/admission.js';
import { ResolverGate } from '../ratelimit/resolver-gate.js';
import { jsonLineSink, type DecisionSink } from './decision-log.js';
import { DaneListener } from './listener.js';

/** The lookup chain for a configuration; `dns` replaces the DNS resolver (tests). */
export function resolverFor(config: DancegateConfig, dns?: TlsaResolver): { resolver: TlsaResolver; gate: ResolverGate | undefined } {
  const r = config.resolver;
  const upstream =
    dns ??
    (r.servers.length > 0
      ? new DnsTlsaResolver({
          servers: r.servers,
          attemptTimeoutMs: r.attemptTimeoutMs,
          totalTimeoutMs: r.totalTimeoutMs,
          allowRemotePlainResolver: r.allowRemotePlainResolver,
        })
      : undefined);
  const gate = upstream && config.limits.resolverGate ? new ResolverGate(upstream, config.limits.resolverGate) : undefined;
  const gated = gate ?? upstream;
  if (r.localTlsa !== undefined) return { resolver: new LocalFirstResolver(r.localTlsa, r.localTlsaFile ?? 'local TLSA', gated), gate };
  if (gated === undefined) throw new Error('resolver: no servers and no local TLSA file');
  return { resolver: gated, gate };
}

export interface RunningProxy {
  readonly listeners: ReadonlyArray<{ readonly name: string; readonly host: string; readonly port: number; readonly mode: string }>;
  /** Decisions by listener, outcome and reason. */
  readonly counters: DecisionCounters;
  readonly cache: TlsaCache;
  /** undefined when the gate is disabled or there is no DNS resolver. */
  readonly gate: ResolverGate | undefined;
  readonly admission: Admission;
  close(): Promise<void>;
}

export async function startProxy(config: DancegateConfig, options: { log?: DecisionSink; dnsResolver?: TlsaResolver } = {}): Promise<RunningProxy> {
  const { resolver, gate } = resolverFor(config, options.dnsResolver);
  const cache = new TlsaCache(resolver, config.resolver.cache);
  const admission = new Admission(config.limits);
  const counters = new DecisionCounters();
  const sink = options.log ?? jsonLineSink;
  const log: DecisionSink = (record) => {
    counters.count(record);
    sink(record);
  };
  const started: Array<{ listener: DaneListener; host: string; port: number }> = [];
  try {
    for (const listenerConfig of config.listeners) {
      const listener = new DaneListener(listenerConfig, { cache, log, admission });
      const address = await listener.start();
      started.push({ listener, ...address });
    }
  } catch (err) {
    await Promise.all(started.map((s) => s.listener.close()));
    throw err;
  }
  return {
    listeners: started.map((s) => ({ name: s.listener.config.name, host: s.host, port: s.port, mode: s.listener.config.mode })),
    counters,
    cache,
    gate,
    admission,
    async close() {
      await Promise.all(started.map((s) => s.listener.close()));
    },
  };
}
