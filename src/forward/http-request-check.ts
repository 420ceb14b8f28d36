/**
 * What every request must pass before it is forwarded, on HTTP/1.1 and
 * HTTP/2 alike: an origin-form target that no backend can read as another
 * host, one Host (or :authority) that leads to the route the TLS server
 * name chose, and (HTTP/1.1) framing from Node's parse only. Pure.
 */
import { REQUEST_REFUSALS, type RequestRefusal } from '../reasons.js';
import type { RouteConfig } from '../config/types.js';
import { selectBySni } from '../protocol/sni.js';
import { parseHostHeader } from './host-header.js';

/** The parts of a request the checks read. */
export interface RequestShape {
  readonly protocol: 'h1' | 'h2';
  /** The request target as received (h2: :path). */
  readonly target: string;
  /** h1: the Host header; h2: :authority, else Host. undefined: none (HTTP/1.0 may omit it). */
  readonly authority: string | undefined;
  /** How many Host headers (h1; h2's duplicates are refused by the HTTP/2 front). */
  readonly hostCount: number;
  /** h1 only: Transfer-Encoding as Node parsed it. */
  readonly transferEncoding: string | undefined;
  readonly contentLength: string | undefined;
  /** h2 only: whether the client's HEADERS frame ended the stream (no body). */
  readonly endedWithHeaders: boolean;
}

export interface Refused {
  readonly ok: false;
  readonly refusal: RequestRefusal;
  readonly status: number;
  readonly body: string;
}

export type RequestCheck =
  { readonly ok: true; readonly hasBody: boolean; /** The Content-Length to forward (a body with a known length), else undefined. */ readonly contentLength: string | undefined } | Refused;

export function refused(refusal: RequestRefusal, body: string): Refused {
  return { ok: false, refusal, status: REQUEST_REFUSALS[refusal].status, body };
}

const CONTENT_LENGTH = /^[0-9]{1,15}$/;
const VISIBLE_ASCII = /^[\x21-\x7e]*$/;

/** Whether `shape` may go to `route` (one of `routes`), and what its body is. */
export function checkRequest(shape: RequestShape, routes: readonly RouteConfig[], route: RouteConfig): RequestCheck {
  const target = shape.target;
  // Origin-form only: an absolute URL could name another host than the route's, and
  // 'OPTIONS *' is not forwarded (the upstream client sends origin-form paths only).
  if (!target.startsWith('/')) return refused('bad-request', 'Bad Request: only origin-form request targets (starting with /) are accepted\n');
  // '//host/x' and '/\\host/x' are network-path references: a backend doing new URL(target, base) would
  // take the host from them, past the Host/route check below.
  if (target.startsWith('//') || target.startsWith('/\\')) return refused('bad-request', 'Bad Request: a request target may not start with // or /\\\n');
  // Visible ASCII only (RFC 3986 characters and their escapes; node:http refuses the rest in HTTP/1.1, but an HTTP/2
  // :path may carry raw bytes 0x80-0xFF that an HTTP/1.1 upstream's parser would read its own way).
  if (!VISIBLE_ASCII.test(target)) return refused('bad-request', 'Bad Request: the request target has bytes outside visible ASCII (percent-encode them)\n');
  if (shape.hostCount > 1) return refused('bad-request', 'Bad Request: more than one Host header\n');
  // An HTTP/1.0 request may carry no Host at all: then the SNI alone decides (Node refuses HTTP/1.1 without Host;
  // node:http2 refuses a request with neither :authority nor Host).
  if (shape.authority !== undefined) {
    const parsed = parseHostHeader(shape.authority);
    if (!parsed.ok) return refused('bad-request', `Bad Request: invalid ${shape.protocol === 'h2' ? ':authority' : 'Host header'}: ${parsed.reason}\n`);
    // The Host must lead to the route the TLS SNI chose, or a client allowed on one route could reach another.
    if (selectBySni(routes, parsed.host, false) !== route) {
      return refused('misdirected', `Misdirected Request: the ${shape.protocol === 'h2' ? ':authority' : 'Host header'} does not belong to the TLS server name of this connection\n`);
    }
  }
  const length = shape.contentLength;
  if (shape.protocol === 'h2') {
    // nghttp2 checks that the DATA frames add up to a Content-Length the client gave.
    if (length !== undefined && !CONTENT_LENGTH.test(length)) return refused('bad-request', 'Bad Request: invalid Content-Length\n');
    const hasBody = !shape.endedWithHeaders;
    return { ok: true, hasBody, contentLength: hasBody ? length : undefined };
  }
  // Framing, from Node's parse only: Node refuses a request with both, with a Transfer-Encoding other than
  // chunked last, or with a malformed Content-Length. Node de-chunks 'gzip, chunked' and would hand us a
  // still-gzipped body that we would then send with a framing of our own: every coding but chunked alone is
  // refused (RFC 9112 §6.1: 501).
  const te = shape.transferEncoding;
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') return refused('not-implemented', 'Not Implemented: only the chunked transfer coding is accepted\n');
  const chunked = te !== undefined;
  if (!chunked && length !== undefined && !CONTENT_LENGTH.test(length)) return refused('bad-request', 'Bad Request: invalid Content-Length\n');
  const hasBody = chunked || (length !== undefined && Number(length) > 0);
  return { ok: true, hasBody, contentLength: !chunked && hasBody ? length : undefined };
}
