import { createHash, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import {
  describeTlsaParameters,
  encodeTlsaWire,
  formatTlsaRecord,
  parseTlsaRdata,
  parseTlsaResourceRecord,
  parseTlsaWire,
  tlsaRecordForCertificate,
} from '../../src/dane/tlsa.js';

const HEX32 = 'ab'.repeat(32);

describe('parseTlsaRdata', () => {
  it.each([
    ['3 1 1 ' + HEX32, 3, 1, 1, HEX32],
    ['3 1 1 ' + HEX32.toUpperCase(), 3, 1, 1, HEX32],
    ['  2\t0   1 ' + HEX32.slice(0, 20) + ' ' + HEX32.slice(20), 2, 0, 1, HEX32],
    ['3 1 1 (\n  ' + HEX32.slice(0, 32) + ' ; first half\n  ' + HEX32.slice(32) + ' )', 3, 1, 1, HEX32],
    ['( 3 1 1\n' + HEX32 + ')', 3, 1, 1, HEX32],
    ['7 9 255 00', 7, 9, 255, '00'],
  ])('%j', (text, usage, selector, matchingType, hex) => {
    expect(parseTlsaRdata(text)).toEqual({ usage, selector, matchingType, data: Buffer.from(hex, 'hex') });
  });

  it.each([
    ['256 1 1 ab', "usage field 256 is not a number from 0 to 255"],
    ['-1 1 1 ab', "usage field '-1' is not a number from 0 to 255"],
    ['3 x 1 ab', "selector field 'x' is not a number from 0 to 255"],
    ['3 1 1000 ab', "matching type field '1000' is not a number from 0 to 255"],
    ['3 1', 'missing matching type field'],
    ['', 'missing usage field'],
    ['3 1 1', 'missing certificate association data'],
    ['3 1 1 abc', 'certificate association data has an odd number of hex digits'],
    ['3 1 1 zz', 'certificate association data is not hexadecimal'],
    ['3 1 1 ( ab', "unbalanced '('"],
    ['3 1 1 ab )', "unbalanced ')'"],
  ])('rejects %j: %s', (text, message) => {
    expect(() => parseTlsaRdata(text)).toThrow(message);
  });
});

describe('parseTlsaResourceRecord', () => {
  it.each([
    [`sensor7._device.example.com. 300 IN TLSA 3 1 1 ${HEX32}`, 'sensor7._device.example.com', 300],
    [`sensor7._device.example.com IN 300 TLSA 3 1 1 ${HEX32}`, 'sensor7._device.example.com', 300],
    [`sensor7._device.example.com tlsa 3 1 1 ${HEX32}`, 'sensor7._device.example.com', undefined],
    [`sensor7._device.example.com IN TLSA ( 3 1 1\n ${HEX32} )`, 'sensor7._device.example.com', undefined],
  ])('%j', (text, owner, ttl) => {
    expect(parseTlsaResourceRecord(text)).toEqual({ owner, ttl, record: { usage: 3, selector: 1, matchingType: 1, data: Buffer.from(HEX32, 'hex') } });
  });

  it.each([
    ['', 'empty record'],
    ['a.example.com 300 IN', "missing record type 'TLSA'"],
    ['a.example.com 300 IN A 192.0.2.1', "expected TTL, class IN or type TLSA, found 'A'"],
    ['a.example.com 300 300 TLSA 3 1 1 ab', "expected TTL, class IN or type TLSA, found '300'"],
    ['a.example.com 99999999999 TLSA 3 1 1 ab', 'TTL 99999999999 is out of range'],
  ])('rejects %j: %s', (text, message) => {
    expect(() => parseTlsaResourceRecord(text)).toThrow(message);
  });
});

describe('TLSA wire form', () => {
  it('parses the fields and data exactly', () => {
    expect(parseTlsaWire(Buffer.from([3, 1, 1, 0xde, 0xad]))).toEqual({ usage: 3, selector: 1, matchingType: 1, data: Buffer.from([0xde, 0xad]) });
  });
  it.each([[[]], [[3]], [[3, 1, 1]]])('rejects %j (too short)', (bytes) => {
    expect(() => parseTlsaWire(Buffer.from(bytes))).toThrow(`TLSA RDATA is ${bytes.length} bytes; at least 4 are needed`);
  });
  it('round-trips', () => {
    const record = { usage: 2, selector: 0, matchingType: 2, data: Buffer.alloc(64, 9) };
    expect(parseTlsaWire(encodeTlsaWire(record))).toEqual(record);
  });
});

describe('formatting', () => {
  const record = { usage: 3, selector: 1, matchingType: 1, data: Buffer.from('0aff', 'hex') };
  it.each([
    [undefined, '3 1 1 0aff'],
    ['a.example.com', 'a.example.com. IN TLSA 3 1 1 0aff'],
    ['a.example.com.', 'a.example.com. IN TLSA 3 1 1 0aff'],
  ])('owner %s', (owner, expected) => {
    expect(formatTlsaRecord(record, owner)).toBe(expected);
  });
  it.each([
    [{ usage: 3, selector: 1, matchingType: 1 }, 'DANE-EE(3) SPKI(1) SHA2-256(1)'],
    [{ usage: 2, selector: 0, matchingType: 2 }, 'DANE-TA(2) Cert(0) SHA2-512(2)'],
    [{ usage: 0, selector: 0, matchingType: 0 }, 'PKIX-TA(0) Cert(0) Full(0)'],
    [{ usage: 9, selector: 7, matchingType: 8 }, 'unknown(9) unknown(7) unknown(8)'],
  ])('describes %j', (params, expected) => {
    expect(describeTlsaParameters(params)).toBe(expected);
  });
});

describe('tlsaRecordForCertificate, checked against node:crypto', () => {
  let issued: IssuedCertificate;
  beforeAll(async () => {
    issued = await createCertificate({ commonName: 'gen.example.test', dnsNames: ['gen.example.test'], keyAlgorithm: 'rsa-2048' });
  });
  it.each([
    [0, 0],
    [0, 1],
    [0, 2],
    [1, 0],
    [1, 1],
    [1, 2],
  ])('selector %i, matching type %i', (selector, matchingType) => {
    const node = new X509Certificate(issued.der);
    const selected = selector === 0 ? node.raw : node.publicKey.export({ type: 'spki', format: 'der' });
    const expected = matchingType === 0 ? selected : createHash(matchingType === 1 ? 'sha256' : 'sha512').update(selected).digest();
    const record = tlsaRecordForCertificate(parseCertificateDer(issued.der), 3, selector, matchingType);
    expect(record).toEqual({ usage: 3, selector, matchingType, data: Buffer.from(expected) });
  });
  it.each([
    [4, 1, 1, 'usage 4 is not 0..3'],
    [3, 2, 1, 'selector 2 is not 0 or 1'],
    [3, 1, 3, 'matching type 3 is not 0, 1 or 2'],
  ])('refuses %i %i %i', (u, s, m, message) => {
    expect(() => tlsaRecordForCertificate(parseCertificateDer(issued.der), u, s, m)).toThrow(message);
  });
});
