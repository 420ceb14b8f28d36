/** Identity source: a non-empty `dane_clientid` extension in the ClientHello names the client (before the handshake). */
import { MAX_NAME_LENGTH } from '../../dane/name.js';
import { nameFromExtension } from '../identity.js';
import { claimResult, type IdentitySource } from './claim.js';

export const daneClientIdSource: IdentitySource<'extension'> = {
  source: 'extension',
  phase: 'client-hello',
  claim: ({ hello }, allowlist) => {
    const id = hello.daneClientId;
    if (!id.present || id.name === '') return undefined;
    return claimResult(nameFromExtension(id.name, allowlist), id.name.slice(0, MAX_NAME_LENGTH));
  },
};
