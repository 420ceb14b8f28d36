/**
 * A WebSocket upgrade on HTTP/1.1: the same checks and headers as any
 * request (http-exchange.ts), then, through the route's gate, an upgrade at
 * one upstream that speaks HTTP/1.1 and a byte tunnel both ways. Other
 * upgrades (h2c above all) are refused: they are how a tunnel past a
 * proxy's checks is usually built.
 */
import type * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { HttpRouteConfig } from '../config/types.js';
import type { ConnectionContext } from '../connection/forwarder.js';
import { REQUEST_REFUSALS, type RequestRefusal } from '../reasons.js';
import { responseHeadersForClient } from './http-headers.js';
import { policyRefusal, shapeOf, upstreamHeaders, type ExchangeEnv } from './http-exchange.js';
import { checkRequest } from './http-request-check.js';
import { requestRateKey } from './request-rate.js';
import { publishUpstreamError } from './upstream-failure.js';

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};
const BUSY_RETRY_AFTER_SECONDS = 1;
/** Retry-After of an upgrade refused because the listener is draining (the client should reach another instance). */
const DRAIN_RETRY_AFTER_SECONDS = 1;

/** An HTTP/1.1 answer written on the raw connection (no response object exists for an upgrade), closing it. */
export function plainResponse(status: number, body: string, extraHeaders = ''): string {
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extraHeaders}Connection: close\r\n\r\n${body}`;
}

function refuse(socket: Duplex, refusal: RequestRefusal, body: string, extraHeaders = ''): void {
  socket.end(plainResponse(REQUEST_REFUSALS[refusal].status, body, extraHeaders));
}

/** Serve an upgrade request; never throws. */
export function handleUpgrade(env: ExchangeEnv, req: http.IncomingMessage, socket: Duplex, head: Buffer, context: ConnectionContext, draining: boolean): void {
  socket.on('error', () => socket.destroy());
  // A tunnel opened now would hold the drain until its deadline.
  if (draining) return refuse(socket, 'draining', 'Service Unavailable: shutting down\n', `Retry-After: ${DRAIN_RETRY_AFTER_SECONDS}\r\n`);
  try {
    const route = context.route as HttpRouteConfig;
    const check = checkRequest(shapeOf(req, 'h1'), env.listener.routes, route);
    if (!check.ok) return refuse(socket, check.refusal, check.body);
    if ((req.headers.upgrade ?? '').trim().toLowerCase() !== 'websocket') return refuse(socket, 'bad-request', 'Bad Request: only WebSocket upgrades are forwarded\n');
    const denied = policyRefusal(env, route, req.method ?? 'GET', req.url ?? '/', context);
    if (denied !== undefined) {
      const retryAfter = denied.headers?.['retry-after'];
      return refuse(socket, denied.refusal, denied.body, retryAfter === undefined ? '' : `Retry-After: ${retryAfter}\r\n`);
    }
    const headers = upstreamHeaders(env, req, context, undefined, true);
    tunnel(env, req, socket, head, context, headers).catch((err: unknown) => {
      env.logError('upgrade', err);
      socket.destroy();
    });
  } catch (err) {
    env.logError('headers', err);
    refuse(socket, 'internal-error', 'Bad Gateway: the request could not be forwarded\n');
  }
}

async function tunnel(env: ExchangeEnv, req: http.IncomingMessage, socket: Duplex, head: Buffer, context: ConnectionContext, headers: string[]): Promise<void> {
  const upstreams = env.upstreamsFor(context.route as HttpRouteConfig);
  const aborter = new AbortController();
  const onClose = (): void => aborter.abort();
  socket.once('close', onClose);
  const slot = await upstreams.gate.acquire(requestRateKey(context.identity?.name, context.clientAddress), aborter.signal);
  if (!slot.ok) {
    socket.off('close', onClose);
    if (slot.reason !== 'aborted') refuse(socket, 'upstream-busy', `Service Unavailable: the upstream is busy (${slot.reason})\n`, `Retry-After: ${BUSY_RETRY_AFTER_SECONDS}\r\n`);
    return;
  }
  let upstream: Duplex | undefined;
  let responseHeaders: Record<string, string | string[] | undefined> = {};
  try {
    // HTTP/2 upstreams are skipped: an HTTP/1.1 Upgrade cannot go through one.
    const tried = new Set(context.route.upstreams.targets.filter((t) => t.http2).map((t) => t.name));
    for (let attempt = 0; attempt <= context.route.upstreams.retries && upstream === undefined; attempt++) {
      const choice = upstreams.set.pick(tried);
      if (choice === undefined) break;
      tried.add(choice.upstream.name);
      const target = upstreams.dispatcherFor(choice.upstream);
      // HTTP/2 upstreams were excluded above; the check keeps the types honest.
      if (!(target.dispatcher instanceof Pool)) continue;
      const options: Dispatcher.UpgradeOptions & { readonly servername: string } = {
        path: req.url ?? '/',
        method: req.method ?? 'GET',
        headers,
        protocol: 'websocket',
        servername: target.servername,
        signal: aborter.signal,
      };
      try {
        const upgraded: Dispatcher.UpgradeData = await target.dispatcher.upgrade(options);
        ({ socket: upstream, headers: responseHeaders } = upgraded);
        choice.end('ok');
      } catch (err) {
        if (aborter.signal.aborted) {
          choice.end('ok');
          return;
        }
        const error = err instanceof Error ? err : new Error(String(err));
        choice.end('failed');
        publishUpstreamError(context, error, choice.upstream);
      }
    }
  } finally {
    // The upgraded connection leaves the pool: the slot only covered the handshake.
    slot.release();
    socket.off('close', onClose);
  }
  if (upstream === undefined) return refuse(socket, 'upstream-unavailable', 'Bad Gateway: the upstream is unavailable\n');
  if (socket.destroyed) {
    upstream.destroy();
    return;
  }
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade'];
  for (const [key, value] of Object.entries(responseHeadersForClient(responseHeaders))) {
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${key}: ${v}`);
  }
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (head.length > 0) upstream.write(head);
  const up = upstream;
  const end = (): void => {
    socket.destroy();
    up.destroy();
  };
  up.on('error', end);
  up.on('close', end);
  socket.on('close', end);
  socket.pipe(up);
  up.pipe(socket);
}
