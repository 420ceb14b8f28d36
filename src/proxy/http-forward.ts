/**
 * HTTP mode: verified TLS connections are handed to a (non-listening)
 * node:http server; each request has every incoming identity header
 * stripped and ours set, then goes to the route's upstream through
 * http-proxy (keep-alive agents, WebSocket upgrades). An upstream failure
 * is a plain 502 that leaks nothing.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { TLSSocket as TLSSocketClass, type TLSSocket } from 'node:tls';
import httpProxy from 'http-proxy';
import type { HttpModeConfig, RouteConfig } from '../config/types.js';
import { rewriteIdentityHeaders, type ForwardedIdentity } from './http-headers.js';
import type { ConnectionContext, ForwardingObserver } from './listener.js';
import { selectBySni } from './sni.js';

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 421: 'Misdirected Request', 502: 'Bad Gateway', 503: 'Service Unavailable' };
/** Retry-After for temporary refusals: the failure cache's lifetime, about. */
const RETRY_AFTER_SECONDS = 5;

function plainResponse(status: number, body: string, extraHeaders = ''): string {
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extraHeaders}Connection: close\r\n\r\n${body}`;
}

export class HttpForwarder {
  private readonly server: http.Server;
  private readonly proxy: httpProxy;
  private readonly contexts = new WeakMap<object, ConnectionContext>();
  /** One keep-alive agent per route: two routes to one URL may differ in upstream TLS settings. */
  private readonly agents = new Map<RouteConfig, http.Agent>();

  private draining = false;

  constructor(
    private readonly config: HttpModeConfig,
    idleTimeoutMs: number,
    private readonly observer: ForwardingObserver = {},
    private readonly listenerName = '',
  ) {
    this.server = http.createServer(
      {
        requestTimeout: config.requestTimeoutMs,
        headersTimeout: config.headersTimeoutMs,
        keepAliveTimeout: idleTimeoutMs,
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
    this.proxy = httpProxy.createProxyServer({ xfwd: false, ws: true, proxyTimeout: config.requestTimeoutMs });
    this.proxy.on('proxyReq', (proxyReq: http.ClientRequest) => this.timeUpstreamConnect(proxyReq));
    this.proxy.on('error', (_err, _req, res) => {
      this.observer.upstreamFailed?.(this.listenerName);
      if (res instanceof http.ServerResponse) {
        if (!res.headersSent) {
          res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
          res.end('Bad Gateway: the upstream is unavailable\n');
        } else res.destroy();
      } else {
        (res as Duplex).destroy();
      }
    });
  }

  /** Serve HTTP on a verified connection. */
  accept(socket: TLSSocket, context: ConnectionContext): void {
    this.contexts.set(socket, context);
    socket.once('close', () => {
      this.observer.bytesRelayed?.(this.listenerName, socket.bytesRead, socket.bytesWritten);
    });
    this.server.emit('connection', socket);
    socket.resume();
  }

  /** Graceful stop: close idle keep-alive connections now; busy ones get `Connection: close` on their response. */
  startDraining(): void {
    this.draining = true;
    this.server.closeIdleConnections();
  }

  /**
   * Upstream connect time, for a request that opened a new upstream
   * connection (http-proxy emits 'proxyReq' once the request has its socket).
   */
  private timeUpstreamConnect(proxyReq: http.ClientRequest): void {
    const socket = proxyReq.socket;
    if (!socket?.connecting) return;
    const started = performance.now();
    socket.once(socket instanceof TLSSocketClass ? 'secureConnect' : 'connect', () => {
      this.observer.upstreamConnected?.(this.listenerName, (performance.now() - started) / 1000);
    });
  }

  /** Answer a refused client with 403 (or 503 + Retry-After when the cause is temporary: DNS trouble, capacity) and the reason code, then close. */
  refuse(socket: TLSSocket, reason: string, temporary = false): void {
    socket.end(
      temporary
        ? plainResponse(503, `Service Unavailable: DANE client authentication temporarily impossible (${reason})\n`, `Retry-After: ${RETRY_AFTER_SECONDS}\r\n`)
        : plainResponse(403, `Forbidden: DANE client authentication failed (${reason})\n`),
    );
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.proxy.close();
    // Stops node:http's connection-checking interval.
    this.server.close();
  }

  private agentFor(route: RouteConfig): http.Agent {
    let agent = this.agents.get(route);
    if (agent === undefined) {
      const up = route.upstream;
      const options = { keepAlive: true, maxSockets: 512, maxFreeSockets: 64 };
      // The upstream's TLS name is the configured one, else its host name; never the client's Host
      // header (Node would take it from there). '' = no SNI, and the certificate must name the IP.
      const servername = up.tls?.serverName ?? (isIP(up.host) ? '' : up.host);
      agent =
        up.protocol === 'https'
          ? new https.Agent({ ...options, ca: up.tls?.caPem, cert: up.tls?.certPem, key: up.tls?.keyPem, servername })
          : new http.Agent(options);
      this.agents.set(route, agent);
    }
    return agent;
  }

  /** Why this request may not go to the connection's route (400/421), or undefined. */
  private misdirected(req: http.IncomingMessage, context: ConnectionContext): { status: 400 | 421; body: string } | undefined {
    // Origin-form only ('OPTIONS *' aside): an absolute URL could name another host than the route's.
    if (!req.url?.startsWith('/') && !(req.method === 'OPTIONS' && req.url === '*')) {
      return { status: 400, body: 'Bad Request: only origin-form request targets are accepted\n' };
    }
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1').toLowerCase();
    // The Host must lead to the route the TLS SNI chose, or a client allowed on one route could reach another.
    // An HTTP/1.0 request may carry no Host at all: then the SNI alone decides (Node refuses HTTP/1.1 without Host).
    if (host !== '' && selectBySni(context.listener.routes, host, false) !== context.route) {
      return { status: 421, body: 'Misdirected Request: the Host header does not belong to the TLS server name of this connection\n' };
    }
    return undefined;
  }

  private prepare(req: http.IncomingMessage): { context: ConnectionContext; target: string; agent: http.Agent } | { status: number; body: string } {
    const context = this.contexts.get(req.socket);
    if (context === undefined) return { status: 500, body: 'Internal Server Error\n' };
    const refused = this.misdirected(req, context);
    if (refused) return refused;
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
    rewriteIdentityHeaders(req.headers, identity, this.config);
    const up = context.route.upstream;
    const host = up.host.includes(':') ? `[${up.host}]` : up.host;
    return { context, target: `${up.protocol}://${host}:${up.port}`, agent: this.agentFor(context.route) };
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const prepared = this.prepare(req);
    if (!('target' in prepared)) {
      res.writeHead(prepared.status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end(prepared.body);
      return;
    }
    if (this.draining) res.setHeader('connection', 'close');
    try {
      this.proxy.web(req, res, { target: prepared.target, agent: prepared.agent, secure: true });
    } catch {
      // e.g. a header Node refuses to send: one request fails, never the process.
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end('Bad Gateway: the request could not be forwarded\n');
      else res.destroy();
    }
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const prepared = this.prepare(req);
    if (!('target' in prepared)) {
      socket.end(plainResponse(prepared.status, prepared.body));
      return;
    }
    try {
      this.proxy.ws(req, socket, head, { target: prepared.target, agent: prepared.agent, secure: true });
    } catch {
      socket.destroy();
    }
  }
}
