/**
 * The whole DANE client decision: canonical name → allowlist (before any
 * DNS query) → validated TLSA lookup → matching. One reason code per
 * outcome; these codes are what logs, metrics and the CLI show.
 */
import type { Allowlist } from '../allowlist/allowlist.js';
import type { CacheStatus, TlsaCache } from '../lookup/cache.js';
import type { ParsedCertificate } from '../dane/certificate.js';
import type { LookupOutcome, LookupOutcomeKind } from '../lookup/tlsa-answer.js';
import { matchTlsa, type DaneDecision, type DecisionReason } from '../dane/match.js';
import { canonicalizeClientName } from '../dane/name.js';

export type VerificationReason =
  | DecisionReason
  | 'invalid-name'
  | 'not-allowed'
  | 'dns-no-tlsa'
  | 'dns-insecure'
  | 'dns-bogus'
  | 'dns-timeout'
  | 'dns-malformed'
  | 'dns-server-error'
  | 'dns-over-capacity';

/** Refusals that may succeed if tried again later (the operator's DNS is failing, not the client). */
export const TEMPORARY_REASONS: ReadonlySet<VerificationReason> = new Set([
  'dns-bogus',
  'dns-timeout',
  'dns-malformed',
  'dns-server-error',
  'dns-over-capacity',
]);

const LOOKUP_REASON: Readonly<Record<Exclude<LookupOutcomeKind, 'secure'>, VerificationReason>> = {
  'no-tlsa': 'dns-no-tlsa',
  insecure: 'dns-insecure',
  bogus: 'dns-bogus',
  timeout: 'dns-timeout',
  malformed: 'dns-malformed',
  'server-error': 'dns-server-error',
  'over-capacity': 'dns-over-capacity',
};

export interface VerificationResult {
  readonly authenticated: boolean;
  readonly reason: VerificationReason;
  /** Human-readable detail for logs and the CLI. */
  readonly detail: string;
  /** The canonical name, when the claim was a valid name. */
  readonly name: string | undefined;
  readonly allowedBy: string | undefined;
  readonly lookup: LookupOutcome | undefined;
  readonly cache: CacheStatus | undefined;
  readonly decision: DaneDecision | undefined;
}

export interface VerifyInput {
  readonly claimedName: string;
  readonly chain: readonly ParsedCertificate[];
  readonly cache: Pick<TlsaCache, 'lookup'>;
  /** When given, a name it does not allow is refused without any DNS query. */
  readonly allowlist?: Pick<Allowlist, 'match'>;
  readonly now?: Date;
  readonly pkixRoots?: readonly ParsedCertificate[];
  readonly signal?: AbortSignal;
}

/** Most records named in a refusal's detail (the rest are counted). */
const MAX_DETAILED_RECORDS = 8;

function describeVerdicts(decision: DaneDecision): string {
  const shown = decision.records
    .slice(0, MAX_DETAILED_RECORDS)
    .map((r) => `record ${r.index + 1} ${r.verdict}${r.detail === undefined ? '' : ` (${r.detail.slice(0, 120)})`}`);
  const rest = new Map<string, number>();
  for (const r of decision.records.slice(MAX_DETAILED_RECORDS)) rest.set(r.verdict, (rest.get(r.verdict) ?? 0) + 1);
  if (rest.size > 0) shown.push(`${decision.records.length - MAX_DETAILED_RECORDS} more (${[...rest].map(([verdict, n]) => `${n} ${verdict}`).join(', ')})`);
  return shown.join(', ') || 'nothing to match';
}

export async function verifyClient(input: VerifyInput): Promise<VerificationResult> {
  const base = { name: undefined, allowedBy: undefined, lookup: undefined, cache: undefined, decision: undefined };
  const canonical = canonicalizeClientName(input.claimedName);
  if (!canonical.ok) return { ...base, authenticated: false, reason: 'invalid-name', detail: canonical.reason };
  const name = canonical.name;
  let allowedBy: string | undefined;
  if (input.allowlist !== undefined) {
    allowedBy = input.allowlist.match(name);
    if (allowedBy === undefined) {
      return { ...base, name, authenticated: false, reason: 'not-allowed', detail: `${name} is not on the allowlist` };
    }
  }
  const { outcome: lookup, cache, prepared } = await input.cache.lookup(name, input.signal);
  const known = { ...base, name, allowedBy, lookup, cache };
  if (lookup.kind !== 'secure') {
    return { ...known, authenticated: false, reason: LOOKUP_REASON[lookup.kind], detail: lookup.detail };
  }
  const decision = await matchTlsa({
    records: lookup.records,
    prepared,
    chain: input.chain,
    claimedName: name,
    now: input.now ?? new Date(),
    pkixRoots: input.pkixRoots,
  });
  const detail = decision.authenticated
    ? `record ${(decision.matched?.index ?? 0) + 1} of ${lookup.records.length} matched`
    : `${decision.reason}: ${describeVerdicts(decision)}`;
  return { ...known, authenticated: decision.authenticated, reason: decision.reason, detail, decision };
}
