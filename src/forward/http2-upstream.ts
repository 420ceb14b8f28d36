/**
 * Requests to an HTTP/2 upstream (h2c://, or https:// with upstreamHttp2)
 * over node:http2 sessions, through the same handler interface undici's
 * dispatch uses (so relayAttempt drives both). undici 7's HTTP/2 client is
 * not used for these: when a response is paused for a slow client and the
 * trailers arrive, it drops what the stream still holds and completes, so a
 * gRPC answer loses its last bytes. Here the end is the stream's 'end',
 * after every byte was read, and back-pressure is the stream's own pause.
 *
 * One session per upstream, opened on first use and again after it closes,
 * errs or receives GOAWAY; streams are bounded by the upstream's own
 * SETTINGS and by the route's UpstreamGate.
 */
import * as http2 from 'node:http2';
import type { SecureContextOptions } from 'node:tls';
import { pipeline, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

const { NGHTTP2_CANCEL } = http2.constants;

/** Request headers HTTP/2 forbids (RFC 9113 §8.2.2) or that become pseudo-headers. */
const NOT_SENT = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

export interface Http2UpstreamOptions {
  /** http: (h2c, prior knowledge) or https: (ALPN h2). */
  readonly origin: URL;
  readonly tls: SecureContextOptions & { readonly servername: string | undefined };
  readonly connectTimeoutMs: number;
  /** Longest wait for the response headers, then between body chunks. */
  readonly requestTimeoutMs: number;
  /** A session is ready (for the connect-time metric). */
  readonly onConnect?: (seconds: number) => void;
}

/** The code of a request node:http2 refuses to send (see dispatch). */
export const UNSENDABLE_REQUEST = 'ERR_DANCEGATE_UNSENDABLE_REQUEST';

/** An error whose code says what it was (neverReached / isTimeout read the code). */
function coded(message: string, code: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

interface SessionState {
  readonly session: http2.ClientHttp2Session;
  connected: boolean;
  /** Why it failed before it connected (ECONNREFUSED…): what a stream on it reports. */
  error: Error | undefined;
}

export class Http2UpstreamDispatcher {
  private current: SessionState | undefined;
  private destroyed = false;

  constructor(private readonly options: Http2UpstreamOptions) {}

  /** Send one request; the handler hears the response as from undici's dispatch. Returns true (accepted). */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const state = this.session();
    const headers: http2.OutgoingHttpHeaders = {
      ':method': options.method,
      ':path': options.path,
      ':scheme': this.options.origin.protocol === 'https:' ? 'https' : 'http',
      ':authority': this.options.origin.host,
    };
    const list = Array.isArray(options.headers) ? (options.headers as string[]) : [];
    for (let i = 0; i + 1 < list.length; i += 2) {
      const name = (list[i] as string).toLowerCase();
      const value = list[i + 1] as string;
      if (name === 'host') headers[':authority'] = value;
      else if (name === 'te') {
        if (value === 'trailers') headers.te = 'trailers';
      } else if (!NOT_SENT.has(name)) {
        // Repeated fields are joined into one (cookies with '; ', RFC 9113 §8.2.3): node:http2 throws on an array for
        // its single-value names (a client's second Content-Type), which would fail the request at the upstream.
        const had = headers[name];
        headers[name] = had === undefined ? value : `${String(had)}${name === 'cookie' ? '; ' : ', '}${value}`;
      }
    }
    const body = (options.body ?? null) as Readable | null;
    let finished = false;
    let stream: http2.ClientHttp2Stream | undefined;
    const controller: Dispatcher.DispatchController = {
      aborted: false,
      paused: false,
      reason: null,
      pause: () => stream?.pause(),
      resume: () => stream?.resume(),
      abort: (reason: Error) => {
        stream?.close(NGHTTP2_CANCEL);
        fail(reason);
      },
    };
    const fail = (err: Error): void => {
      if (finished) return;
      finished = true;
      stream?.destroy();
      body?.destroy();
      // A stream on a session that never connected is cancelled (ERR_HTTP2_STREAM_CANCEL) with the session's
      // own error as its cause (ECONNREFUSED, a certificate error…): that is what says the upstream was never reached.
      const cause = (err as Error & { cause?: unknown }).cause;
      const code = (err as Error & { code?: unknown }).code;
      handler.onResponseError?.(controller, state.connected || code === UNSENDABLE_REQUEST ? err : (state.error ?? (cause instanceof Error ? cause : err)));
    };
    try {
      stream = state.session.request(headers, { endStream: body === null });
    } catch (err) {
      // node:http2 refused the request itself (a header it cannot carry): the client's request, not the upstream, is
      // at fault; the code says so, so that it never counts against the upstream's health.
      handler.onRequestStart?.(controller, {});
      fail(coded(`the request cannot be sent over HTTP/2: ${err instanceof Error ? err.message : String(err)}`, UNSENDABLE_REQUEST, err));
      return true;
    }
    const s = stream;
    handler.onRequestStart?.(controller, {});
    if (finished) return true;
    let answered = false;
    s.setTimeout(this.options.requestTimeoutMs, () =>
      fail(coded(`HTTP/2 upstream: no ${answered ? 'body data' : 'response'} within ${this.options.requestTimeoutMs} ms`, answered ? 'UND_ERR_BODY_TIMEOUT' : 'UND_ERR_HEADERS_TIMEOUT')),
    );
    let trailers: http2.IncomingHttpHeaders = {};
    s.on('response', (h) => {
      const status = Number(h[':status']);
      if (status < 200) return;
      answered = true;
      const out: Record<string, string | string[]> = {};
      for (const [key, value] of Object.entries(h)) if (!key.startsWith(':') && value !== undefined) out[key] = value;
      handler.onResponseStart?.(controller, status, out, '');
    });
    s.on('data', (chunk: Buffer) => {
      if (!finished) handler.onResponseData?.(controller, chunk);
    });
    s.on('trailers', (t) => (trailers = t));
    s.on('end', () => {
      if (finished) return;
      if (!answered) return fail(coded('HTTP/2 upstream: the stream ended without a response', 'UND_ERR_SOCKET'));
      finished = true;
      const out: Record<string, string | string[]> = {};
      for (const [key, value] of Object.entries(trailers)) if (!key.startsWith(':') && value !== undefined) out[key] = value;
      handler.onResponseEnd?.(controller, out);
    });
    s.on('error', (err: Error) => fail(err));
    s.on('close', () => {
      if (!finished) fail(coded(`HTTP/2 upstream: the stream closed before the response ended (code ${s.rstCode ?? 'none'})`, 'UND_ERR_SOCKET'));
    });
    if (body !== null) {
      pipeline(body, s, (err) => {
        if (err) fail(coded(`the request body failed: ${err.message}`, 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', err));
      });
    }
    return true;
  }

  destroy(): Promise<void> {
    this.destroyed = true;
    this.current?.session.destroy();
    this.current = undefined;
    return Promise.resolve();
  }

  private session(): SessionState {
    const current = this.current;
    if (current !== undefined && !current.session.closed && !current.session.destroyed) return current;
    const started = performance.now();
    const o = this.options;
    const session = http2.connect(o.origin, {
      ...o.tls,
      servername: o.tls.servername,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
      peerMaxConcurrentStreams: 100,
    });
    const state: SessionState = { session, connected: false, error: undefined };
    const timer = setTimeout(() => {
      if (!state.connected) session.destroy(coded(`no connection within ${o.connectTimeoutMs} ms`, 'UND_ERR_CONNECT_TIMEOUT'));
    }, o.connectTimeoutMs);
    timer.unref();
    session.once('connect', () => {
      state.connected = true;
      clearTimeout(timer);
      o.onConnect?.((performance.now() - started) / 1000);
    });
    session.on('error', (err: Error) => {
      if (!state.connected) state.error = err;
    });
    const forget = (): void => {
      clearTimeout(timer);
      if (this.current === state) this.current = undefined;
    };
    session.once('close', forget);
    session.once('goaway', forget);
    // Idle sessions do not keep the process alive.
    session.unref();
    if (this.destroyed) session.destroy();
    this.current = state;
    return state;
  }
}
