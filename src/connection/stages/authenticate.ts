/**
 * Stage: authenticate a claimed (canonical, allowlisted) name with the
 * connection's one TLSA lookup and the certificates the client presented.
 * The leaf alone is matched first; the whole chain only when the leaf did
 * not match and a record looks at issuers (DANE-TA, PKIX), with the same
 * lookup answer: one lookup per connection, so the record's cache status is
 * that lookup's and its DNS time is the lookup's alone. Sockets play no part.
 */
import { CertificateParseError, type ParsedCertificate } from '../../dane/certificate.js';
import { matchTlsa, type DaneDecision, type DecisionReason } from '../../dane/match.js';
import type { CacheStatus, CachedLookup } from '../../lookup/cache.js';
import type { LookupOutcome, LookupOutcomeKind } from '../../lookup/tlsa-answer.js';
import type { RefusalReason } from '../../reasons.js';
import type { StartedLookup } from './lookup.js';
import { pass, refuse, type StageResult } from './result.js';

const LOOKUP_REASON: Readonly<Record<Exclude<LookupOutcomeKind, 'secure'>, RefusalReason>> = {
  'no-tlsa': 'dns-no-tlsa',
  insecure: 'dns-insecure',
  bogus: 'dns-bogus',
  timeout: 'dns-timeout',
  malformed: 'dns-malformed',
  'server-error': 'dns-server-error',
  'over-capacity': 'dns-over-capacity',
};

/** The matcher's refusals are catalog reasons (checked by the compiler). */
type MatchRefusal = Exclude<DecisionReason, 'authenticated'>;
const matchRefusal = (reason: MatchRefusal): RefusalReason => reason;

export interface AuthenticateInput {
  /** The canonical, allowlisted name (the claim stage's). */
  readonly name: string;
  /** This connection's lookup of `name` (started by the pipeline, perhaps during the handshake). */
  readonly lookup: StartedLookup;
  /** The leaf the client presented, alone (empty: none). */
  readonly leaf: readonly ParsedCertificate[];
  /** The whole chain as presented, leaf first; parsed only when a record needs the issuers (may throw CertificateParseError). */
  readonly chain: () => readonly ParsedCertificate[];
  readonly pkixRoots?: readonly ParsedCertificate[];
  readonly now: Date;
  /** Aborted when the client goes away: the result is then a client-closed refusal. */
  readonly signal?: AbortSignal;
}

/** What the decision record and the CLI show about the lookup and the matching, whatever the outcome. */
export interface AuthenticationEvidence {
  readonly lookup: LookupOutcome | undefined;
  readonly cache: CacheStatus | undefined;
  readonly decision: DaneDecision | undefined;
  /** How long the lookup took (milliseconds, unrounded); undefined when it never answered. */
  readonly dnsMs: number | undefined;
}

export interface Verified {
  /** The matching record's usage, selector and matching type. */
  readonly tlsa: readonly [number, number, number];
  readonly detail: string;
}

export type Authentication = StageResult<Verified> & { readonly evidence: AuthenticationEvidence };

const NO_EVIDENCE: AuthenticationEvidence = { lookup: undefined, cache: undefined, decision: undefined, dnsMs: undefined };

/** Most records named in a refusal's detail (the rest are counted). */
const MAX_DETAILED_RECORDS = 8;

export function describeVerdicts(decision: Pick<DaneDecision, 'records'>): string {
  const shown = decision.records.slice(0, MAX_DETAILED_RECORDS).map((r) => `record ${r.index + 1} ${r.verdict}${r.detail === undefined ? '' : ` (${r.detail.slice(0, 120)})`}`);
  const rest = new Map<string, number>();
  for (const r of decision.records.slice(MAX_DETAILED_RECORDS)) rest.set(r.verdict, (rest.get(r.verdict) ?? 0) + 1);
  if (rest.size > 0) shown.push(`${decision.records.length - MAX_DETAILED_RECORDS} more (${[...rest].map(([verdict, n]) => `${n} ${verdict}`).join(', ')})`);
  return shown.join(', ') || 'nothing to match';
}

const gone = (): Authentication => ({ ...refuse('client-closed', 'client went away during verification'), evidence: NO_EVIDENCE });
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export async function authenticate(input: AuthenticateInput): Promise<Authentication> {
  const settled = await input.lookup.settled;
  if (input.signal?.aborted) return gone();
  // Not expected from the cache: fail closed, with a reason.
  if (!settled.ok) return { ...refuse('dns-server-error', `verification failed: ${message(settled.error)}`), evidence: NO_EVIDENCE };
  const { outcome: lookup, cache } = settled.value;
  const evidence = { lookup, cache, decision: undefined, dnsMs: settled.ms };
  if (lookup.kind !== 'secure') return { ...refuse(LOOKUP_REASON[lookup.kind], lookup.detail), evidence };
  let decision: DaneDecision;
  try {
    decision = await matchLeafThenChain(input, settled.value);
  } catch (err) {
    if (input.signal?.aborted) return gone();
    // A certificate OpenSSL read but whose details cannot be parsed: fail closed.
    return { ...refuse(err instanceof CertificateParseError ? 'no-matching-record' : 'dns-server-error', `verification failed: ${message(err)}`), evidence: NO_EVIDENCE };
  }
  if (input.signal?.aborted) return gone();
  const matched = decision.matched?.record;
  const withDecision = { ...evidence, decision };
  if (!decision.authenticated || matched === undefined) {
    const reason = decision.reason === 'authenticated' ? 'no-matching-record' : matchRefusal(decision.reason);
    return { ...refuse(reason, `${decision.reason}: ${describeVerdicts(decision)}`), evidence: withDecision };
  }
  const detail = `record ${(decision.matched?.index ?? 0) + 1} of ${lookup.records.length} matched`;
  return { ...pass({ tlsa: [matched.usage, matched.selector, matched.matchingType] as const, detail }), evidence: withDecision };
}

async function matchLeafThenChain(input: AuthenticateInput, found: CachedLookup): Promise<DaneDecision> {
  const match = (chain: readonly ParsedCertificate[]): Promise<DaneDecision> =>
    matchTlsa({ records: found.outcome.records, prepared: found.prepared, chain, claimedName: input.name, now: input.now, pkixRoots: input.pkixRoots });
  const first = await match(input.leaf);
  const needsChain = found.outcome.records.some((r) => r.usage !== 3);
  if (first.authenticated || !needsChain || input.signal?.aborted) return first;
  const chain = input.chain();
  return chain.length > input.leaf.length ? match(chain) : first;
}
