/** The one interface of every link in the TLSA lookup chain (local file, gate, DNS query, and test fakes). */
import type { LookupOutcome } from './tlsa-answer.js';

export interface TlsaResolver {
  /** The TLSA RRset of `name` (canonical client name). Rejects only when `signal` aborts. */
  lookup(name: string, signal?: AbortSignal): Promise<LookupOutcome>;
}
