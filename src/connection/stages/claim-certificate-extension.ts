/**
 * Identity source: `dane_clientid` in the end-entity entry of the client's
 * TLS 1.3 Certificate message (draft-ietf-dance-client-auth-13), which only
 * the native engine can ask for and read. The engine hands over the raw
 * ClientName bytes; they are read one byte per character, so anything but
 * ASCII name characters fails canonicalisation instead of being decoded.
 */
import { MAX_NAME_LENGTH } from '../../dane/name.js';
import { nameFromExtension } from '../identity.js';
import { claimResult, type IdentitySource } from './claim.js';

export const certificateExtensionSource: IdentitySource<'certificate-extension'> = {
  source: 'certificate-extension',
  phase: 'handshake',
  claim: ({ certificateName }, allowlist) => {
    if (certificateName === undefined || certificateName.length === 0) return undefined;
    const raw = certificateName.toString('latin1');
    return claimResult(nameFromExtension(raw, allowlist, 'certificate-extension'), raw.slice(0, MAX_NAME_LENGTH));
  },
};
