/** Identity source: a non-empty `dane_clientid` extension in the ClientHello names the client (draft-ietf-dance-tls-clientid-07; before the handshake). */
import { MAX_NAME_LENGTH } from '../../dane/name.js';
import { nameFromExtension } from '../identity.js';
import { claimResult, type IdentitySource } from './claim.js';

export const clientHelloExtensionSource: IdentitySource<'clienthello-extension'> = {
  source: 'clienthello-extension',
  phase: 'client-hello',
  claim: ({ hello }, allowlist) => {
    const id = hello.daneClientId;
    if (!id.present || id.name === '') return undefined;
    return claimResult(nameFromExtension(id.name, allowlist, 'clienthello-extension'), id.name.slice(0, MAX_NAME_LENGTH));
  },
};
