/**
 * The per-request access log (one line per HTTP request the forwarder
 * answered, when drawn), and the lines for upstreams taken out of rotation
 * or readmitted and for HTTP/2 sessions ended for abuse: what the
 * forwarders publish, written through the process's pino logger.
 */
import type { Logger } from 'pino';
import { http2AbuseChannel, httpRequestChannel, upstreamHealthChannel, type HttpRequestEvent } from '../forward/channels.js';
import { boundText } from '../connection/log-bounds.js';

/** Client-chosen fields the forwarder does not bound itself (an HTTP/2 :method can be any token up to the header list size). */
const MAX_METHOD_BYTES = 64;
/** Health-check and nghttp2 texts. */
const MAX_DETAIL_BYTES = 512;

/** Milliseconds to the microsecond: enough for a request, and a line without 15 digits of noise. */
const ms = (value: number): number => Math.round(value * 1000) / 1000;

/** The access-log line of one request (fields in this order; refusal only when we answered ourselves). */
export function requestLine(e: HttpRequestEvent): Record<string, unknown> {
  const line: Record<string, unknown> = {
    event: 'request',
    connectionId: e.connectionId,
    listener: e.listener,
    identity: e.identity ?? null,
    protocol: e.protocol,
    method: boundText(e.method, MAX_METHOD_BYTES),
    path: e.path,
    status: e.status,
    bytesIn: e.bytesIn,
    bytesOut: e.bytesOut,
    upstream: e.upstream ?? null,
    upstreamMs: e.upstreamMs === undefined ? null : ms(e.upstreamMs),
    totalMs: ms(e.totalMs),
  };
  if (e.refusal !== undefined) line['refusal'] = e.refusal;
  return line;
}

/** Subscribe the three logs; returns one function that unsubscribes all of them. */
export function logHttpRequests(logger: Pick<Logger, 'info' | 'warn'>): () => void {
  const stops = [
    httpRequestChannel.subscribe((e) => {
      if (e.log) logger.info(requestLine(e), 'http request');
    }),
    upstreamHealthChannel.subscribe((e) => {
      const line = { event: 'upstream-health', listener: e.listener, upstream: e.upstream, healthy: e.healthy, cause: e.cause, detail: boundText(e.detail, MAX_DETAIL_BYTES) };
      if (e.healthy) logger.info(line, 'upstream readmitted');
      else logger.warn(line, 'upstream ejected');
    }),
    http2AbuseChannel.subscribe((e) =>
      logger.warn(
        {
          event: 'http2-abuse',
          connectionId: e.connectionId,
          listener: e.listener,
          identity: e.identity ?? null,
          kind: boundText(e.kind, MAX_METHOD_BYTES),
          detail: boundText(e.detail, MAX_DETAIL_BYTES),
        },
        'HTTP/2 session ended',
      ),
    ),
  ];
  return () => {
    for (const stop of stops) stop();
  };
}
