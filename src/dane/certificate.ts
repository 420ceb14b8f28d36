/**
 * The parts of an X.509 certificate that DANE matching needs, parsed once.
 * Signatures and issuer checks use node:crypto (OpenSSL). Framing, the SPKI,
 * the extension list and SAN dNSNames are read by bounded DER walks (a fixed
 * number of TLV headers: MAX_CERTIFICATE_BYTES, MAX_EXTENSIONS,
 * MAX_SAN_ENTRIES), which is all the hot path needs; names, dates and the
 * CA constraints are read by @peculiar/x509, each field on its own and only
 * when asked, from its own bytes. Extensions we do not use are never
 * decoded, so a malformed one (certificatePolicies, authorityInfoAccess...)
 * cannot make a certificate undescribable (issue 10, findings 2 and 3).
 * Only CertificateParseError ever leaves this module.
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

/**
 * Largest certificate we look at, checked before any parse: far above real
 * client certificates (a few KB; post-quantum SLH-DSA-signed ones near
 * 50 KB), well below a DoS. Every walk below is bounded by it.
 */
export const MAX_CERTIFICATE_BYTES = 64 * 1024;

/**
 * Most subjectAltName entries (of any type) a certificate may have: a DANE
 * client certificate has a handful; more is refused, not truncated (a
 * truncated list could hide an ambiguity). Bounds the per-handshake work
 * an unauthenticated client can ask for (issue 10, finding 3).
 */
export const MAX_SAN_ENTRIES = 100;

/** Most extensions a certificate may have (real ones: about 10). */
export const MAX_EXTENSIONS = 64;

/**
 * Most attributes (AttributeTypeAndValue) the issuer or the subject Name may
 * have (real ones: under 15). Rendering or parsing a Name costs time in
 * proportion to them (the fuzzer found ~0.25 ms each in @peculiar/x509 and
 * pkijs: 340 ms for 1,300), so a Name over the limit is refused before any
 * of that.
 */
export const MAX_NAME_ATTRIBUTES = 32;

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

/** Where the TBSCertificate fields we use are, found by a bounded walk (a fixed number of TLV headers). */
interface TbsLayout {
  /** issuer and subject Name TLVs, from tag to end. */
  readonly issuer: { readonly start: number; readonly end: number };
  readonly subject: { readonly start: number; readonly end: number };
  /** SubjectPublicKeyInfo TLV, from its tag to its end. */
  readonly spki: { readonly start: number; readonly end: number };
  /** Content of the [3] extensions field's SEQUENCE OF Extension; undefined when absent. */
  readonly extensions: { readonly start: number; readonly end: number } | undefined;
}

function tbsLayout(der: Buffer): TbsLayout {
  const cert = readTlv(der, 0);
  const tbs = readTlv(der, cert.start);
  if (tbs.tag !== 0x30) throw new CertificateParseError('tbsCertificate is not a SEQUENCE');
  let pos = tbs.start;
  const first = readTlv(der, pos);
  // Optional [0] EXPLICIT version.
  if (first.tag === 0xa0) pos = first.end;
  // serialNumber, signature, issuer, validity, subject
  const fields: Array<{ start: number; end: number }> = [];
  for (let i = 0; i < 5; i++) {
    const end = readTlv(der, pos).end;
    fields.push({ start: pos, end });
    pos = end;
  }
  const [, , issuer, , subject] = fields as [unknown, unknown, { start: number; end: number }, unknown, { start: number; end: number }];
  const spki = readTlv(der, pos);
  if (spki.tag !== 0x30) throw new CertificateParseError('subjectPublicKeyInfo is not a SEQUENCE');
  const spkiRange = { start: pos, end: spki.end };
  pos = spki.end;
  let extensions: TbsLayout['extensions'];
  // Optional [1] issuerUniqueID, [2] subjectUniqueID (IMPLICIT BIT STRING), [3] EXPLICIT extensions, in that order.
  let lastTag = 0;
  while (pos < tbs.end) {
    const field = readTlv(der, pos);
    const order = field.tag === 0x81 || field.tag === 0xa1 ? 1 : field.tag === 0x82 || field.tag === 0xa2 ? 2 : field.tag === 0xa3 ? 3 : 0;
    if (order === 0 || order <= lastTag) throw new CertificateParseError(`unexpected field (tag 0x${field.tag.toString(16)}) after subjectPublicKeyInfo`);
    lastTag = order;
    if (order === 3) {
      const list = readTlv(der, field.start);
      if (list.tag !== 0x30 || list.end !== field.end) throw new CertificateParseError('extensions is not one SEQUENCE');
      extensions = { start: list.start, end: list.end };
    }
    pos = field.end;
  }
  if (pos !== tbs.end) throw new CertificateParseError('tbsCertificate overruns its length');
  return { issuer, subject, spki: spkiRange, extensions };
}

/** Check that a Name (SEQUENCE OF RelativeDistinguishedName, each a SET OF AttributeTypeAndValue) has at most MAX_NAME_ATTRIBUTES attributes, walking at most 2 x MAX_NAME_ATTRIBUTES + 2 TLV headers. */
function checkNameSize(der: Buffer, range: { readonly start: number; readonly end: number }, label: string): void {
  const name = readTlv(der, range.start);
  if (name.tag !== 0x30) throw new CertificateParseError(`${label} is not a SEQUENCE`);
  let attributes = 0;
  let rdns = 0;
  for (let pos = name.start; pos < name.end;) {
    const rdn = readTlv(der, pos);
    if (rdn.tag !== 0x31) throw new CertificateParseError(`${label}: a relative distinguished name is not a SET`);
    if (++rdns > MAX_NAME_ATTRIBUTES) throw new CertificateParseError(`${label} has more than ${MAX_NAME_ATTRIBUTES} attributes (the limit)`);
    for (let inner = rdn.start; inner < rdn.end;) {
      if (++attributes > MAX_NAME_ATTRIBUTES) throw new CertificateParseError(`${label} has more than ${MAX_NAME_ATTRIBUTES} attributes (the limit)`);
      inner = readTlv(der, inner).end;
    }
    pos = rdn.end;
  }
}

/** The exact SubjectPublicKeyInfo bytes (RFC 5280 TBSCertificate field 7), without re-encoding. */
export function extractSpki(der: Buffer): Buffer {
  const { spki } = tbsLayout(der);
  return der.subarray(spki.start, spki.end);
}

/** One extension as it is in the DER: its OID content bytes, criticality, extnValue content, and the whole TLV. */
interface RawExtension {
  readonly oid: Buffer;
  readonly critical: boolean;
  readonly value: Buffer;
  readonly raw: Buffer;
}

/** OID content bytes of the extensions we read. */
const OID_SUBJECT_ALT_NAME = Buffer.from([0x55, 0x1d, 0x11]);
const OID_BASIC_CONSTRAINTS = Buffer.from([0x55, 0x1d, 0x13]);
const OID_KEY_USAGE = Buffer.from([0x55, 0x1d, 0x0f]);

/** Every extension's framing (values are not parsed), at most MAX_EXTENSIONS of them. */
function rawExtensions(der: Buffer, layout: TbsLayout): RawExtension[] {
  const out: RawExtension[] = [];
  if (layout.extensions === undefined) return out;
  let pos = layout.extensions.start;
  while (pos < layout.extensions.end) {
    if (out.length === MAX_EXTENSIONS) throw new CertificateParseError(`more than ${MAX_EXTENSIONS} extensions (the limit)`);
    const ext = readTlv(der, pos);
    if (ext.tag !== 0x30 || ext.end > layout.extensions.end) throw new CertificateParseError(`extension ${out.length + 1} is not a SEQUENCE`);
    const oid = readTlv(der, ext.start);
    if (oid.tag !== 0x06) throw new CertificateParseError(`extension ${out.length + 1} has no OBJECT IDENTIFIER`);
    let next = readTlv(der, oid.end);
    let critical = false;
    if (next.tag === 0x01) {
      critical = next.end - next.start === 1 && der[next.start] !== 0;
      next = readTlv(der, next.end);
    }
    if (next.tag !== 0x04 || next.end !== ext.end) throw new CertificateParseError(`extension ${out.length + 1} has no OCTET STRING value`);
    out.push({ oid: der.subarray(oid.start, oid.end), critical, value: der.subarray(next.start, next.end), raw: der.subarray(pos, ext.end) });
    pos = ext.end;
  }
  return out;
}

/** The one extension with this OID; a repeated one is refused (RFC 5280 4.2: at most one instance). */
function findExtension(extensions: readonly RawExtension[], oid: Buffer, label: string): RawExtension | undefined {
  const found = extensions.filter((e) => e.oid.equals(oid));
  if (found.length > 1) throw new CertificateParseError(`${found.length} ${label} extensions (at most one is allowed)`);
  return found[0];
}

/** ASCII-only lowercase: a byte outside A-Z is kept as it is (canonicalisation refuses non-LDH names later). */
function asciiLower(bytes: Buffer): string {
  return bytes.toString('latin1').replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/**
 * SAN dNSName entries of a subjectAltName extnValue, ASCII-lowercased, in
 * order. A bounded DER walk (at most MAX_SAN_ENTRIES + 1 TLV headers):
 * nothing is decoded but the dNSName bytes themselves.
 */
function dnsNamesFromSanValue(value: Buffer): string[] {
  const names = readTlv(value, 0);
  if (names.tag !== 0x30 || names.end !== value.length) throw new CertificateParseError('subjectAltName is not one SEQUENCE');
  // Framing and count first (TLV headers only), so that a refusal decodes nothing.
  const dnsRanges: Array<{ start: number; end: number }> = [];
  let count = 0;
  for (let pos = names.start; pos < names.end;) {
    if (++count > MAX_SAN_ENTRIES) throw new CertificateParseError(`subjectAltName has more than ${MAX_SAN_ENTRIES} entries (the limit)`);
    const entry = readTlv(value, pos);
    if ((entry.tag & 0xc0) !== 0x80) throw new CertificateParseError(`subjectAltName entry ${count} is not a GeneralName`);
    // dNSName is [2] IMPLICIT IA5String.
    if (entry.tag === 0x82) dnsRanges.push({ start: entry.start, end: entry.end });
    pos = entry.end;
  }
  return dnsRanges.map((r) => asciiLower(value.subarray(r.start, r.end)));
}

/**
 * SAN dNSNames of a DER certificate by a bounded walk, without any ASN.1
 * library: what the proxy's hot path reads from a client certificate.
 * Throws CertificateParseError for bad framing, a repeated SAN extension or
 * more than MAX_SAN_ENTRIES entries.
 */
export function dnsNamesFromCertificateDer(der: Buffer): string[] {
  const san = findExtension(rawExtensions(der, tbsLayout(der)), OID_SUBJECT_ALT_NAME, 'subjectAltName');
  return san ? dnsNamesFromSanValue(san.value) : [];
}

type Memo<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: CertificateParseError };

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A parsed certificate: framing, SPKI and SAN names are read at once by
 * bounded walks; every other field (subject, issuer, dates, CA
 * constraints), OpenSSL's object and the digest on first use, each on its
 * own, so a field that cannot be read never hides the others. A field that
 * cannot be read throws CertificateParseError naming it, every time it is
 * asked for; nothing else ever leaves this class. Extensions we do not use
 * (certificatePolicies, authorityInfoAccess, ...) are never parsed.
 */
class LazyCertificate implements ParsedCertificate {
  private readonly memo = new Map<string, Memo<unknown>>();
  private nodeCertificate: NodeX509Certificate | undefined;
  private sha256: string | undefined;
  private readonly extensions: readonly RawExtension[];

  /** `der` is this certificate's own copy, already framed by frame(); `dnsNames` were read from it there. */
  constructor(
    readonly der: Buffer,
    readonly spki: Buffer,
    private readonly layout: TbsLayout,
    readonly dnsNames: readonly string[],
    node: NodeX509Certificate | undefined,
  ) {
    this.nodeCertificate = node;
    // Walked once already by frame(): this cannot throw.
    this.extensions = rawExtensions(der, layout);
  }

  get node(): NodeX509Certificate {
    try {
      this.nodeCertificate ??= new NodeX509Certificate(this.der);
    } catch (err) {
      throw new CertificateParseError(`not a DER X.509 certificate: ${errorMessage(err)}`);
    }
    return this.nodeCertificate;
  }

  get sha256Hex(): string {
    this.sha256 ??= createHash('sha256').update(this.der).digest('hex');
    return this.sha256;
  }

  /** Read one field once; a failure is kept and thrown again as CertificateParseError naming the field. */
  private field<T>(name: string, read: () => T): T {
    let memo = this.memo.get(name) as Memo<T> | undefined;
    if (memo === undefined) {
      try {
        memo = { ok: true, value: read() };
      } catch (err) {
        memo = { ok: false, error: err instanceof CertificateParseError ? err : new CertificateParseError(`cannot read the ${name}: ${errorMessage(err)}`) };
      }
      this.memo.set(name, memo);
    }
    if (!memo.ok) throw memo.error;
    return memo.value;
  }

  /** @peculiar/x509's view (the certificate's ASN.1 structure; extension values stay undecoded bytes). */
  private peculiar(): x509.X509Certificate {
    return this.field('certificate structure', () => {
      try {
        return new x509.X509Certificate(this.der);
      } catch (err) {
        throw new CertificateParseError(`not a DER X.509 certificate: ${errorMessage(err)}`);
      }
    });
  }

  private basicConstraints(): { ca: boolean; pathLength: number | undefined } {
    return this.field('basicConstraints extension', () => {
      const raw = findExtension(this.extensions, OID_BASIC_CONSTRAINTS, 'basicConstraints');
      if (raw === undefined) return { ca: false, pathLength: undefined };
      const ext = new x509.BasicConstraintsExtension(raw.raw);
      return { ca: ext.ca, pathLength: ext.ca ? ext.pathLength : undefined };
    });
  }

  /** An RFC 4514 rendering of a Name, by @peculiar/x509 from that Name's bytes alone (as X509Certificate.subject renders it). */
  private name(which: 'subject' | 'issuer'): string {
    return this.field(which, () => {
      const range = this.layout[which];
      return new x509.Name(this.der.subarray(range.start, range.end)).toString();
    });
  }

  get subject(): string {
    return this.name('subject');
  }
  get issuer(): string {
    return this.name('issuer');
  }
  get notBefore(): Date {
    return this.field('notBefore', () => this.peculiar().notBefore);
  }
  get notAfter(): Date {
    return this.field('notAfter', () => this.peculiar().notAfter);
  }
  get isCA(): boolean {
    return this.basicConstraints().ca;
  }
  get pathLength(): number | undefined {
    return this.basicConstraints().pathLength;
  }
  get keyCertSign(): boolean | undefined {
    return this.field('keyUsage extension', () => {
      const raw = findExtension(this.extensions, OID_KEY_USAGE, 'keyUsage');
      return raw === undefined ? undefined : (new x509.KeyUsagesExtension(raw.raw).usages & x509.KeyUsageFlags.keyCertSign) !== 0;
    });
  }
}

/** A certificate OpenSSL has already parsed in a TLS handshake, as node:tls shows it (getPeerCertificate()). */
export interface TlsPeerCertificate {
  readonly raw: Buffer;
  /** OpenSSL's SAN rendering: not used (SAN names come from a bounded DER walk); accepted so a PeerCertificate can be passed as it is. */
  readonly subjectaltname?: string | undefined;
}

/**
 * Size, framing (one SEQUENCE, no trailing bytes), the TBSCertificate
 * layout and the SAN dNSNames, all read in place; the bytes are copied only
 * once they passed (a refusal allocates nothing). Only
 * CertificateParseError leaves.
 */
function frame(input: Uint8Array): { der: Buffer; layout: TbsLayout; dnsNames: string[] } {
  if (input.length > MAX_CERTIFICATE_BYTES) {
    throw new CertificateParseError(`certificate is ${input.length} bytes; the limit is ${MAX_CERTIFICATE_BYTES}`);
  }
  const view = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  let layout: TbsLayout;
  try {
    const outer = readTlv(view, 0);
    if (outer.tag !== 0x30) throw new CertificateParseError('does not start with a SEQUENCE');
    if (outer.end !== view.length) throw new CertificateParseError(`${view.length - outer.end} trailing bytes after the certificate`);
    layout = tbsLayout(view);
  } catch (err) {
    throw new CertificateParseError(`not a DER X.509 certificate: ${errorMessage(err)}`);
  }
  try {
    checkNameSize(view, layout.issuer, 'issuer');
    checkNameSize(view, layout.subject, 'subject');
  } catch (err) {
    throw err instanceof CertificateParseError ? err : new CertificateParseError(`not a DER X.509 certificate: ${errorMessage(err)}`);
  }
  let dnsNames: string[];
  try {
    const san = findExtension(rawExtensions(view, layout), OID_SUBJECT_ALT_NAME, 'subjectAltName');
    dnsNames = san ? dnsNamesFromSanValue(san.value) : [];
  } catch (err) {
    throw err instanceof CertificateParseError ? err : new CertificateParseError(`not a DER X.509 certificate: ${errorMessage(err)}`);
  }
  return { der: Buffer.from(view), layout, dnsNames };
}

function build(framed: { der: Buffer; layout: TbsLayout; dnsNames: string[] }, node: NodeX509Certificate | undefined): LazyCertificate {
  const { der, layout, dnsNames } = framed;
  return new LazyCertificate(der, der.subarray(layout.spki.start, layout.spki.end), layout, dnsNames, node);
}

/**
 * Parse a DER certificate: size, framing (no trailing bytes), SPKI, SAN
 * names and OpenSSL's parse are checked now. With `lazy`, the rest (names,
 * dates, constraints) is parsed on first use, and a failure then throws
 * CertificateParseError from the property; the proxy's hot path (DANE-EE)
 * never needs it. Without, everything is parsed and checked at once.
 * The entry point for certificates from hostile bytes (fuzzed): it throws
 * CertificateParseError and nothing else, and so do the properties.
 */
export function parseCertificateDer(input: Uint8Array, options: { lazy?: boolean } = {}): ParsedCertificate {
  const framed = frame(input);
  let node: NodeX509Certificate;
  try {
    node = new NodeX509Certificate(framed.der);
  } catch (err) {
    throw new CertificateParseError(`not a DER X.509 certificate: ${errorMessage(err)}`);
  }
  const cert = build(framed, node);
  if (!options.lazy) {
    for (const read of [() => cert.subject, () => cert.issuer, () => cert.notBefore, () => cert.notAfter, () => cert.isCA, () => cert.keyCertSign]) read();
  }
  return cert;
}

/**
 * A client certificate from the TLS handshake, for the proxy's hot path,
 * before any allowlist check: OpenSSL parsed it already, so only the size
 * (MAX_CERTIFICATE_BYTES), framing, SPKI and SAN dNSNames (at most
 * MAX_SAN_ENTRIES entries) are read now, by bounded walks with no ASN.1
 * library: a few microseconds whatever the client sent. Everything else
 * (OpenSSL's object, subject, dates, the digest) on first use.
 */
export function parseTlsPeerCertificate(peer: TlsPeerCertificate): ParsedCertificate {
  return build(frame(peer.raw), undefined);
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
      throw new CertificateParseError(`${source}: PEM block ${index} is '${label}', expected 'CERTIFICATE'${label.includes('PRIVATE KEY') ? ' (is this the key file?)' : ''}`);
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
