import { createHash, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate, type KeyAlgorithm } from '../../certs/pki.js';
import {
  applyMatchingType,
  describeTlsaParameters,
  encodeTlsaWire,
  formatTlsaRdata,
  formatTlsaRecord,
  parseTlsaRdata,
  parseTlsaResourceRecord,
  parseTlsaWire,
  sameTlsaRecord,
  tlsaRecordForCertificate,
  TlsaParseError,
  type OwnedTlsaRecord,
  type TlsaRecord,
} from '../../src/dane/tlsa.js';
import { parsed } from './fixtures/pki-fixtures.js';

/** A record as a plain comparable object. */
const plain = (r: TlsaRecord): { usage: number; selector: number; matchingType: number; hex: string } => ({
  usage: r.usage,
  selector: r.selector,
  matchingType: r.matchingType,
  hex: r.data.toString('hex'),
});
const expectRecord = (usage: number, selector: number, matchingType: number, hex: string) => ({ usage, selector, matchingType, hex });

function parseError(fn: () => unknown): { name: string; message: string; isTlsaParseError: boolean } {
  try {
    fn();
  } catch (err) {
    const e = err as Error;
    return { name: e.name, message: e.message, isTlsaParseError: err instanceof TlsaParseError };
  }
  throw new Error('expected a TlsaParseError, nothing was thrown');
}

describe('parseTlsaRdata: accepted', () => {
  it.each<[string, string, ReturnType<typeof expectRecord>]>([
    ['mixed-case hex', '3 1 1 AB12cdEF', expectRecord(3, 1, 1, 'ab12cdef')],
    ['hex split by spaces and tabs', '3 1 1 ab12 cd34\tef56', expectRecord(3, 1, 1, 'ab12cd34ef56')],
    ['hex split mid-byte', '3 1 1 a b1 2', expectRecord(3, 1, 1, 'ab12')],
    ['parentheses across lines', '3 1 1 (\n  ab12\n  cd34 )', expectRecord(3, 1, 1, 'ab12cd34')],
    ['parentheses around everything', '( 2 0 1 ab12 )', expectRecord(2, 0, 1, 'ab12')],
    ['parentheses glued to tokens', '3 1 1 (ab12\ncd34)', expectRecord(3, 1, 1, 'ab12cd34')],
    ['comments inside and after', '2 0 1 ( ab12 ; first half\n cd34 ) ; trailing comment', expectRecord(2, 0, 1, 'ab12cd34')],
    ['parenthesis inside a comment is ignored', '3 1 1 ( ab12 ; not a ) here\n cd34 )', expectRecord(3, 1, 1, 'ab12cd34')],
    ['CRLF line ends', '3 1 1 (\r\n ab12\r\n cd34 )\r\n', expectRecord(3, 1, 1, 'ab12cd34')],
    ['surrounding whitespace', '   3   0   0   00   ', expectRecord(3, 0, 0, '00')],
    ['unknown usage 7 parses', '7 1 1 ab', expectRecord(7, 1, 1, 'ab')],
    ['unknown selector and matching type parse', '3 2 3 ab', expectRecord(3, 2, 3, 'ab')],
    ['private-use 255 everywhere', '255 255 255 ff', expectRecord(255, 255, 255, 'ff')],
    ['zero everywhere', '0 0 0 00', expectRecord(0, 0, 0, '00')],
    ['leading zeros in fields', '003 001 002 ab', expectRecord(3, 1, 2, 'ab')],
  ])('%s', (_label, text, expected) => {
    expect(plain(parseTlsaRdata(text))).toEqual(expected);
  });

  it('accepts the largest association data a record can hold (65532 bytes)', () => {
    const record = parseTlsaRdata(`3 0 0 ${'ab'.repeat(65532)}`);
    expect([record.data.length, record.data[0], record.data[65531]]).toEqual([65532, 0xab, 0xab]);
  });
});

describe('parseTlsaRdata: rejected with a TlsaParseError naming the problem', () => {
  it.each<[string, string, string]>([
    ['empty text', '', 'missing usage field'],
    ['only a comment', '; nothing here', 'missing usage field'],
    ['missing selector', '3', 'missing selector field'],
    ['missing matching type', '3 1', 'missing matching type field'],
    ['missing data', '3 1 1', 'missing certificate association data'],
    ['missing data, comment only', '3 1 1 ; ab12', 'missing certificate association data'],
    ['usage 256', '256 1 1 ab', 'usage field 256 is not a number from 0 to 255'],
    ['usage 999', '999 1 1 ab', 'usage field 999 is not a number from 0 to 255'],
    ['usage with four digits', '1000 1 1 ab', "usage field '1000' is not a number from 0 to 255"],
    ['usage -1', '-1 1 1 ab', "usage field '-1' is not a number from 0 to 255"],
    ['usage x', 'x 1 1 ab', "usage field 'x' is not a number from 0 to 255"],
    ['usage acronym', 'DANE-EE 1 1 ab', "usage field 'DANE-EE' is not a number from 0 to 255"],
    ['usage 3.0', '3.0 1 1 ab', "usage field '3.0' is not a number from 0 to 255"],
    ['selector 256', '3 256 1 ab', 'selector field 256 is not a number from 0 to 255'],
    ['selector -1', '3 -1 1 ab', "selector field '-1' is not a number from 0 to 255"],
    ['selector x', '3 x 1 ab', "selector field 'x' is not a number from 0 to 255"],
    ['matching type 256', '3 1 256 ab', 'matching type field 256 is not a number from 0 to 255'],
    ['matching type -1', '3 1 -1 ab', "matching type field '-1' is not a number from 0 to 255"],
    ['matching type x', '3 1 x ab', "matching type field 'x' is not a number from 0 to 255"],
    ['odd number of hex digits', '3 1 1 abc', 'certificate association data has an odd number of hex digits'],
    ['odd hex split in two tokens', '3 1 1 ab c', 'certificate association data has an odd number of hex digits'],
    ['non-hex data', '3 1 1 zz', 'certificate association data is not hexadecimal'],
    ['0x prefix', '3 1 1 0xab', 'certificate association data is not hexadecimal'],
    ['base64 data', '3 1 1 q80=', 'certificate association data is not hexadecimal'],
    ['unclosed parenthesis', '3 1 1 ( ab', "unbalanced '('"],
    ['closing parenthesis only', '3 1 1 ab )', "unbalanced ')'"],
    ['closing before opening', '3 1 1 ) ab (', "unbalanced ')'"],
    ['closing parenthesis hidden in a comment', '3 1 1 ( ab ; )\n', "unbalanced '('"],
    ['data longer than a DNS record can hold', `3 0 0 ${'ab'.repeat(65533)}`, 'certificate association data is longer than a DNS record can hold'],
  ])('%s', (_label, text, message) => {
    expect(parseError(() => parseTlsaRdata(text))).toEqual({ name: 'TlsaParseError', message, isTlsaParseError: true });
  });
});

describe('parseTlsaResourceRecord', () => {
  const plainOwned = (o: OwnedTlsaRecord) => ({ owner: o.owner, ttl: o.ttl, ...plain(o.record) });

  it.each<[string, string, { owner: string; ttl: number | undefined } & ReturnType<typeof expectRecord>]>([
    ['owner with trailing dot, TTL then IN', 'client.example. 3600 IN TLSA 3 1 1 AB12', { owner: 'client.example', ttl: 3600, ...expectRecord(3, 1, 1, 'ab12') }],
    ['owner without trailing dot, IN then TTL', 'client.example IN 300 TLSA 3 1 1 ab12', { owner: 'client.example', ttl: 300, ...expectRecord(3, 1, 1, 'ab12') }],
    ['no TTL, no class', 'client.example TLSA 2 0 1 ab12', { owner: 'client.example', ttl: undefined, ...expectRecord(2, 0, 1, 'ab12') }],
    ['class only', 'client.example. IN TLSA 3 0 2 ab12', { owner: 'client.example', ttl: undefined, ...expectRecord(3, 0, 2, 'ab12') }],
    ['TTL only', 'client.example. 0 TLSA 3 1 0 ab12', { owner: 'client.example', ttl: 0, ...expectRecord(3, 1, 0, 'ab12') }],
    ['lower-case class and type', 'client.example. in tlsa 3 1 1 ab12', { owner: 'client.example', ttl: undefined, ...expectRecord(3, 1, 1, 'ab12') }],
    ['largest TTL', 'client.example. 2147483647 IN TLSA 3 1 1 ab', { owner: 'client.example', ttl: 2147483647, ...expectRecord(3, 1, 1, 'ab') }],
    [
      'multi-line with comments',
      '_smtp-client.device1.example.com. 86400 IN TLSA ( 3 1 1 ; DANE-EE SPKI SHA-256\n  ab12\n  cd34 )',
      { owner: '_smtp-client.device1.example.com', ttl: 86400, ...expectRecord(3, 1, 1, 'ab12cd34') },
    ],
    ['owner case is kept as written', 'Client.Example. IN TLSA 3 1 1 ab', { owner: 'Client.Example', ttl: undefined, ...expectRecord(3, 1, 1, 'ab') }],
    ['only one trailing dot is stripped', 'client.example.. TLSA 3 1 1 ab', { owner: 'client.example.', ttl: undefined, ...expectRecord(3, 1, 1, 'ab') }],
    ['unknown usage still parses', 'client.example. TLSA 7 1 1 ab', { owner: 'client.example', ttl: undefined, ...expectRecord(7, 1, 1, 'ab') }],
  ])('%s', (_label, text, expected) => {
    expect(plainOwned(parseTlsaResourceRecord(text))).toEqual(expected);
  });

  it.each<[string, string, string]>([
    ['empty text', '', 'empty record'],
    ['owner only', 'client.example.', "missing record type 'TLSA'"],
    ['TTL and class but no type', 'client.example. 3600 IN', "missing record type 'TLSA'"],
    ['missing TLSA type before the RDATA', 'client.example. 3600 IN 3 1 1 ab12', "expected TTL, class IN or type TLSA, found '3'"],
    ['missing TLSA type, no TTL', 'client.example. IN 3 1 1 ab12', "expected TTL, class IN or type TLSA, found '1'"],
    ['another type', 'client.example. IN A 192.0.2.1', "expected TTL, class IN or type TLSA, found 'A'"],
    ['generic type syntax', 'client.example. IN TYPE52 \\# 4 03010161', "expected TTL, class IN or type TLSA, found 'TYPE52'"],
    ['another class', 'client.example. CH TLSA 3 1 1 ab', "expected TTL, class IN or type TLSA, found 'CH'"],
    ['two TTLs', 'client.example. 300 300 TLSA 3 1 1 ab', "expected TTL, class IN or type TLSA, found '300'"],
    ['two classes', 'client.example. IN IN TLSA 3 1 1 ab', "expected TTL, class IN or type TLSA, found 'IN'"],
    ['TTL with a unit', 'client.example. 1h IN TLSA 3 1 1 ab', "expected TTL, class IN or type TLSA, found '1h'"],
    ['TTL above 2^31-1', 'client.example. 2147483648 IN TLSA 3 1 1 ab', 'TTL 2147483648 is out of range'],
    ['TTL beyond a safe integer', 'client.example. 99999999999999999999 TLSA 3 1 1 ab', 'TTL 99999999999999999999 is out of range'],
    ['bad RDATA after the type', 'client.example. TLSA 3 1 1 abc', 'certificate association data has an odd number of hex digits'],
    ['bad usage after the type', 'client.example. TLSA 256 1 1 ab', 'usage field 256 is not a number from 0 to 255'],
    ['missing data after the type', 'client.example. TLSA 3 1 1', 'missing certificate association data'],
  ])('rejects: %s', (_label, text, message) => {
    expect(parseError(() => parseTlsaResourceRecord(text))).toEqual({ name: 'TlsaParseError', message, isTlsaParseError: true });
  });
});

describe('parseTlsaWire', () => {
  it.each<[string, number[], ReturnType<typeof expectRecord>]>([
    ['minimal 4 bytes', [3, 1, 1, 0xab], expectRecord(3, 1, 1, 'ab')],
    ['DANE-TA cert SHA-512 prefix', [2, 0, 2, 0x01, 0x02, 0x03], expectRecord(2, 0, 2, '010203')],
    ['unknown values kept', [255, 254, 253, 0x00], expectRecord(255, 254, 253, '00')],
    ['zeros', [0, 0, 0, 0, 0], expectRecord(0, 0, 0, '0000')],
  ])('%s', (_label, bytes, expected) => {
    expect(plain(parseTlsaWire(Uint8Array.from(bytes)))).toEqual(expected);
  });

  it.each<[string, number[], string]>([
    ['empty', [], 'TLSA RDATA is 0 bytes; at least 4 are needed (3 fields and some data)'],
    ['one byte', [3], 'TLSA RDATA is 1 bytes; at least 4 are needed (3 fields and some data)'],
    ['fields without data', [3, 1, 1], 'TLSA RDATA is 3 bytes; at least 4 are needed (3 fields and some data)'],
  ])('rejects short RDATA: %s', (_label, bytes, message) => {
    expect(parseError(() => parseTlsaWire(Uint8Array.from(bytes)))).toEqual({ name: 'TlsaParseError', message, isTlsaParseError: true });
  });

  it('reads a view into a larger buffer at its own offset and length', () => {
    const backing = Uint8Array.from([9, 9, 9, 3, 1, 2, 0xde, 0xad, 7, 7]);
    const view = backing.subarray(3, 8);
    expect(plain(parseTlsaWire(view))).toEqual(expectRecord(3, 1, 2, 'dead'));
  });

  it('copies the data: changing the input afterwards does not change the record', () => {
    const input = Uint8Array.from([3, 1, 1, 0xaa, 0xbb]);
    const record = parseTlsaWire(input);
    input[3] = 0x00;
    input[0] = 0;
    expect(plain(record)).toEqual(expectRecord(3, 1, 1, 'aabb'));
  });
});

describe('encodeTlsaWire', () => {
  it.each<[string, TlsaRecord, string]>([
    ['DANE-EE SPKI SHA-256', { usage: 3, selector: 1, matchingType: 1, data: Buffer.from('ab12', 'hex') }, '030101ab12'],
    ['DANE-TA Cert Full', { usage: 2, selector: 0, matchingType: 0, data: Buffer.from('30820102', 'hex') }, '02000030820102'],
    ['private use', { usage: 255, selector: 255, matchingType: 255, data: Buffer.from('00', 'hex') }, 'ffffff00'],
  ])('%s', (_label, record, hex) => {
    const wire = encodeTlsaWire(record);
    expect(wire.toString('hex')).toBe(hex);
    expect(plain(parseTlsaWire(wire))).toEqual(plain(record));
  });

  it.each<[string, string]>([
    ['3 1 1', '3 1 1 ' + 'ab'.repeat(32)],
    ['2 0 2', '2 0 2 ' + 'cd'.repeat(64)],
    ['7 3 9 (unknown)', '7 3 9 01'],
  ])('text -> wire -> record -> text round trip: %s', (_label, text) => {
    const record = parseTlsaRdata(text);
    const back = parseTlsaWire(encodeTlsaWire(record));
    expect(sameTlsaRecord(record, back)).toBe(true);
    expect(formatTlsaRdata(back)).toBe(text);
  });
});

describe('formatting', () => {
  const r311: TlsaRecord = { usage: 3, selector: 1, matchingType: 1, data: Buffer.from('AB12CD', 'hex') };
  const r200: TlsaRecord = { usage: 2, selector: 0, matchingType: 0, data: Buffer.from('00ff', 'hex') };

  it.each<[string, TlsaRecord, string | undefined, string]>([
    ['RDATA alone, lowercase hex', r311, undefined, '3 1 1 ab12cd'],
    ['owner without dot gets one', r311, 'client.example', 'client.example. IN TLSA 3 1 1 ab12cd'],
    ['owner with dot keeps exactly one', r311, 'client.example.', 'client.example. IN TLSA 3 1 1 ab12cd'],
    ['IoT owner', r200, 'sensor7._device.example.com', 'sensor7._device.example.com. IN TLSA 2 0 0 00ff'],
  ])('formatTlsaRecord: %s', (_label, record, owner, expected) => {
    expect(formatTlsaRecord(record, owner)).toBe(expected);
  });

  it('formatTlsaRdata equals formatTlsaRecord without an owner', () => {
    expect(formatTlsaRdata(r311)).toBe('3 1 1 ab12cd');
  });

  it('a formatted resource record parses back to the same record and owner', () => {
    const parsedBack = parseTlsaResourceRecord(formatTlsaRecord(r311, 'client.example'));
    expect([parsedBack.owner, parsedBack.ttl, sameTlsaRecord(parsedBack.record, r311)]).toEqual(['client.example', undefined, true]);
  });

  it.each<[string, Pick<TlsaRecord, 'usage' | 'selector' | 'matchingType'>, string]>([
    ['3 1 1', { usage: 3, selector: 1, matchingType: 1 }, 'DANE-EE(3) SPKI(1) SHA2-256(1)'],
    ['2 0 0', { usage: 2, selector: 0, matchingType: 0 }, 'DANE-TA(2) Cert(0) Full(0)'],
    ['1 1 2', { usage: 1, selector: 1, matchingType: 2 }, 'PKIX-EE(1) SPKI(1) SHA2-512(2)'],
    ['0 0 1', { usage: 0, selector: 0, matchingType: 1 }, 'PKIX-TA(0) Cert(0) SHA2-256(1)'],
    ['4 2 3', { usage: 4, selector: 2, matchingType: 3 }, 'unknown(4) unknown(2) unknown(3)'],
  ])('describeTlsaParameters %s', (_label, params, expected) => {
    expect(describeTlsaParameters(params)).toBe(expected);
  });
});

describe('sameTlsaRecord and applyMatchingType', () => {
  const base: TlsaRecord = { usage: 3, selector: 1, matchingType: 1, data: Buffer.from('ab', 'hex') };
  it.each<[string, TlsaRecord, boolean]>([
    ['identical', { ...base, data: Buffer.from('ab', 'hex') }, true],
    ['usage differs', { ...base, usage: 2 }, false],
    ['selector differs', { ...base, selector: 0 }, false],
    ['matching type differs', { ...base, matchingType: 2 }, false],
    ['data differs', { ...base, data: Buffer.from('ac', 'hex') }, false],
    ['data longer', { ...base, data: Buffer.from('ab00', 'hex') }, false],
  ])('sameTlsaRecord: %s', (_label, other, expected) => {
    expect(sameTlsaRecord(base, other)).toBe(expected);
  });

  const input = Buffer.from('dancegate');
  it.each<[number, string | undefined]>([
    [0, input.toString('hex')],
    [1, createHash('sha256').update(input).digest('hex')],
    [2, createHash('sha512').update(input).digest('hex')],
    [3, undefined],
    [255, undefined],
  ])('applyMatchingType(%i)', (matchingType, expected) => {
    expect(applyMatchingType(matchingType, input)?.toString('hex')).toBe(expected);
  });
});

describe('tlsaRecordForCertificate, checked against node:crypto', () => {
  const certs = new Map<KeyAlgorithm, IssuedCertificate>();
  beforeAll(async () => {
    const ca = await createCertificate({ commonName: 'tlsa test CA', isCA: true });
    for (const keyAlgorithm of ['ecdsa-p256', 'ed25519', 'rsa-2048'] as const) {
      certs.set(keyAlgorithm, await createCertificate({ commonName: `tlsa-${keyAlgorithm}.example`, dnsNames: [`tlsa-${keyAlgorithm}.example`], issuer: ca, keyAlgorithm }));
    }
  }, 60_000);

  /** Independent expectation: X509Certificate.raw / publicKey.export / createHash. */
  function independent(cert: IssuedCertificate, selector: number, matchingType: number): string {
    const x = new X509Certificate(cert.certPem);
    const selected = selector === 0 ? x.raw : x.publicKey.export({ type: 'spki', format: 'der' });
    if (matchingType === 0) return Buffer.from(selected).toString('hex');
    return createHash(matchingType === 1 ? 'sha256' : 'sha512')
      .update(selected)
      .digest('hex');
  }

  const combos: [KeyAlgorithm, number, number, number, number][] = [];
  for (const alg of ['ecdsa-p256', 'ed25519', 'rsa-2048'] as const) {
    for (const usage of [3, 2]) {
      for (const selector of [0, 1]) {
        for (const matchingType of [0, 1, 2]) combos.push([alg, usage, selector, matchingType, [0, 32, 64][matchingType] as number]);
      }
    }
  }

  it.each(combos)('%s %i %i %i', (alg, usage, selector, matchingType, digestLength) => {
    const cert = certs.get(alg) as IssuedCertificate;
    const record = tlsaRecordForCertificate(parsed(cert), usage, selector, matchingType);
    const expectedHex = independent(cert, selector, matchingType);
    expect(plain(record)).toEqual(expectRecord(usage, selector, matchingType, expectedHex));
    if (digestLength > 0) expect(record.data.length).toBe(digestLength);
  });

  it('Full data is a copy, not the certificate buffer itself', () => {
    const cert = parsed(certs.get('ecdsa-p256') as IssuedCertificate);
    const record = tlsaRecordForCertificate(cert, 3, 0, 0);
    record.data[0] = (record.data[0] as number) ^ 0xff;
    expect(cert.der[0]).toBe(0x30);
  });

  it('formats a generated record exactly', () => {
    const cert = certs.get('ecdsa-p256') as IssuedCertificate;
    const record = tlsaRecordForCertificate(parsed(cert), 3, 1, 1);
    expect(formatTlsaRecord(record, 'tlsa-ecdsa-p256.example')).toBe(`tlsa-ecdsa-p256.example. IN TLSA 3 1 1 ${independent(cert, 1, 1)}`);
  });

  it.each<[string, number, number, number, string]>([
    ['usage 4', 4, 1, 1, 'usage 4 is not 0..3'],
    ['usage -1', -1, 1, 1, 'usage -1 is not 0..3'],
    ['usage 1.5', 1.5, 1, 1, 'usage 1.5 is not 0..3'],
    ['selector 2', 3, 2, 1, 'selector 2 is not 0 or 1'],
    ['matching type 3', 3, 1, 3, 'matching type 3 is not 0, 1 or 2'],
    ['matching type 255', 3, 0, 255, 'matching type 255 is not 0, 1 or 2'],
  ])('refuses to make a record with %s', (_label, usage, selector, matchingType, message) => {
    const cert = parsed(certs.get('ecdsa-p256') as IssuedCertificate);
    expect(() => tlsaRecordForCertificate(cert, usage, selector, matchingType)).toThrow(new RangeError(message));
  });
});
