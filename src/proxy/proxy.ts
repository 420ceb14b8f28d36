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
import type { ListenerConfig } from '../config/types.js';
import { jsonLineSink, type DecisionRecord, type DecisionSink } from './decision-log.js';
import { DaneListener, type ForwardingObserver, type ListenerDependencies } from './listener.js';

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

export interface ListenerAddress {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly mode: string;
}

export interface ReloadResult {
  readonly ok: boolean;
  readonly time: string;
  readonly generation: number;
  readonly error?: string;
}

export interface RunningProxy {
  readonly listeners: readonly ListenerAddress[];
  /** Decisions by listener, outcome and reason. */
  readonly counters: DecisionCounters;
  /** The current generation's cache, gate and admission control. */
  readonly cache: TlsaCache;
  /** undefined when the gate is disabled or there is no DNS resolver. */
  readonly gate: ResolverGate | undefined;
  readonly admission: Admission;
  readonly config: DancegateConfig;
  /** 1 at start, +1 per successful reload. */
  readonly generation: number;
  readonly lastReload: ReloadResult | undefined;
  /** Client connections open now, all listeners. */
  readonly openConnections: number;
  /**
   * Switch to a new configuration for new connections; established ones go
   * on with what they started with. All or nothing: on any error the old
   * configuration stays in force and the error is returned.
   */
  reload(next: DancegateConfig): Promise<ReloadResult>;
  /** Graceful stop; resolves true when every connection ended before the deadline. */
  drain(deadlineMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export interface ProxyOptions {
  readonly log?: DecisionSink;
  readonly dnsResolver?: TlsaResolver;
  /** Extra hooks: metrics (counting decisions, resolver outcomes, forwarding). */
  readonly metrics?: {
    decision(record: DecisionRecord): void;
    countingResolver(inner: TlsaResolver): TlsaResolver;
  } & ForwardingObserver;
}

/** Everything one configuration generation shares across listeners. */
interface Shared {
  readonly config: DancegateConfig;
  readonly cache: TlsaCache;
  readonly gate: ResolverGate | undefined;
  readonly admission: Admission;
}

function sharedFor(config: DancegateConfig, options: ProxyOptions): Shared {
  const { resolver, gate } = resolverFor(config, options.dnsResolver);
  const counted = options.metrics ? options.metrics.countingResolver(resolver) : resolver;
  return { config, cache: new TlsaCache(counted, config.resolver.cache), gate, admission: new Admission(config.limits) };
}

export async function startProxy(config: DancegateConfig, options: ProxyOptions = {}): Promise<RunningProxy> {
  const counters = new DecisionCounters();
  const sink = options.log ?? jsonLineSink;
  const log: DecisionSink = (record) => {
    counters.count(record);
    options.metrics?.decision(record);
    sink(record);
  };
  let shared = sharedFor(config, options);
  const depsFor = (s: Shared): ListenerDependencies => ({ cache: s.cache, log, admission: s.admission, observer: options.metrics });
  let running = new Map<string, { listener: DaneListener; address: ListenerAddress }>();
  /** Listeners removed or moved by a reload: no longer accepting, their connections running out. */
  const leaving = new Set<DaneListener>();
  let generation = 1;
  let lastReload: ReloadResult | undefined;

  const startListener = async (lc: ListenerConfig, s: Shared): Promise<{ listener: DaneListener; address: ListenerAddress }> => {
    const listener = new DaneListener(lc, depsFor(s));
    const bound = await listener.start();
    return { listener, address: { name: lc.name, host: bound.host, port: bound.port, mode: lc.mode } };
  };
  const retire = (listener: DaneListener): void => {
    leaving.add(listener);
    void listener.drain(config.shutdown?.drainTimeoutMs ?? 30_000).then(() => leaving.delete(listener));
  };

  try {
    for (const lc of config.listeners) {
      const started = await startListener(lc, shared);
      running.set(lc.name, started);
    }
  } catch (err) {
    await Promise.all([...running.values()].map((r) => r.listener.close()));
    throw err;
  }

  const proxy: RunningProxy = {
    get listeners() {
      return [...running.values()].map((r) => r.address);
    },
    counters,
    get cache() {
      return shared.cache;
    },
    get gate() {
      return shared.gate;
    },
    get admission() {
      return shared.admission;
    },
    get config() {
      return shared.config;
    },
    get generation() {
      return generation;
    },
    get lastReload() {
      return lastReload;
    },
    get openConnections() {
      let n = 0;
      for (const r of running.values()) n += r.listener.connectionCount;
      for (const l of leaving) n += l.connectionCount;
      return n;
    },
    async reload(next: DancegateConfig): Promise<ReloadResult> {
      const time = new Date().toISOString();
      const nextShared = sharedFor(next, options);
      const nextRunning = new Map<string, { listener: DaneListener; address: ListenerAddress }>();
      const newlyStarted: DaneListener[] = [];
      const updates: Array<() => void> = [];
      try {
        for (const lc of next.listeners) {
          const old = running.get(lc.name);
          const oldConfig = old?.listener.config;
          if (old && oldConfig && oldConfig.host === lc.host && oldConfig.port === lc.port && oldConfig.mode === lc.mode) {
            // Same address and mode: build the new generation now (may throw), switch after every listener is ready.
            updates.push(old.listener.prepareUpdate(lc, depsFor(nextShared)));
            nextRunning.set(lc.name, old);
          } else {
            const started = await startListener(lc, nextShared);
            newlyStarted.push(started.listener);
            nextRunning.set(lc.name, started);
          }
        }
      } catch (err) {
        await Promise.all(newlyStarted.map((l) => l.close()));
        lastReload = { ok: false, time, generation, error: (err as Error).message };
        return lastReload;
      }
      for (const apply of updates) apply();
      for (const [name, old] of running) if (nextRunning.get(name) !== old) retire(old.listener);
      running = nextRunning;
      shared = nextShared;
      generation++;
      lastReload = { ok: true, time, generation };
      return lastReload;
    },
    async drain(deadlineMs: number): Promise<boolean> {
      const all = [...[...running.values()].map((r) => r.listener), ...leaving];
      const results = await Promise.all(all.map((l) => l.drain(deadlineMs)));
      return results.every(Boolean);
    },
    async close() {
      await Promise.all([...[...running.values()].map((r) => r.listener.close()), ...[...leaving].map((l) => l.close())]);
    },
  };
  return proxy;
}
