/**
 * One listener: accept connections and run each through the pipeline
 * (pipeline.ts) on the generation it was accepted under; reload (a new
 * generation for new connections), drain and close. What happens after a
 * decision is the injected forwarder's business (forwarder.ts).
 */
import * as net from 'node:net';
import type { ListenerConfig } from '../config/types.js';
import { loadNativeEngine, type NativeEngineLoad } from '../tls/native-engine.js';
import type { Admission } from '../ratelimit/admission.js';
import { Connection } from './connection.js';
import type { DecisionSink } from './decision-log.js';
import type { Forwarder, ForwarderFactory } from './forwarder.js';
import { runPipeline } from './pipeline.js';
import type { TrackedSocket } from './stages/handshake.js';
import { chooseEngine, listenerTls, type ChosenEngine, type EngineName, type ListenerTls } from './tls-engine.js';
import type { TlsaLookupSource } from './stages/lookup.js';

export interface ListenerDependencies {
  readonly cache: TlsaLookupSource;
  readonly log: DecisionSink;
  readonly admission: Admission;
  /** Builds each generation's forwarder (HTTP or TCP, by the listener's mode). */
  readonly forwarders: ForwarderFactory;
  readonly now?: () => Date;
  /** The native TLS engine as loaded (default: this process's, see src/tls/native-engine.ts). */
  readonly nativeEngine?: NativeEngineLoad;
}

/**
 * What one connection runs on, fixed when it is accepted: a reload swaps in
 * a new generation for new connections while established ones keep theirs.
 */
interface Generation {
  readonly config: ListenerConfig;
  readonly deps: ListenerDependencies;
  readonly engine: ChosenEngine;
  readonly tls: ListenerTls;
  readonly forwarder: Forwarder;
  readonly now: () => Date;
  /**
   * Connections accepted under this generation and not yet closed, counted
   * from the accept (ClientHello, handshake and lookup included), since each
   * is handed to this generation's forwarder whenever its decision comes.
   */
  open: number;
}

/** The engine's own ceiling on its job pool (limitPausedHandshakes); the handshake budget may be configured higher. */
const MAX_PAUSED_HANDSHAKES = 1_000_000;

/** Throws (TlsEngineError, or a certificate the engine refuses) without side effects beyond a forwarder it closes. */
function generationFor(config: ListenerConfig, deps: ListenerDependencies): Generation {
  const engine = chooseEngine(config, deps.nativeEngine ?? loadNativeEngine());
  const forwarder = deps.forwarders(config);
  try {
    const tls = listenerTls(engine, config, forwarder.alpn);
    // Paused handshakes hold memory in OpenSSL's job pool: capped by the handshake budget (effective once per process).
    if (tls.engine === 'native') tls.binding.limitPausedHandshakes(Math.min(deps.admission.limits.handshakes.maxConcurrent, MAX_PAUSED_HANDSHAKES));
    return { config, deps, engine, tls, forwarder, now: deps.now ?? (() => new Date()), open: 0 };
  } catch (err) {
    forwarder.close();
    throw err;
  }
}

export class DaneListener {
  private server: net.Server | undefined;
  private current: Generation;
  /** Earlier generations with connections left; their forwarder is closed when the last one ends. */
  private readonly retired = new Set<Generation>();
  /** Raw client sockets (each connection's lifetime). */
  private readonly connections = new Set<net.Socket>();
  /** Raw and TLS sockets, all destroyed by close(). */
  private readonly sockets = new Set<{ destroy(): void }>();
  private readonly drainWaiters: Array<() => void> = [];

  constructor(config: ListenerConfig, deps: ListenerDependencies) {
    this.current = generationFor(config, deps);
  }

  get config(): ListenerConfig {
    return this.current.config;
  }

  /** The TLS engine new connections run on, and why auto fell back to node:tls. */
  get engine(): { readonly name: EngineName; readonly fallback: string | undefined } {
    const e = this.current.engine;
    return e.name === 'native' ? { name: 'native', fallback: undefined } : e;
  }

  /** Connections open now (accepted and not yet closed). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Use a new configuration (same name, address and mode) for new
   * connections; established ones keep the generation they started with.
   * Builds everything first and throws (changing nothing) if the new
   * certificates cannot be loaded; `apply` switches over, `discard` drops it.
   */
  prepareUpdate(config: ListenerConfig, deps: ListenerDependencies): { apply(): void; discard(): void } {
    const next = generationFor(config, deps);
    return {
      apply: () => {
        const previous = this.current;
        this.current = next;
        this.retired.add(previous);
        this.closeIfDone(previous);
      },
      // An aborted reload: the forwarder built for it never served anything.
      discard: () => next.forwarder.close(),
    };
  }

  /** Close a retired generation's forwarder once no connection accepted under it is left. */
  private closeIfDone(generation: Generation): void {
    if (generation.open > 0 || !this.retired.delete(generation)) return;
    generation.forwarder.close();
  }

  async start(): Promise<{ host: string; port: number }> {
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.port, this.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as net.AddressInfo;
    return { host: address.address, port: address.port };
  }

  private accept(raw: net.Socket): void {
    const generation = this.current;
    const { config, deps } = generation;
    generation.open++;
    this.sockets.add(raw);
    this.connections.add(raw);
    const connection = new Connection({ listener: config.name, admission: deps.admission, log: deps.log, now: generation.now }, { address: raw.remoteAddress ?? 'unknown', port: raw.remotePort ?? 0 });
    connection.useSocket(raw);
    // Dead peers (a device that lost power, a NAT that forgot us) are found by the kernel's probes, not the idle timeout.
    if (config.tcpKeepAlive !== undefined) raw.setKeepAlive(true, config.tcpKeepAlive.initialDelayMs);
    raw.once('close', () => {
      connection.closed();
      this.sockets.delete(raw);
      this.connections.delete(raw);
      generation.open--;
      this.closeIfDone(generation);
      if (this.connections.size === 0) for (const waiter of this.drainWaiters.splice(0)) waiter();
    });
    raw.on('error', () => undefined);
    const track = (socket: TrackedSocket): void => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    };
    const env = { config, tls: generation.tls, forwarder: generation.forwarder, cache: deps.cache, admission: deps.admission, now: generation.now, track };
    runPipeline(connection, raw, env).catch((err: unknown) => {
      // A bug must cost one connection, never the process.
      process.emitWarning(`dancegate: listener ${config.name}: connection handler failed: ${err instanceof Error ? err.message : String(err)}`);
      raw.destroy();
    });
  }

  /** Stop accepting new connections; established ones continue. */
  async stopAccepting(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Graceful stop: no new connections; the forwarders stop taking new
   * requests on kept-alive connections and finish the ones in flight; wait
   * until every connection has ended or `deadlineMs` passes, then close the
   * rest. Resolves true when every connection ended by itself.
   */
  async drain(deadlineMs: number): Promise<boolean> {
    const stopped = this.stopAccepting();
    for (const generation of [this.current, ...this.retired]) generation.forwarder.drain();
    const clean = await new Promise<boolean>((resolve) => {
      if (this.connections.size === 0) return resolve(true);
      const timer = setTimeout(() => resolve(false), deadlineMs);
      this.drainWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    await this.close();
    await stopped;
    return clean;
  }

  /** Stop accepting and close every connection now. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    for (const generation of [this.current, ...this.retired]) generation.forwarder.close();
    this.retired.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
