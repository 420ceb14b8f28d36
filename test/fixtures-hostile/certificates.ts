/**
 * Hostile client certificates for issue 10 (findings 2 and 3): properly
 * signed certificates that OpenSSL accepts in a handshake but whose
 * extensions are malformed or huge. The extension values are built here
 * byte by byte (a tiny DER writer) because no well-behaved library will
 * encode them; the certificate itself is signed by @peculiar/x509.
 * Used by unit tests, e2e tests and bench/hostile-certificate.ts; it only
 * depends on packages, so it runs against any checkout.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

// Node's webcrypto is the WebCrypto the library expects; the cast only bridges Node's and the DOM's type declarations.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const DAY_MS = 86_400_000;

/** One DER TLV with a definite length. */
export function der(tag: number, ...content: Uint8Array[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  let length: Buffer;
  if (n < 0x80) length = Buffer.from([n]);
  else if (n < 0x100) length = Buffer.from([0x81, n]);
  else if (n < 0x10000) length = Buffer.from([0x82, n >> 8, n & 0xff]);
  else length = Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, body]);
}

const SEQUENCE = 0x30;
const INTEGER = 0x02;

/** The extnValue of a subjectAltName made of dNSName entries with any bytes at all (quotes, commas, NULs). */
export function sanValue(dnsNames: readonly string[]): Buffer {
  return der(SEQUENCE, ...dnsNames.map((name) => der(0x82, Buffer.from(name, 'latin1'))));
}

/**
 * certificatePolicies / authorityInfoAccess whose inner SEQUENCE holds an
 * INTEGER where an OBJECT IDENTIFIER must be: OpenSSL does not read these
 * extensions to accept a certificate, @peculiar/x509 throws
 * AsnSchemaValidationError as soon as it builds its extension objects.
 */
export const MALFORMED_EXTENSION_VALUE = der(SEQUENCE, der(SEQUENCE, der(INTEGER, Buffer.from([1]))));
export const CERTIFICATE_POLICIES_OID = '2.5.29.32';
export const AUTHORITY_INFO_ACCESS_OID = '1.3.6.1.5.5.7.1.1';
export const SUBJECT_ALT_NAME_OID = '2.5.29.17';

export interface HostileCertificate {
  readonly certPem: string;
  /** PKCS#8 PEM of the private key. */
  readonly keyPem: string;
  readonly der: Buffer;
}

export interface HostileOptions {
  readonly commonName: string;
  /** Raw extensions: OID, critical, extnValue bytes (used verbatim). */
  readonly extensions: ReadonlyArray<{ oid: string; critical?: boolean; value: Uint8Array }>;
  /** Add a valid basicConstraints (cA false) first; default true. */
  readonly basicConstraints?: boolean;
}

function toPem(body: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(body instanceof ArrayBuffer ? new Uint8Array(body) : body)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** A self-signed ECDSA P-256 client certificate carrying exactly the given extensions (plus, unless told not to, basicConstraints cA=false). */
export async function createHostileCertificate(opts: HostileOptions): Promise<HostileCertificate> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `01${randomBytes(15).toString('hex')}`,
    subject: `CN=${opts.commonName}`,
    issuer: `CN=${opts.commonName}`,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + 365 * DAY_MS),
    signingAlgorithm: alg,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions: [
      ...(opts.basicConstraints === false ? [] : [new x509.BasicConstraintsExtension(false, undefined, true)]),
      ...opts.extensions.map((e) => new x509.Extension(e.oid, e.critical ?? false, e.value)),
    ],
  });
  const der = Buffer.from(cert.rawData);
  return { certPem: toPem(der, 'CERTIFICATE'), keyPem: toPem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'), der };
}

/** A DANE-EE-usable client certificate named `name` whose certificatePolicies (or AIA) extension is malformed. */
export function createMalformedExtensionCertificate(name: string, which: 'certificatePolicies' | 'authorityInfoAccess'): Promise<HostileCertificate> {
  return createHostileCertificate({
    commonName: name,
    extensions: [
      { oid: SUBJECT_ALT_NAME_OID, value: sanValue([name]) },
      { oid: which === 'certificatePolicies' ? CERTIFICATE_POLICIES_OID : AUTHORITY_INFO_ACCESS_OID, value: MALFORMED_EXTENSION_VALUE },
    ],
  });
}

/**
 * The audit's certificate: about 63 KB, 2,901 SAN dNSNames each holding a
 * quote and a comma (OpenSSL then quotes its rendering), optionally with
 * `extraName` (e.g. an allowlisted name) last.
 */
export function createManySanCertificate(count = 2901, extraName?: string): Promise<HostileCertificate> {
  const names = Array.from({ length: count }, (_, i) => `"${i},y.example.test`);
  if (extraName !== undefined) names.push(extraName);
  return createHostileCertificate({ commonName: 'many sans', extensions: [{ oid: SUBJECT_ALT_NAME_OID, value: sanValue(names) }] });
}

/** A certificate of about `bytes` bytes: one SAN dNSName and a large private extension. */
export function createOversizeCertificate(bytes: number, name: string): Promise<HostileCertificate> {
  return createHostileCertificate({
    commonName: name,
    extensions: [
      { oid: SUBJECT_ALT_NAME_OID, value: sanValue([name]) },
      // A private-use OID with an OCTET STRING of padding.
      { oid: '1.3.6.1.4.1.55555.1', value: der(0x04, Buffer.alloc(bytes, 0x41)) },
    ],
  });
}
