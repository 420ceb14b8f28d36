/**
 * DNS messages on the wire, generic: building a query and checking that a
 * response answers it (ID, QR, question, opcode, TC, framing, plausible
 * counts). Pure functions: bytes in, verdict out. Every byte is hostile;
 * nothing here throws on bad input. What an answer means for a given
 * record type is the caller's business (src/lookup/tlsa-answer.ts).
 */
import * as dnsPacket from 'dns-packet';

/** EDNS(0) payload size we advertise (DNS flag day 2020). */
export const EDNS_UDP_PAYLOAD = 1232;
/** Largest DNS message (a stream transport's 2-byte length prefix, and the UDP datagram limit). */
export const MAX_DNS_MESSAGE = 65535;

export interface DnsQuestion {
  /** Owner name, without the trailing dot. */
  readonly name: string;
  readonly type: dnsPacket.RecordType;
  /** EDNS(0) DO bit: ask for DNSSEC records, and tell a validating resolver we understand AD (default false). */
  readonly dnssecOk?: boolean;
  /** AD bit in the query (RFC 6840 5.7: the AD bit of the answer is wanted); default: as dnssecOk. */
  readonly authenticData?: boolean;
  /** CD bit: ask the resolver not to validate (default false). */
  readonly checkingDisabled?: boolean;
}

/** Encode a recursive query for `question` with EDNS(0). */
export function encodeQuery(id: number, question: DnsQuestion): Buffer {
  const dnssecOk = question.dnssecOk ?? false;
  let flags = dnsPacket.RECURSION_DESIRED;
  if (question.authenticData ?? dnssecOk) flags |= dnsPacket.AUTHENTIC_DATA;
  if (question.checkingDisabled) flags |= dnsPacket.CHECKING_DISABLED;
  return dnsPacket.encode({
    type: 'query',
    id,
    flags,
    questions: [{ type: question.type, class: 'IN', name: question.name }],
    additionals: [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: EDNS_UDP_PAYLOAD,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: dnssecOk ? dnsPacket.DNSSEC_OK : 0,
        flag_do: dnssecOk,
        options: [],
      },
    ],
  });
}

/** A response that answers the query, decoded, with the header bits read from the wire. */
export interface DnsAnswer {
  readonly packet: dnsPacket.DecodedPacket;
  /** The full RCODE (EDNS extended bits included). */
  readonly rcode: number;
  /** 'NOERROR', 'SERVFAIL', … or 'RCODE n'. */
  readonly rcodeName: string;
  /** The AD bit: the resolver validated the answer with DNSSEC. */
  readonly authenticData: boolean;
}

export type ResponseCheck =
  /** Not an answer to our query (wrong ID or question on UDP): keep waiting for the real one (RFC 5452). */
  | { readonly action: 'ignore'; readonly detail: string }
  /** TC=1 over UDP: ask again over TCP. */
  | { readonly action: 'retry-tcp' }
  /** Breaks the protocol (on a stream, any mismatch does: the connection is the server's). */
  | { readonly action: 'malformed'; readonly detail: string }
  | ({ readonly action: 'answer' } & DnsAnswer);

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;

const RCODE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(RCODE).map(([name, code]) => [code, name]));

export function rcodeName(rcode: number): string {
  return RCODE_NAMES.get(rcode) ?? `RCODE ${rcode}`;
}

const sameName = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

/**
 * Check `bytes` as the response to the query `expected.id` asked for
 * `expected.question`. `overUdp` decides whether a mismatched response is
 * ignored (UDP: anyone can send one) or malformed (TCP/TLS).
 */
export function checkResponse(expected: { readonly id: number; readonly question: Pick<DnsQuestion, 'name' | 'type'> }, bytes: Buffer, overUdp: boolean): ResponseCheck {
  const mismatch = (detail: string): ResponseCheck => (overUdp ? { action: 'ignore', detail } : { action: 'malformed', detail });
  const malformed = (detail: string): ResponseCheck => ({ action: 'malformed', detail });
  if (bytes.length < 12) return mismatch(`response is ${bytes.length} bytes, shorter than a DNS header`);
  if (bytes.length > MAX_DNS_MESSAGE) return malformed(`response is ${bytes.length} bytes, longer than a DNS message can be`);
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
    return malformed(`response claims ${qdcount} questions and ${rrcount} records in ${bytes.length} bytes`);
  }

  let packet: dnsPacket.DecodedPacket;
  try {
    packet = dnsPacket.decode(bytes);
  } catch (err) {
    return malformed(`undecodable response: ${(err as Error).message}`);
  }
  if (dnsPacket.decode.bytes !== bytes.length) {
    return malformed(`response has ${bytes.length - dnsPacket.decode.bytes} trailing or misframed bytes`);
  }
  const questions = packet.questions ?? [];
  const q = questions[0];
  if (questions.length !== 1 || q === undefined || !sameName(q.name, expected.question.name) || q.type !== expected.question.type || q.class !== 'IN') {
    return mismatch('response question does not echo the query');
  }
  if (opcode !== 0) return malformed(`response opcode is ${opcode}, not QUERY`);
  if (truncated) return overUdp ? { action: 'retry-tcp' } : malformed('TC bit set on a stream transport');

  const opt = (packet.additionals ?? []).find((rr) => rr.type === 'OPT');
  const extendedRcode = opt !== undefined && opt.type === 'OPT' ? opt.extendedRcode : 0;
  const rcode = (extendedRcode << 4) | (flagsLow & 0x0f);
  return { action: 'answer', packet, rcode, rcodeName: rcodeName(rcode), authenticData };
}

/** Extended DNS Error (RFC 8914) text, if the response carries one. */
export function extendedError(packet: dnsPacket.DecodedPacket): string | undefined {
  for (const rr of packet.additionals ?? []) {
    if (rr.type !== 'OPT') continue;
    // @types/dns-packet lists only the option codes dns-packet decodes; EDE (15) arrives as code + raw data.
    for (const option of (rr.options ?? []) as ReadonlyArray<{ code: number; data?: Buffer }>) {
      if (option.code !== 15 || !option.data || option.data.length < 2) continue;
      const code = option.data.readUInt16BE(0);
      const text = option.data
        .subarray(2)
        .toString('utf8')
        .replace(/[^\x20-\x7e]/g, '?')
        .slice(0, 200);
      return `EDE ${code}${text ? ` (${text})` : ''}`;
    }
  }
  return undefined;
}

/** RFC 2308: the negative TTL is min(SOA TTL, SOA MINIMUM) of the SOA in the authority section. */
export function negativeTtl(packet: dnsPacket.DecodedPacket): number | undefined {
  for (const rr of packet.authorities ?? []) {
    if (rr.type === 'SOA' && typeof rr.ttl === 'number') {
      const soa = rr.data as { minimum?: number };
      return Math.min(rr.ttl, typeof soa.minimum === 'number' ? soa.minimum : rr.ttl);
    }
  }
  return undefined;
}
