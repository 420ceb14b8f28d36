/**
 * TLSA matching for DANE client authentication: RFC 6698 section 2.1 with
 * the RFC 7671 updates. Pure: everything it needs (records, chain, claimed
 * name, the time, the PKIX roots) is passed in.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { isIssuedBy, parseCertificateDer, type ParsedCertificate } from './certificate.js';
import { applyMatchingType, DIGEST_LENGTH, MatchingType, Selector, Usage, type TlsaRecord } from './tlsa.js';

/** Why one record did or did not authenticate the client. */
export type RecordVerdict =
  | 'matched'
  | 'unknown-usage'
  | 'unknown-selector'
  | 'unknown-matching-type'
  | 'bad-digest-length'
  /** RFC 7671 section 9: a stronger digest is present for the same usage and selector. */
  | 'weaker-digest'
  /** Usage 1/3: the end-entity certificate does not match. */
  | 'ee-mismatch'
  /** Usage 0/2: no certificate (or key) matching the record is in the presented chain. */
  | 'ta-not-found'
  /** Usage 0/2: the trust anchor is present but no signature chain leads from the EE to it. */
  | 'chain-broken'
  | 'certificate-expired'
  | 'certificate-not-yet-valid'
  /** An issuing certificate lacks basicConstraints cA (or keyCertSign) or exceeds its pathLenConstraint. */
  | 'issuer-not-ca'
  /** Usage 0/1/2: the claimed name is not a SAN dNSName of the EE. */
  | 'name-mismatch'
  /** Usage 0/1: no CA bundle is configured, so PKIX usages cannot be satisfied. */
  | 'pkix-not-configured'
  /** Usage 0/1: no valid path from the EE to a configured CA. */
  | 'pkix-untrusted';

export interface RecordResult {
  readonly index: number;
  readonly record: TlsaRecord;
  readonly verdict: RecordVerdict;
}

export type DecisionReason =
  | 'authenticated'
  | 'no-certificate'
  | 'chain-too-long'
  | 'no-records'
  | 'no-usable-records'
  | 'no-matching-record';

export interface DaneDecision {
  readonly authenticated: boolean;
  readonly reason: DecisionReason;
  /** The record that authenticated the client. */
  readonly matched: RecordResult | undefined;
  /** One entry per input record, in input order. */
  readonly records: readonly RecordResult[];
}

export interface MatchInput {
  readonly records: readonly TlsaRecord[];
  /** The client's chain as presented: end-entity first. */
  readonly chain: readonly ParsedCertificate[];
  /** The canonical client name (required as a SAN dNSName for usages 0, 1, 2). */
  readonly claimedName: string;
  readonly now: Date;
  /** PKIX trust anchors for usages 0 and 1; without them those usages never match. */
  readonly pkixRoots?: readonly ParsedCertificate[];
}

/** Longest presented chain we evaluate. */
export const MAX_CHAIN_LENGTH = 10;

/** Relative digest strength for RFC 7671 digest agility; Full(0) takes no part. */
const DIGEST_STRENGTH: Readonly<Record<number, number>> = { [MatchingType.SHA256]: 1, [MatchingType.SHA512]: 2 };

function isKnown(record: TlsaRecord): RecordVerdict | undefined {
  if (record.usage > Usage.DANE_EE) return 'unknown-usage';
  if (record.selector > Selector.SPKI) return 'unknown-selector';
  if (record.matchingType > MatchingType.SHA512) return 'unknown-matching-type';
  const expected = DIGEST_LENGTH[record.matchingType];
  if (expected !== undefined && record.data.length !== expected) return 'bad-digest-length';
  return undefined;
}

/** Per-decision memo of selected/hashed bytes and of issuer checks, so many records cost little. */
class ChainContext {
  private readonly digests = new Map<string, Buffer>();
  private readonly issued = new Map<string, boolean>();
  constructor(readonly chain: readonly ParsedCertificate[]) {}

  associationData(certIndex: number, selector: number, matchingType: number): Buffer | undefined {
    const key = `${certIndex}/${selector}/${matchingType}`;
    let value = this.digests.get(key);
    if (value === undefined) {
      const cert = this.chain[certIndex] as ParsedCertificate;
      value = applyMatchingType(matchingType, selector === Selector.CERT ? cert.der : cert.spki);
      if (value === undefined) return undefined;
      this.digests.set(key, value);
    }
    return value;
  }

  matches(certIndex: number, record: TlsaRecord): boolean {
    const data = this.associationData(certIndex, record.selector, record.matchingType);
    return data !== undefined && data.equals(record.data);
  }

  issuedBy(child: ParsedCertificate, issuer: ParsedCertificate): boolean {
    const key = `${child.sha256Hex}<${issuer.sha256Hex}`;
    let value = this.issued.get(key);
    if (value === undefined) {
      value = isIssuedBy(child, issuer);
      this.issued.set(key, value);
    }
    return value;
  }
}

function dateVerdict(cert: ParsedCertificate, now: Date): RecordVerdict | undefined {
  if (now.getTime() < cert.notBefore.getTime()) return 'certificate-not-yet-valid';
  if (now.getTime() > cert.notAfter.getTime()) return 'certificate-expired';
  return undefined;
}

/** An issuing certificate at `depth` (1 = issuer of the EE) may sign what is below it. */
function caVerdict(cert: ParsedCertificate, depth: number): RecordVerdict | undefined {
  if (!cert.isCA || cert.keyCertSign === false) return 'issuer-not-ca';
  // pathLenConstraint counts the non-self-issued intermediates below this certificate.
  if (cert.pathLength !== undefined && depth - 1 > cert.pathLength) return 'issuer-not-ca';
  return undefined;
}

type Anchor = { kind: 'certificate'; cert: ParsedCertificate } | { kind: 'key'; key: KeyObject };

type PathResult = { ok: true; path: ParsedCertificate[] } | { ok: false; verdict: RecordVerdict };

/**
 * Build a path from the EE upwards through `issuers` until `isAnchor` says a
 * certificate is a trust anchor (or, for a bare-key anchor, until a
 * certificate's signature verifies under the key). Checks signatures,
 * validity dates of every certificate on the path (anchor included) and CA
 * constraints of every issuing certificate. No backtracking: the first
 * issuer whose signature verifies is taken.
 */
function buildPath(
  ctx: ChainContext,
  issuers: readonly ParsedCertificate[],
  isAnchor: (cert: ParsedCertificate) => boolean,
  keyAnchor: KeyObject | undefined,
  now: Date,
): PathResult {
  const ee = ctx.chain[0] as ParsedCertificate;
  const path: ParsedCertificate[] = [ee];
  const used = new Set<ParsedCertificate>([ee]);
  let current = ee;
  for (let depth = 1; depth <= MAX_CHAIN_LENGTH; depth++) {
    if (keyAnchor !== undefined) {
      let verified = false;
      try {
        verified = current.node.verify(keyAnchor);
      } catch {
        verified = false;
      }
      if (verified) return finishPath(path, now);
    }
    const issuer = issuers.find((c) => !used.has(c) && ctx.issuedBy(current, c));
    if (issuer === undefined) return { ok: false, verdict: 'chain-broken' };
    const ca = caVerdict(issuer, depth);
    if (ca !== undefined) return { ok: false, verdict: ca };
    path.push(issuer);
    used.add(issuer);
    if (isAnchor(issuer)) return finishPath(path, now);
    current = issuer;
  }
  return { ok: false, verdict: 'chain-broken' };
}

function finishPath(path: ParsedCertificate[], now: Date): PathResult {
  for (const cert of path) {
    const verdict = dateVerdict(cert, now);
    if (verdict !== undefined) return { ok: false, verdict };
  }
  return { ok: true, path };
}

function nameVerdict(ee: ParsedCertificate, claimedName: string): RecordVerdict | undefined {
  return ee.dnsNames.includes(claimedName) ? undefined : 'name-mismatch';
}

/** The anchor a DANE-TA record designates, if the record itself carries it (`2 0 0` certificate, `2 1 0` key). */
function anchorFromRecord(record: TlsaRecord): Anchor | undefined {
  if (record.matchingType !== MatchingType.FULL) return undefined;
  try {
    if (record.selector === Selector.CERT) return { kind: 'certificate', cert: parseCertificateDer(record.data) };
    return { kind: 'key', key: createPublicKey({ key: record.data, format: 'der', type: 'spki' }) };
  } catch {
    return undefined;
  }
}

function evaluateDaneTa(ctx: ChainContext, record: TlsaRecord, input: MatchInput): RecordVerdict {
  const presented = ctx.chain;
  const inChain = (cert: ParsedCertificate): boolean => {
    const index = presented.indexOf(cert);
    return index >= 1 && ctx.matches(index, record);
  };
  const fromRecord = anchorFromRecord(record);
  const anchorInChain = presented.some((_c, i) => i >= 1 && ctx.matches(i, record));
  if (!anchorInChain && fromRecord === undefined) return 'ta-not-found';

  let result: PathResult;
  if (anchorInChain) {
    result = buildPath(ctx, presented.slice(1), inChain, undefined, input.now);
  } else if (fromRecord?.kind === 'certificate') {
    const anchor = fromRecord.cert;
    result = buildPath(ctx, [...presented.slice(1), anchor], (c) => c === anchor, undefined, input.now);
  } else {
    result = buildPath(ctx, presented.slice(1), () => false, (fromRecord as { key: KeyObject }).key, input.now);
  }
  if (!result.ok) return result.verdict;
  return nameVerdict(presented[0] as ParsedCertificate, input.claimedName) ?? 'matched';
}

function evaluatePkix(ctx: ChainContext, record: TlsaRecord, input: MatchInput): RecordVerdict {
  const roots = input.pkixRoots ?? [];
  if (record.usage === Usage.PKIX_EE) {
    if (!ctx.matches(0, record)) return 'ee-mismatch';
  } else if (!ctx.chain.some((_c, i) => i >= 1 && ctx.matches(i, record))) {
    return 'ta-not-found';
  }
  if (roots.length === 0) return 'pkix-not-configured';
  const rootSet = new Set(roots.map((r) => r.sha256Hex));
  const result = buildPath(ctx, [...ctx.chain.slice(1), ...roots], (c) => rootSet.has(c.sha256Hex), undefined, input.now);
  if (!result.ok) return result.verdict === 'chain-broken' ? 'pkix-untrusted' : result.verdict;
  if (record.usage === Usage.PKIX_TA) {
    // The record's anchor must be on the validated path, not merely presented.
    const onPath = result.path.some((cert, i) => {
      const index = ctx.chain.indexOf(cert);
      return i >= 1 && index >= 1 && ctx.matches(index, record);
    });
    if (!onPath) return 'pkix-untrusted';
  }
  return nameVerdict(ctx.chain[0] as ParsedCertificate, input.claimedName) ?? 'matched';
}

function evaluateRecord(ctx: ChainContext, record: TlsaRecord, input: MatchInput): RecordVerdict {
  switch (record.usage) {
    case Usage.DANE_EE:
      // RFC 7671 section 5.1: no name check, no validity dates.
      return ctx.matches(0, record) ? 'matched' : 'ee-mismatch';
    case Usage.DANE_TA:
      return evaluateDaneTa(ctx, record, input);
    default:
      return evaluatePkix(ctx, record, input);
  }
}

/** Decide whether `chain` authenticates as `claimedName` under `records`. */
export function matchTlsa(input: MatchInput): DaneDecision {
  const { records, chain } = input;
  const results: RecordResult[] = [];
  const decide = (reason: DecisionReason, matched?: RecordResult): DaneDecision => ({
    authenticated: reason === 'authenticated',
    reason,
    matched,
    records: results,
  });
  if (chain.length === 0) return decide('no-certificate');
  if (chain.length > MAX_CHAIN_LENGTH) return decide('chain-too-long');
  if (records.length === 0) return decide('no-records');

  // RFC 7671 section 9: per usage+selector, only the strongest digest present counts.
  const strongest = new Map<string, number>();
  for (const record of records) {
    if (isKnown(record) !== undefined) continue;
    const strength = DIGEST_STRENGTH[record.matchingType];
    if (strength === undefined) continue;
    const key = `${record.usage}/${record.selector}`;
    strongest.set(key, Math.max(strongest.get(key) ?? 0, strength));
  }

  const ctx = new ChainContext(chain);
  let matched: RecordResult | undefined;
  let usable = 0;
  records.forEach((record, index) => {
    let verdict = isKnown(record);
    if (verdict === undefined) {
      const strength = DIGEST_STRENGTH[record.matchingType];
      if (strength !== undefined && strength < (strongest.get(`${record.usage}/${record.selector}`) ?? 0)) {
        verdict = 'weaker-digest';
      }
    }
    if (verdict === undefined) {
      usable++;
      verdict = evaluateRecord(ctx, record, input);
    }
    const result: RecordResult = { index, record, verdict };
    results.push(result);
    if (verdict === 'matched' && matched === undefined) matched = result;
  });
  if (matched !== undefined) return decide('authenticated', matched);
  return decide(usable === 0 ? 'no-usable-records' : 'no-matching-record');
}
