/**
 * HTTP mode: a verified TLS connection goes, by the ALPN protocol it
 * negotiated, to a (non-listening) node:http server (HTTP/1.1) or to the
 * HTTP/2 front (node:http2, http2-inbound.ts). Every request of either
 * goes through the same handler (http-exchange.ts): checks, per-path
 * rules, request rate, identity headers, then the route's upstreams.
 *
 * The upstream message's framing is derived only from what the client's
 * parser read: the body is the parsed body stream, sent with the parsed
 * Content-Length or chunked; no header the client sends (Connection
 * naming Content-Length, say) can change it. An upstream failure is a
 * plain 502 that leaks nothing; no exception leaves a request handler.
 *
 * Drain: HTTP/1.1 responses not yet sent carry `Connection: close`, and
 * each connection closes after its last response in flight (one already
 * being streamed included); idle kept-alive connections close at once.
 * HTTP/2 sessions get GOAWAY and close once their streams end.
 */
import * as http from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { SecureSocket } from '../tls/secure-socket.js';
import type { HttpListenerConfig, HttpModeConfig, HttpRouteConfig } from '../config/types.js';
import { identityHeaderTest } from './http-headers.js';
import type { ConnectionContext, Forwarder } from '../connection/forwarder.js';
import { REASONS, type RefusalReason } from '../reasons.js';
import { ByteMeter, type MeterOptions } from './byte-meter.js';
import { errorText } from './upstream-failure.js';
import { handleRequest, type ExchangeEnv } from './http-exchange.js';
import { Http2Inbound } from './http2-inbound.js';
import { compileRules, type CompiledRules } from './path-rules.js';
import { RequestRateLimiter } from './request-rate.js';
import { RouteUpstreams } from './route-upstreams.js';
import { handleUpgrade, plainResponse } from './websocket-tunnel.js';

/** Retry-After for temporary refusals: the failure cache's lifetime, about. */
const RETRY_AFTER_SECONDS = 5;
/** How long a connection that has sent no request yet may take to send its first one once the listener drains. */
const DRAIN_FIRST_REQUEST_GRACE_MS = 2000;

/** One line on stderr for a request that failed inside the forwarder (the process goes on). */
function logForwardingError(listener: string, stage: string, err: unknown): void {
  try {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'http forwarding failed', listener, stage, error: errorText(err) })}\n`);
  } catch {
    // Logging must not be what fails a request.
  }
}

/** The status, body and headers a refused client gets (refuseWith403), from the catalog: 403, or 503 + Retry-After when the cause is temporary. */
function refusalAnswer(reason: RefusalReason): { status: number; body: string; headers: Record<string, string> } {
  return REASONS[reason].http === 503
    ? { status: 503, body: `Service Unavailable: DANE client authentication temporarily impossible (${reason})\n`, headers: { 'retry-after': String(RETRY_AFTER_SECONDS) } }
    : { status: 403, body: `Forbidden: DANE client authentication failed (${reason})\n`, headers: {} };
}

/** The forwarder of an HTTP-mode listener. */
export class HttpForwarder implements Forwarder {
  readonly alpn: readonly string[];
  /** Policy optional: a refused client is forwarded unauthenticated, with the reason in the status header. */
  readonly forwardsUnauthenticated: boolean;
  readonly answersRefusals: boolean;
  private readonly config: HttpModeConfig;
  private readonly listener: HttpListenerConfig;
  private readonly server: http.Server;
  private readonly h2: Http2Inbound;
  private readonly env: ExchangeEnv;
  private readonly contexts = new WeakMap<object, ConnectionContext>();
  /** One set of upstreams per route: two routes to one URL may differ in upstream TLS settings. */
  private readonly upstreams = new Map<HttpRouteConfig, RouteUpstreams>();
  private readonly rules = new Map<HttpRouteConfig, CompiledRules | undefined>();
  /** Open HTTP/1.1 connections and their responses not yet finished (what drain waits for). */
  private readonly inFlight = new Map<Duplex, Set<http.ServerResponse>>();
  /** Connections that have sent a request (Node counts one as idle only between requests, never before its first). */
  private readonly requested = new WeakSet<Duplex>();
  /** Bytes a connection had read when its last response ended: more since then is a request on its way. */
  private readonly readAtLastResponse = new WeakMap<Duplex, number>();
  private readonly meter: ByteMeter;

  private draining = false;

  constructor(listener: HttpListenerConfig, options: MeterOptions = {}) {
    const config = listener.http;
    this.config = config;
    this.listener = listener;
    this.alpn = config.alpn;
    this.forwardsUnauthenticated = listener.policy === 'optional';
    this.answersRefusals = config.refuseWith403;
    this.meter = new ByteMeter(listener.name, options.bytesIntervalMs);
    for (const route of listener.routes) this.rules.set(route, route.rules.length > 0 ? compileRules(route.rules) : undefined);
    this.env = {
      listener,
      isStripped: identityHeaderTest(config),
      upstreamsFor: (route) => this.upstreamsFor(route),
      rulesFor: (route) => this.rules.get(route),
      rate: config.requestRatePerIdentity === undefined ? undefined : new RequestRateLimiter(config.requestRatePerIdentity),
      logError: (stage, err) => logForwardingError(listener.name, stage, err),
    };
    this.server = http.createServer(
      {
        requestTimeout: config.requestTimeoutMs,
        headersTimeout: config.headersTimeoutMs,
        keepAliveTimeout: listener.idleTimeoutMs,
        connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs),
      },
      (req, res) => this.onRequest(req, res),
    );
    // node:http enforces headersTimeout/requestTimeout (408, slowloris) only once the
    // server has emitted 'listening'; this server never listens (we hand it verified
    // sockets), so start that tracking here. test/e2e/http-mode.test.ts proves the 408.
    this.server.emit('listening');
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const context = this.contexts.get(req.socket);
      if (context === undefined) return void socket.destroy();
      handleUpgrade(this.env, req, socket, head, context, this.draining);
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // Node's own answers: 408 for slow headers/requests, 431 for oversize headers, else 400.
      const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
      else socket.destroy();
    });
    this.h2 = new Http2Inbound(listener, (req: Http2ServerRequest, res: Http2ServerResponse, context: ConnectionContext) => handleRequest(this.env, req, res, context, 'h2'));
  }

  /** Serve HTTP on a verified connection: HTTP/2 when the client chose h2 in ALPN, else HTTP/1.1. */
  accept(socket: SecureSocket, context: ConnectionContext): void {
    this.meter.track(socket);
    if (socket.alpnProtocol === 'h2') {
      this.h2.accept(socket, context);
      return;
    }
    this.contexts.set(socket, context);
    this.inFlight.set(socket, new Set());
    socket.once('close', () => this.inFlight.delete(socket));
    this.server.emit('connection', socket);
    socket.resume();
    if (this.draining) this.closeUnlessRequested(socket);
  }

  /**
   * Graceful stop: idle keep-alive connections close now; every response
   * not yet sent gets `Connection: close`, and every busy connection closes
   * after its last response in flight. HTTP/2 sessions get GOAWAY.
   */
  drain(): void {
    this.draining = true;
    this.h2.drain();
    // Idle by our own account, not server.closeIdleConnections(): from Node 22 on that also closes connections
    // that have not sent their first request, which would take away their grace (closeUnlessRequested).
    for (const [socket, responses] of this.inFlight) {
      for (const res of responses) if (!res.headersSent) res.setHeader('connection', 'close');
      if (!this.requested.has(socket)) this.closeUnlessRequested(socket);
      else if (responses.size === 0 && !this.readSinceLastResponse(socket)) socket.destroy();
    }
  }

  /**
   * Draining, a connection that has not sent its first request gets
   * DRAIN_FIRST_REQUEST_GRACE_MS to send it (it is answered with
   * `Connection: close`), then closes: otherwise it would hold the drain
   * until headersTimeoutMs and end with a 408.
   */
  private closeUnlessRequested(socket: Duplex): void {
    if (this.requested.has(socket)) return;
    const timer = setTimeout(() => {
      if (!this.requested.has(socket)) socket.destroy();
    }, DRAIN_FIRST_REQUEST_GRACE_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  /**
   * Answer a refused client (refuseWith403) with the reason's status from
   * the catalog, in the protocol it chose (an HTTP/2 response and GOAWAY on
   * h2); then close. Otherwise just close.
   */
  refuse(socket: SecureSocket, reason: RefusalReason): void {
    if (!this.config.refuseWith403) {
      socket.destroy();
      return;
    }
    const answer = refusalAnswer(reason);
    if (socket.alpnProtocol === 'h2') {
      this.h2.refuse(socket, answer.status, answer.body, answer.headers);
      return;
    }
    const extra = Object.entries(answer.headers)
      .map(([k, v]) => `${k === 'retry-after' ? 'Retry-After' : k}: ${v}\r\n`)
      .join('');
    socket.end(plainResponse(answer.status, answer.body, extra));
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  close(): void {
    for (const upstreams of this.upstreams.values()) upstreams.close();
    this.upstreams.clear();
    this.h2.close();
    this.meter.close();
    // Stops node:http's connection-checking interval.
    this.server.close();
  }

  private upstreamsFor(route: HttpRouteConfig): RouteUpstreams {
    let upstreams = this.upstreams.get(route);
    if (upstreams === undefined) {
      upstreams = new RouteUpstreams(this.listener.name, route, this.config);
      this.upstreams.set(route, upstreams);
    }
    return upstreams;
  }

  /**
   * Whether a kept-alive connection has read bytes since its last response ended: a request on its way, to be
   * served (with Connection: close). Bytes of a pipelined request read before that response ended do not count:
   * such a connection is closed at the drain like an idle one, as its client had not waited for the answer.
   */
  private readSinceLastResponse(socket: Duplex): boolean {
    const before = this.readAtLastResponse.get(socket);
    return before === undefined || bytesReadOf(socket) > before;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.track(req, res);
    const context = this.contexts.get(req.socket);
    if (context === undefined) {
      res.destroy();
      return;
    }
    handleRequest(this.env, req, res, context, 'h1');
  }

  /** Count a response in flight on its connection; when draining, it closes the connection, and its connection closes after the last one. */
  private track(req: http.IncomingMessage, res: http.ServerResponse): void {
    const socket = req.socket;
    this.requested.add(socket);
    const responses = this.inFlight.get(socket);
    if (this.draining) res.setHeader('connection', 'close');
    if (responses === undefined) return;
    responses.add(res);
    res.once('close', () => {
      responses.delete(res);
      this.readAtLastResponse.set(socket, bytesReadOf(socket));
      // A response that started before the drain could not say `Connection: close`: end the connection after it.
      if (this.draining && responses.size === 0 && !socket.destroyed) socket.destroySoon();
    });
  }
}

/** Bytes read from the client so far (net.Socket, TLSSocket and NativeTlsSocket all count them). */
function bytesReadOf(socket: Duplex): number {
  return (socket as Duplex & { readonly bytesRead: number }).bytesRead;
}
