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

/** Header values must not carry control characters (a subject could, in theory). */
function headerSafe(value: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return value.replace(/[\x00-\x1f\x7f]/g, '?');
}

export function rewriteIdentityHeaders(headers: IncomingHttpHeaders, identity: ForwardedIdentity, config: HttpModeConfig): void {
  const strip = new Set<string>(ALWAYS_STRIPPED);
  strip.add(config.identityHeader.toLowerCase());
  strip.add(config.statusHeader.toLowerCase());
  if (config.tlsaHeader) strip.add(config.tlsaHeader.toLowerCase());
  for (const key of Object.keys(headers)) {
    if (strip.has(key.toLowerCase())) delete headers[key];
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
