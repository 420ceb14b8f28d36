/**
 * One HTTP request on an admitted connection, HTTP/1.1 or HTTP/2 alike:
 * the request checks (target, Host/:authority, framing), the route's
 * per-path rules on the verified identity, the identity's request rate,
 * then the upstream headers (hop-by-hop and every incoming identity header
 * stripped, ours set) and the forwarding: the route's UpstreamGate, then
 * one upstream after another (UpstreamSet) while nothing has reached the
 * client and the request may be sent again. Every request ends in one
 * access event (httpRequestChannel). No exception leaves a handler.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { performance } from 'node:perf_hooks';
import { Transform, type Readable } from 'node:stream';
import type { HttpListenerConfig, HttpRouteConfig } from '../config/types.js';
import type { ConnectionContext } from '../connection/forwarder.js';
import type { RequestRefusal } from '../reasons.js';
import { accessPath, sampled } from './access-log.js';
import { httpRequestChannel } from './channels.js';
import { identityHeaderValues, upstreamHeaderList } from './http-headers.js';
import { checkRequest, refused, type Refused, type RequestShape } from './http-request-check.js';
import { authorize, type CompiledRules } from './path-rules.js';
import { requestRateKey, type RequestRateLimiter } from './request-rate.js';
import type { RouteUpstreams } from './route-upstreams.js';
import type { GateResult } from './upstream-gate.js';
import { publishUpstreamError } from './upstream-failure.js';
import { UNSENDABLE_REQUEST } from './http2-upstream.js';
import { isTimeout, neverReached, relayAttempt, type AttemptResult, type RelayState, type ResponseSink } from './upstream-exchange.js';

export type ServerRequest = IncomingMessage | Http2ServerRequest;
export type ServerReply = ServerResponse | Http2ServerResponse;
export type WireProtocol = 'h1' | 'h2';

/** The body of every path-not-allowed 403. */
export const PATH_NOT_ALLOWED_BODY = 'Forbidden: this identity may not use this path and method (path-not-allowed)\n';
/** Retry-After when the upstream pool is busy. */
const BUSY_RETRY_AFTER_SECONDS = 1;
/** Methods whose request may be sent again after the upstream broke before answering (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** Refusals after which an HTTP/1.1 connection stays open: the client did nothing wrong with the connection itself. */
const KEEPS_CONNECTION = new Set<RequestRefusal>(['path-not-allowed', 'request-rate-limited', 'upstream-busy']);

/** What the handler needs from its forwarder (built once per listener). */
export interface ExchangeEnv {
  readonly listener: HttpListenerConfig;
  /** Whether a folded header name is an identity header (ours or any proxy's): never passed on from a client. */
  readonly isStripped: (name: string) => boolean;
  upstreamsFor(route: HttpRouteConfig): RouteUpstreams;
  /** undefined: the route has no rules. */
  rulesFor(route: HttpRouteConfig): CompiledRules | undefined;
  readonly rate: RequestRateLimiter | undefined;
  /** A request that failed inside the forwarder (the process goes on). */
  logError(stage: string, err: unknown): void;
}

/** What one request's access event needs, filled in as it goes. */
interface Outcome {
  refusal: RequestRefusal | undefined;
  upstream: string | undefined;
  bytesIn: number;
  readonly relay: RelayState;
}

/** The identity headers of a connection, built on its first request. */
const identityValues = new WeakMap<ConnectionContext, ReadonlyArray<readonly [string, string]>>();

function identityOf(context: ConnectionContext, env: ExchangeEnv): ReadonlyArray<readonly [string, string]> {
  let values = identityValues.get(context);
  if (values === undefined) {
    const config = env.listener.http;
    values = identityHeaderValues(
      {
        name: context.identity?.name,
        status: context.status,
        certificateDer: context.identity?.leaf.der,
        // Only XFCC needs the digest and the subject; the subject costs a full certificate parse.
        certificateSha256Hex: config.forwardXfcc ? context.identity?.leaf.sha256Hex : undefined,
        certificateSubject: config.forwardXfcc ? context.identity?.leaf.subject : undefined,
        tlsa: context.identity?.tlsa,
        clientAddress: context.clientAddress,
      },
      config,
    );
    identityValues.set(context, values);
  }
  return values;
}

/** What the request checks read of a request (HTTP/1.1: from the raw header list). */
export function shapeOf(req: ServerRequest, protocol: WireProtocol): RequestShape {
  const headers = req.headers;
  if (protocol === 'h2') {
    const h2 = req as Http2ServerRequest;
    const authority = headers[':authority'];
    return {
      protocol,
      target: req.url ?? '',
      authority: typeof authority === 'string' ? authority : headers.host,
      hostCount: 0,
      transferEncoding: undefined,
      contentLength: headers['content-length'],
      endedWithHeaders: h2.stream.endAfterHeaders,
    };
  }
  // From the raw list: node:http builds req.headers only when asked, and nothing else here needs it.
  let hosts = 0;
  let host: string | undefined;
  let transferEncoding: string | undefined;
  let contentLength: string | undefined;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const length = name.length;
    if (length !== 4 && length !== 14 && length !== 17) continue;
    const lower = name.toLowerCase();
    if (lower === 'host') {
      hosts++;
      host ??= raw[i + 1];
    } else if (lower === 'content-length') contentLength ??= raw[i + 1];
    // Several Transfer-Encoding fields are one list (as node:http joins them).
    else if (lower === 'transfer-encoding') transferEncoding = transferEncoding === undefined ? raw[i + 1] : `${transferEncoding}, ${raw[i + 1]}`;
  }
  return { protocol, target: req.url ?? '', authority: host, hostCount: hosts, transferEncoding, contentLength, endedWithHeaders: false };
}

/**
 * A plain answer of ours; on HTTP/1.1 it closes the connection unless the refusal leaves it usable. Once a
 * response has started: a reset. Returns the body bytes written.
 */
export function answer(res: ServerReply, protocol: WireProtocol, status: number, body: string, extra: Record<string, string> = {}, keepConnection = false): number {
  try {
    if (res.headersSent) {
      res.destroy();
      return 0;
    }
    const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8', ...extra };
    // HTTP/2 has no Connection header (node:http2 throws on it); a session is ended by GOAWAY instead.
    if (protocol === 'h1' && !keepConnection) headers.connection = 'close';
    // Both response types take (status, headers) and end(body); their union's overloads do not unify.
    (res as ResponseSink & { end(body: string): unknown }).writeHead(status, headers);
    (res as ResponseSink & { end(body: string): unknown }).end(body);
    return Buffer.byteLength(body);
  } catch {
    res.destroy();
    return 0;
  }
}

/** A request the route's policy answers itself: the rules on the verified name, then the identity's request rate. */
export type PolicyRefusal = Refused & { readonly headers?: Record<string, string> };

/** Why the route's rules or the request rate refuse this request, or undefined (the policy steps of every request, WebSocket upgrades included). */
export function policyRefusal(env: ExchangeEnv, route: HttpRouteConfig, method: string, target: string, context: ConnectionContext): PolicyRefusal | undefined {
  const rules = env.rulesFor(route);
  if (rules !== undefined) {
    const verdict = authorize(rules, method, target, context.identity?.name);
    // The 400 says what is ambiguous in the client's own path; a 403 never shows how the rules are laid out.
    if (!verdict.allowed) return refused(verdict.reason, verdict.reason === 'bad-request' ? `Bad Request: ${verdict.detail}\n` : PATH_NOT_ALLOWED_BODY);
  }
  if (env.rate !== undefined) {
    const taken = env.rate.take(requestRateKey(context.identity?.name, context.clientAddress));
    if (!taken.ok) {
      return { ...refused('request-rate-limited', 'Too Many Requests: the request rate of this identity is over its limit\n'), headers: { 'retry-after': String(taken.retryAfterSeconds) } };
    }
  }
  return undefined;
}

/** answer(), first marking the response as ended by us (its 'close' is then no client going away). */
function answerEnding(state: RelayState, ...args: Parameters<typeof answer>): number {
  state.ended = true;
  return answer(...args);
}

/** Serve one request; never throws. */
export function handleRequest(env: ExchangeEnv, req: ServerRequest, res: ServerReply, context: ConnectionContext, protocol: WireProtocol): void {
  const t0 = performance.now();
  const outcome: Outcome = { refusal: undefined, upstream: undefined, bytesIn: 0, relay: { bytesOut: 0, ended: false, gone: false } };
  const state = outcome.relay;
  // The client is gone when its response closes before we ended it (on HTTP/2 a reset leaves writableFinished
  // true, so our own flag decides), or when its request breaks (a reset upload, a connection cut mid-body).
  const clientGone = (): void => {
    if (state.ended || state.gone) return;
    state.gone = true;
    state.abort?.();
  };
  res.once('close', clientGone);
  req.once('aborted', clientGone);
  req.once('error', clientGone);
  if (httpRequestChannel.hasSubscribers) res.once('close', () => publishAccess(env, req, res, context, protocol, outcome, t0));
  let shape: RequestShape;
  try {
    shape = shapeOf(req, protocol);
  } catch (err) {
    env.logError('headers', err);
    outcome.refusal = 'internal-error';
    state.bytesOut += answerEnding(state, res, protocol, 502, 'Bad Gateway: the request could not be forwarded\n');
    return;
  }
  const refuse = (refusal: RequestRefusal, status: number, body: string, extra?: Record<string, string>): void => {
    outcome.refusal = refusal;
    // A connection with a request body still coming is not kept: we would have to read it all first.
    const bodiless = req.readableEnded || (protocol === 'h1' && shape.transferEncoding === undefined && (shape.contentLength ?? '0') === '0');
    if (!req.readableEnded) req.resume();
    outcome.relay.bytesOut += answerEnding(outcome.relay, res, protocol, status, body, extra, KEEPS_CONNECTION.has(refusal) && bodiless);
  };
  try {
    const route = context.route as HttpRouteConfig;
    const check = checkRequest(shape, env.listener.routes, route);
    if (!check.ok) return refuse(check.refusal, check.status, check.body);
    const method = req.method ?? 'GET';
    const target = req.url ?? '/';
    const denied = policyRefusal(env, route, method, target, context);
    if (denied !== undefined) return refuse(denied.refusal, denied.status, denied.body, denied.headers);
    const headers = upstreamHeaders(env, req, context, check.contentLength);
    let body: Readable | undefined;
    if (check.hasBody) {
      if (check.contentLength !== undefined) {
        body = req;
        const declared = Number(check.contentLength);
        req.once('end', () => (outcome.bytesIn = declared));
      } else {
        // Unknown length (chunked, or an HTTP/2 stream): count what passes.
        // (A Transform, never a 'data' listener: that would drain the body before undici reads it.)
        const counter = new Transform({
          transform(chunk: Buffer, _encoding, done) {
            outcome.bytesIn += chunk.length;
            done(null, chunk);
          },
        });
        body = req.pipe(counter);
        req.once('error', (err) => counter.destroy(err));
      }
    } else if (!req.readableEnded) req.resume();
    forward(env, res, context, protocol, { method, target, headers, body, hasBody: check.hasBody }, outcome).catch((err: unknown) => {
      env.logError('forward', err);
      outcome.refusal = 'internal-error';
      outcome.relay.bytesOut += answerEnding(outcome.relay, res, protocol, 502, 'Bad Gateway: the request could not be forwarded\n');
    });
  } catch (err) {
    // e.g. a certificate whose details cannot be read for XFCC: this request fails, never the process.
    env.logError('headers', err);
    outcome.refusal = 'internal-error';
    outcome.relay.bytesOut += answerEnding(outcome.relay, res, protocol, 502, 'Bad Gateway: the request could not be forwarded\n');
  }
}

/** The headers the upstream gets (see upstreamHeaderList): the client's, cleaned; ours; the framing we chose. */
export function upstreamHeaders(env: ExchangeEnv, req: ServerRequest, context: ConnectionContext, contentLength: string | undefined, upgrade = false): string[] {
  return upstreamHeaderList(req.rawHeaders, env.isStripped, identityOf(context, env), { contentLength, upgrade });
}

interface Outgoing {
  readonly method: string;
  readonly target: string;
  readonly headers: string[];
  readonly body: Readable | undefined;
  readonly hasBody: boolean;
}

async function forward(env: ExchangeEnv, res: ServerReply, context: ConnectionContext, protocol: WireProtocol, out: Outgoing, outcome: Outcome): Promise<void> {
  const route = context.route as HttpRouteConfig;
  const upstreams = env.upstreamsFor(route);
  const clientKey = requestRateKey(context.identity?.name, context.clientAddress);
  const state = outcome.relay;
  // The common case takes a free slot at once; only a request that has to wait gets a timer and an AbortSignal.
  const slot = upstreams.gate.tryAcquire(clientKey) ?? (await waitForSlot(upstreams, clientKey, state));
  if (!slot.ok) {
    if (slot.reason === 'aborted') return;
    outcome.refusal = 'upstream-busy';
    outcome.relay.bytesOut += answerEnding(
      outcome.relay,
      res,
      protocol,
      503,
      `Service Unavailable: the upstream is busy (${slot.reason})\n`,
      { 'retry-after': String(BUSY_RETRY_AFTER_SECONDS) },
      true,
    );
    return;
  }
  try {
    const tried = new Set<string>();
    const retries = route.upstreams.retries;
    for (let attempt = 0; !state.gone; attempt++) {
      const choice = upstreams.set.pick(tried);
      if (choice === undefined) break;
      const upstream = choice.upstream;
      tried.add(upstream.name);
      outcome.upstream = upstream.name;
      const request = { method: out.method, path: out.target, headers: out.headers, body: out.body };
      const result: AttemptResult = await relayAttempt(upstreams.dispatcherFor(upstream), request, res as ResponseSink, outcome.relay);
      if (result.kind === 'aborted') {
        choice.end('ok');
        return;
      }
      if (result.kind === 'answered') {
        choice.end('ok');
        return;
      }
      if ((result.error as Error & { code?: unknown }).code === UNSENDABLE_REQUEST) {
        // The client's request cannot be carried to this (HTTP/2) upstream: its fault, not the upstream's.
        choice.end('ok');
        outcome.refusal = 'bad-request';
        outcome.relay.bytesOut += answerEnding(outcome.relay, res, protocol, 400, 'Bad Request: the request cannot be forwarded over HTTP/2\n');
        return;
      }
      const unreached = neverReached(result.error);
      choice.end(unreached ? 'connect-failed' : 'failed');
      publishUpstreamError(context, result.error, upstream);
      if (result.started) {
        res.destroy();
        return;
      }
      // Sent again only when nothing of it is lost: no body (a body stream cannot be replayed), and either it
      // never left (the connection never opened) or it may be repeated (idempotent) and the upstream did not
      // just take too long.
      const again = attempt < retries && !out.hasBody && (unreached || (IDEMPOTENT.has(out.method) && !isTimeout(result.error)));
      if (!again) break;
    }
    if (state.gone) return;
    outcome.refusal = 'upstream-unavailable';
    outcome.relay.bytesOut += answerEnding(outcome.relay, res, protocol, 502, 'Bad Gateway: the upstream is unavailable\n');
  } finally {
    slot.release();
  }
}

/** Wait in the route's gate for a slot; the client going away takes the request out of the queue. */
async function waitForSlot(upstreams: RouteUpstreams, clientKey: string, state: RelayState): Promise<GateResult> {
  const aborter = new AbortController();
  if (state.gone) aborter.abort();
  state.abort = () => aborter.abort();
  try {
    return await upstreams.gate.acquire(clientKey, aborter.signal);
  } finally {
    state.abort = undefined;
  }
}

function publishAccess(env: ExchangeEnv, req: ServerRequest, res: ServerReply, context: ConnectionContext, protocol: WireProtocol, outcome: Outcome, t0: number): void {
  const config = env.listener.http.accessLog;
  httpRequestChannel.publish({
    listener: env.listener.name,
    connectionId: context.connectionId,
    identity: context.identity?.name,
    protocol,
    method: req.method ?? '',
    path: accessPath(req.url ?? '', config.includeQuery),
    // nginx's 499: the client went away before it had an answer.
    status: res.headersSent ? res.statusCode : 499,
    bytesIn: outcome.bytesIn,
    bytesOut: outcome.relay.bytesOut,
    upstream: outcome.upstream,
    upstreamMs: outcome.relay.upstreamMs === undefined ? undefined : Math.round(outcome.relay.upstreamMs * 1000) / 1000,
    totalMs: Math.round((performance.now() - t0) * 1000) / 1000,
    refusal: outcome.refusal,
    log: sampled(config),
  });
}
