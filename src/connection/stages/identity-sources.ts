/**
 * Where a client's name may come from, in order of precedence. A new source
 * (the TLS 1.3 Certificate extension, say) is one file and one line here.
 */
import { certificateSanSource } from './claim-certificate.js';
import { daneClientIdSource } from './claim-dane-clientid.js';

export const IDENTITY_SOURCES = [daneClientIdSource, certificateSanSource] as const;

/** The source a decision record names: 'extension' (dane_clientid) or 'certificate'. */
export type NameSource = (typeof IDENTITY_SOURCES)[number]['source'];
