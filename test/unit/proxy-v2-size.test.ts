/**
 * The PROXY v2 header's size cap (issue 14; Mosquitto 2.1 reads at most 500
 * bytes): buildProxyHeader leaves optional parts out in PROXY_V2_DROP_ORDER
 * (name TLV, AUTHORITY, SSL cipher, SSL version, cert hash, TLSA) until the
 * header fits proxyV2.maxHeaderBytes, and never the addresses, ALPN, the
 * SSL TLV's client/verify/CN or CRC32C. Checked against an independent
 * byte count, over names, SNI and ALPN of every length.
 *
 * Sizes for a typical IoT device (README figures), IPv4, no CRC32C:
 * name sensor7._device.example.com (27 bytes), SNI mqtt.example.com,
 * ALPN mqtt, TLS 1.3 with TLS_AES_128_GCM_SHA256, TLSA 3 1 1:
 *   every TLV                         198 bytes
 *   without the name TLV              168   (-30)
 *   without AUTHORITY (SNI)           179   (-19)
 *   without the SSL cipher            173   (-25)
 *   without the SSL version           188   (-10)
 *   without the cert hash             163   (-35)
 *   without the TLSA parameters       192   (-6)
 *   without ALPN (none negotiated)    191   (-7)
 *   only what is never left out        73   (addresses 28, ALPN 7, SSL client/verify/CN 38)
 *   with CRC32C                       +7;  IPv6 addresses +24
 * Each step of the drop order (cumulative): 198, 179, 154, 144, 114, 79, 73.
 * The worst case of what is never left out (IPv6, 253-byte name, 255-byte
 * ALPN id, CRC32C) is 16 + 36 + 258 + 264 + 7 = 581 bytes.
 */
import type * as tls from 'node:tls';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ProxyHeaderConfig } from '../../src/config/types.js';
import type { ConnectionContext } from '../../src/connection/forwarder.js';
import { buildProxyHeader, PROXY_V2_DROP_ORDER } from '../../src/forward/tcp-forward.js';
import { parseProxyHeader, PP2_SSL_SUBTYPE, PP2_TYPE, proxyV2FloorBytes, type ProxyV2Header } from '../../src/protocol/proxy-protocol.js';

const NAME = 'sensor7._device.example.com';
const SNI = 'mqtt.example.com';
const CIPHER = 'TLS_AES_128_GCM_SHA256';
const TYPES = { name: 0xe4, certHash: 0xe5, tlsa: 0xe6 };

type Part = (typeof PROXY_V2_DROP_ORDER)[number];

interface Case {
  readonly name: string;
  readonly sni: string | undefined;
  readonly alpn: string | undefined;
  readonly version: string;
  readonly cipher: string;
  readonly ipv6: boolean;
  readonly crc32c: boolean;
}

const TYPICAL: Case = { name: NAME, sni: SNI, alpn: 'mqtt', version: 'TLSv1.3', cipher: CIPHER, ipv6: false, crc32c: false };

/** The parts of a TLSSocket buildProxyHeader reads. */
function socketFor(c: Case): tls.TLSSocket {
  return { alpnProtocol: c.alpn ?? false, getProtocol: () => c.version, getCipher: () => ({ name: c.cipher }) } as unknown as tls.TLSSocket;
}

/** Only the fields buildProxyHeader reads. */
function contextFor(c: Case): ConnectionContext {
  return {
    clientAddress: c.ipv6 ? '2001:db8::7' : '192.0.2.7',
    clientPort: 40000,
    localAddress: c.ipv6 ? '2001:db8::1' : '192.0.2.1',
    localPort: 8883,
    hello: { serverName: c.sni },
    identity: { name: c.name, leaf: { der: Buffer.from(`certificate of ${c.name}`) }, tlsa: [3, 1, 1] },
    status: 'authenticated',
  } as unknown as ConnectionContext;
}

const config = (c: Case, maxHeaderBytes: number): ProxyHeaderConfig => ({ version: 'v2', tlvTypes: TYPES, crc32c: c.crc32c, maxHeaderBytes });

/** The header's size with `left` of the optional parts, counted from the format (not from our encoder). */
function expectedBytes(c: Case, left: ReadonlySet<Part>): number {
  const tlv = (valueBytes: number): number => 3 + valueBytes;
  const len = (s: string): number => Buffer.byteLength(s);
  const ssl = 5 + tlv(len(c.name)) + (left.has('version') ? tlv(len(c.version)) : 0) + (left.has('cipher') ? tlv(len(c.cipher)) : 0);
  return (
    16 +
    (c.ipv6 ? 36 : 12) +
    (c.alpn === undefined ? 0 : tlv(len(c.alpn))) +
    (left.has('authority') && c.sni !== undefined ? tlv(len(c.sni)) : 0) +
    tlv(ssl) +
    (left.has('name') ? tlv(len(c.name)) : 0) +
    (left.has('certHash') ? tlv(32) : 0) +
    (left.has('tlsa') ? tlv(3) : 0) +
    (c.crc32c ? tlv(4) : 0)
  );
}

/** The parts left once the first `dropped` of the drop order are gone. */
const leftAfter = (dropped: number): Set<Part> => new Set(PROXY_V2_DROP_ORDER.slice(dropped));

/** Which optional parts a parsed header carries. */
function partsOf(h: ProxyV2Header): Set<Part> {
  const has = (type: number): boolean => h.tlvs.some((t) => t.type === type);
  const sub = (type: number): boolean => h.ssl?.subTlvs.some((t) => t.type === type) ?? false;
  const present: Array<[Part, boolean]> = [
    ['name', has(TYPES.name)],
    ['authority', has(PP2_TYPE.AUTHORITY)],
    ['cipher', sub(PP2_SSL_SUBTYPE.CIPHER)],
    ['version', sub(PP2_SSL_SUBTYPE.VERSION)],
    ['certHash', has(TYPES.certHash)],
    ['tlsa', has(TYPES.tlsa)],
  ];
  return new Set(present.filter(([, p]) => p).map(([part]) => part));
}

function build(c: Case, maxHeaderBytes: number): { bytes: number; header: ProxyV2Header } {
  const out = buildProxyHeader(socketFor(c), contextFor(c), config(c, maxHeaderBytes));
  if (out === undefined) throw new Error('expected a header');
  const parsed = parseProxyHeader(out);
  if (parsed.status !== 'complete') throw new Error(`our header does not parse: ${JSON.stringify(parsed)}`);
  expect(parsed.headerBytes).toBe(out.length);
  return { bytes: out.length, header: parsed.header };
}

/** A DNS name of exactly `length` bytes: labels of at most 63 bytes joined by dots. */
function nameOf(length: number): string {
  const labels: string[] = [];
  let left = length;
  while (left > 63) {
    // Never leave exactly 0 after a dot: a name does not end with an empty label.
    const take = left - 63 - 1 >= 1 ? 63 : 62;
    labels.push('a'.repeat(take));
    left -= take + 1;
  }
  labels.push('a'.repeat(left));
  const name = labels.join('.');
  if (name.length !== length) throw new Error(`nameOf(${length}) made ${name.length}`);
  return name;
}

describe('the drop order', () => {
  it('is AUTHORITY (client-chosen text first), SSL cipher, SSL version, name TLV, cert hash, TLSA', () => {
    expect(PROXY_V2_DROP_ORDER).toEqual(['authority', 'cipher', 'version', 'name', 'certHash', 'tlsa']);
  });
});

describe('a typical IoT device (the README figures)', () => {
  it('every TLV fits 500: 198 bytes, nothing left out', () => {
    const { bytes, header } = build(TYPICAL, 500);
    expect(bytes).toBe(198);
    expect(partsOf(header)).toEqual(leftAfter(0));
    expect(header.alpn).toBe('mqtt');
    expect(header.authority).toBe(SNI);
    expect(header.ssl).toMatchObject({ client: 0x07, verify: 0, cn: NAME, version: 'TLSv1.3', cipher: CIPHER });
  });

  it.each<[string, Partial<Case>, number]>([
    ['without ALPN', { alpn: undefined }, 191],
    ['without SNI', { sni: undefined }, 179],
    ['with CRC32C', { crc32c: true }, 205],
    ['over IPv6', { ipv6: true }, 222],
    ['TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256', { version: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256' }, 205],
  ])('%s: %i bytes', (_label, over, bytes) => {
    const c = { ...TYPICAL, ...over };
    expect(expectedBytes(c, leftAfter(0))).toBe(bytes);
    expect(build(c, 500).bytes).toBe(bytes);
  });

  it('each step of the drop order, as the cap tightens: 198, 179, 154, 144, 114, 79, 73', () => {
    const steps = [198, 179, 154, 144, 114, 79, 73];
    steps.forEach((cap, dropped) => {
      const { bytes, header } = build(TYPICAL, cap);
      expect([bytes, [...partsOf(header)].sort()]).toEqual([cap, [...leftAfter(dropped)].sort()]);
      expect(expectedBytes(TYPICAL, leftAfter(dropped))).toBe(cap);
      // One byte less and the next part goes.
      if (dropped < steps.length - 1) expect(build(TYPICAL, cap - 1).bytes).toBe(steps[dropped + 1]);
    });
  });

  it('each optional part alone costs: AUTHORITY 19, cipher 25, version 10, name 30, cert hash 35, TLSA 6', () => {
    const cost = (part: Part): number => expectedBytes(TYPICAL, leftAfter(0)) - expectedBytes(TYPICAL, new Set(PROXY_V2_DROP_ORDER.filter((p) => p !== part)));
    expect(PROXY_V2_DROP_ORDER.map((p) => [p, cost(p)])).toEqual([
      ['authority', 19],
      ['cipher', 25],
      ['version', 10],
      ['name', 30],
      ['certHash', 35],
      ['tlsa', 6],
    ]);
  });

  it('the values left are exact: the CN, ALPN and the custom TLVs carry what they should', () => {
    const { header } = build(TYPICAL, 500);
    const tlv = (type: number): Buffer | undefined => header.tlvs.find((t) => t.type === type)?.value;
    expect(tlv(TYPES.name)?.toString()).toBe(NAME);
    expect(tlv(TYPES.certHash)).toHaveLength(32);
    expect([...(tlv(TYPES.tlsa) ?? [])]).toEqual([3, 1, 1]);
    expect(header.addresses).toEqual({ family: 'tcp4', sourceAddress: '192.0.2.7', sourcePort: 40000, destinationAddress: '192.0.2.1', destinationPort: 8883 });
  });
});

describe('growing names, SNI and ALPN', () => {
  it.each([27, 64, 128, 200, 253])('a name of %i bytes with a 255-byte SNI and a 255-byte ALPN id, IPv6 and CRC32C: within 581 (the floor) at every cap down to it', (length) => {
    const c: Case = { ...TYPICAL, name: nameOf(length), sni: nameOf(253), alpn: 'p'.repeat(255), ipv6: true, crc32c: true };
    const floor = proxyV2FloorBytes(255, true);
    expect(floor).toBe(581);
    for (let cap = floor; cap <= 1200; cap += 7) {
      const { bytes, header } = build(c, cap);
      expect(bytes).toBeLessThanOrEqual(cap);
      expect(header.ssl?.cn).toBe(c.name);
      expect(header.alpn).toBe(c.alpn);
      expect(header.crc32cValid).toBe(true);
    }
  });

  it('property: the fewest parts of the drop order are left out, the header fits, CN, ALPN and addresses always there', () => {
    const nameLength = fc.integer({ min: 1, max: 253 });
    fc.assert(
      fc.property(
        nameLength,
        fc.option(fc.integer({ min: 1, max: 253 }), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 255 }), { nil: undefined }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 400 }),
        (name, sni, alpn, ipv6, crc32c, extra) => {
          const c: Case = { ...TYPICAL, name: nameOf(name), sni: sni === undefined ? undefined : nameOf(sni), alpn: alpn === undefined ? undefined : 'x'.repeat(alpn), ipv6, crc32c };
          const cap = proxyV2FloorBytes(alpn ?? 0, crc32c) + extra;
          // The oracle: the smallest k such that leaving out the first k parts fits.
          let k = 0;
          while (expectedBytes(c, leftAfter(k)) > cap) k++;
          const { bytes, header } = build(c, cap);
          expect(bytes).toBe(expectedBytes(c, leftAfter(k)));
          expect(bytes).toBeLessThanOrEqual(cap);
          expect(partsOf(header)).toEqual(new Set([...leftAfter(k)].filter((p) => p !== 'authority' || c.sni !== undefined)));
          expect(header.ssl?.cn).toBe(c.name);
          expect(header.ssl?.client).toBe(0x07);
          expect(header.ssl?.verify).toBe(0);
          expect(header.alpn).toBe(c.alpn);
          expect(header.addresses?.family).toBe(ipv6 ? 'tcp6' : 'tcp4');
          expect(header.crc32cValid).toBe(crc32c ? true : undefined);
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('a cap below what is never left out', () => {
  it.each<[string, Partial<Case>, number, number]>([
    ['the typical device under 73 bytes', {}, 72, 73],
    ['a 253-byte name under 316 (IPv6, no ALPN)', { name: nameOf(253), alpn: undefined, ipv6: true }, 315, 316],
    ['a 253-byte name with ALPN mqtt and CRC32C at the default 500 is fine, at 329 it is not', { name: nameOf(253), alpn: 'mqtt', ipv6: true, crc32c: true }, 329, 330],
  ])('%s: RangeError with the size it needs', (_label, over, cap, needs) => {
    const c = { ...TYPICAL, ...over };
    expect(expectedBytes(c, leftAfter(PROXY_V2_DROP_ORDER.length))).toBe(needs);
    expect(build(c, needs).bytes).toBe(needs);
    expect(() => buildProxyHeader(socketFor(c), contextFor(c), config(c, cap))).toThrow(
      new RangeError(`the PROXY v2 header needs ${needs} bytes even without its optional TLVs, over proxyV2.maxHeaderBytes (${cap})`),
    );
  });

  it('the floor the configuration checks is what a 253-byte name needs over IPv6 (with ALPN and CRC32C)', () => {
    for (const [alpn, crc32c] of [
      [0, false],
      [4, false],
      [4, true],
      [255, true],
    ] as const) {
      const c: Case = { ...TYPICAL, name: nameOf(253), alpn: alpn === 0 ? undefined : 'a'.repeat(alpn), ipv6: true, crc32c };
      expect(proxyV2FloorBytes(alpn, crc32c)).toBe(expectedBytes(c, leftAfter(PROXY_V2_DROP_ORDER.length)));
    }
  });
});
