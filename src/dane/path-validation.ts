/**
 * RFC 5280 certification path validation for DANE-TA, PKIX-TA and PKIX-EE
 * records, by pkijs's CertificateChainValidationEngine (path building,
 * signatures, validity dates, basicConstraints/keyUsage, certificate
 * policies, name constraints), with these additions:
 *
 * - signatures are checked by OpenSSL through node:crypto's asynchronous
 *   verify (libuv thread pool, off the event loop; Ed25519/Ed448 too, which
 *   pkijs's WebCrypto engine cannot do), and only with keys that
 *   key-policy.ts accepts (bounded RSA exponent and modulus);
 * - the search for issuers is bounded (pkijs follows every candidate issuer
 *   and has no loop guard of its own);
 * - what pkijs leaves out and RFC 5280 section 6.1 requires:
 *   pathLenConstraint (6.1.4 (l)/(m)) and refusing any unrecognised
 *   critical extension on every certificate of the path, the end entity
 *   included (6.1.3/6.1.5; pkijs checks only issuers, and only for
 *   extensions it cannot parse); both also on the trust anchor, as OpenSSL
 *   does;
 * - the trust anchor's own nameConstraints are applied to the path below it
 *   (RFC 5280 6.1.1 (b)/(c) initial subtrees; OpenSSL does the same);
 * - name-constraint work is bounded before pkijs sees the path: pkijs
 *   compares every name of every certificate below a CA with every subtree
 *   above it (a localeCompare each, on the event loop), so a hostile anchor
 *   or presented CA with thousands of subtrees and a leaf with 100 SANs cost
 *   0.3-1.6 s per validation. At most MAX_NAME_CONSTRAINT_SUBTREES subtrees
 *   per certificate and MAX_NAME_CONSTRAINT_COMPARISONS names x subtrees per
 *   path, counted from the parsed certificates.
 */
import { createHash, createPublicKey, verify as verifySignature, webcrypto, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import { LRUCache } from 'lru-cache';
import * as pkijs from 'pkijs';
import { extractSpki } from './certificate.js';
import { keyPolicyViolation } from './key-policy.js';

/** A certificate as path validation sees it: pkijs's parse and its exact DER. */
export interface PathCertificate {
  readonly cert: pkijs.Certificate;
  readonly der: Buffer;
  /** A stand-in for a bare-key trust anchor (`2 1 0`): it has no extensions or dates of its own. */
  readonly synthetic: boolean;
}

export class PathCertificateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathCertificateError';
  }
}

/** A certificate refused before any parse because its nameConstraints exceed MAX_NAME_CONSTRAINT_SUBTREES. */
export class NameConstraintLimitError extends PathCertificateError {
  constructor(message: string) {
    super(message);
    this.name = 'NameConstraintLimitError';
  }
}

/** The exact SubjectPublicKeyInfo bytes of each parsed certificate's key (no re-encoding). */
const spkiBytes = new WeakMap<pkijs.PublicKeyInfo, Buffer>();

/** Parse a SubjectPublicKeyInfo once, so that a key shared by many stand-in anchors is made (and judged) once. */
export function publicKeyInfo(spki: Buffer): pkijs.PublicKeyInfo {
  const info = pkijs.PublicKeyInfo.fromBER(spki);
  spkiBytes.set(info, spki);
  return info;
}

/**
 * Parse DER for path validation; throws PathCertificateError, and
 * NameConstraintLimitError, before any parse, for nameConstraints over
 * MAX_NAME_CONSTRAINT_SUBTREES (pkijs's parse of thousands of subtrees alone
 * costs ~20 ms, and a hostile zone can mint a new CA for every connection).
 */
export function toPathCertificate(der: Uint8Array): PathCertificate {
  const bytes = Buffer.from(der);
  const subtrees = rawNameConstraintSubtrees(bytes, MAX_NAME_CONSTRAINT_SUBTREES);
  if (subtrees > MAX_NAME_CONSTRAINT_SUBTREES) throw new NameConstraintLimitError(overSubtreeLimit);
  try {
    const cert = pkijs.Certificate.fromBER(bytes);
    // fromBER keeps the TBS bytes as received; only a certificate built in memory needs encoding.
    if (cert.tbsView.byteLength === 0) cert.tbsView = new Uint8Array(cert.encodeTBS().toBER());
    spkiBytes.set(cert.subjectPublicKeyInfo, Buffer.from(extractSpki(bytes)));
    return { cert, der: bytes, synthetic: false };
  } catch (err) {
    throw new PathCertificateError(`certificate cannot be read for path validation: ${(err as Error).message}`);
  }
}

/**
 * Certificates recently parsed for path validation, by SHA-256 of the DER:
 * intermediates and roots recur on every connection of their clients, and
 * an ASN.1 parse costs ~1-3 ms of event loop. Bounded; a parse that failed
 * is remembered too.
 */
const parsedCertificates = new LRUCache<string, PathCertificate | PathCertificateError>({ max: 256 });

/** toPathCertificate through the bounded memo; throws PathCertificateError. */
export function pathCertificateFor(der: Buffer, sha256Hex?: string): PathCertificate {
  const key = sha256Hex ?? createHash('sha256').update(der).digest('hex');
  let value = parsedCertificates.get(key);
  if (value === undefined) {
    try {
      value = toPathCertificate(der);
    } catch (err) {
      value = err instanceof PathCertificateError ? err : new PathCertificateError(String(err));
    }
    parsedCertificates.set(key, value);
  }
  if (value instanceof PathCertificateError) throw value;
  return value;
}

/**
 * A trust anchor made of a bare public key (a `2 1 0` record): an unsigned
 * certificate with the given subject, the key, basicConstraints cA and no
 * other constraint, never expiring. RFC 7671 section 5.2.2: the key is the
 * anchor; nothing else about it is known, so nothing else is checked.
 */
export function syntheticAnchor(subject: pkijs.RelativeDistinguishedNames, spki: Buffer | pkijs.PublicKeyInfo): PathCertificate {
  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = new asn1js.Integer({ value: 1 });
  cert.issuer = subject;
  cert.subject = subject;
  cert.notBefore = new pkijs.Time({ type: 0, value: new Date(0) });
  cert.notAfter = new pkijs.Time({ type: 1, value: new Date(Date.UTC(9999, 11, 31, 23, 59, 59)) });
  cert.subjectPublicKeyInfo = Buffer.isBuffer(spki) ? publicKeyInfo(spki) : spki;
  cert.extensions = [
    new pkijs.Extension({
      extnID: pkijs.id_BasicConstraints,
      critical: true,
      extnValue: new pkijs.BasicConstraints({ cA: true }).toSchema().toBER(false),
    }),
  ];
  cert.signature = new pkijs.AlgorithmIdentifier({ algorithmId: '1.2.840.113549.1.1.11' });
  cert.signatureAlgorithm = cert.signature;
  cert.signatureValue = new asn1js.BitString();
  cert.tbsView = new Uint8Array(cert.encodeTBS().toBER());
  return { cert, der: Buffer.alloc(0), synthetic: true };
}

/** Critical extensions we process (the set OpenSSL recognises, less Netscape, proxy-certificate and RFC 3779 ones). */
const RECOGNISED_CRITICAL: ReadonlySet<string> = new Set([
  pkijs.id_KeyUsage,
  pkijs.id_SubjectAltName,
  pkijs.id_BasicConstraints,
  pkijs.id_NameConstraints,
  pkijs.id_CRLDistributionPoints,
  pkijs.id_CertificatePolicies,
  pkijs.id_PolicyMappings,
  pkijs.id_PolicyConstraints,
  pkijs.id_ExtKeyUsage,
  pkijs.id_InhibitAnyPolicy,
]);

/** The first critical extension of `cert` we do not process, as its OID. */
export function unrecognisedCriticalExtension(cert: pkijs.Certificate): string | undefined {
  return cert.extensions?.find((e) => e.critical && !RECOGNISED_CRITICAL.has(e.extnID))?.extnID;
}

/** Signature algorithms we verify: OID -> node:crypto digest (null for EdDSA). SHA-1 and MD5 are refused. */
const SIGNATURE_DIGESTS: Readonly<Record<string, string | null>> = {
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': null,
  '1.3.101.113': null,
};
const RSASSA_PSS = '1.2.840.113549.1.1.10';
const HASH_OIDS: Readonly<Record<string, string>> = {
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

type VerifyKey = KeyObject | { key: KeyObject; padding: number; saltLength: number };

/** How to verify with `algorithm` under `key`, or undefined when we do not verify that algorithm. */
function verificationParameters(algorithm: pkijs.AlgorithmIdentifier, key: KeyObject): { digest: string | null; key: VerifyKey } | undefined {
  const digest = SIGNATURE_DIGESTS[algorithm.algorithmId];
  if (digest !== undefined) return { digest, key };
  if (algorithm.algorithmId !== RSASSA_PSS || algorithm.algorithmParams === undefined) return undefined;
  const params = new pkijs.RSASSAPSSParams({ schema: algorithm.algorithmParams });
  const hash = HASH_OIDS[params.hashAlgorithm.algorithmId];
  const mgfParams = params.maskGenAlgorithm.algorithmParams as asn1js.AsnType | undefined;
  const mgfHash = mgfParams === undefined ? undefined : HASH_OIDS[new pkijs.AlgorithmIdentifier({ schema: mgfParams }).algorithmId];
  if (hash === undefined || mgfHash !== hash) return undefined;
  return { digest: hash, key: { key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: params.saltLength } };
}

/**
 * pkijs's crypto engine with signature checks done by OpenSSL (node:crypto),
 * asynchronously on the thread pool, refusing keys outside key-policy.ts.
 * Counts the checks it makes.
 */
/** Keys made from parsed certificates (or the reason they are refused), kept as long as the certificate object lives. */
const keys = new WeakMap<pkijs.PublicKeyInfo, KeyObject | string>();
/**
 * Signature verdicts by signature object (one per parsed certificate) and
 * key: deterministic, so a certificate kept in the parse memo is checked
 * against a given key once, not on every connection.
 */
const verdicts = new WeakMap<object, WeakMap<pkijs.PublicKeyInfo, boolean>>();

class NodeVerifyEngine extends pkijs.CryptoEngine {
  signatureChecks = 0;

  constructor() {
    // Node's webcrypto is the WebCrypto pkijs expects (unused here for verification); the cast bridges Node's and the DOM's type declarations.
    super({ name: 'node', crypto: webcrypto as unknown as ConstructorParameters<typeof pkijs.CryptoEngine>[0]['crypto'] });
  }

  private keyOf(info: pkijs.PublicKeyInfo): KeyObject | string {
    let key = keys.get(info);
    if (key === undefined) {
      try {
        const der = spkiBytes.get(info) ?? Buffer.from(info.toSchema().toBER(false));
        const parsed = createPublicKey({ key: der, format: 'der', type: 'spki' });
        key = keyPolicyViolation(parsed) ?? parsed;
      } catch (err) {
        key = `unreadable public key: ${(err as Error).message}`;
      }
      keys.set(info, key);
    }
    return key;
  }

  override async verifyWithPublicKey(
    data: ArrayBuffer | ArrayBufferView,
    signature: asn1js.BitString | asn1js.OctetString,
    publicKeyInfo: pkijs.PublicKeyInfo,
    signatureAlgorithm: pkijs.AlgorithmIdentifier,
  ): Promise<boolean> {
    let known = verdicts.get(signature);
    const cached = known?.get(publicKeyInfo);
    if (cached !== undefined) return cached;
    const key = this.keyOf(publicKeyInfo);
    if (typeof key === 'string') return false;
    const params = verificationParameters(signatureAlgorithm, key);
    if (params === undefined) return false;
    const bytes = ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
    const sig = Buffer.from(signature.valueBlock.valueHexView);
    this.signatureChecks++;
    const ok = await new Promise<boolean>((resolve) => {
      try {
        verifySignature(params.digest, bytes, params.key, sig, (err, valid) => resolve(err === null && valid));
      } catch {
        resolve(false);
      }
    });
    if (known === undefined) {
      known = new WeakMap();
      verdicts.set(signature, known);
    }
    known.set(publicKeyInfo, ok);
    return ok;
  }
}

/**
 * Most nameConstraints subtrees (permitted plus excluded, every nameConstraints
 * extension counted) of one certificate that could be on a path, the trust
 * anchor included. Constrained CAs in use carry a handful (a few domains, a
 * few address ranges); 64 leaves room for a large organisation.
 */
export const MAX_NAME_CONSTRAINT_SUBTREES = 64;
/**
 * Most name comparisons one path validation may make: the names of the leaf
 * and of the presented intermediates (subjectAltName entries plus subject
 * attributes) times the subtrees of the intermediates and of the largest
 * anchor, an upper bound of what pkijs compares for any one path. pkijs
 * costs ~1-3 us per comparison, so this bound is a few ms at most; a leaf
 * with 63 SANs under an anchor with 64 subtrees is exactly at it.
 */
export const MAX_NAME_CONSTRAINT_COMPARISONS = 4096;

/**
 * One DER TLV header at `at` within `end`: its tag, where its contents start
 * and where it ends; undefined when malformed. Definite lengths of at most
 * 4 bytes only (DER).
 */
function tlvAt(bytes: Uint8Array, at: number, end: number): { tag: number; start: number; end: number } | undefined {
  if (at + 2 > end) return undefined;
  const tag = bytes[at] as number;
  if ((tag & 0x1f) === 0x1f) return undefined;
  let length = bytes[at + 1] as number;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || start + n > end) return undefined;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (bytes[start + i] as number);
    start += n;
  }
  if (start + length > end) return undefined;
  return { tag, start, end: start + length };
}

/** The elements of the DER SEQUENCE (or [n] constructed) `tlv`, counted up to `cap` + 1; undefined when malformed. */
function countChildren(bytes: Uint8Array, tlv: { start: number; end: number }, cap: number): number | undefined {
  let count = 0;
  for (let at = tlv.start; at < tlv.end && count <= cap; count++) {
    const child = tlvAt(bytes, at, tlv.end);
    if (child === undefined) return undefined;
    at = child.end;
  }
  return count;
}

/** The raw DER value of each of `cert`'s extensions with `oid` (what pkijs would parse lazily: reading parsedValue costs the full parse). */
function extensionValues(cert: pkijs.Certificate, oid: string): Uint8Array[] {
  return (cert.extensions ?? []).filter((e) => e.extnID === oid).map((e) => e.extnValue.valueBlock.valueHexView);
}

const overSubtreeLimit = `nameConstraints of more than ${MAX_NAME_CONSTRAINT_SUBTREES} subtrees (the limit per certificate)`;

/** Permitted plus excluded subtrees in one nameConstraints extension value (DER), counted up to `cap` + 1; Infinity when malformed. */
function countSubtrees(value: Uint8Array, cap: number): number {
  const outer = tlvAt(value, 0, value.length);
  if (outer === undefined || outer.tag !== 0x30 || outer.end !== value.length) return Infinity;
  let count = 0;
  for (let at = outer.start; at < outer.end;) {
    const part = tlvAt(value, at, outer.end);
    // [0] permittedSubtrees, [1] excludedSubtrees, both constructed.
    if (part === undefined || (part.tag !== 0xa0 && part.tag !== 0xa1)) return Infinity;
    const n = countChildren(value, part, cap - count);
    if (n === undefined) return Infinity;
    count += n;
    if (count > cap) return count;
    at = part.end;
  }
  return count;
}

/**
 * Permitted plus excluded subtrees of `cert`'s nameConstraints, every such
 * extension counted, by a bounded DER walk of the raw extension values (at
 * most `cap` + 1 subtrees are counted; reading pkijs's parsedValue would
 * parse them all). Infinity when one cannot be read.
 */
export function nameConstraintSubtrees(cert: pkijs.Certificate, cap = MAX_NAME_CONSTRAINT_COMPARISONS): number {
  let count = 0;
  for (const value of extensionValues(cert, pkijs.id_NameConstraints)) {
    count += countSubtrees(value, cap - count);
    if (count > cap) return count;
  }
  return count;
}

/** DER of OID 2.5.29.30 (id-ce-nameConstraints), tag and length included. */
const NAME_CONSTRAINTS_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x1e]);

/**
 * Subtrees in the nameConstraints extensions of a certificate's DER, read
 * before any parse by a walk of TLV headers (the TBS fields, each extension's
 * OID, and at most `cap` + 1 subtrees). 0 when the certificate's framing
 * cannot be walked: pkijs's parse then refuses it (and the parsed check in
 * validatePath still applies).
 */
export function rawNameConstraintSubtrees(der: Uint8Array, cap: number): number {
  const cert = tlvAt(der, 0, der.length);
  const tbs = cert === undefined ? undefined : tlvAt(der, cert.start, cert.end);
  if (tbs === undefined || tbs.tag !== 0x30) return 0;
  let count = 0;
  for (let at = tbs.start; at < tbs.end;) {
    const field = tlvAt(der, at, tbs.end);
    if (field === undefined) return 0;
    at = field.end;
    if (field.tag !== 0xa3) continue;
    const list = tlvAt(der, field.start, field.end);
    if (list === undefined || list.tag !== 0x30) return 0;
    for (let e = list.start; e < list.end;) {
      const ext = tlvAt(der, e, list.end);
      if (ext === undefined) return 0;
      e = ext.end;
      const oid = tlvAt(der, ext.start, ext.end);
      if (oid === undefined || Buffer.compare(der.subarray(ext.start, oid.end), NAME_CONSTRAINTS_OID) !== 0) continue;
      let next = tlvAt(der, oid.end, ext.end);
      if (next?.tag === 0x01) next = tlvAt(der, next.end, ext.end);
      if (next === undefined || next.tag !== 0x04) return Infinity;
      count += countSubtrees(der.subarray(next.start, next.end), cap - count);
      if (count > cap) return count;
    }
  }
  return count;
}

/** The names pkijs compares against subtrees for `cert`: its subjectAltName entries (bounded DER walk) and subject attributes (at least one, the DN). */
function namesCompared(cert: pkijs.Certificate): number {
  let count = Math.max(1, cert.subject.typesAndValues.length);
  for (const value of extensionValues(cert, pkijs.id_SubjectAltName)) {
    const outer = tlvAt(value, 0, value.length);
    // An unreadable subjectAltName: pkijs refuses it when it parses it; count it as the most it could hold.
    const n = outer === undefined ? undefined : countChildren(value, outer, MAX_NAME_CONSTRAINT_COMPARISONS);
    count += n ?? MAX_NAME_CONSTRAINT_COMPARISONS + 1;
  }
  return count;
}

/** Why `cert` may not be a trust anchor or CA on a path because of its nameConstraints, or undefined. */
export function nameConstraintLimitViolation(cert: pkijs.Certificate): string | undefined {
  const subtrees = nameConstraintSubtrees(cert, MAX_NAME_CONSTRAINT_SUBTREES);
  if (subtrees === Infinity) return 'nameConstraints cannot be read';
  if (subtrees > MAX_NAME_CONSTRAINT_SUBTREES) return overSubtreeLimit;
  return undefined;
}

/**
 * Bound the name-constraint work of one validation before pkijs runs:
 * every certificate that could be on the path within
 * MAX_NAME_CONSTRAINT_SUBTREES, and names x subtrees within
 * MAX_NAME_CONSTRAINT_COMPARISONS. Returns why not, or undefined.
 */
function nameConstraintWorkViolation(leaf: PathCertificate, intermediates: readonly PathCertificate[], anchors: readonly PathCertificate[]): string | undefined {
  let subtrees = 0;
  const leafOwn = nameConstraintLimitViolation(leaf.cert);
  if (leafOwn !== undefined) return `end-entity certificate: ${leafOwn}`;
  for (const [i, c] of intermediates.entries()) {
    const own = nameConstraintLimitViolation(c.cert);
    if (own !== undefined) return `untrusted certificate ${i + 1}: ${own}`;
    subtrees += nameConstraintSubtrees(c.cert, MAX_NAME_CONSTRAINT_SUBTREES);
  }
  let anchorSubtrees = 0;
  for (const a of anchors) {
    if (a.synthetic) continue;
    const own = nameConstraintLimitViolation(a.cert);
    if (own !== undefined) return `trust anchor: ${own}`;
    anchorSubtrees = Math.max(anchorSubtrees, nameConstraintSubtrees(a.cert, MAX_NAME_CONSTRAINT_SUBTREES));
  }
  subtrees += anchorSubtrees;
  if (subtrees === 0) return undefined;
  let names = namesCompared(leaf.cert);
  for (const c of intermediates) names += namesCompared(c.cert);
  if (names * subtrees > MAX_NAME_CONSTRAINT_COMPARISONS) {
    return `name constraints would cost ${names} names x ${subtrees} subtrees = ${names * subtrees} comparisons, over the limit of ${MAX_NAME_CONSTRAINT_COMPARISONS}`;
  }
  return undefined;
}

/** Most issuer searches pkijs may make for one validation (each checks the signatures of the candidates it finds). */
export const MAX_ISSUER_SEARCHES = 24;
/** Most signature checks for one validation. */
export const MAX_SIGNATURE_CHECKS = 48;

export type PathFailure = 'chain-broken' | 'certificate-expired' | 'certificate-not-yet-valid' | 'issuer-not-ca' | 'name-constraints-violated' | 'unknown-critical-extension' | 'policy-violation';

export type PathResult =
  | { readonly ok: true; readonly path: readonly PathCertificate[]; readonly signatureChecks: number }
  | { readonly ok: false; readonly failure: PathFailure; readonly detail: string; readonly signatureChecks: number };

export interface PathValidationInput {
  readonly leaf: PathCertificate;
  /** Untrusted certificates path building may use (the rest of the presented chain, a PKIX-TA record's certificate). */
  readonly intermediates: readonly PathCertificate[];
  /** Trust anchors: the path must end in one of them. */
  readonly anchors: readonly PathCertificate[];
  readonly now: Date;
}

function isSelfIssued(cert: pkijs.Certificate): boolean {
  return cert.subject.isEqual(cert.issuer);
}

function extensionValue<T>(cert: pkijs.Certificate, oid: string): T | undefined {
  return cert.extensions?.find((e) => e.extnID === oid)?.parsedValue as T | undefined;
}

/** RFC 5280 6.1.4 (l)/(m): the non-self-issued intermediates below each CA must not exceed its pathLenConstraint. */
function pathLengthViolation(path: readonly PathCertificate[]): string | undefined {
  for (let i = 1; i < path.length; i++) {
    const entry = path[i] as PathCertificate;
    const basic = extensionValue<pkijs.BasicConstraints>(entry.cert, pkijs.id_BasicConstraints);
    const limit = basic?.pathLenConstraint;
    if (typeof limit !== 'number') continue;
    let below = 0;
    for (let j = 1; j < i; j++) if (!isSelfIssued((path[j] as PathCertificate).cert)) below++;
    if (below > limit) return `certificate ${i} on the path has pathLenConstraint ${limit} but ${below} CA certificates below it`;
  }
  return undefined;
}

function describeDates(candidates: readonly PathCertificate[], now: Date): PathFailure {
  const t = now.getTime();
  if (candidates.some((c) => !c.synthetic && c.cert.notAfter.value.getTime() < t)) return 'certificate-expired';
  return 'certificate-not-yet-valid';
}

interface EngineResult {
  readonly result: boolean;
  readonly resultCode: number;
  readonly resultMessage: string;
  readonly certificatePath?: pkijs.Certificate[];
}

/** Validate a path from `leaf` to one of `anchors`; never throws. */
export async function validatePath(input: PathValidationInput): Promise<PathResult> {
  const crypto = new NodeVerifyEngine();
  const byCert = new Map<pkijs.Certificate, PathCertificate>();
  const seen = new Set<string>();
  const anchors: PathCertificate[] = [];
  for (const a of input.anchors) {
    const key = a.synthetic ? `s:${Buffer.from(a.cert.tbsView).toString('hex')}` : a.der.toString('hex');
    if (seen.has(key)) continue;
    seen.add(key);
    anchors.push(a);
  }
  seen.add(input.leaf.der.toString('hex'));
  const intermediates = input.intermediates.filter((c) => {
    const key = c.der.toString('hex');
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  for (const c of [input.leaf, ...intermediates, ...anchors]) byCert.set(c.cert, c);

  const run = async (trusted: readonly PathCertificate[], verifyParams: pkijs.CertificateChainValidationEngineVerifyParams): Promise<EngineResult> => {
    let searches = 0;
    const engine: pkijs.CertificateChainValidationEngine = new pkijs.CertificateChainValidationEngine({
      trustedCerts: trusted.map((c) => c.cert),
      // pkijs takes the last certificate as the end entity.
      certs: [...intermediates.map((c) => c.cert), input.leaf.cert],
      checkDate: input.now,
      findIssuer: async (cert, validation, engineCrypto) => {
        if (++searches > MAX_ISSUER_SEARCHES) throw new Error(`path search gave up after ${MAX_ISSUER_SEARCHES} issuer searches`);
        if (crypto.signatureChecks >= MAX_SIGNATURE_CHECKS) throw new Error(`path search gave up after ${MAX_SIGNATURE_CHECKS} signature checks`);
        return validation.defaultFindIssuer(cert, validation, engineCrypto);
      },
    });
    try {
      return (await engine.verify(verifyParams, crypto)) as EngineResult;
    } catch (err) {
      return { result: false, resultCode: -1, resultMessage: (err as Error).message };
    }
  };

  const fail = (failure: PathFailure, detail: string): PathResult => ({ ok: false, failure, detail, signatureChecks: crypto.signatureChecks });
  const judge = (r: EngineResult): PathResult | PathCertificate[] => {
    if (r.result && r.certificatePath !== undefined) {
      const path = r.certificatePath.map((c) => byCert.get(c));
      if (path.some((c) => c === undefined)) return fail('chain-broken', 'path validation returned an unknown certificate');
      return path as PathCertificate[];
    }
    switch (r.resultCode) {
      case 8:
        return fail(describeDates([input.leaf, ...intermediates, ...anchors], input.now), r.resultMessage);
      case 14: {
        const critical = [...intermediates, ...anchors].find((c) => !c.synthetic && unrecognisedCriticalExtension(c.cert) !== undefined);
        if (critical !== undefined) return fail('unknown-critical-extension', `an issuing certificate has the unrecognised critical extension ${unrecognisedCriticalExtension(critical.cert)}`);
        return fail('issuer-not-ca', r.resultMessage);
      }
      case 21:
      case 41:
      case 42:
        return fail('name-constraints-violated', r.resultMessage);
      case 0:
      case 98:
      case 99:
        return fail('policy-violation', r.resultMessage || 'certificate policy processing failed');
      default:
        return fail('chain-broken', r.resultMessage || `path validation failed (code ${r.resultCode})`);
    }
  };

  if (anchors.length === 0) return fail('chain-broken', 'no trust anchor to validate against');
  const nameWork = nameConstraintWorkViolation(input.leaf, intermediates, anchors);
  if (nameWork !== undefined) return fail('name-constraints-violated', nameWork);
  const first = judge(await run(anchors, {}));
  if (!Array.isArray(first)) return first;
  let path = first;
  const anchor = path[path.length - 1] as PathCertificate;
  const constraints = anchor.synthetic ? undefined : extensionValue<pkijs.NameConstraints>(anchor.cert, pkijs.id_NameConstraints);
  if (constraints !== undefined) {
    // The anchor's own nameConstraints as the initial permitted/excluded subtrees (pkijs never applies the anchor's).
    const second = judge(
      await run([anchor], {
        initialPermittedSubtreesSet: constraints.permittedSubtrees ?? [],
        initialExcludedSubtreesSet: constraints.excludedSubtrees ?? [],
      }),
    );
    if (!Array.isArray(second)) return second;
    path = second;
  }
  for (const entry of path) {
    if (entry.synthetic) continue;
    const oid = unrecognisedCriticalExtension(entry.cert);
    if (oid !== undefined) return fail('unknown-critical-extension', `a certificate on the path has the unrecognised critical extension ${oid}`);
  }
  const pathLength = pathLengthViolation(path);
  if (pathLength !== undefined) return fail('issuer-not-ca', pathLength);
  return { ok: true, path, signatureChecks: crypto.signatureChecks };
}
