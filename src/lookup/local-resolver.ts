/**
 * TLSA records the operator trusts directly (a local file: pinning,
 * air-gapped sites, the demo) in front of DNS: a name with local records is
 * answered from them as 'secure'; any other name goes to the validating
 * resolver, or is 'no-tlsa' when there is none.
 */
import { lookupLocalTlsa } from './local-tlsa.js';
import { outcome, type LookupOutcome } from './tlsa-answer.js';
import type { TlsaResolver } from './tlsa-resolver.js';
import type { TlsaRecord } from '../dane/tlsa.js';

/** Local answers are cached like DNS answers with this TTL (the file is re-read on reload). */
const LOCAL_TTL_SECONDS = 300;

export class LocalFirstResolver implements TlsaResolver {
  constructor(
    private readonly local: ReadonlyMap<string, readonly TlsaRecord[]>,
    private readonly source: string,
    private readonly dns: TlsaResolver | undefined,
  ) {}

  lookup(name: string, signal?: AbortSignal): Promise<LookupOutcome> {
    const records = lookupLocalTlsa(this.local, name);
    if (records !== undefined && records.length > 0) {
      return Promise.resolve(outcome('secure', `${records.length} TLSA record(s) from the local file ${this.source}`, { records, ttl: LOCAL_TTL_SECONDS }));
    }
    if (this.dns) return this.dns.lookup(name, signal);
    return Promise.resolve(outcome('no-tlsa', `no records for ${name} in the local file ${this.source} and no resolver configured`, { ttl: LOCAL_TTL_SECONDS }));
  }
}
