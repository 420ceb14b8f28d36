/**
 * Stage: verify the client from what its handshake showed: the certificates
 * it presented and, with the native engine, the name in its TLS 1.3
 * Certificate message. Claim the name (every source of the route, in
 * precedence order), authenticate it with the connection's one TLSA lookup
 * (the early one, started from the ClientHello, when the claim names the
 * same), admit the identity. node:tls runs this after its handshake; the
 * native engine runs it while the handshake is paused, so a refusal fails
 * the handshake itself.
 */
import type { X509Certificate } from 'node:crypto';
import type { RouteConfig } from '../../config/types.js';
import type { ParsedCertificate } from '../../dane/certificate.js';
import type { ClientHelloInfo } from '../../protocol/client-hello.js';
import type { Admission } from '../../ratelimit/admission.js';
import type { Connection } from '../connection.js';
import { admitIdentity, type Release } from './admit.js';
import { authenticate } from './authenticate.js';
import { readCertificates } from './certificate.js';
import { claimName, type ClaimResult, type IdentitySource } from './claim.js';
import type { NameSource } from './identity-sources.js';
import { startLookup, type StartedLookup, type TlsaLookupSource } from './lookup.js';
import { pass, refuse, type StageResult } from './result.js';

/** What the handshake showed. */
export interface Shown {
  /** The certificates the client sent, leaf first (at most maxCertificates + 1). */
  readonly presented: readonly Pick<X509Certificate, 'raw'>[];
  /** The raw ClientName of dane_clientid in the Certificate message (native engine); undefined: none. */
  readonly certificateName?: Buffer | undefined;
}

export interface VerifyShownInput {
  readonly route: Pick<RouteConfig, 'allowlist'>;
  readonly sources: readonly IdentitySource<NameSource>[];
  readonly hello: ClientHelloInfo;
  /** The claim made from the ClientHello, and its lookup (started before the handshake). */
  readonly early: { readonly claim: ClaimResult<NameSource>; readonly lookup: StartedLookup } | undefined;
  readonly cache: TlsaLookupSource;
  readonly admission: Pick<Admission, 'admitIdentity'>;
  readonly pkixRoots: readonly ParsedCertificate[];
  readonly now: () => Date;
  /** Called when a newer connection of the same name takes this one's slot (maxConnectionsPerIdentity, newest-wins). */
  readonly onReplaced?: (name: string, detail: string) => void;
}

export interface Verified {
  readonly name: string;
  readonly leaf: ParsedCertificate;
  readonly tlsa: readonly [number, number, number];
  readonly detail: string;
  /** The chain as presented, leaf first (parsed when first called): revalidation matches it again. */
  readonly chain: () => readonly ParsedCertificate[];
  /** How long the TLSA answer that authenticated the client stays fresh (the cache's lifetime of it). */
  readonly expiresInMs: number | undefined;
  /** Gives back the identity's connection slot (call when the connection closes; idempotent). */
  readonly release: Release;
  /** The handshake is complete: the slot is confirmed (under newest-wins, older connections of the name are replaced only now). */
  readonly confirm: () => void;
}

export async function verifyShown(c: Connection, input: VerifyShownInput, shown: Shown): Promise<StageResult<Verified>> {
  const certificates = readCertificates(shown.presented);
  if (!certificates.ok) return certificates;
  const { leaf, chain } = certificates.value;
  const evidence = { hello: input.hello, leaf, certificateName: shown.certificateName };
  const claim = claimName(input.sources, 'handshake', evidence, input.route.allowlist) ?? {
    ...refuse('no-name', 'no identity source of this route named the client'),
    source: undefined,
    claimedName: undefined,
  };
  c.note({ nameSource: claim.source, claimedName: claim.claimedName });
  if (!claim.ok) return claim;
  const name = claim.value.name;
  const lookup = input.early?.claim.ok && input.early.lookup.name === name ? input.early.lookup : startLookup(input.cache, name, c.signal);
  const auth = await authenticate({ name, lookup, leaf: [leaf], chain, pkixRoots: input.pkixRoots, now: input.now(), signal: c.signal });
  c.note({ cache: auth.evidence.cache, tlsa: auth.ok ? auth.value.tlsa.join(' ') : undefined });
  c.dnsTook(auth.evidence.dnsMs);
  if (!auth.ok) return auth;
  const onReplaced = input.onReplaced;
  const slot = admitIdentity(input.admission, name, onReplaced === undefined ? undefined : (detail) => onReplaced(name, detail));
  if (!slot.ok) return slot;
  // Given back once, whoever calls first: the native engine takes the slot inside the handshake, which may still fail.
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    slot.value.release();
  };
  const settled = await lookup.settled;
  const expiresInMs = settled.ok ? settled.value.expiresInMs : undefined;
  return pass({ name, leaf, tlsa: auth.value.tlsa, detail: auth.value.detail, chain, expiresInMs, release, confirm: slot.value.confirm });
}
