/**
 * HTTP/2 from clients: verified TLS connections whose ALPN chose h2 are
 * handed to a non-listening node:http2 server (cleartext: the TLS is ours
 * already, on node:tls or the native engine), and every request stream
 * reaches the listener's request handler through the compat (req, res) API.
 *
 * nghttp2 rejects what RFC 9113 calls malformed before any of our code
 * runs: connection-specific headers (Connection, Keep-Alive,
 * Proxy-Connection, Transfer-Encoding, Upgrade), TE other than "trailers",
 * duplicated, unknown or misplaced pseudo-headers, a missing :path, two
 * Host headers, a Content-Length the DATA frames contradict, more than 8
 * CONTINUATION frames per header block, PING/SETTINGS floods. We add:
 * - before the handler: CONNECT is not forwarded (501), a request whose
 *   :authority and Host differ, or with two Host headers, is a 400;
 * - a rapid-reset guard (CVE-2023-44487): streams the client resets before
 *   our response ended, and streams we refuse, counted per session per
 *   second; past http2.maxResetsPerSecond the session gets GOAWAY
 *   ENHANCE_YOUR_CALM and is destroyed shortly after (nghttp2's own limit,
 *   1000 then 33 a second, is far higher; Node 20 ignores its
 *   streamResetBurst/streamResetRate options);
 * - a session with no open stream for the listener's idleTimeoutMs is
 *   closed (GOAWAY NO_ERROR): PINGs keep the socket busy, not the session;
 * - a stream with no frame either way for http.requestTimeoutMs is reset
 *   (CANCEL): to the handler that is a client gone away.
 * Abuse that ends a session is published on http2AbuseChannel. No session
 * or stream error leaves this module as an exception.
 */
import * as http2 from 'node:http2';
import { performance } from 'node:perf_hooks';
import type { HttpListenerConfig } from '../config/types.js';
import type { ConnectionContext } from '../connection/forwarder.js';
import type { SecureSocket } from '../tls/secure-socket.js';
import { accessPath, sampled } from './access-log.js';
import { http2AbuseChannel, httpRequestChannel } from './channels.js';
import { refused, type Refused } from './http-request-check.js';
import { errorText } from './upstream-failure.js';

const { NGHTTP2_NO_ERROR, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;
/** nghttp2.h's NGHTTP2_ERR_CALLBACK_FAILURE (not in http2.constants): the errno of the error Node raises when one of its callbacks fails. */
const NGHTTP2_ERR_CALLBACK_FAILURE = -902;

/** Invalid frames (malformed header blocks included) a session may send in its life before nghttp2 ends it; a conforming client sends none. */
export const MAX_INVALID_FRAMES = 32;
/** Streams Node may refuse a session (over its own stream count or memory) before it ends it. */
export const MAX_REJECTED_STREAMS = 32;
/** nghttp2's buffers per session, MB (Node's default, stated: a session past it gets no new stream). */
export const MAX_SESSION_MEMORY_MB = 10;
/** Header fields per request (Node's default, stated; the bytes are bounded by http2.maxHeaderListBytes). */
export const MAX_HEADER_PAIRS = 128;
/** How long an abusive session's GOAWAY gets to reach the client before the session is destroyed. */
export const ABUSE_CLOSE_MS = 100;
/** How long a refused session may take to send the request it is answered on, and to read the answer. */
export const REFUSE_CLOSE_MS = 1000;
/** Connection-specific header names: HTTP/2 forbids them in a response too (node:http2 throws on them). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

export type Http2RequestHandler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, context: ConnectionContext) => void;

/** Events in a one-second window that starts at the first one counted (bounded: two numbers per session). */
export class RateWindow {
  private start = Number.NEGATIVE_INFINITY;
  private count = 0;

  constructor(
    private readonly limit: number,
    private readonly windowMs = 1000,
  ) {}

  /** Count one at `now` (ms); true when the window now holds more than the limit. */
  add(now: number): boolean {
    if (now - this.start >= this.windowMs) {
      this.start = now;
      this.count = 0;
    }
    this.count++;
    return this.count > this.limit;
  }

  get counted(): number {
    return this.count;
  }
}

/**
 * What this front refuses before the handler, from the request line and
 * the header list as received (node:http2 keeps only the first of repeated
 * single-value headers in req.headers, so rawHeaders is read). Pure.
 */
export function inboundRefusal(method: string, rawHeaders: readonly string[]): Refused | undefined {
  if (method === 'CONNECT') return refused('not-implemented', 'Not Implemented: CONNECT is not forwarded\n');
  let authority: string | undefined;
  const hosts: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (name === ':authority') authority = rawHeaders[i + 1] as string;
    else if (name === 'host') hosts.push(rawHeaders[i + 1] as string);
  }
  if (hosts.length > 1) return refused('bad-request', 'Bad Request: more than one Host header\n');
  const host = hosts[0];
  // RFC 9113 §8.3.1: both present, they must agree; else a backend reading Host would see another host than the one routed on.
  if (authority !== undefined && host !== undefined && authority.toLowerCase() !== host.toLowerCase()) return refused('bad-request', 'Bad Request: :authority and Host differ\n');
  return undefined;
}

/** The abuse kind of a session error (nghttp2 or Node detected it), or undefined for a transport error or a GOAWAY with an error (not abuse). */
export function abuseKindOf(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES') return 'invalid-frames';
  if (code !== 'ERR_HTTP2_ERROR') return undefined;
  // Node fails nghttp2's callback (its other callback failures carry their own code) once it has refused more than
  // MAX_REJECTED_STREAMS streams over its stream count or memory: on Node 26 a rapid reset on a JavaScript stream
  // ends this way, its reset streams still counted open in C++ before JavaScript (and our reset guard) sees any.
  if ((err as NodeJS.ErrnoException).errno === NGHTTP2_ERR_CALLBACK_FAILURE) return 'rejected-streams';
  if (/CONTINUATION/i.test(err.message)) return 'continuation-flood';
  if (/flood/i.test(err.message)) return 'flood';
  return 'protocol-error';
}

/** A refusal's response headers for HTTP/2: lower-case names, the connection-specific ones dropped, ours for the body. */
export function refusalHeaders(headers: Readonly<Record<string, string>>, body: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (CONNECTION_SPECIFIC.has(lower) || lower === 'content-length' || lower === 'content-type' || lower.startsWith(':')) continue;
    out[lower] = value;
  }
  out['content-type'] = 'text/plain; charset=utf-8';
  out['content-length'] = String(Buffer.byteLength(body));
  return out;
}

interface Refusal {
  readonly status: number;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
  answered: boolean;
}

interface SessionState {
  readonly session: http2.ServerHttp2Session;
  /** undefined for a refused connection (it never reaches the handler). */
  readonly context: ConnectionContext | undefined;
  readonly refusal: Refusal | undefined;
  readonly resets: RateWindow;
  open: number;
  idleTimer: NodeJS.Timeout | undefined;
  endTimer: NodeJS.Timeout | undefined;
  /** Set once we end the session for abuse: one event, one GOAWAY. */
  abusive: boolean;
}

export class Http2Inbound {
  private readonly server: http2.Http2Server;
  private readonly sessions = new Map<http2.ServerHttp2Session, SessionState>();
  /** Streams we reset ourselves (timeouts, refused sessions): not the client's resets. */
  private readonly closedByUs = new WeakSet<http2.ServerHttp2Stream>();
  private readonly startedAt = new WeakMap<http2.ServerHttp2Stream, number>();
  /** Each stream's session (a stream destroyed before it was handled has no .session any more). */
  private readonly streams = new WeakMap<http2.ServerHttp2Stream, SessionState>();
  /** The connection being handed to the server: its 'session' event comes synchronously, inside emit('connection'). */
  private accepting: { context: ConnectionContext | undefined; refusal: Refusal | undefined; state?: SessionState } | undefined;
  private draining = false;

  constructor(
    private readonly listener: HttpListenerConfig,
    private readonly handler: Http2RequestHandler,
  ) {
    const limits = listener.http.http2;
    this.server = http2.createServer({
      settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderListBytes, enablePush: false, enableConnectProtocol: false },
      maxSessionInvalidFrames: MAX_INVALID_FRAMES,
      maxSessionRejectedStreams: MAX_REJECTED_STREAMS,
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      maxHeaderListPairs: MAX_HEADER_PAIRS,
      // What nghttp2 assumes of the client before its SETTINGS arrive (we open no streams: push is off).
      peerMaxConcurrentStreams: limits.maxConcurrentStreams,
    });
    this.server.on('session', (session: http2.ServerHttp2Session) => this.onSession(session));
    this.server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => this.onRequest(req, res));
    // The compat layer would answer these itself (405, 417): ours go through the same checks and events.
    this.server.on('connect', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => this.onRequest(req, res));
    this.server.on('checkExpectation', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => this.onRequest(req, res));
  }

  /** Serve HTTP/2 on a verified connection whose ALPN chose h2 (the socket is paused). */
  accept(socket: SecureSocket, context: ConnectionContext): void {
    const state = this.start(socket, context, undefined);
    if (state !== undefined && this.draining) state.session.close();
  }

  /**
   * Answer a refused connection in HTTP/2: its first request gets
   * status/body/headers, every other stream REFUSED_STREAM, then GOAWAY and
   * close; whatever happens, the session ends REFUSE_CLOSE_MS from now.
   */
  refuse(socket: SecureSocket, status: number, body: string, headers: Record<string, string>): void {
    const state = this.start(socket, undefined, { status, body, headers, answered: false });
    if (state === undefined) return;
    state.endTimer = setTimeout(() => state.session.destroy(), REFUSE_CLOSE_MS);
    state.endTimer.unref();
  }

  /** GOAWAY (NO_ERROR) to every session: each closes once its open streams end; new connections get it at once. */
  drain(): void {
    this.draining = true;
    // A refused session ends on its own within REFUSE_CLOSE_MS; a GOAWAY now would keep its answer from it.
    for (const state of this.sessions.values()) if (state.refusal === undefined && !state.session.closed && !state.session.destroyed) state.session.close();
  }

  close(): void {
    for (const state of this.sessions.values()) {
      this.clearTimers(state);
      state.session.destroy();
    }
    this.sessions.clear();
  }

  /** Open sessions (for tests and status). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  private start(socket: SecureSocket, context: ConnectionContext | undefined, refusal: Refusal | undefined): SessionState | undefined {
    // A server TLSSocket made without a tls.Server (the pipeline's) keeps secureConnecting true after its handshake
    // (only tls.Server clears it), and node:http2 would wait for a 'secureConnect' that never comes: the handshake
    // is done when a socket is handed here.
    const tlsState = socket as { secureConnecting?: boolean };
    if (tlsState.secureConnecting === true) tlsState.secureConnecting = false;
    const accepting: NonNullable<typeof this.accepting> = { context, refusal };
    this.accepting = accepting;
    try {
      this.server.emit('connection', socket);
    } catch (err) {
      logInboundError(this.listener.name, 'session', err);
    } finally {
      this.accepting = undefined;
    }
    const state = accepting.state;
    // No session: node:http2 took the socket for HTTP/1 (its ALPN was not h2) or failed; nothing else may serve it.
    if (state === undefined) {
      socket.destroy();
      return undefined;
    }
    // The client's FIN (or close_notify) ends the session: an HTTP/2 client that sends nothing more cannot open
    // flow-control windows or answer PINGs, so nothing it waits for could reach it. The pipeline's sockets allow
    // half-open connections (TCP mode needs them), which node:http2 would otherwise keep until the idle timeout,
    // holding the upstream requests of a client that left.
    socket.once('end', () => {
      if (!state.session.destroyed) state.session.destroy();
    });
    socket.resume();
    return state;
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const accepting = this.accepting;
    if (accepting === undefined) {
      // Only accept() and refuse() hand connections to this server.
      session.destroy();
      return;
    }
    const state: SessionState = {
      session,
      context: accepting.context,
      refusal: accepting.refusal,
      resets: new RateWindow(this.listener.http.http2.maxResetsPerSecond),
      open: 0,
      idleTimer: undefined,
      endTimer: undefined,
      abusive: false,
    };
    accepting.state = state;
    this.sessions.set(session, state);
    session.on('error', (err: Error) => this.onSessionError(state, err));
    // Ahead of node:http2's own listener, which hands the stream to the compat layer (and so to onRequest).
    session.prependListener('stream', (stream: http2.ServerHttp2Stream) => this.onStream(state, stream));
    session.once('close', () => {
      this.clearTimers(state);
      this.sessions.delete(session);
    });
    if (state.refusal === undefined) this.armIdle(state);
  }

  private onStream(state: SessionState, stream: http2.ServerHttp2Stream): void {
    // A stream error after its session is gone (or a write to a reset stream) is no one's exception.
    stream.on('error', () => undefined);
    this.streams.set(stream, state);
    if (stream.destroyed) {
      // Opened and reset in one read (rapid reset; on a JavaScript stream node:http2 emits streams after the
      // whole read): never handled, counted all the same. Its 'close' may already be past.
      if (stream.rstCode !== undefined && stream.rstCode !== NGHTTP2_NO_ERROR) this.countReset(state, 'reset');
      return;
    }
    this.startedAt.set(stream, performance.now());
    state.open++;
    clearTimeout(state.idleTimer);
    state.idleTimer = undefined;
    // Inactivity, both ways (a long gRPC stream that keeps talking lives on).
    stream.setTimeout(this.listener.http.requestTimeoutMs, () => this.resetStream(stream, NGHTTP2_CANCEL));
    stream.once('close', () => {
      state.open--;
      if (stream.rstCode !== undefined && stream.rstCode !== NGHTTP2_NO_ERROR && !this.closedByUs.has(stream)) this.countReset(state, 'reset');
      if (state.open === 0 && state.refusal === undefined) this.armIdle(state);
    });
  }

  private onRequest(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
    const stream = req.stream;
    try {
      const state = this.streams.get(stream);
      // Gone before it could be handled (reset, or its session ended): no upstream work for it.
      if (state === undefined || stream.destroyed) return;
      if (state.refusal !== undefined) {
        this.answerRefused(state, stream, res, state.refusal);
        return;
      }
      const context = state.context as ConnectionContext;
      const refusal = inboundRefusal(req.method, req.rawHeaders);
      if (refusal !== undefined) {
        this.answerOwn(state, req, res, refusal, context);
        return;
      }
      this.handler(req, res, context);
    } catch (err) {
      // The handler must not throw (nor must we); if it does, this request fails alone.
      logInboundError(this.listener.name, 'request', err);
      if (!res.headersSent && !stream.destroyed) this.respond(res, 502, 'Bad Gateway\n', {});
      else this.resetStream(stream, NGHTTP2_INTERNAL_ERROR);
    }
  }

  /** A request this front refuses: answered, counted with the resets, and published like any other request. */
  private answerOwn(state: SessionState, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, refusal: Refused, context: ConnectionContext): void {
    this.respond(res, refusal.status, refusal.body, {});
    const started = this.startedAt.get(req.stream) ?? performance.now();
    const access = this.listener.http.accessLog;
    httpRequestChannel.publish({
      listener: this.listener.name,
      connectionId: context.connectionId,
      identity: context.identity?.name,
      protocol: 'h2',
      method: req.method,
      // CONNECT has no :path (its target is the :authority).
      path: accessPath(req.headers[':path'] ?? req.headers[':authority'] ?? '', access.includeQuery),
      status: refusal.status,
      bytesIn: 0,
      bytesOut: Buffer.byteLength(refusal.body),
      upstream: undefined,
      upstreamMs: undefined,
      totalMs: performance.now() - started,
      refusal: refusal.refusal,
      log: sampled(access),
    });
    this.countReset(state, 'refused');
  }

  /** A refused connection: its first request gets the answer, then GOAWAY; any other stream is refused unprocessed. */
  private answerRefused(state: SessionState, stream: http2.ServerHttp2Stream, res: http2.Http2ServerResponse, refusal: Refusal): void {
    if (refusal.answered) {
      this.resetStream(stream, NGHTTP2_REFUSED_STREAM);
      return;
    }
    refusal.answered = true;
    this.respond(res, refusal.status, refusal.body, refusal.headers);
    if (!state.session.closed && !state.session.destroyed) state.session.close();
  }

  private respond(res: http2.Http2ServerResponse, status: number, body: string, headers: Readonly<Record<string, string>>): void {
    try {
      res.writeHead(status, refusalHeaders(headers, body));
      res.end(body);
    } catch (err) {
      logInboundError(this.listener.name, 'respond', err);
      this.resetStream(res.stream, NGHTTP2_INTERNAL_ERROR);
    }
  }

  private resetStream(stream: http2.ServerHttp2Stream, code: number): void {
    this.closedByUs.add(stream);
    if (!stream.destroyed) stream.close(code);
  }

  private countReset(state: SessionState, what: 'reset' | 'refused'): void {
    // A session ending (its socket closed) resets its open streams itself: not the client's doing.
    if (state.abusive || state.session.destroyed || !state.resets.add(performance.now())) return;
    this.endForAbuse(state, 'reset-rate', `more than ${this.listener.http.http2.maxResetsPerSecond} streams reset by the client or refused within one second (last: ${what})`);
  }

  private endForAbuse(state: SessionState, kind: string, detail: string): void {
    state.abusive = true;
    this.publishAbuse(state, kind, detail);
    const session = state.session;
    if (session.destroyed) return;
    try {
      session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    } catch {
      // Already closing: the destroy below still ends it.
    }
    clearTimeout(state.endTimer);
    state.endTimer = setTimeout(() => session.destroy(), ABUSE_CLOSE_MS);
    state.endTimer.unref();
  }

  private onSessionError(state: SessionState, err: Error): void {
    // Node destroys the session after this event (with GOAWAY when the socket is still up); we only report.
    const kind = abuseKindOf(err);
    if (kind === undefined || state.abusive) return;
    state.abusive = true;
    this.publishAbuse(state, kind, errorText(err));
  }

  private publishAbuse(state: SessionState, kind: string, detail: string): void {
    if (!http2AbuseChannel.hasSubscribers) return;
    http2AbuseChannel.publish({ listener: this.listener.name, connectionId: state.context?.connectionId ?? '', identity: state.context?.identity?.name, kind, detail });
  }

  /** A session with no open stream for idleTimeoutMs is closed (GOAWAY NO_ERROR). */
  private armIdle(state: SessionState): void {
    clearTimeout(state.idleTimer);
    state.idleTimer = setTimeout(() => {
      state.idleTimer = undefined;
      if (state.open === 0 && !state.session.closed && !state.session.destroyed) state.session.close();
    }, this.listener.idleTimeoutMs);
    state.idleTimer.unref();
  }

  private clearTimers(state: SessionState): void {
    clearTimeout(state.idleTimer);
    clearTimeout(state.endTimer);
    state.idleTimer = undefined;
    state.endTimer = undefined;
  }
}

/** One line on stderr for a fault of ours (the process goes on). */
function logInboundError(listener: string, stage: string, err: unknown): void {
  try {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'http2 inbound failed', listener, stage, error: errorText(err) })}\n`);
  } catch {
    // Logging must not be what fails a session.
  }
}
