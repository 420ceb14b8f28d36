/**
 * Building TLSA queries and judging the answers of a validating resolver
 * (trust-AD mode, see the shared notes). Pure functions: bytes in, verdict
 * out. Every byte is hostile; nothing here throws on bad input.
 */
import * as dnsPacket from 'dns-packet';
import { parseTlsaWire, type TlsaRecord } from '../dane/tlsa.js';

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
/** EDNS(0) payload size we advertise (DNS flag day 2020). */
export const EDNS_UDP_PAYLOAD = 1232;
/** Most TLSA records we accept in one RRset; more is treated as malformed. */
export const MAX_TLSA_RECORDS = 256;
/** Longest CNAME chain we follow inside one answer. */
export const MAX_CNAME_CHAIN = 8;

export function outcome(kind: LookupOutcomeKind, detail: string, extra: Partial<LookupOutcome> = {}): LookupOutcome {
  return { kind, records: [], ttl: undefined, detail, ...extra };
}

/** Encode a TLSA query: RD=1, AD=1, CD=0, EDNS(0) with DO=1. */
export function encodeTlsaQuery(id: number, name: string): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.AUTHENTIC_DATA,
    questions: [{ type: 'TLSA', class: 'IN', name }],
    additionals: [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: EDNS_UDP_PAYLOAD,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: dnsPacket.DNSSEC_OK,
        flag_do: true,
        options: [],
      },
    ],
  });
}

export type ResponseVerdict =
  /** Not an answer to our query (wrong ID or question on UDP): keep waiting for the real one (RFC 5452). */
  | { readonly action: 'ignore'; readonly detail: string }
  /** TC=1 over UDP: ask again over TCP. */
  | { readonly action: 'retry-tcp' }
  | { readonly action: 'final'; readonly outcome: LookupOutcome };

const final = (o: LookupOutcome): ResponseVerdict => ({ action: 'final', outcome: o });

/** Extended DNS Error (RFC 8914) text, if the response carries one. */
function extendedError(packet: dnsPacket.DecodedPacket): string | undefined {
  for (const rr of packet.additionals ?? []) {
    if (rr.type !== 'OPT') continue;
    // @types/dns-packet lists only the option codes dns-packet decodes; EDE (15) arrives as code + raw data.
    for (const option of (rr.options ?? []) as ReadonlyArray<{ code: number; data?: Buffer }>) {
      if (option.code !== 15 || !option.data || option.data.length < 2) continue;
      const code = option.data.readUInt16BE(0);
      const text = option.data.subarray(2).toString('utf8').replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
      return `EDE ${code}${text ? ` (${text})` : ''}`;
    }
  }
  return undefined;
}

/** RFC 2308: the negative TTL is min(SOA TTL, SOA MINIMUM) of the SOA in the authority section. */
function negativeTtl(packet: dnsPacket.DecodedPacket): number | undefined {
  for (const rr of packet.authorities ?? []) {
    if (rr.type === 'SOA' && typeof rr.ttl === 'number') {
      const soa = rr.data as { minimum?: number };
      return Math.min(rr.ttl, typeof soa.minimum === 'number' ? soa.minimum : rr.ttl);
    }
  }
  return undefined;
}

const RCODE_NAMES: Readonly<Record<number, string>> = {
  0: 'NOERROR',
  1: 'FORMERR',
  2: 'SERVFAIL',
  3: 'NXDOMAIN',
  4: 'NOTIMP',
  5: 'REFUSED',
  16: 'BADVERS',
};

const sameName = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

/**
 * Judge a response to `encodeTlsaQuery(id, name)`. `overUdp` decides whether
 * a mismatched response is ignored (UDP: anyone can send one) or fatal
 * (TCP/TLS: the connection is the server's).
 */
export function judgeTlsaResponse(expected: { id: number; name: string }, bytes: Buffer, overUdp: boolean): ResponseVerdict {
  const mismatch = (detail: string): ResponseVerdict =>
    overUdp ? { action: 'ignore', detail } : final(outcome('malformed', detail));
  if (bytes.length < 12) return mismatch(`response is ${bytes.length} bytes, shorter than a DNS header`);
  if (bytes.readUInt16BE(0) !== expected.id) return mismatch('response ID does not match the query');
  // Header bits read from the wire (RFC 1035 4.1.1, RFC 4035 3.2.3).
  const flagsHigh = bytes[2] as number;
  const flagsLow = bytes[3] as number;
  if ((flagsHigh & 0x80) === 0) return mismatch('QR bit is clear: not a response');
  const opcode = (flagsHigh >> 3) & 0x0f;
  const truncated = (flagsHigh & 0x02) !== 0;
  const authenticData = (flagsLow & 0x20) !== 0;

  // Each question takes at least 5 bytes and each record 11: reject impossible counts before the decoder allocates for them.
  const qdcount = bytes.readUInt16BE(4);
  const rrcount = bytes.readUInt16BE(6) + bytes.readUInt16BE(8) + bytes.readUInt16BE(10);
  if (12 + qdcount * 5 + rrcount * 11 > bytes.length) {
    return final(outcome('malformed', `response claims ${qdcount} questions and ${rrcount} records in ${bytes.length} bytes`));
  }

  let packet: dnsPacket.DecodedPacket;
  try {
    packet = dnsPacket.decode(bytes);
  } catch (err) {
    return final(outcome('malformed', `undecodable response: ${(err as Error).message}`));
  }
  if (dnsPacket.decode.bytes !== bytes.length) {
    return final(outcome('malformed', `response has ${bytes.length - dnsPacket.decode.bytes} trailing or misframed bytes`));
  }
  const questions = packet.questions ?? [];
  const q = questions[0];
  if (questions.length !== 1 || q === undefined || !sameName(q.name, expected.name) || q.type !== 'TLSA' || q.class !== 'IN') {
    return mismatch('response question does not echo the query');
  }
  if (opcode !== 0) return final(outcome('malformed', `response opcode is ${opcode}, not QUERY`));
  if (truncated) {
    return overUdp ? { action: 'retry-tcp' } : final(outcome('malformed', 'TC bit set on a stream transport'));
  }

  const opt = (packet.additionals ?? []).find((rr) => rr.type === 'OPT');
  const extendedRcode = opt !== undefined && opt.type === 'OPT' ? opt.extendedRcode : 0;
  const rcode = RCODE_NAMES[(extendedRcode << 4) | (flagsLow & 0x0f)] ?? `RCODE ${(extendedRcode << 4) | (flagsLow & 0x0f)}`;
  const ede = extendedError(packet);
  if (rcode === 'SERVFAIL') return final(outcome('bogus', `SERVFAIL${ede ? `, ${ede}` : ''}`));
  if (rcode !== 'NOERROR' && rcode !== 'NXDOMAIN') {
    return final(outcome('server-error', `resolver answered ${rcode}${ede ? `, ${ede}` : ''}`));
  }
  if (!authenticData) {
    return final(outcome('insecure', `answer is not DNSSEC-validated (AD=0, ${rcode})`, { ttl: negativeTtl(packet) }));
  }
  if (rcode === 'NXDOMAIN') {
    return final(outcome('no-tlsa', 'secure NXDOMAIN', { ttl: negativeTtl(packet) }));
  }

  // Follow a CNAME chain from the query name inside this answer.
  const answers = packet.answers ?? [];
  let owner = expected.name;
  let ttl = Number.POSITIVE_INFINITY;
  const seen = new Set<string>([owner.toLowerCase()]);
  for (let hops = 0; ; hops++) {
    const cname = answers.find((rr) => rr.type === 'CNAME' && rr.class === 'IN' && sameName(rr.name, owner));
    if (cname === undefined || cname.type !== 'CNAME') break;
    if (hops >= MAX_CNAME_CHAIN) return final(outcome('malformed', `CNAME chain longer than ${MAX_CNAME_CHAIN}`));
    const target = String(cname.data);
    if (seen.has(target.toLowerCase())) return final(outcome('malformed', 'CNAME loop in the answer'));
    seen.add(target.toLowerCase());
    ttl = Math.min(ttl, cname.ttl ?? 0);
    owner = target;
  }

  const records: TlsaRecord[] = [];
  for (const rr of answers) {
    if (rr.type !== 'TLSA' || rr.class !== 'IN' || !sameName(rr.name, owner)) continue;
    const data = rr.data as { usage: number; selector: number; matchingType: number; certificate: Buffer };
    if (!Buffer.isBuffer(data.certificate) || data.certificate.length === 0) {
      return final(outcome('malformed', 'TLSA record without certificate association data'));
    }
    if (records.length >= MAX_TLSA_RECORDS) {
      return final(outcome('malformed', `TLSA RRset has more than ${MAX_TLSA_RECORDS} records`));
    }
    const wire = Buffer.concat([Buffer.from([data.usage, data.selector, data.matchingType]), data.certificate]);
    records.push(parseTlsaWire(wire));
    ttl = Math.min(ttl, rr.ttl ?? 0);
  }
  const canonical = sameName(owner, expected.name) ? {} : { canonicalName: owner.toLowerCase() };
  if (records.length === 0) {
    return final(outcome('no-tlsa', 'secure NODATA', { ttl: negativeTtl(packet), ...canonical }));
  }
  return final(outcome('secure', `${records.length} TLSA record(s)`, { records, ttl, ...canonical }));
}
