/**
 * The DANE client decision for one name and one chain, outside a
 * connection (the CLI's `check`, tests, benchmarks): the name checked once
 * (identity.ts: canonical, and allowed when an allowlist is given, before
 * any DNS query), then the authenticate stage with one lookup. The same
 * code the pipeline runs, with the same reason codes.
 */
import type { Allowlist } from '../allowlist/allowlist.js';
import type { ParsedCertificate } from '../dane/certificate.js';
import type { DaneDecision } from '../dane/match.js';
import type { CacheStatus } from '../lookup/cache.js';
import type { LookupOutcome } from '../lookup/tlsa-answer.js';
import type { ConnectionReason } from '../reasons.js';
import { checkName } from './identity.js';
import { authenticate } from './stages/authenticate.js';
import { startLookup, type TlsaLookupSource } from './stages/lookup.js';

export interface VerificationResult {
  readonly authenticated: boolean;
  readonly reason: ConnectionReason;
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
  /** The client's chain as presented, leaf first. */
  readonly chain: readonly ParsedCertificate[];
  readonly cache: TlsaLookupSource;
  /** When given, a name it does not allow is refused without any DNS query. */
  readonly allowlist?: Pick<Allowlist, 'match'>;
  readonly now?: Date;
  readonly pkixRoots?: readonly ParsedCertificate[];
  readonly signal?: AbortSignal;
}

export async function verifyClient(input: VerifyInput): Promise<VerificationResult> {
  const none = { allowedBy: undefined, lookup: undefined, cache: undefined, decision: undefined };
  const checked = checkName(input.claimedName, input.allowlist);
  if (!checked.ok) return { ...none, authenticated: false, reason: checked.reason, detail: checked.detail, name: checked.name };
  const { name, allowedBy } = checked;
  const auth = await authenticate({
    name,
    lookup: startLookup(input.cache, name, input.signal),
    leaf: input.chain.slice(0, 1),
    chain: () => input.chain,
    pkixRoots: input.pkixRoots,
    now: input.now ?? new Date(),
    signal: input.signal,
  });
  const { lookup, cache, decision } = auth.evidence;
  const known = { name, allowedBy, lookup, cache, decision };
  return auth.ok ? { ...known, authenticated: true, reason: 'authenticated', detail: auth.value.detail } : { ...known, authenticated: false, reason: auth.reason, detail: auth.detail };
}
