import * as dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { checkResponse, encodeQuery, rcodeName, type DnsQuestion } from '../../src/dns/message.js';

const ID = 0x1234;
const QUESTION = { name: 'host.example.test', type: 'A' as const };

function response(spec: { opcode?: number; rcode?: number; extendedRcode?: number; ad?: boolean; qtype?: 'A' | 'AAAA' } = {}): Buffer {
  const bytes = dnsPacket.encode({
    type: 'response',
    id: ID,
    flags: (spec.ad ? dnsPacket.AUTHENTIC_DATA : 0) | ((spec.rcode ?? 0) & 0x0f),
    questions: [{ type: spec.qtype ?? 'A', class: 'IN', name: QUESTION.name }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: spec.extendedRcode ?? 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  });
  if (spec.opcode !== undefined) bytes[2] = ((bytes[2] as number) & 0x87) | (spec.opcode << 3);
  return bytes;
}

const summary = (bytes: Buffer, overUdp = true): string => {
  const c = checkResponse({ id: ID, question: QUESTION }, bytes, overUdp);
  return c.action === 'answer' ? `answer ${c.rcodeName} AD=${c.authenticData ? 1 : 0}` : c.action === 'retry-tcp' ? 'retry-tcp' : `${c.action}: ${c.detail}`;
};

describe('encodeQuery', () => {
  it.each<[string, DnsQuestion, { ad: boolean; cd: boolean; do: boolean }]>([
    ['plain question', QUESTION, { ad: false, cd: false, do: false }],
    ['DNSSEC OK asks for AD by default', { ...QUESTION, dnssecOk: true }, { ad: true, cd: false, do: true }],
    ['AD without DO', { ...QUESTION, authenticData: true }, { ad: true, cd: false, do: false }],
    ['checking disabled', { ...QUESTION, dnssecOk: true, checkingDisabled: true }, { ad: true, cd: true, do: true }],
  ])('%s', (_label, question, expected) => {
    const q = dnsPacket.decode(encodeQuery(ID, question));
    const opt = q.additionals?.find((rr) => rr.type === 'OPT');
    expect({ ad: q.flag_ad, cd: q.flag_cd, do: opt?.type === 'OPT' && opt.flag_do }).toEqual(expected);
    expect({ id: q.id, rd: q.flag_rd, qr: q.flag_qr, questions: q.questions }).toEqual({ id: ID, rd: true, qr: false, questions: [{ ...QUESTION, class: 'IN' }] });
    expect(opt?.type === 'OPT' && opt.udpPayloadSize).toBe(1232);
  });
});

describe('checkResponse', () => {
  it.each<[string, Buffer, boolean, string]>([
    ['NOERROR with AD', response({ ad: true }), true, 'answer NOERROR AD=1'],
    ['NXDOMAIN without AD', response({ rcode: 3 }), true, 'answer NXDOMAIN AD=0'],
    ['extended RCODE 16 (BADVERS)', response({ extendedRcode: 1 }), true, 'answer BADVERS AD=0'],
    ['an unknown RCODE is named by number', response({ rcode: 9 }), true, 'answer RCODE 9 AD=0'],
    ['another question type over UDP', response({ qtype: 'AAAA' }), true, 'ignore: response question does not echo the query'],
    ['another question type over TCP', response({ qtype: 'AAAA' }), false, 'malformed: response question does not echo the query'],
    ['opcode 2', response({ opcode: 2 }), true, 'malformed: response opcode is 2, not QUERY'],
    ['more records claimed than bytes', Buffer.from([0x12, 0x34, 0x81, 0x80, 0, 1, 0xff, 0xff, 0, 0, 0, 0]), true, 'malformed: response claims 1 questions and 65535 records in 12 bytes'],
    ['longer than a DNS message', Buffer.concat([response(), Buffer.alloc(65536)]), true, 'malformed: response is 65582 bytes, longer than a DNS message can be'],
  ])('%s', (_label, bytes, overUdp, expected) => {
    expect(summary(bytes, overUdp)).toBe(expected);
  });
});

describe('rcodeName', () => {
  it.each([
    [0, 'NOERROR'],
    [2, 'SERVFAIL'],
    [3, 'NXDOMAIN'],
    [5, 'REFUSED'],
    [16, 'BADVERS'],
    [23, 'RCODE 23'],
  ])('%i -> %s', (code, name) => {
    expect(rcodeName(code)).toBe(name);
  });
});
