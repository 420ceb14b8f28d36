/** Identity source: the one allowlisted SAN dNSName of the presented certificate (after the handshake). */
import { nameFromCertificate } from '../identity.js';
import { claimResult, type IdentitySource } from './claim.js';

export const certificateSanSource: IdentitySource<'certificate'> = {
  source: 'certificate',
  phase: 'handshake',
  claim: ({ leaf }, allowlist) => (leaf === undefined ? undefined : claimResult(nameFromCertificate(leaf.dnsNames, allowlist), undefined)),
};
