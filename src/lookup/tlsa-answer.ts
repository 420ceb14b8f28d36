/**
 * Judging the answers of a validating resolver to TLSA queries (trust-AD
 * mode: the resolver validates, we trust its AD bit over a secure channel).
 * Pure functions: bytes or a checked DNS answer in, verdict out. Every byte
 * is hostile; nothing here throws on bad input. The generic checks (ID,
 * question, TC, framing) are src/dns/message.ts's.
 */
import { parseTlsaWire, type TlsaRecord } from '../dane/tlsa.js';
import { checkResponse, encodeQuery, extendedError, negativeTtl, RCODE, type DnsAnswer, type DnsQuestion } from '../dns/message.js';

export type LookupOutcomeKind =
  /** AD=1 NOERROR with TLSA records for the name. */
  | 'secure'
  /** AD=1 NXDOMAIN or NODATA: the name publishes no TLSA records (permanent refusal). */
  | 'no-tlsa'
  /** AD=0: the answer is not DNSSEC-validated (permanent refusal). */
  | 'insecure'
  /** SERVFAIL from the validating resolver: validation failed or the zone is broken (temporary refusal). */
  | 'bogus'
  /** No usable answer within the deadline (temporary refusal). */
  | 'timeout'
  /** A response that breaks the protocol (temporary refusal). */
  | 'malformed'
  /** The resolver refused or could not be reached (REFUSED, NOTIMP, connection refused, TLS failure). */
  | 'server-error'
  /** dancegate's own resolver gate had no capacity (src/ratelimit): no query was sent; never cached (temporary refusal). */
  | 'over-capacity';

export interface LookupOutcome {
  readonly kind: LookupOutcomeKind;
  /** The TLSA records, only for 'secure'. */
  readonly records: readonly TlsaRecord[];
  /** Seconds the answer may be cached: RRset TTL for 'secure', RFC 2308 negative TTL for 'no-tlsa'/'insecure', when known. */
  readonly ttl: number | undefined;
  /** Human-readable detail (EDE text, which check failed, which server). */
  readonly detail: string;
  /** The owner name the records were found at, when reached through a CNAME chain. */
  readonly canonicalName?: string;
}

export const TLSA_TYPE = 52;
/** Most TLSA records we accept in one RRset; more is treated as malformed. */
export const MAX_TLSA_RECORDS = 256;
/** Longest CNAME chain we follow inside one answer. */
export const MAX_CNAME_CHAIN = 8;

export function outcome(kind: LookupOutcomeKind, detail: string, extra: Partial<LookupOutcome> = {}): LookupOutcome {
  return { kind, records: [], ttl: undefined, detail, ...extra };
}

/** The TLSA question for `name`: RD=1, AD=1, CD=0, EDNS(0) with DO=1. */
export function tlsaQuestion(name: string): DnsQuestion {
  return { name, type: 'TLSA', dnssecOk: true, authenticData: true, checkingDisabled: false };
}

/** Encode a TLSA query: RD=1, AD=1, CD=0, EDNS(0) with DO=1. */
export function encodeTlsaQuery(id: number, name: string): Buffer {
  return encodeQuery(id, tlsaQuestion(name));
}

export type ResponseVerdict =
  /** Not an answer to our query (wrong ID or question on UDP): keep waiting for the real one (RFC 5452). */
  | { readonly action: 'ignore'; readonly detail: string }
  /** TC=1 over UDP: ask again over TCP. */
  | { readonly action: 'retry-tcp' }
  | { readonly action: 'final'; readonly outcome: LookupOutcome };

const final = (o: LookupOutcome): ResponseVerdict => ({ action: 'final', outcome: o });

const sameName = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

/**
 * Judge a response to `encodeTlsaQuery(id, name)`. `overUdp` decides whether
 * a mismatched response is ignored (UDP: anyone can send one) or fatal
 * (TCP/TLS: the connection is the server's).
 */
export function judgeTlsaResponse(expected: { id: number; name: string }, bytes: Buffer, overUdp: boolean): ResponseVerdict {
  const check = checkResponse({ id: expected.id, question: tlsaQuestion(expected.name) }, bytes, overUdp);
  switch (check.action) {
    case 'ignore':
      return { action: 'ignore', detail: check.detail };
    case 'retry-tcp':
      return { action: 'retry-tcp' };
    case 'malformed':
      return final(outcome('malformed', check.detail));
    default:
      return final(judgeTlsaAnswer(expected.name, check));
  }
}

/** What a checked answer to the TLSA question for `name` means. Pure. */
export function judgeTlsaAnswer(name: string, answer: DnsAnswer): LookupOutcome {
  const { packet, rcode, authenticData } = answer;
  const ede = extendedError(packet);
  if (rcode === RCODE.SERVFAIL) return outcome('bogus', `SERVFAIL${ede ? `, ${ede}` : ''}`);
  if (rcode !== RCODE.NOERROR && rcode !== RCODE.NXDOMAIN) {
    return outcome('server-error', `resolver answered ${answer.rcodeName}${ede ? `, ${ede}` : ''}`);
  }
  if (!authenticData) {
    return outcome('insecure', `answer is not DNSSEC-validated (AD=0, ${answer.rcodeName})`, { ttl: negativeTtl(packet) });
  }
  if (rcode === RCODE.NXDOMAIN) {
    return outcome('no-tlsa', 'secure NXDOMAIN', { ttl: negativeTtl(packet) });
  }

  // Follow a CNAME chain from the query name inside this answer.
  const answers = packet.answers ?? [];
  let owner = name;
  let ttl = Number.POSITIVE_INFINITY;
  const seen = new Set<string>([owner.toLowerCase()]);
  for (let hops = 0; ; hops++) {
    const cname = answers.find((rr) => rr.type === 'CNAME' && rr.class === 'IN' && sameName(rr.name, owner));
    if (cname === undefined || cname.type !== 'CNAME') break;
    if (hops >= MAX_CNAME_CHAIN) return outcome('malformed', `CNAME chain longer than ${MAX_CNAME_CHAIN}`);
    const target = String(cname.data);
    if (seen.has(target.toLowerCase())) return outcome('malformed', 'CNAME loop in the answer');
    seen.add(target.toLowerCase());
    ttl = Math.min(ttl, cname.ttl ?? 0);
    owner = target;
  }

  const records: TlsaRecord[] = [];
  for (const rr of answers) {
    if (rr.type !== 'TLSA' || rr.class !== 'IN' || !sameName(rr.name, owner)) continue;
    const data = rr.data as { usage: number; selector: number; matchingType: number; certificate: Buffer };
    if (!Buffer.isBuffer(data.certificate) || data.certificate.length === 0) {
      return outcome('malformed', 'TLSA record without certificate association data');
    }
    if (records.length >= MAX_TLSA_RECORDS) {
      return outcome('malformed', `TLSA RRset has more than ${MAX_TLSA_RECORDS} records`);
    }
    const wire = Buffer.concat([Buffer.from([data.usage, data.selector, data.matchingType]), data.certificate]);
    records.push(parseTlsaWire(wire));
    ttl = Math.min(ttl, rr.ttl ?? 0);
  }
  const canonical = sameName(owner, name) ? {} : { canonicalName: owner.toLowerCase() };
  if (records.length === 0) {
    return outcome('no-tlsa', 'secure NODATA', { ttl: negativeTtl(packet), ...canonical });
  }
  return outcome('secure', `${records.length} TLSA record(s)`, { records, ttl, ...canonical });
}
