/**
 * Identity headers for HTTP backends (../shared/notes/forwarding-identity.md):
 * every incoming copy of any identity header is stripped, then ours are set.
 * Pure: operates on Node's lowercased IncomingHttpHeaders object.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { HttpModeConfig } from '../config/types.js';

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
] as const;

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

/** Header names compared as CGI/WSGI stacks do: case-insensitive, '_' the same as '-'. */
function normalizedName(name: string): string {
  return name.toLowerCase().replaceAll('_', '-');
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) that must not reach the upstream as the client sent them. */
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate'];

/**
 * Remove `Connection` and every header it names (a client could name our
 * identity header there, so that a proxy behind us deletes it), and the
 * other hop-by-hop headers. `Upgrade` survives for WebSocket handshakes,
 * `close` and `keep-alive` so that the client's connection lives as it asked.
 */
function stripHopByHop(headers: IncomingHttpHeaders): void {
  const connection = headers.connection;
  const named = (Array.isArray(connection) ? connection.join(',') : (connection ?? ''))
    .split(',')
    .map((t) => normalizedName(t.trim()))
    .filter((t) => t.length > 0);
  const upgrading = named.includes('upgrade') && headers.upgrade !== undefined;
  const drop = new Set([...named.filter((t) => t !== 'upgrade' && t !== 'close' && t !== 'keep-alive'), ...HOP_BY_HOP, 'connection']);
  for (const key of Object.keys(headers)) if (drop.has(normalizedName(key))) delete headers[key];
  // What Connection may still say: upgrade (WebSocket), close or keep-alive. http-proxy copies it to
  // the response: without close Node would keep a connection the client wants closed, and without
  // keep-alive an HTTP/1.0 client (ab, old devices) would get 'Connection: close' after every request.
  if (upgrading) headers.connection = 'upgrade';
  else if (named.includes('close')) headers.connection = 'close';
  else if (named.includes('keep-alive')) headers.connection = 'keep-alive';
}

export function rewriteIdentityHeaders(headers: IncomingHttpHeaders, identity: ForwardedIdentity, config: HttpModeConfig): void {
  stripHopByHop(headers);
  const strip = new Set<string>(ALWAYS_STRIPPED.map(normalizedName));
  strip.add(normalizedName(config.identityHeader));
  strip.add(normalizedName(config.statusHeader));
  if (config.tlsaHeader) strip.add(normalizedName(config.tlsaHeader));
  for (const key of Object.keys(headers)) {
    if (strip.has(normalizedName(key))) delete headers[key];
  }
  const set = (name: string, value: string): void => {
    headers[name.toLowerCase()] = headerSafe(value);
  };
  set('x-forwarded-for', identity.clientAddress);
  set('x-forwarded-proto', 'https');
  if (identity.name !== undefined) set(config.identityHeader, identity.name);
  set(config.statusHeader, identity.status);
  if (identity.name === undefined) return;
  if (config.forwardClientCert && identity.certificateDer) set('client-cert', `:${identity.certificateDer.toString('base64')}:`);
  if (config.forwardXfcc && identity.certificateSha256Hex) {
    set(
      'x-forwarded-client-cert',
      `Hash=${identity.certificateSha256Hex};Subject=${quoted(identity.certificateSubject ?? '')};DNS=${identity.name}`,
    );
  }
  if (config.tlsaHeader && identity.tlsa) set(config.tlsaHeader, identity.tlsa.join(' '));
}
