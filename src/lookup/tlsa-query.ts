/**
 * The TLSA query: asks the DNS exchange (src/dns/) for a name's TLSA RRset
 * and judges the answer with tlsa-answer.ts. Trusts the AD bit of a
 * validating resolver reached over a secure channel (loopback, or DNS over
 * TLS; validateResolverOptions enforces that).
 */
import { DnsExchange, type DnsClient } from '../dns/exchange.js';
import type { ResolverOptions } from '../dns/resolver.js';
import { judgeTlsaAnswer, outcome, tlsaQuestion, type LookupOutcome } from './tlsa-answer.js';
import type { TlsaResolver } from './tlsa-resolver.js';

/** Outcomes that answer the question (the detail then names the server). */
const isDefinitive = (o: LookupOutcome): boolean => o.kind === 'secure' || o.kind === 'no-tlsa' || o.kind === 'insecure';

export class DnsTlsaResolver implements TlsaResolver {
  private readonly client: DnsClient;

  /** Over a DNS exchange built from `source` (throws ResolverConfigError when invalid), or over any DnsClient. */
  constructor(source: ResolverOptions | DnsClient) {
    this.client = 'query' in source ? source : new DnsExchange(source);
  }

  /** Look up the TLSA RRset of `name` (canonical client name). Rejects only when `signal` aborts. */
  async lookup(name: string, signal?: AbortSignal): Promise<LookupOutcome> {
    const result = await this.client.query(tlsaQuestion(name), signal);
    if (!result.ok) return outcome(result.kind, result.detail);
    const { response } = result;
    const judged = judgeTlsaAnswer(name, response);
    const note = response.note ? ` (${response.note})` : '';
    const from = isDefinitive(judged) ? ` from ${response.from}` : '';
    return { ...judged, detail: `${judged.detail}${note}${from}` };
  }
}
