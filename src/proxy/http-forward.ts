/**
 * HTTP mode: verified TLS connections are handed to a (non-listening)
 * node:http server; each request has every incoming identity header
 * stripped and ours set, then goes to the route's upstream through
 * http-proxy (keep-alive agents, WebSocket upgrades). An upstream failure
 * is a plain 502 that leaks nothing.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import httpProxy from 'http-proxy';
import type { HttpModeConfig, Upstream } from '../config/types.js';
import { rewriteIdentityHeaders, type ForwardedIdentity } from './http-headers.js';
import type { ConnectionContext } from './listener.js';

const STATUS_TEXT: Record<number, string> = { 403: 'Forbidden', 502: 'Bad Gateway' };

function plainResponse(status: number, body: string): string {
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

export class HttpForwarder {
  private readonly server: http.Server;
  private readonly proxy: httpProxy;
  private readonly contexts = new WeakMap<object, ConnectionContext>();
  private readonly agents = new Map<string, http.Agent>();

  constructor(
    private readonly config: HttpModeConfig,
    idleTimeoutMs: number,
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
    this.proxy.on('error', (_err, _req, res) => {
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
    this.server.emit('connection', socket);
    socket.resume();
  }

  /** Answer a refused client with 403 and the reason code, then close. */
  refuse(socket: TLSSocket, reason: string): void {
    socket.end(plainResponse(403, `Forbidden: DANE client authentication failed (${reason})\n`));
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.proxy.close();
    // Stops node:http's connection-checking interval.
    this.server.close();
  }

  private agentFor(up: Upstream): http.Agent {
    let agent = this.agents.get(up.url);
    if (agent === undefined) {
      const options = { keepAlive: true, maxSockets: 512, maxFreeSockets: 64 };
      agent =
        up.protocol === 'https'
          ? new https.Agent({ ...options, ca: up.tls?.caPem, cert: up.tls?.certPem, key: up.tls?.keyPem, servername: up.tls?.serverName })
          : new http.Agent(options);
      this.agents.set(up.url, agent);
    }
    return agent;
  }

  private prepare(req: http.IncomingMessage): { context: ConnectionContext; target: string; agent: http.Agent } | undefined {
    const context = this.contexts.get(req.socket);
    if (context === undefined) return undefined;
    const identity: ForwardedIdentity = {
      name: context.identity?.name,
      status: context.status,
      certificateDer: context.identity?.leaf.der,
      certificateSha256Hex: context.identity?.leaf.sha256Hex,
      certificateSubject: context.identity?.leaf.subject,
      tlsa: context.identity?.tlsa,
      clientAddress: context.clientAddress,
    };
    rewriteIdentityHeaders(req.headers, identity, this.config);
    const up = context.route.upstream;
    const host = up.host.includes(':') ? `[${up.host}]` : up.host;
    return { context, target: `${up.protocol}://${host}:${up.port}`, agent: this.agentFor(up) };
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const prepared = this.prepare(req);
    if (prepared === undefined) {
      res.writeHead(500, { connection: 'close' }).end();
      return;
    }
    this.proxy.web(req, res, { target: prepared.target, agent: prepared.agent, secure: true });
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const prepared = this.prepare(req);
    if (prepared === undefined) {
      socket.destroy();
      return;
    }
    this.proxy.ws(req, socket, head, { target: prepared.target, agent: prepared.agent, secure: true });
  }
}
