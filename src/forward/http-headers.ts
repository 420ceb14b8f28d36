/**
 * Identity headers for HTTP backends (README.md, "What the backend receives"):
 * every incoming copy of any identity header is stripped, then ours are set;
 * hop-by-hop headers are removed both ways (RFC 9110 §7.6.1), and
 * `Connection` can never remove framing or Host. Pure: operates on Node's
 * lowercased header objects.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { HttpModeConfig } from '../config/types.js';
// Header names compared as CGI/WSGI stacks do (case-insensitive, '_' the same as '-'), as the config loader checks them.
import { headerKey } from '../config/header-name.js';

/** Headers a client must never be able to send through us (lowercase). */
export const ALWAYS_STRIPPED = [
  'x-dane-client-id',
  'x-dane-status',
  'x-dane-tlsa',
  'client-cert',
  'client-cert-chain',
  'x-forwarded-client-cert',
  'x-forwarded-tls-client-cert',
  'x-forwarded-tls-client-cert-info',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'forwarded',
  // What other proxies and load balancers set for client address, client certificate and original URL:
  // a backend moved from behind nginx, an ALB, IIS/ARR or a CDN may still trust them.
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
  'x-original-forwarded-for',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-forwarded-prefix',
  'x-forwarded-server',
  'x-forwarded-ssl',
  'x-forwarded-scheme',
  'x-url-scheme',
  'front-end-https',
  'x-arr-clientcert',
  'x-arr-ssl',
  'ssl-client-cert',
] as const;

/** Name prefixes stripped whatever follows (lowercase, '_' read as '-'): client-certificate families of nginx, HAProxy, ALB, F5 and others. */
export const ALWAYS_STRIPPED_PREFIXES = ['x-ssl-', 'x-client-cert', 'x-client-verify', 'x-client-dn', 'x-amzn-mtls-', 'x-dane-'] as const;

export interface ForwardedIdentity {
  /** Canonical verified name; undefined when the client is forwarded unauthenticated (policy optional). */
  readonly name: string | undefined;
  /** 'authenticated' or the refusal reason code. */
  readonly status: string;
  readonly certificateDer: Buffer | undefined;
  readonly certificateSha256Hex: string | undefined;
  readonly certificateSubject: string | undefined;
  /** Matched TLSA usage/selector/matching type. */
  readonly tlsa: readonly [number, number, number] | undefined;
  readonly clientAddress: string;
}

/** Escape a value for a quoted XFCC field. */
function quoted(value: string): string {
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/**
 * Header values are printable ASCII only: anything else (control
 * characters, non-ASCII in a certificate subject) becomes \xx escapes of
 * its UTF-8 bytes, so Node never refuses the header and no backend sees raw
 * bytes it might split on.
 */
export function headerSafe(value: string): string {
  return value.replace(/[^\x20-\x7e]/gu, (c) => [...Buffer.from(c, 'utf8')].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join(''));
}

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and
 * never cross the proxy, in either direction. Any `proxy-*` header goes too
 * (Proxy-Authorization is for us, not the backend), and HTTP2-Settings
 * (RFC 9113 §3.1: it belongs to an h2c upgrade of one connection; node:http2
 * refuses to send it).
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'transfer-encoding', 'upgrade', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'http2-settings']);

/**
 * Headers `Connection` can never remove: the message's framing and its
 * Host. (Framing is rebuilt by the forwarder from what Node's parser read;
 * Connection naming it must not take it away.)
 */
const NEVER_NAMEABLE = new Set(['content-length', 'transfer-encoding', 'host']);

/** Whether a header name is hop-by-hop (or a variant with '_' that a CGI stack would fold into one). */
function isHopByHop(key: string): boolean {
  const name = headerKey(key);
  return HOP_BY_HOP.has(name) || name.startsWith('proxy-');
}

/** The tokens of a Connection header, lowercase, '_' folded to '-'. */
function connectionTokens(connection: string | string[] | undefined): string[] {
  return (Array.isArray(connection) ? connection.join(',') : (connection ?? ''))
    .split(',')
    .map((t) => headerKey(t.trim()))
    .filter((t) => t.length > 0);
}

/**
 * Remove every hop-by-hop header, and every header `Connection` names
 * (a client could name our identity header there, so that a proxy behind
 * us deletes it) except framing and Host. A header spelt with '_' that a
 * CGI/WSGI stack would read as Content-Length, Transfer-Encoding or Host
 * (content_length) is removed too: only Node's parse of the real one counts.
 * Returns whether the client's TE listed `trailers` (the one TE value a
 * proxy passes on, for gRPC-style backends).
 */
export function stripHopByHop(headers: Record<string, string | string[] | undefined>): { readonly teTrailers: boolean } {
  const named = new Set(connectionTokens(headers.connection).filter((t) => !NEVER_NAMEABLE.has(t)));
  const teTrailers = connectionTokens(headers.te).some((t) => t === 'trailers' || t.startsWith('trailers;'));
  for (const key of Object.keys(headers)) {
    const name = headerKey(key);
    if (isHopByHop(key) || named.has(name) || (key.includes('_') && NEVER_NAMEABLE.has(name))) delete headers[key];
  }
  return { teTrailers };
}

/**
 * The response headers to pass on, in one pass: undefined values, hop-by-hop headers, whatever Connection
 * names (but Content-Length and Host) and '_' spellings of framing are left out, and Content-Length beside
 * Transfer-Encoding. When nothing is left out (a kept-alive upstream's usual answer has only
 * `connection: keep-alive` and `keep-alive` to drop), the copy has the same shape every time.
 */
function responseHeadersOnePass(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const connection = headers.connection;
  // 'keep-alive' (and 'close') name nothing that is not already hop-by-hop: no token list to build.
  const named = connection === undefined || connection === 'keep-alive' || connection === 'close' ? undefined : new Set(connectionTokens(connection).filter((t) => !NEVER_NAMEABLE.has(t)));
  const chunked = headers['transfer-encoding'] !== undefined;
  const out: Record<string, string | string[]> = {};
  for (const key in headers) {
    const value = headers[key];
    if (value === undefined) continue;
    const name = key.includes('_') || key.toLowerCase() !== key ? headerKey(key) : key;
    if (HOP_BY_HOP.has(name) || name.startsWith('proxy-') || named?.has(name) === true) continue;
    if (key !== name && NEVER_NAMEABLE.has(name)) continue;
    if (chunked && name === 'content-length') continue;
    out[key] = value;
  }
  return out;
}

/**
 * The headers of an upstream response as the client may see them: no
 * hop-by-hop header, nothing its Connection names except Content-Length,
 * and no Content-Length beside a Transfer-Encoding (Node frames the
 * response to the client itself). Pure: returns a new object.
 */
export function responseHeadersForClient(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  return responseHeadersOnePass(headers);
}

/** The same as responseHeadersForClient, the long way (stripHopByHop on a copy): kept as the reference the one-pass version is tested against. */
export function responseHeadersForClientByCopy(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const chunked = headers['transfer-encoding'] !== undefined;
  const copy: Record<string, string | string[] | undefined> = { ...headers };
  stripHopByHop(copy);
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(copy)) {
    if (value === undefined) continue;
    if (chunked && key === 'content-length') continue;
    out[key] = value;
  }
  return out;
}

/** Removes every incoming copy of an identity header (ours as configured, ALWAYS_STRIPPED, the prefixes); built once per listener. */
export type IdentityStripper = (headers: Record<string, string | string[] | undefined>) => void;

export function identityStripper(config: HttpModeConfig): IdentityStripper {
  const stripped = identityHeaderTest(config);
  return (headers) => {
    for (const key of Object.keys(headers)) if (stripped(headerKey(key))) delete headers[key];
  };
}

/** Where the upstream request's framing comes from: what the client's parser read, never a header we pass on. */
export interface UpstreamFraming {
  readonly contentLength: string | undefined;
  /** An upgrade never gets TE: trailers. */
  readonly upgrade: boolean;
}

/**
 * The upstream request's headers in one pass over the client's raw header
 * list (node:http's and node:http2's rawHeaders), as a flat [name, value, …]
 * list for undici: pseudo-headers, hop-by-hop headers, whatever Connection
 * names (but framing and Host), '_' spellings of framing and Host, every
 * incoming identity header (`strip`), Content-Length and Expect are left
 * out; then ours (`identity`, built once per connection), TE: trailers when
 * the client's TE listed it, our Content-Length, and on HTTP/2 Host from
 * :authority. Same rules as stripHopByHop + identityStripper, without
 * building objects.
 */
export function upstreamHeaderList(raw: readonly string[], isStripped: (name: string) => boolean, identity: ReadonlyArray<readonly [string, string]>, framing: UpstreamFraming): string[] {
  let named: Set<string> | undefined;
  let teTrailers = false;
  let authority: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name === 'connection') {
      for (const token of connectionTokens(raw[i + 1])) if (!NEVER_NAMEABLE.has(token)) (named ??= new Set()).add(token);
    } else if (name === 'te') {
      if (connectionTokens(raw[i + 1]).some((t) => t === 'trailers' || t.startsWith('trailers;'))) teTrailers = true;
    } else if (name === ':authority') authority = raw[i + 1];
  }
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const rawName = raw[i] as string;
    if (rawName.charCodeAt(0) === 58 /* ':' pseudo-header */) continue;
    const lower = rawName.toLowerCase();
    const name = lower.includes('_') ? lower.replaceAll('_', '-') : lower;
    if (HOP_BY_HOP.has(name) || name.startsWith('proxy-') || named?.has(name) === true) continue;
    if (name === 'content-length' || name === 'expect' || (name === 'host' && authority !== undefined)) continue;
    if (lower !== name && NEVER_NAMEABLE.has(name)) continue;
    if (isStripped(name)) continue;
    out.push(lower, raw[i + 1] as string);
  }
  for (const [name, value] of identity) out.push(name, value);
  if (teTrailers && !framing.upgrade) out.push('te', 'trailers');
  if (framing.contentLength !== undefined) out.push('content-length', framing.contentLength);
  if (authority !== undefined) out.push('host', authority);
  return out;
}

/** Whether a folded header name (lowercase, '_' as '-') is an identity header of ours or of any proxy: built once per listener. */
export function identityHeaderTest(config: HttpModeConfig): (name: string) => boolean {
  const strip = new Set<string>(ALWAYS_STRIPPED.map(headerKey));
  strip.add(headerKey(config.identityHeader));
  strip.add(headerKey(config.statusHeader));
  if (config.tlsaHeader) strip.add(headerKey(config.tlsaHeader));
  return (name) => strip.has(name) || ALWAYS_STRIPPED_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/** The identity headers we set (lowercase names, header-safe values): the same for every request of a connection. */
export function identityHeaderValues(identity: ForwardedIdentity, config: HttpModeConfig): ReadonlyArray<readonly [string, string]> {
  const out: Array<readonly [string, string]> = [];
  const set = (name: string, value: string): void => {
    out.push([name.toLowerCase(), headerSafe(value)]);
  };
  set('x-forwarded-for', identity.clientAddress);
  set('x-forwarded-proto', 'https');
  if (identity.name !== undefined) set(config.identityHeader, identity.name);
  set(config.statusHeader, identity.status);
  if (identity.name === undefined) return out;
  if (config.forwardClientCert && identity.certificateDer) set('client-cert', `:${identity.certificateDer.toString('base64')}:`);
  if (config.forwardXfcc && identity.certificateSha256Hex) {
    set('x-forwarded-client-cert', `Hash=${identity.certificateSha256Hex};Subject=${quoted(identity.certificateSubject ?? '')};DNS=${identity.name}`);
  }
  if (config.tlsaHeader && identity.tlsa) set(config.tlsaHeader, identity.tlsa.join(' '));
  return out;
}

/**
 * Strip hop-by-hop headers and every incoming identity header, then set
 * ours. Framing (Content-Length, Transfer-Encoding) is the forwarder's
 * business and left as Node parsed it. (The forwarder uses the two parts,
 * identityStripper and identityHeaderValues, built once per listener and
 * per connection.)
 */
export function rewriteIdentityHeaders(headers: IncomingHttpHeaders, identity: ForwardedIdentity, config: HttpModeConfig): { readonly teTrailers: boolean } {
  const transferEncoding = headers['transfer-encoding'];
  const hop = stripHopByHop(headers);
  if (transferEncoding !== undefined) headers['transfer-encoding'] = transferEncoding;
  identityStripper(config)(headers);
  for (const [name, value] of identityHeaderValues(identity, config)) headers[name] = value;
  return hop;
}
