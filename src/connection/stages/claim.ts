/**
 * Stage: the claimed name. An identity source reads a name from what the
 * connection has shown so far (the ClientHello; after the handshake, the
 * certificate) and returns undefined when it has nothing to say; the first
 * source of the phase that answers decides. The answer's name is canonical
 * and allowlisted (identity.ts, the one place that does it). Pure.
 */
import type { Allowlist } from '../../allowlist/allowlist.js';
import type { ParsedCertificate } from '../../dane/certificate.js';
import type { ClientHelloInfo } from '../../protocol/client-hello.js';
import type { ClaimedName } from '../identity.js';
import type { Refusal } from './result.js';

/** What a source may look at: the ClientHello; after the handshake also the leaf the client presented. */
export interface ClaimEvidence {
  readonly hello: Pick<ClientHelloInfo, 'daneClientId'>;
  readonly leaf?: Pick<ParsedCertificate, 'dnsNames'>;
  /** The raw ClientName of dane_clientid in the TLS 1.3 Certificate message (native engine); undefined or empty: none. */
  readonly certificateName?: Buffer | undefined;
}

/** 'client-hello': before the handshake (an allowed name starts the lookup at once); 'handshake': once the client's certificate is in. */
export type ClaimPhase = 'client-hello' | 'handshake';

/** A canonical, allowlisted name. */
export interface Claim {
  readonly name: string;
  readonly allowedBy: string;
}

/** The decision record's view of a claim, success or refusal: where the name came from, and the name when one can be shown. */
export interface ClaimShown<S extends string = string> {
  readonly source: S;
  readonly claimedName: string | undefined;
}

export type ClaimResult<S extends string = string> = ({ readonly ok: true; readonly value: Claim } | Refusal) & ClaimShown<S>;

export interface IdentitySource<S extends string = string> {
  readonly source: S;
  readonly phase: ClaimPhase;
  claim(evidence: ClaimEvidence, allowlist: Pick<Allowlist, 'match'>): ClaimResult<S> | undefined;
}

/** A ClaimedName (identity.ts) as a stage result; `shown` is what the record names on a refusal. */
export function claimResult<S extends string>(claimed: ClaimedName<S>, shown: string | undefined): ClaimResult<S> {
  if (claimed.ok) return { ok: true, value: { name: claimed.name, allowedBy: claimed.allowedBy }, source: claimed.source, claimedName: claimed.name };
  return { ok: false, reason: claimed.reason, detail: claimed.detail, source: claimed.source, claimedName: shown };
}

/**
 * The first answer of the sources, in list (precedence) order; undefined when
 * none has anything to say. Phase 'client-hello' asks only the sources that
 * can answer from the ClientHello; 'handshake' asks every source, so a name
 * in the Certificate message takes precedence over one in the ClientHello.
 */
export function claimName<S extends string>(sources: readonly IdentitySource<S>[], phase: ClaimPhase, evidence: ClaimEvidence, allowlist: Pick<Allowlist, 'match'>): ClaimResult<S> | undefined {
  for (const source of sources) {
    if (phase === 'client-hello' && source.phase !== phase) continue;
    const answer = source.claim(evidence, allowlist);
    if (answer !== undefined) return answer;
  }
  return undefined;
}
