/**
 * HTTP mode: verified TLS connections are handed to a (non-listening)
 * node:http server; each request has every hop-by-hop and incoming
 * identity header stripped and ours set, then goes to the route's upstream
 * through an undici Pool (keep-alive connections, WebSocket upgrades).
 *
 * The upstream message's framing is derived only from what Node's parser
 * read from the client: the body is the parsed body stream, sent with the
 * parsed Content-Length or chunked; no header the client sends (Connection
 * naming Content-Length, say) can change it. An upstream failure is a
 * plain 502 that leaks nothing; no exception leaves a request handler.
 * Each route's pool is admitted through an UpstreamGate: a per-client cap
 * and a bounded wait (503 + Retry-After past it).
 *
 * Drain: every response not yet sent carries `Connection: close`, and each
 * connection closes after its last response in flight (one already being
 * streamed included); idle kept-alive connections close at once.
 */
import * as http from 'node:http';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { SecureSocket } from '../tls/secure-socket.js';
import { Pool, buildConnector, type Dispatcher } from 'undici';
import type { HttpListenerConfig, HttpModeConfig, RouteConfig } from '../config/types.js';
import { parseHostHeader } from './host-header.js';
import { responseHeadersForClient, rewriteIdentityHeaders, type ForwardedIdentity } from './http-headers.js';
import type { ConnectionContext, Forwarder } from '../connection/forwarder.js';
import { REASONS, type RefusalReason } from '../reasons.js';
import { selectBySni } from '../protocol/sni.js';
import { ByteMeter, type MeterOptions } from './byte-meter.js';
import { upstreamConnectChannel } from './channels.js';
import { errorText, publishUpstreamError } from './upstream-failure.js';
import { UpstreamGate, type GateResult } from './upstream-gate.js';

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 421: 'Misdirected Request', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable' };
/** Retry-After for temporary refusals: the failure cache's lifetime, about. */
const RETRY_AFTER_SECONDS = 5;
/** Retry-After when the upstream pool is busy. */
const BUSY_RETRY_AFTER_SECONDS = 1;
/** Retry-After of a WebSocket upgrade refused because the listener is draining (the client should reach another instance). */
const DRAIN_RETRY_AFTER_SECONDS = 1;
/** How long a connection that has sent no request yet may take to send its first one once the listener drains. */
const DRAIN_FIRST_REQUEST_GRACE_MS = 2000;
const UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;

function plainResponse(status: number, body: string, extraHeaders = ''): string {
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extraHeaders}Connection: close\r\n\r\n${body}`;
}

/** One line on stderr for a request that failed inside the forwarder (the process goes on). */
function logForwardingError(listener: string, stage: string, err: unknown): void {
  try {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'http forwarding failed', listener, stage, error: errorText(err) })}\n`);
  } catch {
    // Logging must not be what fails a request.
  }
}

/** What one route forwards through. */
interface Upstream {
  readonly pool: Pool;
  readonly gate: UpstreamGate;
  /** Constant per pool, so that undici never derives TLS SNI from the client's Host (nor reconnects when it changes). */
  readonly servername: string;
}

interface Prepared {
  readonly context: ConnectionContext;
  readonly upstream: Upstream;
  /** Who the per-client cap counts against. */
  readonly clientKey: string;
  readonly headers: Record<string, string | string[]>;
  /** The body to send, as Node parsed it; undefined = none. */
  readonly body: http.IncomingMessage | undefined;
}

/** The TLS name undici would otherwise take from the request's Host header. */
interface WithServername {
  readonly servername: string;
}

type Refusal = { readonly status: 400 | 421 | 500 | 501; readonly body: string };

/** The forwarder of an HTTP-mode listener. */
export class HttpForwarder implements Forwarder {
  readonly alpn = ['http/1.1'] as const;
  /** Policy optional: a refused client is forwarded unauthenticated, with the reason in the status header. */
  readonly forwardsUnauthenticated: boolean;
  readonly answersRefusals: boolean;
  private readonly config: HttpModeConfig;
  private readonly listenerName: string;
  private readonly server: http.Server;
  private readonly contexts = new WeakMap<object, ConnectionContext>();
  /** One pool per route: two routes to one URL may differ in upstream TLS settings. */
  private readonly upstreams = new Map<RouteConfig, Upstream>();
  /** Open connections and their responses not yet finished (what drain waits for). */
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
    this.listenerName = listener.name;
    this.forwardsUnauthenticated = listener.policy === 'optional';
    this.answersRefusals = config.refuseWith403;
    this.meter = new ByteMeter(listener.name, options.bytesIntervalMs);
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
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // Node's own answers: 408 for slow headers/requests, 431 for oversize headers, else 400.
      const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
      else socket.destroy();
    });
  }

  /** Serve HTTP on a verified connection. */
  accept(socket: SecureSocket, context: ConnectionContext): void {
    this.contexts.set(socket, context);
    this.meter.track(socket);
    this.inFlight.set(socket, new Set());
    socket.once('close', () => this.inFlight.delete(socket));
    this.server.emit('connection', socket);
    socket.resume();
    if (this.draining) this.closeUnlessRequested(socket);
  }

  /**
   * Graceful stop: idle keep-alive connections close now; every response
   * not yet sent gets `Connection: close`, and every busy connection closes
   * after its last response in flight.
   */
  drain(): void {
    this.draining = true;
    // Node knows which connections are between requests (not in the middle of reading one).
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
   * the catalog: 403, or 503 + Retry-After when the cause is temporary (DNS
   * trouble, capacity); then close. Otherwise just close.
   */
  refuse(socket: SecureSocket, reason: RefusalReason): void {
    if (!this.config.refuseWith403) {
      socket.destroy();
      return;
    }
    socket.end(
      REASONS[reason].http === 503
        ? plainResponse(503, `Service Unavailable: DANE client authentication temporarily impossible (${reason})\n`, `Retry-After: ${RETRY_AFTER_SECONDS}\r\n`)
        : plainResponse(403, `Forbidden: DANE client authentication failed (${reason})\n`),
    );
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  close(): void {
    for (const upstream of this.upstreams.values()) void upstream.pool.destroy().catch(() => undefined);
    this.upstreams.clear();
    this.meter.close();
    // Stops node:http's connection-checking interval.
    this.server.close();
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

  private upstreamFor(route: RouteConfig): Upstream {
    const existing = this.upstreams.get(route);
    if (existing) return existing;
    const up = route.upstream;
    const host = up.host.includes(':') ? `[${up.host}]` : up.host;
    const origin = `${up.protocol}://${host}:${up.port}`;
    // The upstream's TLS name is the configured one, else its host name; never the client's Host
    // header (undici would take it from there). For an IP address with no name: no SNI, and the
    // certificate must name the IP.
    const configured = up.tls?.serverName ?? (isIP(up.host) ? undefined : up.host);
    const connector = buildConnector({
      ca: up.tls?.caPem,
      cert: up.tls?.certPem,
      key: up.tls?.keyPem,
      rejectUnauthorized: true,
      timeout: Math.min(UPSTREAM_CONNECT_TIMEOUT_MS, this.config.requestTimeoutMs),
    });
    const connections = this.config.upstreamConnections;
    const pool = new Pool(origin, {
      connections,
      pipelining: 1,
      headersTimeout: this.config.requestTimeoutMs,
      bodyTimeout: this.config.requestTimeoutMs,
      connect: (options, callback) => {
        const started = performance.now();
        connector({ ...options, servername: configured }, (...args) => {
          if (args[0] === null) upstreamConnectChannel.publish({ listener: this.listenerName, seconds: (performance.now() - started) / 1000 });
          callback(...args);
        });
      },
    });
    const gate = new UpstreamGate({
      maxInFlight: connections,
      maxPerClient: this.config.upstreamMaxPerClient,
      maxWaitMs: this.config.upstreamQueueTimeoutMs,
      maxQueued: connections * 4,
    });
    const upstream: Upstream = { pool, gate, servername: configured ?? up.host };
    this.upstreams.set(route, upstream);
    return upstream;
  }

  /** Why this request may not go to the connection's route (400/421), or undefined. */
  private misdirected(req: http.IncomingMessage, context: ConnectionContext): Refusal | undefined {
    // Origin-form only: an absolute URL could name another host than the route's, and
    // 'OPTIONS *' is not forwarded (the upstream client sends origin-form paths only).
    if (!req.url?.startsWith('/')) {
      return { status: 400, body: 'Bad Request: only origin-form request targets (starting with /) are accepted\n' };
    }
    // '//host/x' and '/\\host/x' are network-path references: a backend doing new URL(req.url, base) would
    // take the host from them, past the Host/route check below.
    if (req.url.startsWith('//') || req.url.startsWith('/\\')) {
      return { status: 400, body: 'Bad Request: a request target may not start with // or /\\\n' };
    }
    let hosts = 0;
    for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]?.toLowerCase() === 'host') hosts++;
    if (hosts > 1) return { status: 400, body: 'Bad Request: more than one Host header\n' };
    // An HTTP/1.0 request may carry no Host at all: then the SNI alone decides (Node refuses HTTP/1.1 without Host).
    if (hosts === 0) return undefined;
    const parsed = parseHostHeader(req.headers.host ?? '');
    if (!parsed.ok) return { status: 400, body: `Bad Request: invalid Host header: ${parsed.reason}\n` };
    // The Host must lead to the route the TLS SNI chose, or a client allowed on one route could reach another.
    if (selectBySni(context.listener.routes, parsed.host, false) !== context.route) {
      return { status: 421, body: 'Misdirected Request: the Host header does not belong to the TLS server name of this connection\n' };
    }
    return undefined;
  }

  private prepare(req: http.IncomingMessage, upgrade: boolean): Prepared | Refusal {
    const context = this.contexts.get(req.socket);
    if (context === undefined) return { status: 500, body: 'Internal Server Error\n' };
    const refused = this.misdirected(req, context);
    if (refused) return refused;
    // Framing, from Node's parse only (taken before any header is touched): Node refuses a request
    // with both, with a Transfer-Encoding other than chunked last, or with a malformed Content-Length.
    const transferEncoding = req.headers['transfer-encoding'];
    // Node de-chunks 'gzip, chunked' and would hand us a still-gzipped body that we would then send with a
    // Content-Length-less chunked framing of our own: refuse every coding but chunked alone (RFC 9112 §6.1: 501).
    if (transferEncoding !== undefined && transferEncoding.trim().toLowerCase() !== 'chunked') {
      return { status: 501, body: 'Not Implemented: only the chunked transfer coding is accepted\n' };
    }
    const chunked = transferEncoding !== undefined;
    const length = req.headers['content-length'];
    if (!chunked && length !== undefined && !/^[0-9]{1,15}$/.test(length)) return { status: 400, body: 'Bad Request: invalid Content-Length\n' };
    const hasBody = chunked || (length !== undefined && Number(length) > 0);
    const identity: ForwardedIdentity = {
      name: context.identity?.name,
      status: context.status,
      certificateDer: context.identity?.leaf.der,
      // Only XFCC needs the digest and the subject; the subject costs a full certificate parse.
      certificateSha256Hex: this.config.forwardXfcc ? context.identity?.leaf.sha256Hex : undefined,
      certificateSubject: this.config.forwardXfcc ? context.identity?.leaf.subject : undefined,
      tlsa: context.identity?.tlsa,
      clientAddress: context.clientAddress,
    };
    const headers: Record<string, string | string[] | undefined> = { ...req.headers };
    const { teTrailers } = rewriteIdentityHeaders(headers, identity, this.config);
    // Framing and the 100-continue dance are ours (Node already answered 100 Continue).
    delete headers['content-length'];
    delete headers['transfer-encoding'];
    delete headers.expect;
    // TE: trailers is the one TE a proxy passes on (gRPC-style backends); never on an upgrade.
    if (teTrailers && !upgrade) headers.te = 'trailers';
    if (!chunked && length !== undefined && hasBody) headers['content-length'] = length;
    const out: Record<string, string | string[]> = {};
    for (const [key, value] of Object.entries(headers)) if (value !== undefined) out[key] = value;
    return {
      context,
      upstream: this.upstreamFor(context.route),
      clientKey: context.identity ? `id:${context.identity.name}` : `addr:${context.clientAddress}`,
      headers: out,
      body: hasBody && !upgrade ? req : undefined,
    };
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.track(req, res);
    let prepared: Prepared | Refusal;
    try {
      prepared = this.prepare(req, false);
    } catch (err) {
      // e.g. a certificate whose details cannot be read for XFCC: this request fails, never the process.
      logForwardingError(this.listenerName, 'headers', err);
      this.answer(res, 502, 'Bad Gateway: the request could not be forwarded\n');
      return;
    }
    if (!('upstream' in prepared)) {
      this.answer(res, prepared.status, prepared.body);
      return;
    }
    if (prepared.body === undefined) req.resume();
    this.forward(req, res, prepared).catch((err: unknown) => {
      logForwardingError(this.listenerName, 'forward', err);
      this.answer(res, 502, 'Bad Gateway: the request could not be forwarded\n');
    });
  }

  /** A plain answer of ours, closing the connection; or, once a response has started, a reset. */
  private answer(res: http.ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void {
    try {
      if (res.headersSent) res.destroy();
      else res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close', ...extra }).end(body);
    } catch {
      res.destroy();
    }
  }

  private busy(res: http.ServerResponse, refusal: Exclude<GateResult, { ok: true }>): void {
    if (refusal.reason === 'aborted') return;
    this.answer(res, 503, `Service Unavailable: the upstream is busy (${refusal.reason})\n`, { 'retry-after': String(BUSY_RETRY_AFTER_SECONDS) });
  }

  private async forward(req: http.IncomingMessage, res: http.ServerResponse, p: Prepared): Promise<void> {
    const aborter = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) aborter.abort();
    };
    res.once('close', onClose);
    const slot = await p.upstream.gate.acquire(p.clientKey, aborter.signal);
    if (!slot.ok) {
      res.off('close', onClose);
      this.busy(res, slot);
      return;
    }
    try {
      // `servername` is a dispatch option undici's Request honours but its typings omit.
      const options: Dispatcher.RequestOptions & WithServername = {
        path: req.url ?? '/',
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        headers: p.headers,
        body: p.body,
        servername: p.upstream.servername,
        signal: aborter.signal,
      };
      await p.upstream.pool.stream(options, ({ statusCode, headers }) => {
        // A `Connection: close` set by drain stays: the upstream's hop-by-hop headers are dropped here.
        res.writeHead(statusCode, responseHeadersForClient(headers));
        return res;
      });
    } catch (err) {
      if (aborter.signal.aborted) return; // the client went away: nothing to answer, nothing failed upstream
      publishUpstreamError(p.context, err);
      if (!res.headersSent && res.writable) {
        this.answer(res, 502, 'Bad Gateway: the upstream is unavailable\n');
      } else {
        if (!isUpstreamError(err)) logForwardingError(this.listenerName, 'response', err);
        res.destroy();
      }
    } finally {
      slot.release();
      res.off('close', onClose);
    }
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    // A tunnel opened now would hold the drain until its deadline.
    if (this.draining) {
      socket.end(plainResponse(503, 'Service Unavailable: shutting down\n', `Retry-After: ${DRAIN_RETRY_AFTER_SECONDS}\r\n`));
      return;
    }
    let prepared: Prepared | Refusal;
    try {
      prepared = this.prepare(req, true);
    } catch (err) {
      logForwardingError(this.listenerName, 'headers', err);
      socket.end(plainResponse(502, 'Bad Gateway: the request could not be forwarded\n'));
      return;
    }
    if (!('upstream' in prepared)) {
      socket.end(plainResponse(prepared.status, prepared.body));
      return;
    }
    // Only WebSocket: other upgrades (h2c) are how a tunnel past a proxy's checks is usually built.
    if ((req.headers.upgrade ?? '').trim().toLowerCase() !== 'websocket') {
      socket.end(plainResponse(400, 'Bad Request: only WebSocket upgrades are forwarded\n'));
      return;
    }
    this.tunnel(req, socket, head, prepared).catch((err: unknown) => {
      logForwardingError(this.listenerName, 'upgrade', err);
      socket.destroy();
    });
  }

  private async tunnel(req: http.IncomingMessage, socket: Duplex, head: Buffer, p: Prepared): Promise<void> {
    const aborter = new AbortController();
    const onClose = (): void => aborter.abort();
    socket.once('close', onClose);
    const slot = await p.upstream.gate.acquire(p.clientKey, aborter.signal);
    if (!slot.ok) {
      socket.off('close', onClose);
      if (slot.reason !== 'aborted') {
        socket.end(plainResponse(503, `Service Unavailable: the upstream is busy (${slot.reason})\n`, `Retry-After: ${BUSY_RETRY_AFTER_SECONDS}\r\n`));
      }
      return;
    }
    let upstream: Duplex;
    let headers: Record<string, string | string[] | undefined>;
    try {
      const options: Dispatcher.UpgradeOptions & WithServername = {
        path: req.url ?? '/',
        method: req.method ?? 'GET',
        headers: p.headers,
        protocol: 'websocket',
        servername: p.upstream.servername,
        signal: aborter.signal,
      };
      const upgraded: Dispatcher.UpgradeData = await p.upstream.pool.upgrade(options);
      ({ socket: upstream, headers } = upgraded);
    } catch (err) {
      if (!aborter.signal.aborted) {
        publishUpstreamError(p.context, err);
        socket.end(plainResponse(502, 'Bad Gateway: the upstream is unavailable\n'));
      }
      return;
    } finally {
      // The upgraded connection leaves the pool: the slot only covered the handshake.
      slot.release();
      socket.off('close', onClose);
    }
    if (socket.destroyed) {
      upstream.destroy();
      return;
    }
    const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade'];
    for (const [key, value] of Object.entries(responseHeadersForClient(headers))) {
      for (const v of Array.isArray(value) ? value : [value]) lines.push(`${key}: ${v}`);
    }
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    const end = (): void => {
      socket.destroy();
      upstream.destroy();
    };
    upstream.on('error', end);
    upstream.on('close', end);
    socket.on('close', end);
    socket.pipe(upstream);
    upstream.pipe(socket);
  }
}

/** Whether an error is undici's report of the upstream's doing (closed, timed out, refused, misframed). */
function isUpstreamError(err: unknown): boolean {
  const code: unknown = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('UND_ERR');
}

/** Bytes read from the client so far (net.Socket, TLSSocket and NativeTlsSocket all count them). */
function bytesReadOf(socket: Duplex): number {
  return (socket as Duplex & { readonly bytesRead: number }).bytesRead;
}
