/**
 * TLSA matching for DANE client authentication: RFC 6698 section 2.1 with
 * the RFC 7671 updates. Everything it needs (records, chain, claimed name,
 * the time, the PKIX roots) is passed in; the only state is a memo of
 * prepared RRsets (anchors parsed once per RRset object, i.e. per cached
 * answer).
 *
 * Cost bounds: at most `maxRecords` records of an RRset are considered;
 * evaluation stops at the first match (DANE-EE records, which cost a hash,
 * first); keys in records are checked against key-policy.ts before use;
 * path validation (path-validation.ts) bounds its own search and checks
 * signatures off the event loop, and refuses name constraints over its
 * limits; an anchor in a record with more nameConstraints subtrees than
 * MAX_NAME_CONSTRAINT_SUBTREES is unusable (judged once per RRset).
 */
import { createPublicKey } from 'node:crypto';
import { extractSpki, MAX_CERTIFICATE_BYTES, type ParsedCertificate } from './certificate.js';
import { keyPolicyViolation } from './key-policy.js';
import type * as pkijs from 'pkijs';
import {
  NameConstraintLimitError,
  nameConstraintLimitViolation,
  pathCertificateFor,
  publicKeyInfo,
  syntheticAnchor,
  toPathCertificate,
  validatePath,
  type PathCertificate,
  type PathFailure,
} from './path-validation.js';
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
  /** Beyond the first `maxRecords` records of the RRset: not considered. */
  | 'over-record-limit'
  /** Another record matched first: this one was not evaluated. */
  | 'not-evaluated'
  /** Needs path validation, but MAX_PATH_VALIDATIONS records already had theirs in this decision. */
  | 'over-validation-budget'
  /** The certificate or key the record carries cannot be used (unreadable, a key outside key-policy.ts, nameConstraints over MAX_NAME_CONSTRAINT_SUBTREES). */
  | 'unusable-anchor'
  /** Usage 1/3: the end-entity certificate does not match. */
  | 'ee-mismatch'
  /** Usage 0/2: no certificate (or key) matching the record is in the presented chain (or the record). */
  | 'ta-not-found'
  /** Usage 0/2: no valid signature chain leads from the EE to the trust anchor. */
  | 'chain-broken'
  | 'certificate-expired'
  | 'certificate-not-yet-valid'
  /** An issuing certificate lacks basicConstraints cA (or keyCertSign) or exceeds its pathLenConstraint. */
  | 'issuer-not-ca'
  /** RFC 5280 name constraints of a CA (or the anchor) on the path exclude a name below it, or would cost more than path-validation.ts allows. */
  | 'name-constraints-violated'
  /** A certificate on the path has a critical extension we do not process. */
  | 'unknown-critical-extension'
  /** RFC 5280 certificate policy processing failed. */
  | 'policy-violation'
  /** The end-entity certificate cannot be read for path validation. */
  | 'unparseable-certificate'
  /** Usage 0/1/2: the claimed name is not a SAN dNSName of the EE. */
  | 'name-mismatch'
  /** Usage 0/1: no CA bundle is configured, so PKIX usages cannot be satisfied. */
  | 'pkix-not-configured'
  /** Usage 0/1: no valid path from the EE to a configured CA (or, for PKIX-TA, the record's anchor is not on it). */
  | 'pkix-untrusted';

export interface RecordResult {
  readonly index: number;
  readonly record: TlsaRecord;
  readonly verdict: RecordVerdict;
  /** Why, when there is more to say than the verdict (bounded). */
  readonly detail?: string;
}

export type DecisionReason = 'authenticated' | 'no-certificate' | 'chain-too-long' | 'no-records' | 'no-usable-records' | 'no-matching-record';

export interface DaneDecision {
  readonly authenticated: boolean;
  readonly reason: DecisionReason;
  /** The record that authenticated the client. */
  readonly matched: RecordResult | undefined;
  /** One entry per input record, in input order. */
  readonly records: readonly RecordResult[];
  /** Signature checks made for this decision (all off the event loop). */
  readonly signatureChecks: number;
}

export interface MatchInput {
  readonly records: readonly TlsaRecord[];
  /** The same records prepared (prepareTlsaSet), e.g. by the cache; made here when absent. */
  readonly prepared?: PreparedTlsaSet;
  /** Most records considered when `prepared` is absent; default DEFAULT_MAX_TLSA_RECORDS. */
  readonly maxRecords?: number;
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
/**
 * Records of one RRset considered by default: real RRsets hold 1-4 (current
 * and next key, perhaps two usages); each considered DANE-TA/PKIX record may
 * cost one bounded path validation.
 */
export const DEFAULT_MAX_TLSA_RECORDS = 16;
/** Upper bound for the configurable cap (the DNS layer refuses RRsets above 256 records). */
export const MAX_TLSA_RECORDS_LIMIT = 256;
/**
 * Most records whose path is validated in one decision (DANE-TA, PKIX-TA,
 * PKIX-EE); each validation costs ~0.3-2 ms of event loop in pkijs plus
 * bounded signature checks on the thread pool. Real RRsets need 1-4.
 */
export const MAX_PATH_VALIDATIONS = 8;

/** Relative digest strength for RFC 7671 digest agility; Full(0) takes no part. */
const DIGEST_STRENGTH: Readonly<Record<number, number>> = { [MatchingType.SHA256]: 1, [MatchingType.SHA512]: 2 };

/** Stand-in anchors kept per bare-key record (one per issuer name seen), at most this many. */
const MAX_STAND_INS_PER_KEY = 16;

type PreparedAnchor =
  | { readonly kind: 'certificate'; readonly cert: PathCertificate }
  | {
      readonly kind: 'key';
      readonly info: pkijs.PublicKeyInfo;
      /** Stand-in anchor certificates by issuer name (hex DER), made on first use. */
      readonly standIns: Map<string, PathCertificate>;
    };

/** One record, judged once per RRset: its static verdict (unusable, weaker, over the cap) or what it carries. */
export interface PreparedRecord {
  readonly index: number;
  readonly record: TlsaRecord;
  /** Set when the record takes no part in matching. */
  readonly verdict: RecordVerdict | undefined;
  readonly detail: string | undefined;
  readonly anchor: PreparedAnchor | undefined;
}

export interface PreparedTlsaSet {
  readonly maxRecords: number;
  readonly entries: readonly PreparedRecord[];
  /** Records that take part in matching. */
  readonly usable: number;
}

function isKnown(record: TlsaRecord): RecordVerdict | undefined {
  if (record.usage > Usage.DANE_EE) return 'unknown-usage';
  if (record.selector > Selector.SPKI) return 'unknown-selector';
  if (record.matchingType > MatchingType.SHA512) return 'unknown-matching-type';
  const expected = DIGEST_LENGTH[record.matchingType];
  if (expected !== undefined && record.data.length !== expected) return 'bad-digest-length';
  return undefined;
}

/**
 * What a TA record carries itself: a `2 0 0`/`0 0 0` certificate or a
 * `2 1 0` key, parsed and its key checked against key-policy.ts.
 */
function prepareAnchor(record: TlsaRecord): { anchor?: PreparedAnchor; refused?: string } {
  if (record.matchingType !== MatchingType.FULL) return {};
  if (record.usage !== Usage.DANE_TA && record.usage !== Usage.PKIX_TA) return {};
  if (record.usage === Usage.PKIX_TA && record.selector === Selector.SPKI) return {};
  try {
    if (record.selector === Selector.CERT) {
      if (record.data.length > MAX_CERTIFICATE_BYTES) return { refused: `certificate of ${record.data.length} bytes exceeds ${MAX_CERTIFICATE_BYTES}` };
      const violation = keyPolicyViolation(createPublicKey({ key: extractSpki(record.data), format: 'der', type: 'spki' }));
      if (violation !== undefined) return { refused: violation };
      const cert = toPathCertificate(record.data);
      const constraints = nameConstraintLimitViolation(cert.cert);
      if (constraints !== undefined) return { refused: constraints };
      return { anchor: { kind: 'certificate', cert } };
    }
    const violation = keyPolicyViolation(createPublicKey({ key: record.data, format: 'der', type: 'spki' }));
    if (violation !== undefined) return { refused: violation };
    return { anchor: { kind: 'key', info: publicKeyInfo(record.data), standIns: new Map() } };
  } catch (err) {
    if (err instanceof NameConstraintLimitError) return { refused: err.message };
    return { refused: `unreadable: ${(err as Error).message}`.slice(0, 200) };
  }
}

const prepared = new WeakMap<readonly TlsaRecord[], PreparedTlsaSet>();

/**
 * Judge an RRset once: the cap, RFC 7671 digest agility, unusable records,
 * and the anchors TA records carry. Memoised on the records array, so a
 * cached RRset is prepared once however many connections use it.
 */
export function prepareTlsaSet(records: readonly TlsaRecord[], maxRecords = DEFAULT_MAX_TLSA_RECORDS): PreparedTlsaSet {
  const memo = prepared.get(records);
  if (memo !== undefined && memo.maxRecords === maxRecords) return memo;
  if (!Number.isInteger(maxRecords) || maxRecords < 1) throw new RangeError('maxRecords must be a positive integer');
  const considered = records.slice(0, maxRecords);
  // RFC 7671 section 9: per usage+selector, only the strongest digest present counts.
  const strongest = new Map<string, number>();
  for (const record of considered) {
    if (isKnown(record) !== undefined) continue;
    const strength = DIGEST_STRENGTH[record.matchingType];
    if (strength === undefined) continue;
    const key = `${record.usage}/${record.selector}`;
    strongest.set(key, Math.max(strongest.get(key) ?? 0, strength));
  }
  let usable = 0;
  const entries = records.map((record, index): PreparedRecord => {
    const base = { index, record, detail: undefined, anchor: undefined };
    if (index >= maxRecords) return { ...base, verdict: 'over-record-limit', detail: `only the first ${maxRecords} records are considered` };
    const unknown = isKnown(record);
    if (unknown !== undefined) return { ...base, verdict: unknown };
    const strength = DIGEST_STRENGTH[record.matchingType];
    if (strength !== undefined && strength < (strongest.get(`${record.usage}/${record.selector}`) ?? 0)) return { ...base, verdict: 'weaker-digest' };
    const { anchor, refused } = prepareAnchor(record);
    if (refused !== undefined) return { ...base, verdict: 'unusable-anchor', detail: refused };
    usable++;
    return { ...base, verdict: undefined, anchor };
  });
  const set: PreparedTlsaSet = { maxRecords, entries, usable };
  prepared.set(records, set);
  return set;
}

/** Bundle roots parsed for path validation, or why one cannot be used (a string). */
const pkixMemo = new WeakMap<ParsedCertificate, PathCertificate | string>();
function pkixAnchor(root: ParsedCertificate): PathCertificate | string {
  let value = pkixMemo.get(root);
  if (value === undefined) {
    try {
      value = pathCertificateFor(root.der, root.sha256Hex);
    } catch (err) {
      value = err instanceof NameConstraintLimitError ? `trust anchor: ${err.message}` : 'unreadable';
    }
    pkixMemo.set(root, value);
  }
  return value;
}

function recordMatchesDer(record: TlsaRecord, der: Buffer): boolean {
  try {
    const data = applyMatchingType(record.matchingType, record.selector === Selector.CERT ? der : extractSpki(der));
    return data !== undefined && data.equals(record.data);
  } catch {
    return false;
  }
}

/** Per-decision memo: selected/hashed bytes and the chain parsed for path validation. */
class ChainContext {
  private readonly digests = new Map<string, Buffer>();
  private readonly pathCerts = new Map<number, PathCertificate | null>();
  /** Presented certificates refused before any parse for nameConstraints over MAX_NAME_CONSTRAINT_SUBTREES, by index. */
  private readonly overConstrained = new Map<number, string>();
  signatureChecks = 0;
  constructor(readonly chain: readonly ParsedCertificate[]) {}

  matches(certIndex: number, record: TlsaRecord): boolean {
    const key = `${certIndex}/${record.selector}/${record.matchingType}`;
    let value = this.digests.get(key);
    if (value === undefined) {
      const cert = this.chain[certIndex] as ParsedCertificate;
      value = applyMatchingType(record.matchingType, record.selector === Selector.CERT ? cert.der : cert.spki);
      if (value === undefined) return false;
      this.digests.set(key, value);
    }
    return value.equals(record.data);
  }

  /** The presented certificates (from index 1) that match `record`. */
  presentedMatches(record: TlsaRecord): number[] {
    const found: number[] = [];
    for (let i = 1; i < this.chain.length; i++) if (this.matches(i, record)) found.push(i);
    return found;
  }

  pathCert(index: number): PathCertificate | undefined {
    let value = this.pathCerts.get(index);
    if (value === undefined) {
      try {
        const cert = this.chain[index] as ParsedCertificate;
        value = pathCertificateFor(cert.der, cert.sha256Hex);
      } catch (err) {
        if (err instanceof NameConstraintLimitError) this.overConstrained.set(index, `${index === 0 ? 'end-entity certificate' : `untrusted certificate ${index}`}: ${err.message}`);
        value = null;
      }
      this.pathCerts.set(index, value);
    }
    return value ?? undefined;
  }

  /**
   * Why path validation may not run on this chain: a presented certificate
   * (any of them could be on the path) with nameConstraints over the limit.
   */
  nameConstraintRefusal(): string | undefined {
    for (let i = 0; i < this.chain.length; i++) {
      this.pathCert(i);
      const why = this.overConstrained.get(i);
      if (why !== undefined) return why;
    }
    return undefined;
  }

  intermediates(): PathCertificate[] {
    const out: PathCertificate[] = [];
    for (let i = 1; i < this.chain.length; i++) {
      const c = this.pathCert(i);
      if (c !== undefined) out.push(c);
    }
    return out;
  }
}

type Verdict = { verdict: RecordVerdict; detail?: string };

function nameVerdict(ee: ParsedCertificate, claimedName: string): Verdict {
  return ee.dnsNames.includes(claimedName) ? { verdict: 'matched' } : { verdict: 'name-mismatch', detail: `${claimedName} is not a SAN dNSName of the certificate` };
}

function pathFailure(failure: PathFailure, detail: string): Verdict {
  return { verdict: failure, detail: detail.slice(0, 200) };
}

/** Each parsed certificate's issuer name as hex DER (an encoding costs ~0.1 ms of asn1js; parsed certificates are memoised). */
const issuerKeys = new WeakMap<pkijs.Certificate, string>();
function issuerKey(cert: pkijs.Certificate): string {
  let key = issuerKeys.get(cert);
  if (key === undefined) {
    key = Buffer.from(cert.issuer.toSchema().toBER(false)).toString('hex');
    issuerKeys.set(cert, key);
  }
  return key;
}

/** Bare-key anchors (`2 1 0`): one stand-in certificate per distinct issuer name in the presented chain, kept with the record. */
function keyAnchors(ctx: ChainContext, leaf: PathCertificate, anchor: Extract<PreparedAnchor, { kind: 'key' }>): PathCertificate[] {
  const anchors = new Map<string, PathCertificate>();
  for (const c of [leaf, ...ctx.intermediates()]) {
    const name = issuerKey(c.cert);
    if (anchors.has(name)) continue;
    let standIn = anchor.standIns.get(name);
    if (standIn === undefined) {
      standIn = syntheticAnchor(c.cert.issuer, anchor.info);
      if (anchor.standIns.size >= MAX_STAND_INS_PER_KEY) anchor.standIns.clear();
      anchor.standIns.set(name, standIn);
    }
    anchors.set(name, standIn);
  }
  return [...anchors.values()];
}

async function evaluateDaneTa(ctx: ChainContext, entry: PreparedRecord, input: MatchInput): Promise<Verdict> {
  const { record, anchor } = entry;
  const presented = ctx.presentedMatches(record);
  if (presented.length === 0 && anchor === undefined) return { verdict: 'ta-not-found' };
  const overConstrained = ctx.nameConstraintRefusal();
  if (overConstrained !== undefined) return { verdict: 'name-constraints-violated', detail: overConstrained };
  const leaf = ctx.pathCert(0);
  if (leaf === undefined) return { verdict: 'unparseable-certificate' };
  const anchors = presented.map((i) => ctx.pathCert(i)).filter((c): c is PathCertificate => c !== undefined);
  if (anchor?.kind === 'certificate') anchors.push(anchor.cert);
  else if (anchor?.kind === 'key') anchors.push(...keyAnchors(ctx, leaf, anchor));
  if (anchors.length === 0) return { verdict: 'ta-not-found' };
  const result = await validatePath({ leaf, intermediates: ctx.intermediates(), anchors, now: input.now });
  ctx.signatureChecks += result.signatureChecks;
  if (!result.ok) return pathFailure(result.failure, result.detail);
  return nameVerdict(ctx.chain[0] as ParsedCertificate, input.claimedName);
}

/**
 * PKIX-TA / PKIX-EE: ordinary path validation to the configured bundle. A
 * PKIX-TA `0 0 0` record's certificate is offered to path building as an
 * untrusted certificate (as OpenSSL does); it is never an anchor by itself.
 * PKIX-TA: the record must designate a certificate on the validated path
 * above the EE, the bundle's root included (it need not be presented).
 */
async function evaluatePkix(ctx: ChainContext, entry: PreparedRecord, input: MatchInput): Promise<Verdict> {
  const { record, anchor } = entry;
  const roots = input.pkixRoots ?? [];
  if (record.usage === Usage.PKIX_EE) {
    if (!ctx.matches(0, record)) return { verdict: 'ee-mismatch' };
  } else {
    const candidate = ctx.presentedMatches(record).length > 0 || anchor?.kind === 'certificate' || roots.some((r) => recordMatchesDer(record, r.der));
    if (!candidate) return { verdict: 'ta-not-found' };
  }
  if (roots.length === 0) return { verdict: 'pkix-not-configured' };
  const overConstrained = ctx.nameConstraintRefusal();
  if (overConstrained !== undefined) return { verdict: 'name-constraints-violated', detail: overConstrained };
  const leaf = ctx.pathCert(0);
  if (leaf === undefined) return { verdict: 'unparseable-certificate' };
  const bundle = roots.map(pkixAnchor);
  const anchors = bundle.filter((c): c is PathCertificate => typeof c !== 'string');
  // Every bundle root refused: say why when it is the nameConstraints bound.
  const refusedRoot = bundle.find((c): c is string => typeof c === 'string' && c !== 'unreadable');
  if (anchors.length === 0 && refusedRoot !== undefined) return { verdict: 'name-constraints-violated', detail: refusedRoot };
  const intermediates = ctx.intermediates();
  if (anchor?.kind === 'certificate') intermediates.push(anchor.cert);
  const result = await validatePath({ leaf, intermediates, anchors, now: input.now });
  ctx.signatureChecks += result.signatureChecks;
  if (!result.ok) return result.failure === 'chain-broken' ? { verdict: 'pkix-untrusted', detail: result.detail.slice(0, 200) } : pathFailure(result.failure, result.detail);
  if (record.usage === Usage.PKIX_TA && !result.path.slice(1).some((c) => !c.synthetic && recordMatchesDer(record, c.der))) {
    return { verdict: 'pkix-untrusted', detail: 'the record does not designate a certificate on the validated path' };
  }
  return nameVerdict(ctx.chain[0] as ParsedCertificate, input.claimedName);
}

/** Would evaluating this TA/PKIX record validate a path (rather than fail at once on a cheap check)? */
function needsPath(ctx: ChainContext, entry: PreparedRecord, input: MatchInput): boolean {
  const { record, anchor } = entry;
  if (record.usage === Usage.DANE_TA) return anchor !== undefined || ctx.presentedMatches(record).length > 0;
  if ((input.pkixRoots ?? []).length === 0) return false;
  if (record.usage === Usage.PKIX_EE) return ctx.matches(0, record);
  return true;
}

function evaluateRecord(ctx: ChainContext, entry: PreparedRecord, input: MatchInput): Verdict | Promise<Verdict> {
  switch (entry.record.usage) {
    case Usage.DANE_EE:
      // RFC 7671 section 5.1: no name check, no validity dates.
      return { verdict: ctx.matches(0, entry.record) ? 'matched' : 'ee-mismatch' };
    case Usage.DANE_TA:
      return evaluateDaneTa(ctx, entry, input);
    default:
      return evaluatePkix(ctx, entry, input);
  }
}

/**
 * Decide whether `chain` authenticates as `claimedName` under `records`.
 * Stops at the first match; DANE-EE records (a hash each) are tried before
 * the records that need path validation. Never throws for hostile input.
 */
export async function matchTlsa(input: MatchInput): Promise<DaneDecision> {
  const { records, chain } = input;
  const results: RecordResult[] = [];
  const ctx = new ChainContext(chain);
  const decide = (reason: DecisionReason, matched?: RecordResult): DaneDecision => ({
    authenticated: reason === 'authenticated',
    reason,
    matched,
    records: results,
    signatureChecks: ctx.signatureChecks,
  });
  if (chain.length === 0) return decide('no-certificate');
  if (chain.length > MAX_CHAIN_LENGTH) return decide('chain-too-long');
  if (records.length === 0) return decide('no-records');

  const set = input.prepared ?? prepareTlsaSet(records, input.maxRecords);
  const verdicts = new Map<number, Verdict>();
  let matched: PreparedRecord | undefined;
  const pending = set.entries.filter((e) => e.verdict === undefined);
  const order = [...pending.filter((e) => e.record.usage === Usage.DANE_EE), ...pending.filter((e) => e.record.usage !== Usage.DANE_EE)];
  let validations = 0;
  for (const entry of order) {
    if (entry.record.usage !== Usage.DANE_EE && needsPath(ctx, entry, input) && ++validations > MAX_PATH_VALIDATIONS) {
      verdicts.set(entry.index, { verdict: 'over-validation-budget', detail: `only ${MAX_PATH_VALIDATIONS} path validations per connection` });
      continue;
    }
    let verdict: Verdict;
    try {
      verdict = await evaluateRecord(ctx, entry, input);
    } catch (err) {
      // Not expected (path validation reports failures as verdicts): fail closed for this record, never for the process.
      verdict = { verdict: 'chain-broken', detail: `validation error: ${String((err as Error).message ?? err)}`.slice(0, 200) };
    }
    verdicts.set(entry.index, verdict);
    if (verdict.verdict === 'matched') {
      matched = entry;
      break;
    }
  }
  let matchedResult: RecordResult | undefined;
  for (const entry of set.entries) {
    const v: Verdict = entry.verdict !== undefined ? { verdict: entry.verdict, detail: entry.detail } : (verdicts.get(entry.index) ?? { verdict: 'not-evaluated' });
    const result: RecordResult =
      v.detail === undefined ? { index: entry.index, record: entry.record, verdict: v.verdict } : { index: entry.index, record: entry.record, verdict: v.verdict, detail: v.detail };
    results.push(result);
    if (entry === matched) matchedResult = result;
  }
  if (matchedResult !== undefined) return decide('authenticated', matchedResult);
  return decide(set.usable === 0 ? 'no-usable-records' : 'no-matching-record');
}
