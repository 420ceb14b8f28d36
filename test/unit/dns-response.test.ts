import { randomBytes } from 'node:crypto';
import * as dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { encodeTlsaQuery, judgeTlsaResponse, type ResponseVerdict } from '../../src/lookup/tlsa-answer.js';

const NAME = 'sensor1._device.example.test';
const ID = 0x4242;
const DIGEST = Buffer.alloc(32, 0xab);

type Section = NonNullable<dnsPacket.Packet['answers']>;

function tlsa(name: string, ttl: number, usage = 3, selector = 1, matchingType = 1, certificate = DIGEST): Section[number] {
  return { type: 'TLSA', class: 'IN', name, ttl, data: { usage, selector, matchingType, certificate } };
}

const SOA: Section[number] = {
  type: 'SOA',
  class: 'IN',
  name: 'example.test',
  ttl: 120,
  data: {
    mname: 'ns.example.test',
    rname: 'hostmaster.example.test',
    serial: 1,
    refresh: 3600,
    retry: 600,
    expire: 86400,
    minimum: 30,
  },
};

interface ResponseSpec {
  id?: number;
  ad?: boolean;
  tc?: boolean;
  rcode?: number;
  qname?: string;
  qtype?: 'TLSA' | 'A';
  answers?: Section;
  authorities?: Section;
  ede?: { code: number; text: string };
}

function response(spec: ResponseSpec = {}): Buffer {
  let flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE;
  if (spec.ad ?? true) flags |= dnsPacket.AUTHENTIC_DATA;
  if (spec.tc) flags |= dnsPacket.TRUNCATED_RESPONSE;
  flags |= spec.rcode ?? 0;
  const options = spec.ede ? [{ code: 15, data: Buffer.concat([Buffer.from([0, spec.ede.code]), Buffer.from(spec.ede.text)]) }] : [];
  return dnsPacket.encode({
    type: 'response',
    id: spec.id ?? ID,
    flags,
    questions: [{ type: spec.qtype ?? 'TLSA', class: 'IN', name: spec.qname ?? NAME }],
    answers: spec.answers ?? [],
    authorities: spec.authorities ?? [],
    additionals: [
      // dns-packet encodes option objects generically as code + data; its types list only the codes it decodes.
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: 1232,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: dnsPacket.DNSSEC_OK,
        flag_do: true,
        options: options as unknown as dnsPacket.PacketOpt[],
      },
    ],
  });
}

function summarize(v: ResponseVerdict): string {
  if (v.action !== 'final') return v.action;
  return `${v.outcome.kind}:${v.outcome.records.length}:${v.outcome.ttl ?? '-'}`;
}

describe('encodeTlsaQuery', () => {
  it('sets RD and AD, never CD, and asks with EDNS0 DO=1', () => {
    const q = dnsPacket.decode(encodeTlsaQuery(1234, NAME));
    expect(q.id).toBe(1234);
    expect(q.flag_rd).toBe(true);
    expect(q.flag_ad).toBe(true);
    expect(q.flag_cd).toBe(false);
    expect(q.flag_qr).toBe(false);
    expect(q.questions).toEqual([{ type: 'TLSA', class: 'IN', name: NAME }]);
    const opt = q.additionals?.[0];
    expect(opt?.type).toBe('OPT');
    expect(opt?.type === 'OPT' && opt.flag_do).toBe(true);
    expect(opt?.type === 'OPT' && opt.udpPayloadSize).toBe(1232);
  });
});

describe('judgeTlsaResponse', () => {
  const cases: Array<[string, Buffer, boolean, string]> = [
    ['secure answer', response({ answers: [tlsa(NAME, 300)] }), true, 'secure:1:300'],
    ['owner name in other case', response({ answers: [tlsa(NAME.toUpperCase(), 300)] }), true, 'secure:1:300'],
    ['TTL is the minimum of the RRset', response({ answers: [tlsa(NAME, 300), tlsa(NAME, 60, 3, 1, 2, Buffer.alloc(64, 1))] }), true, 'secure:2:60'],
    ['records for other names are ignored', response({ answers: [tlsa('other.example.test', 300)] }), true, 'no-tlsa:0:-'],
    ['secure NODATA, negative TTL min(SOA TTL, minimum)', response({ authorities: [SOA] }), true, 'no-tlsa:0:30'],
    ['secure NXDOMAIN', response({ rcode: 3, authorities: [SOA] }), true, 'no-tlsa:0:30'],
    ['secure NODATA without SOA', response({}), true, 'no-tlsa:0:-'],
    ['AD clear: insecure', response({ ad: false, answers: [tlsa(NAME, 300)] }), true, 'insecure:0:-'],
    ['AD clear NXDOMAIN: insecure', response({ ad: false, rcode: 3 }), true, 'insecure:0:-'],
    ['SERVFAIL: bogus', response({ rcode: 2, ad: false }), true, 'bogus:0:-'],
    ['REFUSED: server error', response({ rcode: 5, ad: false }), true, 'server-error:0:-'],
    ['FORMERR: server error', response({ rcode: 1 }), true, 'server-error:0:-'],
    ['TC over UDP: retry over TCP', response({ tc: true }), true, 'retry-tcp'],
    ['TC over TCP: malformed', response({ tc: true }), false, 'malformed:0:-'],
    ['wrong ID over UDP: ignored', response({ id: ID + 1, answers: [tlsa(NAME, 300)] }), true, 'ignore'],
    ['wrong ID over TCP: malformed', response({ id: ID + 1, answers: [tlsa(NAME, 300)] }), false, 'malformed:0:-'],
    ['other question over UDP: ignored', response({ qname: 'evil.example.test', answers: [tlsa(NAME, 300)] }), true, 'ignore'],
    ['other qtype over UDP: ignored', response({ qtype: 'A' }), true, 'ignore'],
    ['other question over TCP: malformed', response({ qname: 'evil.example.test' }), false, 'malformed:0:-'],
    ['a query, not a response', encodeTlsaQuery(ID, NAME), true, 'ignore'],
    ['short packet', Buffer.from([0x42, 0x42, 0x81]), true, 'ignore'],
    ['short packet over TCP', Buffer.from([0x42, 0x42, 0x81]), false, 'malformed:0:-'],
    ['trailing bytes', Buffer.concat([response({ answers: [tlsa(NAME, 300)] }), Buffer.from([0])]), true, 'malformed:0:-'],
    ['TLSA with 1-byte association data is kept for matching to judge', response({ answers: [tlsa(NAME, 300, 3, 1, 1, Buffer.from([1]))] }), true, 'secure:1:300'],
  ];
  it.each(cases)('%s', (_label, bytes, overUdp, expected) => {
    expect(summarize(judgeTlsaResponse({ id: ID, name: NAME }, bytes, overUdp))).toBe(expected);
  });

  it('reports the extended DNS error text of a SERVFAIL', () => {
    const v = judgeTlsaResponse({ id: ID, name: NAME }, response({ rcode: 2, ad: false, ede: { code: 6, text: 'DNSSEC Bogus' } }), true);
    expect(v).toEqual({
      action: 'final',
      outcome: { kind: 'bogus', records: [], ttl: undefined, detail: 'SERVFAIL, EDE 6 (DNSSEC Bogus)' },
    });
  });

  it('returns the exact records of a secure answer', () => {
    const v = judgeTlsaResponse({ id: ID, name: NAME }, response({ answers: [tlsa(NAME, 300, 2, 0, 2, Buffer.alloc(64, 7))] }), true);
    expect(v.action === 'final' && v.outcome.records).toEqual([{ usage: 2, selector: 0, matchingType: 2, data: Buffer.alloc(64, 7) }]);
  });

  it('follows a CNAME chain inside the answer and takes the smallest TTL', () => {
    const answers: Section = [
      { type: 'CNAME', class: 'IN', name: NAME, ttl: 50, data: 'alias1.example.test' },
      { type: 'CNAME', class: 'IN', name: 'alias1.example.test', ttl: 500, data: 'target.example.test' },
      tlsa('target.example.test', 400),
    ];
    const v = judgeTlsaResponse({ id: ID, name: NAME }, response({ answers }), true);
    expect(v.action === 'final' && v.outcome).toMatchObject({ kind: 'secure', ttl: 50, canonicalName: 'target.example.test' });
  });

  it('ignores TLSA records at the query name when a CNAME redirects elsewhere', () => {
    const answers: Section = [{ type: 'CNAME', class: 'IN', name: NAME, ttl: 50, data: 'target.example.test' }, tlsa(NAME, 400)];
    expect(summarize(judgeTlsaResponse({ id: ID, name: NAME }, response({ answers }), true))).toBe('no-tlsa:0:-');
  });

  it('refuses a CNAME loop', () => {
    const answers: Section = [
      { type: 'CNAME', class: 'IN', name: NAME, ttl: 50, data: 'a.example.test' },
      { type: 'CNAME', class: 'IN', name: 'a.example.test', ttl: 50, data: NAME },
    ];
    const v = judgeTlsaResponse({ id: ID, name: NAME }, response({ answers }), true);
    expect(v.action === 'final' && v.outcome.kind).toBe('malformed');
    expect(v.action === 'final' && v.outcome.detail).toBe('CNAME loop in the answer');
  });

  it('refuses an over-long CNAME chain', () => {
    const answers: Section = [];
    let from = NAME;
    for (let i = 0; i < 10; i++) {
      answers.push({ type: 'CNAME', class: 'IN', name: from, ttl: 50, data: `hop${i}.example.test` });
      from = `hop${i}.example.test`;
    }
    answers.push(tlsa(from, 300));
    const v = judgeTlsaResponse({ id: ID, name: NAME }, response({ answers }), true);
    expect(v.action === 'final' && v.outcome.detail).toBe('CNAME chain longer than 8');
  });
});

/** Deterministic PRNG so a failing fuzz case can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(base: Buffer, rand: () => number, protect: ReadonlySet<number>): Buffer {
  const out = Buffer.from(base);
  const kind = Math.floor(rand() * 4);
  const flips = 1 + Math.floor(rand() * 4);
  if (kind === 0) {
    // Truncate.
    return out.subarray(0, Math.floor(rand() * out.length));
  }
  if (kind === 1) {
    // Append junk.
    return Buffer.concat([out, randomBytes(1 + Math.floor(rand() * 16))]);
  }
  for (let i = 0; i < flips; i++) {
    const pos = Math.floor(rand() * out.length);
    if (protect.has(pos)) continue;
    out[pos] = kind === 2 ? Math.floor(rand() * 256) : (out[pos] as number) ^ (1 << Math.floor(rand() * 8));
  }
  return out;
}

describe('judgeTlsaResponse under fuzzing', () => {
  const expected = { id: ID, name: NAME };

  it('never throws and never accepts random bytes (20,000 packets)', () => {
    const rand = prng(1);
    const accepted: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const length = Math.floor(rand() * 600);
      const bytes = Buffer.alloc(length);
      for (let j = 0; j < length; j++) bytes[j] = Math.floor(rand() * 256);
      // Give half of them the right ID and QR bit so they get past the first checks.
      if (i % 2 === 0 && length >= 4) {
        bytes.writeUInt16BE(ID, 0);
        bytes[2] = (bytes[2] as number) | 0x80;
      }
      for (const overUdp of [true, false]) {
        const verdict = judgeTlsaResponse(expected, bytes, overUdp);
        if (verdict.action === 'final' && verdict.outcome.kind === 'secure') accepted.push(bytes.toString('hex'));
      }
    }
    expect(accepted).toEqual([]);
  });

  // Each base is refused for one reason; mutations that spare the bytes carrying that reason must never be accepted.
  const refusedBases: Array<[string, Buffer, number[]]> = [
    ['insecure (AD=0)', response({ ad: false, answers: [tlsa(NAME, 300)] }), [3]],
    ['bogus (SERVFAIL)', response({ rcode: 2, ad: false, answers: [tlsa(NAME, 300)] }), [3]],
    ['wrong ID', response({ id: ID ^ 0xffff, answers: [tlsa(NAME, 300)] }), [0, 1]],
  ];
  it.each(refusedBases)('never accepts mutations of a refused response: %s (20,000 mutations)', (_label, base, protectedBytes) => {
    const rand = prng(7);
    const protect = new Set(protectedBytes);
    const accepted: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const bytes = mutate(base, rand, protect);
      for (const overUdp of [true, false]) {
        const verdict = judgeTlsaResponse(expected, bytes, overUdp);
        if (verdict.action === 'final' && verdict.outcome.kind === 'secure') accepted.push(bytes.toString('hex'));
      }
    }
    expect(accepted).toEqual([]);
  });

  it('never throws on mutations of a secure response, and accepts only well-formed ones (20,000 mutations)', () => {
    const base = response({ answers: [tlsa(NAME, 300), tlsa(NAME, 300, 2, 0, 1)], authorities: [SOA] });
    const rand = prng(11);
    let accepted = 0;
    const violations: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const bytes = mutate(base, rand, new Set());
      const verdict = judgeTlsaResponse(expected, bytes, false);
      if (verdict.action === 'final' && verdict.outcome.kind === 'secure') {
        accepted++;
        // Whatever was accepted must really be a response to our question with AD set, no TC, and records.
        const decoded = dnsPacket.decode(bytes);
        const ok = decoded.id === ID && decoded.flag_qr && decoded.flag_ad && !decoded.flag_tc && decoded.questions?.[0]?.name.toLowerCase() === NAME && verdict.outcome.records.length > 0;
        if (!ok) violations.push(bytes.toString('hex'));
      }
    }
    expect(violations).toEqual([]);
    // Some mutations (TTL, data bytes) leave a valid secure answer: the property above was really exercised.
    expect(accepted).toBeGreaterThan(100);
  });
});
