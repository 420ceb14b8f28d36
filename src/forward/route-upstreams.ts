/**
 * What one HTTP route forwards through: its upstreams (an UpstreamSet that
 * balances and health-checks them), one undici dispatcher per upstream
 * (undici's keep-alive HTTP/1.1 pool, or node:http2 sessions for h2c://
 * and https:// with upstreamHttp2), and the route's UpstreamGate (a per-client share of the
 * requests in flight and a bounded wait).
 */
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Pool, buildConnector } from 'undici';
import type { HttpModeConfig, RouteConfig, Upstream } from '../config/types.js';
import { upstreamConnectChannel } from './channels.js';
import { Http2UpstreamDispatcher } from './http2-upstream.js';
import { UpstreamGate } from './upstream-gate.js';
import { UpstreamSet } from './upstream-set.js';

const UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;

/** One upstream's dispatcher and the TLS name it uses. */
export interface TargetDispatcher {
  readonly upstream: Upstream;
  /** undici's keep-alive pool (HTTP/1.1), or node:http2 sessions (HTTP/2 upstreams). */
  readonly dispatcher: Pool | Http2UpstreamDispatcher;
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
    // The upstream's TLS name is the configured one, else its host name; never the client's Host
    // header (undici would take it from there). For an IP address with no name: no SNI, and the
    // certificate must name the IP.
    const configured = up.tls?.serverName ?? (isIP(up.host) ? undefined : up.host);
    const listener = this.listenerName;
    const connectTimeoutMs = Math.min(UPSTREAM_CONNECT_TIMEOUT_MS, this.config.requestTimeoutMs);
    if (up.http2) {
      // h2c:// (prior knowledge) and https:// with upstreamHttp2 (ALPN h2): node:http2 sessions, see http2-upstream.ts.
      const dispatcher = new Http2UpstreamDispatcher({
        origin: new URL(`${up.protocol === 'h2c' ? 'http' : 'https'}://${host}:${up.port}`),
        tls: { ca: up.tls?.caPem, cert: up.tls?.certPem, key: up.tls?.keyPem, servername: configured },
        connectTimeoutMs,
        requestTimeoutMs: this.config.requestTimeoutMs,
        onConnect: (seconds) => upstreamConnectChannel.publish({ listener, seconds }),
      });
      return { upstream: up, dispatcher, servername: configured ?? up.host, http2: true };
    }
    const connector = buildConnector({
      ca: up.tls?.caPem,
      cert: up.tls?.certPem,
      key: up.tls?.keyPem,
      rejectUnauthorized: true,
      timeout: connectTimeoutMs,
    });
    const pool = new Pool(`${up.protocol}://${host}:${up.port}`, {
      connections: this.config.upstreamConnections,
      // One request per upstream connection at a time: never HTTP/1.1 pipelining.
      pipelining: 1,
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
    return { upstream: up, dispatcher: pool, servername: configured ?? up.host, http2: false };
  }
}
