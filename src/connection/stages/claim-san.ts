/** Identity source: the one allowlisted SAN dNSName of the presented certificate (compatibility; after the certificate arrives). */
import { nameFromCertificate } from '../identity.js';
import { claimResult, type IdentitySource } from './claim.js';

export const sanSource: IdentitySource<'san'> = {
  source: 'san',
  phase: 'handshake',
  claim: ({ leaf }, allowlist) => (leaf === undefined ? undefined : claimResult(nameFromCertificate(leaf.dnsNames, allowlist), undefined)),
};
