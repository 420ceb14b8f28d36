/**
 * The running proxy: one shared TLSA cache, resolver gate, resolver and
 * admission control; one DaneListener per configured listener. Lookups go
 * cache → local TLSA file → resolver gate → validating resolver.
 */
import type { TlsaCache } from '../lookup/cache.js';
import { buildLookup } from '../lookup/build.js';
import type { TlsaResolver } from '../lookup/tlsa-resolver.js';
import type { DancegateConfig } from '../config/types.js';
import { DecisionCounters } from '../metrics/decision-counters.js';
import { Admission } from '../ratelimit/admission.js';
import type { ResolverGate } from '../lookup/resolver-gate.js';
import type { ListenerConfig } from '../config/types.js';
import { jsonLineSink, type DecisionSink } from '../connection/decision-log.js';
import { DaneListener, type ListenerDependencies } from '../connection/listener.js';
import { TlsEngineError } from '../connection/tls-engine.js';
import { createForwarder } from '../forward/factory.js';
import { StartError, describeListenError, isListenError } from './start-error.js';

export interface ListenerAddress {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly mode: string;
  /** The TLS engine of new connections: 'native' (draft -13 capable) or 'node' (node:tls). */
  readonly tlsEngine?: 'native' | 'node';
  /** Why tls.engine auto runs on node:tls (the native engine did not load). */
  readonly tlsEngineFallback?: string;
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
  /**
   * The first half of reload: build everything the new configuration needs
   * (new listeners bound, certificates loaded) without switching. Then
   * exactly one of commit() (cannot fail) or abort(). Used by the cluster
   * primary to switch every worker or none. A drain aborts it.
   */
  prepareReload(next: DancegateConfig): Promise<PreparedReload | { readonly error: string }>;
  /** Graceful stop; resolves true when every connection ended before the deadline. */
  drain(deadlineMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export interface PreparedReload {
  /** Switch; `generation` sets the new generation number (the cluster primary's), default +1. */
  commit(generation?: number): ReloadResult;
  abort(): Promise<void>;
}

export interface ProxyOptions {
  /** The generation number of `config` (a cluster worker started after reloads); default 1. */
  readonly generation?: number;
  readonly log?: DecisionSink;
  /** Replaces the DNS TLSA query behind the gate (tests); see buildLookup. */
  readonly dnsResolver?: TlsaResolver;
}

/** Everything one configuration generation shares across listeners. */
interface Shared {
  readonly config: DancegateConfig;
  readonly cache: TlsaCache;
  readonly gate: ResolverGate | undefined;
  readonly admission: Admission;
}

/** The admission limits without the resolver gate's (which has its own object). */
const admissionLimitsKey = (config: DancegateConfig): string => JSON.stringify({ ...config.limits, resolverGate: undefined });

/**
 * What one generation shares. Admission control (penalty box, per-IP and
 * per-identity counts, handshake budget) carries over from `previous` when
 * its limits are unchanged, so a reload does not forgive or forget anything;
 * the TLSA cache starts empty (the local TLSA file or resolver may have changed).
 */
function sharedFor(config: DancegateConfig, options: ProxyOptions, previous?: Shared): Shared {
  const { cache, gate } = buildLookup(config.resolver, config.limits, { dnsResolver: options.dnsResolver });
  const admission = previous && admissionLimitsKey(previous.config) === admissionLimitsKey(config) ? previous.admission : new Admission(config.limits);
  return { config, cache, gate, admission };
}

export async function startProxy(config: DancegateConfig, options: ProxyOptions = {}): Promise<RunningProxy> {
  const counters = new DecisionCounters();
  const sink = options.log ?? jsonLineSink;
  const log: DecisionSink = (record) => {
    counters.count(record);
    // Every sink, a caller's included, gets fields bounded in size: the connection bounds its record once, when it decides.
    sink(record);
  };
  let shared = sharedFor(config, options);
  const depsFor = (s: Shared): ListenerDependencies => ({ cache: s.cache, log, admission: s.admission, forwarders: createForwarder });
  let running = new Map<string, { listener: DaneListener; address: ListenerAddress }>();
  /** Listeners removed or moved by a reload: no longer accepting, their connections running out. */
  const leaving = new Set<DaneListener>();
  let generation = options.generation ?? 1;
  let lastReload: ReloadResult | undefined;
  /** Set by drain/close: no reload may start listeners any more. */
  let closing = false;
  /** Prepared reloads waiting for commit or abort (a drain aborts them). */
  const pending = new Set<PreparedReload>();

  const startListener = async (lc: ListenerConfig, s: Shared): Promise<{ listener: DaneListener; address: ListenerAddress }> => {
    let listener: DaneListener;
    try {
      listener = new DaneListener(lc, depsFor(s));
    } catch (err) {
      if (err instanceof TlsEngineError) throw new StartError(err.message);
      throw err;
    }
    let bound: { host: string; port: number };
    try {
      bound = await listener.start();
    } catch (err) {
      // Name the listener and its address: "listener api: 127.0.0.1:8443 is already in use".
      if (isListenError(err)) throw new StartError(describeListenError(`listener ${lc.name}`, lc.host, lc.port, err));
      throw err;
    }
    return { listener, address: { name: lc.name, host: bound.host, port: bound.port, mode: lc.mode } };
  };
  const retire = (listener: DaneListener): void => {
    leaving.add(listener);
    void listener.drain(shared.config.shutdown.drainTimeoutMs).then(() => leaving.delete(listener));
  };

  const prepareReload = async (next: DancegateConfig): Promise<PreparedReload | { readonly error: string }> => {
    if (closing) return { error: 'shutting down' };
    let nextShared: Shared;
    const nextRunning = new Map<string, { listener: DaneListener; address: ListenerAddress }>();
    const newlyStarted: DaneListener[] = [];
    const updates: Array<{ apply(): void; discard(): void }> = [];
    try {
      nextShared = sharedFor(next, options, shared);
      for (const lc of next.listeners) {
        const old = running.get(lc.name);
        const oldConfig = old?.listener.config;
        if (old && oldConfig && oldConfig.host === lc.host && oldConfig.port === lc.port && oldConfig.mode === lc.mode) {
          // Same address and mode: build the new generation now (may throw), switch on commit.
          updates.push(old.listener.prepareUpdate(lc, depsFor(nextShared)));
          nextRunning.set(lc.name, old);
        } else {
          const started = await startListener(lc, nextShared);
          newlyStarted.push(started.listener);
          nextRunning.set(lc.name, started);
          if (closing) throw new Error('shutting down');
        }
      }
    } catch (err) {
      for (const update of updates) update.discard();
      await Promise.all(newlyStarted.map((l) => l.close()));
      return { error: (err as Error).message };
    }
    let settled = false;
    const prepared: PreparedReload = {
      commit(nextGeneration?: number): ReloadResult {
        const time = new Date().toISOString();
        if (settled || closing) return { ok: false, time, generation, error: settled ? 'this reload was already settled' : 'shutting down' };
        settled = true;
        pending.delete(prepared);
        for (const update of updates) update.apply();
        for (const [name, old] of running) if (nextRunning.get(name) !== old) retire(old.listener);
        running = nextRunning;
        shared = nextShared;
        generation = nextGeneration ?? generation + 1;
        lastReload = { ok: true, time, generation };
        return lastReload;
      },
      async abort(): Promise<void> {
        if (settled) return;
        settled = true;
        pending.delete(prepared);
        for (const update of updates) update.discard();
        await Promise.all(newlyStarted.map((l) => l.close()));
      },
    };
    pending.add(prepared);
    return prepared;
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
      return [...running.values()].map((r) => withEngine(r.address, r.listener));
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
      const prepared = await prepareReload(next);
      if ('error' in prepared) {
        lastReload = { ok: false, time, generation, error: prepared.error };
        return lastReload;
      }
      const result = prepared.commit();
      if (!result.ok) lastReload = result;
      return result;
    },
    prepareReload,
    async drain(deadlineMs: number): Promise<boolean> {
      closing = true;
      await Promise.all([...pending].map((p) => p.abort()));
      const all = [...[...running.values()].map((r) => r.listener), ...leaving];
      const results = await Promise.all(all.map((l) => l.drain(deadlineMs)));
      return results.every(Boolean);
    },
    async close() {
      closing = true;
      await Promise.all([...pending].map((p) => p.abort()));
      await Promise.all([...[...running.values()].map((r) => r.listener.close()), ...[...leaving].map((l) => l.close())]);
    },
  };
  return proxy;
}

/** A listener's address with the engine its current generation runs (a reload may change it). */
function withEngine(address: ListenerAddress, listener: DaneListener): ListenerAddress {
  const { name, fallback } = listener.engine;
  return fallback === undefined ? { ...address, tlsEngine: name } : { ...address, tlsEngine: name, tlsEngineFallback: fallback };
}
