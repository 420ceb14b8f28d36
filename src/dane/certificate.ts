/**
 * The parts of an X.509 certificate that DANE matching needs, parsed once.
 * Signatures and issuer checks use node:crypto (OpenSSL); extensions and
 * dates use @peculiar/x509.
 */
import { X509Certificate as NodeX509Certificate, createHash } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

export interface ParsedCertificate {
  readonly der: Buffer;
  /** The certificate's SubjectPublicKeyInfo, exactly the bytes it carries. */
  readonly spki: Buffer;
  readonly node: NodeX509Certificate;
  readonly subject: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SAN dNSName entries, lowercased, in certificate order. */
  readonly dnsNames: readonly string[];
  /** basicConstraints cA. */
  readonly isCA: boolean;
  /** basicConstraints pathLenConstraint, when present. */
  readonly pathLength: number | undefined;
  /** keyUsage keyCertSign; undefined when the certificate has no keyUsage extension. */
  readonly keyCertSign: boolean | undefined;
  /** SHA-256 of the DER, lowercase hex. */
  readonly sha256Hex: string;
}

export class CertificateParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateParseError';
  }
}

/** Largest certificate we parse: far above real ones, well below a DoS. */
export const MAX_CERTIFICATE_BYTES = 64 * 1024;

/**
 * Read one DER TLV header at `offset`; return where its content starts and ends.
 * Only definite lengths (DER). Throws on anything out of bounds.
 */
function readTlv(buf: Buffer, offset: number): { tag: number; start: number; end: number } {
  if (offset + 2 > buf.length) throw new CertificateParseError('truncated DER');
  const tag = buf[offset] as number;
  let length = buf[offset + 1] as number;
  let start = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3 || start + count > buf.length) throw new CertificateParseError('bad DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (buf[start + i] as number);
    start += count;
  }
  const end = start + length;
  if (end > buf.length) throw new CertificateParseError('truncated DER');
  return { tag, start, end };
}

/** The exact SubjectPublicKeyInfo bytes (RFC 5280 TBSCertificate field 7), without re-encoding. */
export function extractSpki(der: Buffer): Buffer {
  const cert = readTlv(der, 0);
  const tbs = readTlv(der, cert.start);
  let pos = tbs.start;
  const first = readTlv(der, pos);
  // Optional [0] EXPLICIT version.
  if (first.tag === 0xa0) pos = first.end;
  // serialNumber, signature, issuer, validity, subject
  for (let i = 0; i < 5; i++) pos = readTlv(der, pos).end;
  const spki = readTlv(der, pos);
  if (spki.tag !== 0x30) throw new CertificateParseError('subjectPublicKeyInfo is not a SEQUENCE');
  return der.subarray(pos, spki.end);
}

/** What @peculiar/x509 gives us: everything but the SPKI, DER, digest and SAN names. */
type CertificateDetails = Pick<ParsedCertificate, 'subject' | 'issuer' | 'notBefore' | 'notAfter' | 'isCA' | 'pathLength' | 'keyCertSign'> & {
  readonly dnsNames: readonly string[];
};

function parseDetails(der: Buffer): CertificateDetails {
  let peculiar: x509.X509Certificate;
  try {
    peculiar = new x509.X509Certificate(der);
  } catch (err) {
    throw new CertificateParseError(`not a DER X.509 certificate: ${(err as Error).message}`);
  }
  const san = peculiar.getExtension(x509.SubjectAlternativeNameExtension);
  const basic = peculiar.getExtension(x509.BasicConstraintsExtension);
  const keyUsage = peculiar.getExtension(x509.KeyUsagesExtension);
  return {
    subject: peculiar.subject,
    issuer: peculiar.issuer,
    notBefore: peculiar.notBefore,
    notAfter: peculiar.notAfter,
    dnsNames: san ? san.names.items.filter((n) => n.type === 'dns').map((n) => n.value.toLowerCase()) : [],
    isCA: basic?.ca ?? false,
    pathLength: basic?.ca ? basic.pathLength : undefined,
    keyCertSign: keyUsage ? (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) !== 0 : undefined,
  };
}

/**
 * SAN dNSNames from OpenSSL's rendering ("DNS:a, DNS:b, IP Address:…"), or
 * undefined when a value is quoted (it held a comma, quote or control
 * character) and only a real ASN.1 parse can be trusted.
 */
function dnsNamesFromOpenSsl(san: string | undefined): string[] | undefined {
  if (san === undefined) return [];
  if (san.includes('"')) return undefined;
  return san
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase());
}

/**
 * A parsed certificate whose @peculiar/x509 details, OpenSSL object and
 * digest are made on first use (they cost most of the parse).
 */
class LazyCertificate implements ParsedCertificate {
  private details: CertificateDetails | undefined;
  private nodeCertificate: NodeX509Certificate | undefined;
  private sha256: string | undefined;
  readonly dnsNames: readonly string[];

  constructor(
    readonly der: Buffer,
    readonly spki: Buffer,
    node: NodeX509Certificate | undefined,
    subjectAltName: string | undefined,
  ) {
    this.nodeCertificate = node;
    this.dnsNames = dnsNamesFromOpenSsl(subjectAltName) ?? this.get().dnsNames;
  }

  get node(): NodeX509Certificate {
    try {
      this.nodeCertificate ??= new NodeX509Certificate(this.der);
    } catch (err) {
      throw new CertificateParseError(`not a DER X.509 certificate: ${(err as Error).message}`);
    }
    return this.nodeCertificate;
  }

  get sha256Hex(): string {
    this.sha256 ??= createHash('sha256').update(this.der).digest('hex');
    return this.sha256;
  }

  /** Throws CertificateParseError when @peculiar/x509 cannot read what OpenSSL could. */
  private get(): CertificateDetails {
    this.details ??= parseDetails(this.der);
    return this.details;
  }

  get subject(): string {
    return this.get().subject;
  }
  get issuer(): string {
    return this.get().issuer;
  }
  get notBefore(): Date {
    return this.get().notBefore;
  }
  get notAfter(): Date {
    return this.get().notAfter;
  }
  get isCA(): boolean {
    return this.get().isCA;
  }
  get pathLength(): number | undefined {
    return this.get().pathLength;
  }
  get keyCertSign(): boolean | undefined {
    return this.get().keyCertSign;
  }
}

/** A certificate OpenSSL has already parsed in a TLS handshake, as node:tls shows it (getPeerCertificate()). */
export interface TlsPeerCertificate {
  readonly raw: Buffer;
  /** OpenSSL's SAN rendering; absent when the certificate has none. */
  readonly subjectaltname?: string | undefined;
}

/**
 * Parse a DER certificate: size, framing (no trailing bytes), SPKI and
 * OpenSSL's parse are checked now. With `lazy`, the rest (names, dates,
 * constraints) is parsed on first use, and a failure then throws
 * CertificateParseError from the property; the proxy's hot path (DANE-EE)
 * never needs it. Without, everything is parsed and checked at once.
 */
export function parseCertificateDer(input: Uint8Array, options: { lazy?: boolean } = {}): ParsedCertificate {
  if (input.length > MAX_CERTIFICATE_BYTES) {
    throw new CertificateParseError(`certificate is ${input.length} bytes; the limit is ${MAX_CERTIFICATE_BYTES}`);
  }
  const der = Buffer.from(input);
  let node: NodeX509Certificate;
  let spki: Buffer;
  try {
    const outer = readTlv(der, 0);
    if (outer.tag !== 0x30) throw new CertificateParseError('does not start with a SEQUENCE');
    if (outer.end !== der.length) {
      throw new CertificateParseError(`${der.length - outer.end} trailing bytes after the certificate`);
    }
    spki = Buffer.from(extractSpki(der));
    node = new NodeX509Certificate(der);
  } catch (err) {
    throw new CertificateParseError(`not a DER X.509 certificate: ${(err as Error).message}`);
  }
  const cert = new LazyCertificate(der, spki, node, node.subjectAltName);
  if (!options.lazy) void cert.subject;
  return cert;
}

/**
 * A client certificate from the TLS handshake, for the proxy's hot path:
 * OpenSSL parsed it already, so only the framing and SPKI are read now; SAN
 * names come from OpenSSL's rendering, and everything else (OpenSSL's
 * object, @peculiar/x509 details, the digest) on first use.
 */
export function parseTlsPeerCertificate(peer: TlsPeerCertificate): ParsedCertificate {
  if (peer.raw.length > MAX_CERTIFICATE_BYTES) {
    throw new CertificateParseError(`certificate is ${peer.raw.length} bytes; the limit is ${MAX_CERTIFICATE_BYTES}`);
  }
  let spki: Buffer;
  try {
    const outer = readTlv(peer.raw, 0);
    if (outer.tag !== 0x30 || outer.end !== peer.raw.length) throw new CertificateParseError('not one DER SEQUENCE');
    spki = Buffer.from(extractSpki(peer.raw));
  } catch (err) {
    throw new CertificateParseError(`not a DER X.509 certificate: ${(err as Error).message}`);
  }
  return new LazyCertificate(Buffer.from(peer.raw), spki, undefined, peer.subjectaltname);
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** Every CERTIFICATE block of a PEM text, in order. Other block types are an error, so a key file passed by mistake is named. */
export function parseCertificatesPem(text: string, source = 'input'): ParsedCertificate[] {
  const certs: ParsedCertificate[] = [];
  let index = 0;
  for (const match of text.matchAll(PEM_BLOCK)) {
    index++;
    const label = match[1] as string;
    if (label !== 'CERTIFICATE') {
      throw new CertificateParseError(
        `${source}: PEM block ${index} is '${label}', expected 'CERTIFICATE'${label.includes('PRIVATE KEY') ? ' (is this the key file?)' : ''}`,
      );
    }
    const body = (match[2] as string).replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new CertificateParseError(`${source}: PEM block ${index} is not valid base64`);
    try {
      certs.push(parseCertificateDer(Buffer.from(body, 'base64')));
    } catch (err) {
      throw new CertificateParseError(`${source}: certificate ${index}: ${(err as Error).message}`);
    }
  }
  if (certs.length === 0) throw new CertificateParseError(`${source}: no PEM CERTIFICATE block found`);
  return certs;
}

/** Parse either PEM text or raw DER bytes. */
export function parseCertificates(data: Buffer, source = 'input'): ParsedCertificate[] {
  const text = data.toString('latin1');
  if (text.includes('-----BEGIN')) return parseCertificatesPem(text, source);
  try {
    return [parseCertificateDer(data)];
  } catch (err) {
    throw new CertificateParseError(`${source}: neither PEM nor DER: ${(err as Error).message}`);
  }
}

/**
 * Does `issuer`'s subject name equal `child`'s issuer name, and does its key
 * verify child's signature? CA constraints (basicConstraints, keyUsage) are
 * judged separately by the caller so that a refusal can say which failed.
 */
export function isIssuedBy(child: ParsedCertificate, issuer: ParsedCertificate): boolean {
  try {
    return child.issuer === issuer.subject && child.node.verify(issuer.node.publicKey);
  } catch {
    return false;
  }
}
