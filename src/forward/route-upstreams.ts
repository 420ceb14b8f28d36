/**
 * What one HTTP route forwards through: its upstreams (an UpstreamSet that
 * balances and health-checks them), one undici dispatcher per upstream
 * (keep-alive HTTP/1.1 pool, or HTTP/2 for h2c:// and https:// with
 * upstreamHttp2), and the route's UpstreamGate (a per-client share of the
 * requests in flight and a bounded wait).
 */
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Pool, buildConnector, type Dispatcher } from 'undici';
import type { HttpModeConfig, RouteConfig, Upstream } from '../config/types.js';
import { upstreamConnectChannel } from './channels.js';
import { UpstreamGate } from './upstream-gate.js';
import { UpstreamSet } from './upstream-set.js';

const UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;
/** Streams one HTTP/2 upstream connection carries at once (h2c:// upstreams). */
const H2_STREAMS_PER_CONNECTION = 100;

/** One upstream's dispatcher and the TLS name it uses. */
export interface TargetDispatcher {
  readonly upstream: Upstream;
  readonly dispatcher: Dispatcher;
  /** Constant per upstream, so that undici never derives TLS SNI from the client's Host (nor reconnects when it changes). */
  readonly servername: string;
  /** Whether requests go out as HTTP/2 (no WebSocket upgrade through it). */
  readonly http2: boolean;
}

export class RouteUpstreams {
  readonly set: UpstreamSet;
  readonly gate: UpstreamGate;
  private readonly dispatchers = new Map<string, TargetDispatcher>();

  constructor(
    private readonly listenerName: string,
    route: RouteConfig,
    private readonly config: HttpModeConfig,
  ) {
    this.set = new UpstreamSet(listenerName, route.upstreams);
    this.set.start();
    const connections = config.upstreamConnections;
    this.gate = new UpstreamGate({
      maxInFlight: connections,
      maxPerClient: config.upstreamMaxPerClient,
      maxWaitMs: config.upstreamQueueTimeoutMs,
      maxQueued: connections * 4,
    });
  }

  /** The dispatcher of `upstream` (one of this route's), made on first use. */
  dispatcherFor(upstream: Upstream): TargetDispatcher {
    const existing = this.dispatchers.get(upstream.name);
    if (existing) return existing;
    const made = this.make(upstream);
    this.dispatchers.set(upstream.name, made);
    return made;
  }

  close(): void {
    this.set.close();
    for (const d of this.dispatchers.values()) void d.dispatcher.destroy().catch(() => undefined);
    this.dispatchers.clear();
  }

  private make(up: Upstream): TargetDispatcher {
    const host = up.host.includes(':') ? `[${up.host}]` : up.host;
    const h2c = up.protocol === 'h2c';
    // undici's origin scheme: h2c is HTTP/2 over plain TCP.
    const origin = `${h2c ? 'http' : up.protocol}://${host}:${up.port}`;
    // The upstream's TLS name is the configured one, else its host name; never the client's Host
    // header (undici would take it from there). For an IP address with no name: no SNI, and the
    // certificate must name the IP.
    const configured = up.tls?.serverName ?? (isIP(up.host) ? undefined : up.host);
    // useH2c is a connector option of undici 7 that its BuildOptions typings omit.
    const connector = buildConnector({
      ca: up.tls?.caPem,
      cert: up.tls?.certPem,
      key: up.tls?.keyPem,
      rejectUnauthorized: true,
      // https:// with upstreamHttp2 offers h2 then http/1.1; h2c marks the plain socket as HTTP/2 (prior knowledge).
      allowH2: up.http2 && !h2c,
      useH2c: h2c,
      timeout: Math.min(UPSTREAM_CONNECT_TIMEOUT_MS, this.config.requestTimeoutMs),
    } as buildConnector.BuildOptions);
    const connections = this.config.upstreamConnections;
    // h2c is always HTTP/2: streams share connections. An https:// upstream with upstreamHttp2 may still answer
    // http/1.1 in ALPN, so its connections carry one request at a time (never HTTP/1.1 pipelining).
    const multiplexed = h2c;
    const listener = this.listenerName;
    const pool = new Pool(origin, {
      connections: multiplexed ? Math.max(1, Math.ceil(connections / H2_STREAMS_PER_CONNECTION)) : connections,
      pipelining: multiplexed ? H2_STREAMS_PER_CONNECTION : 1,
      allowH2: up.http2,
      maxConcurrentStreams: H2_STREAMS_PER_CONNECTION,
      headersTimeout: this.config.requestTimeoutMs,
      bodyTimeout: this.config.requestTimeoutMs,
      connect: (options, callback) => {
        const started = performance.now();
        connector({ ...options, servername: configured }, (...args) => {
          if (args[0] === null) upstreamConnectChannel.publish({ listener, seconds: (performance.now() - started) / 1000 });
          callback(...args);
        });
      },
    });
    return { upstream: up, dispatcher: pool, servername: configured ?? up.host, http2: up.http2 };
  }
}
