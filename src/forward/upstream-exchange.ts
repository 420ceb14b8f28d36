/**
 * One attempt of one request at one upstream, relayed straight into the
 * client's response (node:http or node:http2 compat): undici's dispatch
 * handler writes the status and headers (hop-by-hop dropped), streams the
 * body with back-pressure both ways, and passes trailers on (gRPC's
 * grpc-status). It resolves with what happened, so that the caller can try
 * another upstream when nothing reached the client yet.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { responseHeadersForClient } from './http-headers.js';
import type { TargetDispatcher } from './route-upstreams.js';

/** The response a relay writes into: node:http's ServerResponse and node:http2's Http2ServerResponse both are this. */
export interface ResponseSink {
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown;
  write(chunk: Buffer): boolean;
  end(): unknown;
  addTrailers(headers: OutgoingHttpHeaders): void;
  readonly writableFinished: boolean;
  once(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
  destroy(err?: Error): unknown;
}

export interface AttemptRequest {
  readonly method: string;
  readonly path: string;
  /** Flat [name, value, …]. */
  readonly headers: string[];
  /** The client's body as its parser delivers it; undefined = none. */
  readonly body: Readable | undefined;
}

export type AttemptResult =
  /** The upstream answered and its response was relayed (or the client left while it was). */
  | { readonly kind: 'answered'; readonly status: number; readonly upstreamMs: number }
  /** The attempt failed; `started`: part of a response already reached the client (nothing can be retried). */
  | { readonly kind: 'failed'; readonly error: Error; readonly started: boolean; readonly upstreamMs: number | undefined }
  | { readonly kind: 'aborted' };

/** Trailer fields that may never be relayed (RFC 9110 §6.5.1: framing, routing, and what a proxy owns). */
const NOT_TRAILERS = new Set(['content-length', 'transfer-encoding', 'host', 'content-type', 'te', 'trailer', 'authorization', 'set-cookie']);

/** A field name node:http and node:http2 accept (RFC 9110 token, lower case as undici gives them). */
const TRAILER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
/** A field value with no control character (CR, LF and NUL above all). */
const TRAILER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * The upstream's trailers the client may get. They are sent after our code has returned (node:http2 writes them
 * from its 'wantTrailers' handler, where a throw would be uncaught and end the process), so everything either
 * protocol could refuse is left out here: forbidden and connection-specific names, malformed names or values,
 * and repeated fields (node:http2 refuses repeats of its single-value names; gRPC repeats none).
 */
export function trailersForClient(trailers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders | undefined {
  let out: OutgoingHttpHeaders | undefined;
  for (const [key, value] of Object.entries(responseHeadersForClient(trailers))) {
    if (NOT_TRAILERS.has(key) || !TRAILER_NAME.test(key) || typeof value !== 'string' || !TRAILER_VALUE.test(value)) continue;
    (out ??= {})[key] = value;
  }
  return out;
}

/** One request's state, shared by its handler and its relays (read when the client's response closes). */
export interface RelayState {
  bytesOut: number;
  /** Time to the upstream's response headers, ms, of the attempt that got them. */
  upstreamMs?: number;
  /** We ended the response ourselves: a 'close' after this is not the client going away. */
  ended: boolean;
  /** The client went away (reset its stream, closed its connection, broke its request body) before we ended the response. */
  gone: boolean;
  /** Abort the attempt in flight, if any (set by the relay while it runs). */
  abort?: () => void;
}

/**
 * Relays one attempt; `state.bytesOut` grows by the body bytes sent to the client. The client going away
 * (state.gone, kept by the request handler: its response closed before we ended it, or its request broke)
 * aborts the attempt through state.abort: no AbortSignal. An attempt the client abandoned is 'aborted', never
 * 'failed': it says nothing about the upstream.
 */
export function relayAttempt(target: TargetDispatcher, request: AttemptRequest, res: ResponseSink, state: RelayState): Promise<AttemptResult> {
  return new Promise<AttemptResult>((resolve) => {
    const started = performance.now();
    let upstreamMs: number | undefined;
    let status = 0;
    let settled = false;
    /** grpc-status and its companions, moved from a Trailers-Only answer's headers to the trailers. */
    let held: Record<string, string | string[]> | undefined;
    let controller: Dispatcher.DispatchController | undefined;
    const settle = (result: AttemptResult): void => {
      if (settled) return;
      settled = true;
      state.abort = undefined;
      resolve(result);
    };
    if (state.gone) return settle({ kind: 'aborted' });
    state.abort = () => controller?.abort(new Error('the client went away'));
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (state.gone) c.abort(new Error('the client went away'));
      },
      onResponseStart(c, statusCode, headers) {
        // Informational answers (103 Early Hints) are not relayed: the final one follows.
        if (statusCode < 200) return;
        status = statusCode;
        upstreamMs = performance.now() - started;
        // Set now: the client's response may close (and be logged) before the attempt's promise settles.
        state.upstreamMs = upstreamMs;
        try {
          let head = responseHeadersForClient(headers);
          // A gRPC "Trailers-Only" answer (a status and no message) carries grpc-status in its only HEADERS frame,
          // ended with it. We cannot end the client's stream with that frame (the end comes as a separate event):
          // the status goes out as trailers, the form every gRPC client also reads.
          if (head['grpc-status'] !== undefined) {
            const { 'grpc-status': code, 'grpc-message': message, 'grpc-status-details-bin': details, ...rest } = head;
            held = { 'grpc-status': code, ...(message !== undefined && { 'grpc-message': message }), ...(details !== undefined && { 'grpc-status-details-bin': details }) };
            head = rest;
          }
          res.writeHead(statusCode, head);
        } catch (err) {
          // A header the client's protocol cannot carry (node:http2 refuses some): the upstream's fault.
          c.abort(err instanceof Error ? err : new Error(String(err)));
        }
      },
      onResponseData(c, chunk) {
        state.bytesOut += chunk.length;
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => c.resume());
        }
      },
      onResponseEnd(_c, trailers) {
        const forward = trailersForClient(held === undefined ? trailers : { ...held, ...trailers });
        if (forward !== undefined) res.addTrailers(forward);
        state.ended = true;
        res.end();
        settle({ kind: 'answered', status, upstreamMs: upstreamMs ?? performance.now() - started });
      },
      onResponseError(_c, error) {
        if (state.gone) return settle(upstreamMs === undefined ? { kind: 'aborted' } : { kind: 'answered', status, upstreamMs });
        settle({ kind: 'failed', error, started: res.headersSent, upstreamMs });
      },
    };
    // `servername` is a dispatch option undici's Request honours but its typings omit.
    const options: Dispatcher.DispatchOptions & { readonly servername: string } = {
      path: request.path,
      method: request.method as Dispatcher.HttpMethod,
      headers: request.headers,
      body: request.body ?? null,
      servername: target.servername,
    };
    try {
      target.dispatcher.dispatch(options, handler);
    } catch (err) {
      settle({ kind: 'failed', error: err instanceof Error ? err : new Error(String(err)), started: false, upstreamMs: undefined });
    }
  });
}

/** Error codes of a connection that never opened (the request was never sent). */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** Whether `error` says the upstream was never reached (refused, unreachable, connect timeout, TLS failure before the request). */
export function neverReached(error: Error): boolean {
  const code = (error as Error & { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  return (
    CONNECT_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || code.includes('CERT') || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'SELF_SIGNED_CERT_IN_CHAIN'
  );
}

/** Whether `error` is undici's report of the upstream's doing (closed, timed out, refused, misframed). */
export function isUpstreamError(error: Error): boolean {
  const code = (error as Error & { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('UND_ERR') || neverReached(error) || code === 'ECONNRESET' || code === 'EPIPE');
}

/** A request timeout from undici (headers or body): the upstream is slow, not gone; never retried. */
export function isTimeout(error: Error): boolean {
  const code = (error as Error & { code?: unknown }).code;
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}
