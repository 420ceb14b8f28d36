/**
 * Stage: the certificates the client presented (read once at the end of the
 * handshake, see presentedChain), parsed: the leaf now, the whole chain
 * (at most one more than the verifier accepts) only if a record needs it.
 * Pure (bytes in).
 */
import { parseTlsPeerCertificate, type ParsedCertificate } from '../../dane/certificate.js';
import { MAX_CHAIN_LENGTH } from '../../dane/match.js';
import { pass, refuse, type StageResult } from './result.js';

export interface PresentedCertificates {
  readonly leaf: ParsedCertificate;
  /** The chain as sent, leaf first; parses on each call (may throw CertificateParseError). */
  readonly chain: () => ParsedCertificate[];
}

export function readCertificates(presented: readonly { readonly raw: Buffer }[]): StageResult<PresentedCertificates> {
  const first = presented[0];
  if (first === undefined) return refuse('no-certificate', 'the client presented no certificate');
  let leaf: ParsedCertificate;
  try {
    leaf = parseTlsPeerCertificate({ raw: first.raw });
  } catch (err) {
    return refuse('no-matching-record', `unparseable client certificate: ${(err as Error).message}`);
  }
  return pass({ leaf, chain: () => presented.slice(0, MAX_CHAIN_LENGTH + 1).map((cert) => parseTlsPeerCertificate({ raw: cert.raw })) });
}
