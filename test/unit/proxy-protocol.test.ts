import net from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { crc32c as libraryCrc32c } from '@node-rs/crc32';
import { describe, expect, it } from 'vitest';
import {
  encodeProxyV1,
  encodeProxyV2,
  parseProxyHeader,
  PROXY_V2_SIGNATURE,
  type EncodeV2Options,
  type ProxyAddresses,
  type ProxyParse,
  type ProxyTlv,
  type ProxyV2Header,
} from '../../src/protocol/proxy-protocol.js';

/** Hex with '#' comments to end of line and any whitespace. */
const hex = (s: string): Buffer => Buffer.from(s.replace(/#[^\n]*/g, '').replace(/\s+/g, ''), 'hex');
const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Bitwise CRC32C (Castagnoli, reflected polynomial 0x82F63B78), RFC 4960 appendix B: the test's own reference. */
function referenceCrc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function complete(r: ProxyParse): Extract<ProxyParse, { status: 'complete' }> {
  if (r.status !== 'complete') throw new Error(`expected a complete header, got ${JSON.stringify(r)}`);
  return r;
}

const A4: ProxyAddresses = { family: 'tcp4', sourceAddress: '192.0.2.1', sourcePort: 56324, destinationAddress: '198.51.100.2', destinationPort: 443 };
const A6: ProxyAddresses = { family: 'tcp6', sourceAddress: '2001:db8::1', sourcePort: 40000, destinationAddress: '2001:db8::2', destinationPort: 2083 };
const HASH = Buffer.from(Array.from({ length: 32 }, (_, i) => i));

// ---------------------------------------------------------------------------------------------
// Golden vectors, written byte by byte from doc/proxy-protocol.txt (not produced by the encoder).

const SIG = '0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A';

const GOLDEN_TCP4 = hex(`
  ${SIG}
  21          # version 2, command PROXY
  11          # TCP over IPv4
  00 0C       # 12 bytes follow
  C0 00 02 01 # 192.0.2.1
  C6 33 64 02 # 198.51.100.2
  DC 04       # 56324
  01 BB       # 443
`);

const GOLDEN_TCP6 = hex(`
  ${SIG}
  21 21 00 24                                      # PROXY, TCP over IPv6, 36 bytes
  20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01  # 2001:db8::1
  20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 02  # 2001:db8::2
  9C 40                                            # 40000
  08 23                                            # 2083
`);

const GOLDEN_LOCAL = hex(`${SIG} 20 00 00 00 # version 2 LOCAL, AF_UNSPEC, no bytes follow`);

const GOLDEN_RICH = hex(`
  ${SIG}
  21 11 00 AC # PROXY, TCP4, 172 bytes = 12 + 13 + 22 + 53 + 31 + 35 + 6
  C0 00 02 01  C6 33 64 02  DC 04  01 BB
  01 00 0A  72 61 64 69 75 73 2F 31 2E 31                          # ALPN "radius/1.1"
  02 00 13  72 61 64 73 65 63 2E 65 78 61 6D 70 6C 65 2E 74 65 73 74 # AUTHORITY "radsec.example.test"
  20 00 32                                                         # SSL, 50 bytes
    07                                                             #   client: SSL | CERT_CONN | CERT_SESS
    00 00 00 00                                                    #   verify: 0
    21 00 07  54 4C 53 76 31 2E 33                                 #   VERSION "TLSv1.3"
    22 00 07  73 65 6E 73 6F 72 37                                 #   CN "sensor7"
    23 00 16  54 4C 53 5F 41 45 53 5F 32 35 36 5F 47 43 4D 5F 53 48 41 33 38 34 # CIPHER
  E4 00 1C  73 65 6E 73 6F 72 37 2E 5F 64 65 76 69 63 65 2E 65 78 61 6D 70 6C 65 2E 74 65 73 74 # "sensor7._device.example.test"
  E5 00 20  00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 11 12 13 14 15 16 17 18 19 1A 1B 1C 1D 1E 1F # certificate hash
  E6 00 03  03 01 01                                               # TLSA 3 1 1
`);

const GOLDEN_CRC = hex(`
  ${SIG}
  21 11 00 13  # PROXY, TCP4, 19 bytes = 12 + 7
  7F 00 00 01  7F 00 00 01  30 39  01 BB # 127.0.0.1:12345 -> 127.0.0.1:443
  03 00 04  98 01 18 9B # CRC32C
`);
const CRC_ADDRESSES: ProxyAddresses = { family: 'tcp4', sourceAddress: '127.0.0.1', sourcePort: 12345, destinationAddress: '127.0.0.1', destinationPort: 443 };

const RICH_OPTIONS: EncodeV2Options = {
  addresses: A4,
  alpn: 'radius/1.1',
  authority: 'radsec.example.test',
  ssl: { client: 0x07, verify: 0, version: 'TLSv1.3', cn: 'sensor7', cipher: 'TLS_AES_256_GCM_SHA384' },
  customTlvs: [
    { type: 0xe4, value: ascii('sensor7._device.example.test') },
    { type: 0xe5, value: HASH },
    { type: 0xe6, value: Buffer.from([3, 1, 1]) },
  ],
};

describe('CRC32C', () => {
  it('matches the check value crc32c("123456789") = 0xE3069283 (reference and library)', () => {
    expect(referenceCrc32c(ascii('123456789'))).toBe(0xe3069283);
    expect(libraryCrc32c(ascii('123456789'))).toBe(0xe3069283);
  });
  it('the golden CRC header carries the CRC32C of itself with the checksum zeroed', () => {
    const zeroed = Buffer.from(GOLDEN_CRC);
    zeroed.fill(0, zeroed.length - 4);
    expect(referenceCrc32c(zeroed)).toBe(0x9801189b);
    expect(libraryCrc32c(zeroed)).toBe(0x9801189b);
  });
});

describe('golden v2 vectors', () => {
  it('the exported signature', () => {
    expect(PROXY_V2_SIGNATURE).toEqual(hex(SIG));
  });

  it.each<[string, Buffer, EncodeV2Options, ProxyV2Header]>([
    ['TCP4, no TLVs', GOLDEN_TCP4, { addresses: A4 }, { command: 'PROXY', addresses: A4, tlvs: [] }],
    ['TCP6, no TLVs', GOLDEN_TCP6, { addresses: A6 }, { command: 'PROXY', addresses: A6, tlvs: [] }],
    ['LOCAL', GOLDEN_LOCAL, { command: 'LOCAL' }, { command: 'LOCAL', addresses: undefined, tlvs: [] }],
    [
      'ALPN + AUTHORITY + SSL + custom 0xE4/0xE5/0xE6',
      GOLDEN_RICH,
      RICH_OPTIONS,
      {
        command: 'PROXY',
        addresses: A4,
        tlvs: [
          { type: 0x01, value: ascii('radius/1.1') },
          { type: 0x02, value: ascii('radsec.example.test') },
          { type: 0x20, value: GOLDEN_RICH.subarray(16 + 12 + 13 + 22 + 3, 16 + 12 + 13 + 22 + 53) },
          { type: 0xe4, value: ascii('sensor7._device.example.test') },
          { type: 0xe5, value: HASH },
          { type: 0xe6, value: Buffer.from([3, 1, 1]) },
        ],
        alpn: 'radius/1.1',
        authority: 'radsec.example.test',
        ssl: {
          client: 7,
          verify: 0,
          version: 'TLSv1.3',
          cn: 'sensor7',
          cipher: 'TLS_AES_256_GCM_SHA384',
          subTlvs: [
            { type: 0x21, value: ascii('TLSv1.3') },
            { type: 0x22, value: ascii('sensor7') },
            { type: 0x23, value: ascii('TLS_AES_256_GCM_SHA384') },
          ],
        },
      },
    ],
    ['CRC32C', GOLDEN_CRC, { addresses: CRC_ADDRESSES, crc32c: true }, { command: 'PROXY', addresses: CRC_ADDRESSES, tlvs: [{ type: 0x03, value: hex('98 01 18 9B') }], crc32cValid: true }],
  ])('%s: parses to the expected header and the encoder reproduces the bytes', (_label, golden, options, expected) => {
    const r = complete(parseProxyHeader(golden));
    expect(r.version).toBe(2);
    expect(r.headerBytes).toBe(golden.length);
    expect(r.header).toStrictEqual(expected);
    expect(encodeProxyV2(options)).toEqual(golden);
  });

  it.each([
    ['an address byte changed after the checksum was computed', 16, 0x0a, 'PROXY v2: CRC32C checksum mismatch (header says 0x9801189B, the bytes give 0xDC90BD80)'],
    ['the checksum itself changed', GOLDEN_CRC.length - 1, 0x9a, 'PROXY v2: CRC32C checksum mismatch (header says 0x9801189A, the bytes give 0x9801189B)'],
  ])('a CRC32C mismatch is refused (the spec: the receiver MUST reject it): %s', (_label, at, value, reason) => {
    const bad = Buffer.from(GOLDEN_CRC);
    bad[at] = value;
    // The "bytes give" value is the reference CRC over the header with the checksum field zeroed.
    const zeroed = Buffer.from(bad);
    zeroed.fill(0, zeroed.length - 4);
    expect(reason).toContain(`the bytes give 0x${referenceCrc32c(zeroed).toString(16).toUpperCase().padStart(8, '0')})`);
    expect(parseProxyHeader(bad)).toEqual({ status: 'invalid', reason });
    // Stable: more bytes (payload) after the header change nothing.
    expect(parseProxyHeader(Buffer.concat([bad, Buffer.from('payload')]))).toEqual({ status: 'invalid', reason });
  });
});

// ---------------------------------------------------------------------------------------------
// v2 decoding rules

describe('v2 decoding', () => {
  const v2 = (verCmd: number, fam: number, rest: string): Buffer => {
    const body = hex(rest);
    const head = Buffer.alloc(4);
    head[0] = verCmd;
    head[1] = fam;
    head.writeUInt16BE(body.length, 2);
    return Buffer.concat([hex(SIG), head, body]);
  };
  const ADDR4 = 'C0 00 02 01 C6 33 64 02 DC 04 01 BB';

  it.each<[string, Buffer, Partial<ProxyV2Header>]>([
    ['PROXY AF_UNSPEC: no addresses', v2(0x21, 0x00, ''), { command: 'PROXY', addresses: undefined, tlvs: [] }],
    ['LOCAL with a TCP4 block: block skipped', v2(0x20, 0x11, ADDR4), { command: 'LOCAL', addresses: undefined, tlvs: [] }],
    ['LOCAL ignores a UDP family (spec: the family is ignored)', v2(0x20, 0x12, ADDR4), { command: 'LOCAL', addresses: undefined }],
    [
      'NOOP kept in tlvs, not in views; NETNS and future types raw',
      v2(0x21, 0x11, `${ADDR4} 04 00 00  30 00 02 6E 73  F8 00 01 FF`),
      {
        tlvs: [
          { type: 0x04, value: Buffer.alloc(0) },
          { type: 0x30, value: ascii('ns') },
          { type: 0xf8, value: hex('FF') },
        ],
      },
    ],
    ['UNIQUE_ID view', v2(0x21, 0x11, `${ADDR4} 05 00 03 01 02 03`), { uniqueId: hex('01 02 03') }],
    ['UTF-8 AUTHORITY', v2(0x21, 0x11, `${ADDR4} 02 00 06 C3 A9 74 C3 A9 2E`), { authority: 'été.' }],
    [
      'SSL with an unknown sub-TLV (CLIENT_CERT) and SIG_ALG/KEY_ALG',
      v2(0x21, 0x11, `${ADDR4} 20 00 16  03 00 00 00 15  24 00 03 52 53 41  25 00 02 45 43  28 00 03 30 01 00`),
      {
        ssl: {
          client: 3,
          verify: 21,
          sigAlg: 'RSA',
          keyAlg: 'EC',
          subTlvs: [
            { type: 0x24, value: ascii('RSA') },
            { type: 0x25, value: ascii('EC') },
            { type: 0x28, value: hex('30 01 00') },
          ],
        },
      },
    ],
  ])('%s', (_label, buf, expected) => {
    const r = complete(parseProxyHeader(buf));
    expect(r.headerBytes).toBe(buf.length);
    expect(r.header).toMatchObject(expected);
    if ('addresses' in expected) expect(r.header.addresses).toBeUndefined();
  });

  it.each<[string, Buffer, string]>([
    ['version 1 nibble', v2(0x11, 0x11, ADDR4), 'PROXY v2: unsupported version 1'],
    ['version 3 nibble', v2(0x31, 0x11, ADDR4), 'PROXY v2: unsupported version 3'],
    ['command 2', v2(0x22, 0x11, ADDR4), 'PROXY v2: unknown command 0x02'],
    ['UDP over IPv4', v2(0x21, 0x12, ADDR4), 'PROXY v2: UDP over IPv4 is not supported'],
    ['UDP over IPv6', v2(0x21, 0x22, ''), 'PROXY v2: UDP over IPv6 is not supported'],
    ['UNIX stream', v2(0x21, 0x31, ''), 'PROXY v2: UNIX stream is not supported'],
    ['UNIX datagram', v2(0x21, 0x32, ''), 'PROXY v2: UNIX datagram is not supported'],
    ['unknown family', v2(0x21, 0x41, ''), 'PROXY v2: invalid address family/transport byte 0x41'],
    ['unknown transport', v2(0x20, 0x13, ''), 'PROXY v2: invalid address family/transport byte 0x13'],
    ['length short of the TCP4 block', v2(0x21, 0x11, 'C0 00 02 01 C6 33 64 02 DC 04 01'), 'PROXY v2: length 11 does not cover the 12-byte address block'],
    ['length short of the TCP6 block', v2(0x21, 0x21, ADDR4), 'PROXY v2: length 12 does not cover the 36-byte address block'],
    ['TLV overrunning the header', v2(0x21, 0x11, `${ADDR4} E4 00 05 61 62 63`), 'PROXY v2: TLV 0xE4 overruns the header'],
    ['2 trailing bytes', v2(0x21, 0x11, `${ADDR4} E4 00`), 'PROXY v2: 2 trailing byte(s) in the header cannot hold a TLV'],
    ['CRC32C of 3 bytes', v2(0x21, 0x11, `${ADDR4} 03 00 03 00 00 00`), 'PROXY v2: CRC32C TLV must be 4 bytes'],
    ['two CRC32C TLVs', v2(0x21, 0x11, `${ADDR4} 03 00 04 00 00 00 00 03 00 04 00 00 00 00`), 'PROXY v2: duplicate CRC32C TLV'],
    ['two AUTHORITY TLVs', v2(0x21, 0x11, `${ADDR4} 02 00 01 61 02 00 01 62`), 'PROXY v2: duplicate AUTHORITY TLV'],
    ['AUTHORITY not UTF-8', v2(0x21, 0x11, `${ADDR4} 02 00 02 C3 28`), 'PROXY v2: AUTHORITY TLV is not valid UTF-8'],
    ['AUTHORITY over 255 bytes', v2(0x21, 0x11, `${ADDR4} 02 01 00 ${'61'.repeat(256)}`), 'PROXY v2: AUTHORITY TLV is over 255 bytes'],
    ['UNIQUE_ID over 128 bytes', v2(0x21, 0x11, `${ADDR4} 05 00 81 ${'00'.repeat(129)}`), 'PROXY v2: UNIQUE_ID TLV is over 128 bytes'],
    ['SSL of 4 bytes', v2(0x21, 0x11, `${ADDR4} 20 00 04 01 00 00 00`), 'PROXY v2: SSL TLV is shorter than 5 bytes'],
    ['SSL sub-TLV overrun', v2(0x21, 0x11, `${ADDR4} 20 00 08 01 00 00 00 00 22 00 09`), 'PROXY v2: SSL sub-TLV 0x22 overruns the SSL TLV'],
    ['SSL sub-TLV trailing byte', v2(0x21, 0x11, `${ADDR4} 20 00 06 01 00 00 00 00 22`), 'PROXY v2: 1 trailing byte(s) in the SSL TLV cannot hold a SSL sub-TLV'],
    ['SSL CN not UTF-8', v2(0x21, 0x11, `${ADDR4} 20 00 09 01 00 00 00 00 22 00 01 FF`), 'PROXY v2: SSL CN TLV is not valid UTF-8'],
    ['duplicate SSL CN', v2(0x21, 0x11, `${ADDR4} 20 00 0D 01 00 00 00 00 22 00 01 61 22 00 01 62`), 'PROXY v2: duplicate SSL CN TLV'],
    ['over maxHeaderBytes (4096)', Buffer.concat([hex(`${SIG} 21 11 0F F1`), Buffer.alloc(4081)]), 'PROXY v2: header is 4097 bytes, over the 4096-byte limit'],
  ])('invalid: %s', (_label, buf, reason) => {
    expect(parseProxyHeader(buf)).toStrictEqual({ status: 'invalid', reason });
  });

  it('is invalid as soon as the received bytes cannot be a header (before the rest arrives)', () => {
    // Only the signature, version and family byte: the family already decides.
    expect(parseProxyHeader(hex(`${SIG} 21 12`))).toStrictEqual({ status: 'invalid', reason: 'PROXY v2: UDP over IPv4 is not supported' });
    // The length field says 4097 bytes: no need to wait for them.
    expect(parseProxyHeader(hex(`${SIG} 21 11 0F F1`))).toStrictEqual({ status: 'invalid', reason: 'PROXY v2: header is 4097 bytes, over the 4096-byte limit' });
    // A TLV header that overruns, with most of the header still to come.
    expect(parseProxyHeader(hex(`${SIG} 21 11 00 20 ${ADDR4} E4 00 40`))).toStrictEqual({ status: 'invalid', reason: 'PROXY v2: TLV 0xE4 overruns the header' });
    // An invalid UTF-8 start byte in a partly received AUTHORITY.
    expect(parseProxyHeader(hex(`${SIG} 21 11 00 20 ${ADDR4} 02 00 10 FF`))).toStrictEqual({ status: 'invalid', reason: 'PROXY v2: AUTHORITY TLV is not valid UTF-8' });
  });

  it('accepts exactly the well-formed UTF-8 in text TLVs (checked against a fatal TextDecoder)', () => {
    const rnd = mulberry32(8);
    const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    const interesting = [0x00, 0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xa0, 0x9f, 0xed, 0xef, 0xf0, 0x90, 0x8f, 0xf4, 0xf5, 0xff, 0xbb, 0xef];
    let valid = 0;
    for (let n = 0; n < 5000; n++) {
      const value = Buffer.from(Array.from({ length: Math.floor(rnd() * 7) }, () => interesting[Math.floor(rnd() * interesting.length)] ?? 0));
      let text: string | undefined;
      try {
        text = decoder.decode(value);
      } catch {
        text = undefined;
      }
      const frame = Buffer.concat([v2(0x21, 0x11, ADDR4), hex('02'), Buffer.from([0, value.length]), value]);
      frame.writeUInt16BE(12 + 3 + value.length, 14);
      const r = parseProxyHeader(frame);
      if (text === undefined) expect(r).toStrictEqual({ status: 'invalid', reason: 'PROXY v2: AUTHORITY TLV is not valid UTF-8' });
      else {
        valid++;
        expect(complete(r).header.authority).toBe(text);
      }
      // Every prefix is either still incomplete or already the same decision.
      for (let k = 16; k < frame.length; k++) {
        const p = parseProxyHeader(frame.subarray(0, k));
        if (p.status !== 'incomplete') expect(p).toStrictEqual(r);
      }
    }
    expect(valid).toBeGreaterThan(500);
  });

  it('honours a smaller maxHeaderBytes', () => {
    expect(parseProxyHeader(GOLDEN_RICH, { maxHeaderBytes: 187 })).toStrictEqual({ status: 'invalid', reason: 'PROXY v2: header is 188 bytes, over the 187-byte limit' });
    expect(complete(parseProxyHeader(GOLDEN_RICH, { maxHeaderBytes: 188 })).headerBytes).toBe(188);
    expect(() => parseProxyHeader(GOLDEN_RICH, { maxHeaderBytes: 8 })).toThrow(RangeError);
  });

  it('formats IPv6 addresses exactly as Node formats socket addresses', () => {
    const rnd = mulberry32(6);
    const words = [0, 0, 0, 1, 0xffff, 0xfffe, 0xabcd];
    for (let n = 0; n < 3000; n++) {
      const b = Buffer.alloc(16);
      for (let i = 0; i < 8; i++) b.writeUInt16BE(rnd() < 0.3 ? Math.floor(rnd() * 65536) : (words[Math.floor(rnd() * words.length)] ?? 0), 2 * i);
      const full = (b.toString('hex').match(/..../g) ?? []).join(':');
      const nodeText = new net.SocketAddress({ address: full, family: 'ipv6' }).address;
      const frame = Buffer.concat([hex(`${SIG} 21 21 00 24`), b, Buffer.alloc(16), hex('00 01 00 02')]);
      expect(complete(parseProxyHeader(frame)).header.addresses?.sourceAddress).toBe(nodeText);
      const line = ascii(`PROXY TCP6 ${full} :: 1 2\r\n`);
      expect(complete(parseProxyHeader(line)).header.addresses?.sourceAddress).toBe(nodeText);
      const encoded = encodeProxyV2({ addresses: { family: 'tcp6', sourceAddress: nodeText, sourcePort: 1, destinationAddress: '::', destinationPort: 2 } });
      expect(encoded.subarray(16, 32)).toEqual(b);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Round trips

describe('encode -> parse round trips', () => {
  const cases: Array<[string, EncodeV2Options]> = [
    ['TCP4 bare', { addresses: A4 }],
    ['TCP6 bare', { addresses: A6 }],
    ['LOCAL bare', { command: 'LOCAL' }],
    ['LOCAL with CRC32C and UNIQUE_ID', { command: 'LOCAL', crc32c: true, uniqueId: Buffer.from('conn-1') }],
    ['TCP6 IPv4-mapped, ports 0 and 65535', { addresses: { family: 'tcp6', sourceAddress: '::ffff:192.0.2.9', sourcePort: 0, destinationAddress: '::', destinationPort: 65535 } }],
    ['rich', RICH_OPTIONS],
    ['rich + CRC32C', { ...RICH_OPTIONS, crc32c: true }],
    ['empty strings', { addresses: A4, alpn: '', authority: '', ssl: { client: 0, verify: 1, version: '', cn: '' } }],
    [
      'SSL all sub-TLVs, verify max',
      { addresses: A6, ssl: { client: 0x05, verify: 0xffffffff, version: 'TLSv1.2', cn: 'Ω device', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256', sigAlg: 'ecdsa-with-SHA256', keyAlg: 'EC256' } },
    ],
    [
      'experimental 0xF0 and 0xF7, empty value',
      {
        addresses: A4,
        customTlvs: [
          { type: 0xf0, value: Buffer.alloc(0) },
          { type: 0xf7, value: Buffer.from([9]) },
        ],
      },
    ],
    ['TLV value of exactly 1024 bytes', { addresses: A4, customTlvs: [{ type: 0xe0, value: Buffer.alloc(1024, 7) }] }],
    ['UNIQUE_ID of 128 bytes, AUTHORITY of 255', { addresses: A4, uniqueId: Buffer.alloc(128, 1), authority: 'a'.repeat(255) }],
    ['raised limits: 3000-byte TLV', { addresses: A4, customTlvs: [{ type: 0xe4, value: Buffer.alloc(3000, 2) }], maxTlvValueBytes: 3000 }],
  ];

  it.each(cases)('%s', (_label, options) => {
    const bytes = encodeProxyV2(options);
    const r = complete(parseProxyHeader(bytes, { maxHeaderBytes: 65551 }));
    expect(r.version).toBe(2);
    expect(r.headerBytes).toBe(bytes.length);
    const h = r.header;
    expect(h.command).toBe(options.command ?? 'PROXY');
    expect(h.addresses).toStrictEqual(options.addresses);
    expect(h.alpn).toBe(options.alpn);
    expect(h.authority).toBe(options.authority);
    expect(h.uniqueId).toStrictEqual(options.uniqueId);
    if (options.ssl === undefined) expect(h.ssl).toBeUndefined();
    else {
      const { subTlvs, ...view } = h.ssl ?? { subTlvs: [] };
      expect(view).toStrictEqual(options.ssl);
      expect(subTlvs.map((s) => s.type)).toStrictEqual(
        [
          [0x21, options.ssl.version],
          [0x22, options.ssl.cn],
          [0x23, options.ssl.cipher],
          [0x24, options.ssl.sigAlg],
          [0x25, options.ssl.keyAlg],
        ]
          .filter(([, v]) => v !== undefined)
          .map(([t]) => t),
      );
    }
    expect(h.crc32cValid).toBe(options.crc32c === true ? true : undefined);
    const expectedTypes = [
      ...(options.alpn !== undefined ? [0x01] : []),
      ...(options.authority !== undefined ? [0x02] : []),
      ...(options.uniqueId !== undefined ? [0x05] : []),
      ...(options.ssl !== undefined ? [0x20] : []),
      ...(options.customTlvs ?? []).map((t) => t.type),
      ...(options.crc32c === true ? [0x03] : []),
    ];
    expect(h.tlvs.map((t) => t.type)).toStrictEqual(expectedTypes);
    const custom = h.tlvs.filter((t) => t.type >= 0xe0 && t.type <= 0xf7);
    expect(custom).toStrictEqual((options.customTlvs ?? []).map((t) => ({ type: t.type, value: Buffer.from(t.value) })));
    // Encoding what was parsed gives the same bytes.
    expect(encodeProxyV2({ ...toEncodeOptions(h), maxTlvValueBytes: options.maxTlvValueBytes })).toEqual(bytes);
  });

  it('canonicalises IPv6 text on encode', () => {
    const bytes = encodeProxyV2({ addresses: { ...A6, sourceAddress: '2001:DB8:0:0:0:0:0:1', destinationAddress: '0:0:0:0:0:ffff:c000:0201' } });
    expect(complete(parseProxyHeader(bytes)).header.addresses).toStrictEqual({ ...A6, destinationAddress: '::ffff:192.0.2.1' });
    expect(bytes).toEqual(encodeProxyV2({ addresses: { ...A6, destinationAddress: '::ffff:192.0.2.1' } }));
  });
});

// ---------------------------------------------------------------------------------------------
// v1

describe('v1', () => {
  it.each<[string, string, ProxyAddresses | undefined]>([
    ['TCP4', 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n', A4],
    ['TCP4 extremes', 'PROXY TCP4 255.255.255.255 0.0.0.0 0 65535\r\n', { family: 'tcp4', sourceAddress: '255.255.255.255', sourcePort: 0, destinationAddress: '0.0.0.0', destinationPort: 65535 }],
    ['TCP6', 'PROXY TCP6 2001:db8::1 2001:db8::2 40000 2083\r\n', A6],
    ['TCP6 upper case, uncompressed: canonicalised', 'PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:0db8::2 40000 2083\r\n', A6],
    ['TCP6 IPv4-mapped', 'PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n', { family: 'tcp6', sourceAddress: '::ffff:192.0.2.1', sourcePort: 1, destinationAddress: '::1', destinationPort: 2 }],
    [
      'TCP6 longest line (104 bytes)',
      `PROXY TCP6 ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}fffe 65535 65535\r\n`,
      { family: 'tcp6', sourceAddress: `${'ffff:'.repeat(7)}ffff`, sourcePort: 65535, destinationAddress: `${'ffff:'.repeat(7)}fffe`, destinationPort: 65535 },
    ],
    ['UNKNOWN', 'PROXY UNKNOWN\r\n', undefined],
    ['UNKNOWN with ignored fields', 'PROXY UNKNOWN ffff::1  whatever\r\n', undefined],
    ['UNKNOWN worst case (107 bytes)', `PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`, undefined],
  ])('valid: %s', (_label, line, addresses) => {
    const bytes = ascii(`${line}payload`);
    const r = complete(parseProxyHeader(bytes));
    expect(r.version).toBe(1);
    expect(r.headerBytes).toBe(line.length);
    expect(r.header).toStrictEqual({ command: 'PROXY', addresses, tlvs: [] });
  });

  it.each<[string, string, string]>([
    ['double space', 'PROXY TCP4  192.0.2.1 198.51.100.2 56324 443\r\n', 'PROXY v1: fields must be separated by exactly one space'],
    ['double space after PROXY', 'PROXY  TCP4 192.0.2.1 198.51.100.2 56324 443\r\n', 'PROXY v1: fields must be separated by exactly one space'],
    ['no CRLF within 107 bytes', `PROXY UNKNOWN ${'x'.repeat(100)}\r\n`, 'PROXY v1: no CRLF within 107 bytes'],
    ['CR at byte 107', `PROXY UNKNOWN ${'x'.repeat(92)}\r\n`, 'PROXY v1: no CRLF within 107 bytes'],
    ['port 65536', 'PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n', 'PROXY v1: source port is out of range (0-65535)'],
    ['leading zero port 080', 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 080\r\n', 'PROXY v1: destination port has a leading zero'],
    ['signed port', 'PROXY TCP4 192.0.2.1 198.51.100.2 +1 443\r\n', 'PROXY v1: source port is not a decimal number'],
    ['IPv4 in TCP6', 'PROXY TCP6 192.0.2.1 198.51.100.2 56324 443\r\n', 'PROXY v1: invalid TCP6 source address'],
    ['IPv6 in TCP4', 'PROXY TCP4 192.0.2.1 2001:db8::2 56324 443\r\n', 'PROXY v1: invalid TCP4 destination address'],
    ['IPv4 leading zero', 'PROXY TCP4 192.0.2.01 198.51.100.2 56324 443\r\n', 'PROXY v1: invalid TCP4 source address'],
    ['IPv4 octet 256', 'PROXY TCP4 192.0.2.256 198.51.100.2 56324 443\r\n', 'PROXY v1: invalid TCP4 source address'],
    ['IPv6 zone index', 'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', 'PROXY v1: invalid TCP6 source address'],
    ['IPv6 two gaps', 'PROXY TCP6 1::2::3 ::1 1 2\r\n', 'PROXY v1: invalid TCP6 source address'],
    ['lower-case protocol', 'PROXY tcp4 192.0.2.1 198.51.100.2 56324 443\r\n', 'PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)'],
    ['UDP4', 'PROXY UDP4 192.0.2.1 198.51.100.2 56324 443\r\n', 'PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)'],
    ['missing port', 'PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n', 'PROXY v1: missing destination port'],
    ['trailing space', 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 \r\n', 'PROXY v1: unexpected data after the destination port'],
    ['bare LF', 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n', 'PROXY v1: line must end with CRLF'],
    ['CR without LF', 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rX', 'PROXY v1: line must end with CRLF'],
    ['no space after PROXY', 'PROXYTCP4 192.0.2.1 198.51.100.2 56324 443\r\n', 'PROXY v1: expected a single space after "PROXY"'],
    ['PROXY alone', 'PROXY\r\n', 'PROXY v1: missing protocol'],
  ])('invalid: %s', (_label, line, reason) => {
    expect(parseProxyHeader(ascii(line))).toStrictEqual({ status: 'invalid', reason });
  });

  it('lower-case "proxy" does not start like a PROXY signature: not-proxy', () => {
    expect(parseProxyHeader(ascii('proxy TCP4 192.0.2.1 198.51.100.2 56324 443\r\n'))).toStrictEqual({ status: 'not-proxy' });
  });

  it('is invalid before the CRLF arrives when a field is already wrong', () => {
    expect(parseProxyHeader(ascii('PROXY  '))).toStrictEqual({ status: 'invalid', reason: 'PROXY v1: fields must be separated by exactly one space' });
    expect(parseProxyHeader(ascii('PROXY TCP4 192.0.2.25'))).toStrictEqual({ status: 'incomplete' });
    expect(parseProxyHeader(ascii('PROXY TCP4 192.0.2.256'))).toStrictEqual({ status: 'invalid', reason: 'PROXY v1: invalid TCP4 source address' });
    expect(parseProxyHeader(ascii('PROXY TCP6 1.'))).toStrictEqual({ status: 'invalid', reason: 'PROXY v1: invalid TCP6 source address' });
    expect(parseProxyHeader(ascii('PROXY TCX'))).toStrictEqual({ status: 'invalid', reason: 'PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)' });
  });

  it('bounds the line by a smaller maxHeaderBytes', () => {
    const line = ascii('PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n'); // 45 bytes
    expect(parseProxyHeader(line, { maxHeaderBytes: 44 })).toStrictEqual({ status: 'invalid', reason: 'PROXY v1: no CRLF within 44 bytes' });
    expect(complete(parseProxyHeader(line, { maxHeaderBytes: 45 })).headerBytes).toBe(45);
  });

  it.each<[string, ProxyAddresses | undefined, string]>([
    ['TCP4', A4, 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n'],
    ['TCP6', A6, 'PROXY TCP6 2001:db8::1 2001:db8::2 40000 2083\r\n'],
    ['TCP6 canonicalised', { ...A6, sourceAddress: '2001:0DB8:0000::1' }, 'PROXY TCP6 2001:db8::1 2001:db8::2 40000 2083\r\n'],
    ['UNKNOWN', undefined, 'PROXY UNKNOWN\r\n'],
  ])('encodeProxyV1 %s', (_label, addresses, line) => {
    const bytes = encodeProxyV1(addresses);
    expect(bytes).toEqual(ascii(line));
    const r = complete(parseProxyHeader(bytes));
    expect(r.header.addresses).toStrictEqual(
      addresses === undefined ? undefined : { ...addresses, sourceAddress: addresses === A6 || addresses.family === 'tcp4' ? addresses.sourceAddress : '2001:db8::1' },
    );
  });

  it.each<[string, ProxyAddresses, string]>([
    ['bad IPv4', { ...A4, sourceAddress: '192.0.2' }, 'invalid IPv4 source address: "192.0.2"'],
    ['IPv6 in tcp4', { ...A4, destinationAddress: '::1' }, 'invalid IPv4 destination address: "::1"'],
    ['port 70000', { ...A4, sourcePort: 70000 }, 'invalid source port: 70000 (must be an integer 0-65535)'],
    ['fractional port', { ...A6, destinationPort: 1.5 }, 'invalid destination port: 1.5 (must be an integer 0-65535)'],
  ])('encodeProxyV1 refuses %s', (_label, addresses, message) => {
    expect(() => encodeProxyV1(addresses)).toThrow(new RangeError(message));
  });
});

// ---------------------------------------------------------------------------------------------
// Streaming and not-proxy

describe('streaming', () => {
  const headers: Array<[string, Buffer]> = [
    ['v2 TCP4', GOLDEN_TCP4],
    ['v2 TCP6', GOLDEN_TCP6],
    ['v2 LOCAL', GOLDEN_LOCAL],
    ['v2 rich', GOLDEN_RICH],
    ['v2 CRC32C', GOLDEN_CRC],
    ['v1 TCP4', ascii('PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n')],
    ['v1 TCP6', ascii('PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 40000 2083\r\n')],
    ['v1 UNKNOWN', ascii('PROXY UNKNOWN whatever\r\n')],
  ];
  it.each(headers)('%s: every prefix is incomplete; with payload it is complete', (_label, header) => {
    for (let n = 0; n < header.length; n++) expect(parseProxyHeader(header.subarray(0, n))).toStrictEqual({ status: 'incomplete' });
    const payload = Buffer.concat([header, hex('16 03 01 00 F4 01 00 00 F0'), ascii('more')]);
    const r = complete(parseProxyHeader(payload));
    expect(r.headerBytes).toBe(header.length);
    expect(r).toStrictEqual(parseProxyHeader(header));
  });

  it.each<[string, Buffer]>([
    ['TLS ClientHello', hex('16 03 01 02 00 01 00 01 FC 03 03')],
    ['TLS ClientHello, first byte only', hex('16')],
    ['HTTP request', ascii('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['HTTP POST (shares the P)', ascii('POST / HTTP/1.1\r\n')],
    ['SSH banner', ascii('SSH-2.0-OpenSSH_9.2\r\n')],
    ['lower-case proxy', ascii('proxy')],
    ['CRLF CRLF then text', ascii('\r\n\r\nhello')],
    ['signature with one wrong byte', hex('0D 0A 0D 0A 00 0D 0A 51 55 49 54 0B 21 11 00 00')],
    ['MQTT CONNECT', hex('10 1A 00 04 4D 51 54 54 05 02')],
  ])('not-proxy: %s', (_label, buf) => {
    expect(parseProxyHeader(buf)).toStrictEqual({ status: 'not-proxy' });
  });

  it('an empty buffer is incomplete', () => {
    expect(parseProxyHeader(Buffer.alloc(0))).toStrictEqual({ status: 'incomplete' });
  });
});

// ---------------------------------------------------------------------------------------------
// Encoder refusals

describe('encodeProxyV2 refusals', () => {
  it.each<[string, EncodeV2Options, string]>([
    ['custom type 0x20 (SSL)', { addresses: A4, customTlvs: [{ type: 0x20, value: Buffer.alloc(1) }] }, 'customTlvs: type 0x20 is not a custom (0xE0-0xEF) or experimental (0xF0-0xF7) TLV type'],
    ['custom type 0x05 (UNIQUE_ID)', { addresses: A4, customTlvs: [{ type: 0x05, value: Buffer.alloc(1) }] }, 'customTlvs: type 0x05 is not a custom (0xE0-0xEF) or experimental (0xF0-0xF7) TLV type'],
    ['custom type 0xF8 (future)', { addresses: A4, customTlvs: [{ type: 0xf8, value: Buffer.alloc(1) }] }, 'customTlvs: type 0xF8 is not a custom (0xE0-0xEF) or experimental (0xF0-0xF7) TLV type'],
    ['custom type 256', { addresses: A4, customTlvs: [{ type: 256, value: Buffer.alloc(1) }] }, 'customTlvs: type 256 is not a custom (0xE0-0xEF) or experimental (0xF0-0xF7) TLV type'],
    ['TLV value over 1024', { addresses: A4, customTlvs: [{ type: 0xe4, value: Buffer.alloc(1025) }] }, 'TLV 0xE4 value is 1025 bytes, over maxTlvValueBytes (1024)'],
    ['SSL value over 1024', { addresses: A4, ssl: { client: 1, verify: 0, cn: 'x'.repeat(1017) } }, 'TLV 0x20 value is 1025 bytes, over maxTlvValueBytes (1024)'],
    [
      'header over maxHeaderBytes',
      {
        addresses: A4,
        customTlvs: [
          { type: 0xe4, value: Buffer.alloc(1000) },
          { type: 0xe5, value: Buffer.alloc(1000) },
        ],
        maxHeaderBytes: 2000,
      },
      'PROXY v2 header would be 2034 bytes, over maxHeaderBytes (2000)',
    ],
    [
      'header over the default 4096',
      { addresses: A4, customTlvs: [0xe0, 0xe1, 0xe2, 0xe3].map((type) => ({ type, value: Buffer.alloc(1024) })) },
      'PROXY v2 header would be 4136 bytes, over maxHeaderBytes (4096)',
    ],
    ['maxTlvValueBytes over 65532', { addresses: A4, maxTlvValueBytes: 65533 }, 'maxTlvValueBytes must be an integer from 0 to 65532, got 65533'],
    ['PROXY without addresses', {}, 'PROXY command requires addresses'],
    ['LOCAL with addresses', { command: 'LOCAL', addresses: A4 }, 'LOCAL command must not carry addresses'],
    ['invalid IPv4', { addresses: { ...A4, sourceAddress: '192.0.2.256' } }, 'invalid IPv4 source address: "192.0.2.256"'],
    ['invalid IPv6', { addresses: { ...A6, destinationAddress: 'fe80::1%eth0' } }, 'invalid IPv6 destination address: "fe80::1%eth0"'],
    ['IPv4 for tcp6', { addresses: { ...A6, sourceAddress: '192.0.2.1' } }, 'invalid IPv6 source address: "192.0.2.1"'],
    ['port 70000', { addresses: { ...A4, destinationPort: 70000 } }, 'invalid destination port: 70000 (must be an integer 0-65535)'],
    ['negative port', { addresses: { ...A4, sourcePort: -1 } }, 'invalid source port: -1 (must be an integer 0-65535)'],
    ['UNIQUE_ID over 128', { addresses: A4, uniqueId: Buffer.alloc(129) }, 'uniqueId is 129 bytes; the limit is 128'],
    ['AUTHORITY over 255', { addresses: A4, authority: 'a'.repeat(256) }, 'authority is 256 bytes; HAProxy rejects an AUTHORITY TLV over 255 bytes'],
    ['lone surrogate', { addresses: A4, authority: 'a\ud800' }, 'authority is not well-formed Unicode'],
    ['ssl.client 256', { addresses: A4, ssl: { client: 256, verify: 0 } }, 'ssl.client must be an integer 0-255, got 256'],
    ['ssl.verify negative', { addresses: A4, ssl: { client: 1, verify: -1 } }, 'ssl.verify must be an integer 0-4294967295, got -1'],
  ])('%s', (_label, options, message) => {
    expect(() => encodeProxyV2(options)).toThrow(new RangeError(message));
  });
});

// ---------------------------------------------------------------------------------------------
// Fuzz

/** Seeded PRNG (mulberry32): uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The encoder options that reproduce a parsed header's meaning (custom/experimental TLVs kept, others dropped). */
function toEncodeOptions(h: ProxyV2Header): EncodeV2Options {
  const ssl = h.ssl;
  return {
    command: h.command,
    ...(h.addresses !== undefined && { addresses: h.addresses }),
    ...(h.alpn !== undefined && { alpn: h.alpn }),
    ...(h.authority !== undefined && { authority: h.authority }),
    ...(h.uniqueId !== undefined && { uniqueId: h.uniqueId }),
    ...(ssl !== undefined && {
      ssl: { client: ssl.client, verify: ssl.verify, version: ssl.version, cn: ssl.cn, cipher: ssl.cipher, sigAlg: ssl.sigAlg, keyAlg: ssl.keyAlg },
    }),
    customTlvs: h.tlvs.filter((t) => t.type >= 0xe0 && t.type <= 0xf7),
    crc32c: h.crc32cValid !== undefined,
    maxHeaderBytes: 65551,
    maxTlvValueBytes: 65532,
  };
}

function views(h: ProxyV2Header): unknown {
  const { tlvs, ssl, crc32cValid, ...rest } = h;
  const { subTlvs: _subTlvs, ...sslView } = ssl ?? { subTlvs: [] };
  return {
    ...rest,
    ssl: ssl === undefined ? undefined : sslView,
    crc: crc32cValid !== undefined,
    custom: tlvs.filter((t: ProxyTlv) => t.type >= 0xe0 && t.type <= 0xf7),
  };
}

interface FuzzStats {
  complete: number;
  reencoded: number;
  invalid: number;
  notProxy: number;
  incomplete: number;
}

/** Deep equality, cheap on success; vitest's diff only on failure. */
function same(actual: unknown, expected: unknown): void {
  if (!isDeepStrictEqual(actual, expected)) expect(actual).toStrictEqual(expected);
}

/** Checks the invariants for one buffer and counts its outcome. */
function checkInvariants(buf: Buffer, rnd: () => number, stats: FuzzStats): void {
  const r = parseProxyHeader(buf);
  // A decision other than 'incomplete' taken on a prefix stands when more bytes arrive.
  const k = Math.floor(rnd() * (buf.length + 1));
  const p = parseProxyHeader(buf.subarray(0, k));
  if (p.status !== 'incomplete') same(p, r);
  switch (r.status) {
    case 'incomplete':
      stats.incomplete++;
      return;
    case 'invalid':
      stats.invalid++;
      if (!/^PROXY v[12]: /.test(r.reason)) expect(r.reason).toMatch(/^PROXY v[12]: /);
      return;
    case 'not-proxy':
      stats.notProxy++;
      return;
    case 'complete':
      break;
  }
  stats.complete++;
  const limit = r.version === 1 ? 107 : 4096;
  if (!(r.headerBytes > 0 && r.headerBytes <= buf.length && r.headerBytes <= limit)) {
    expect.fail(`headerBytes ${r.headerBytes} out of range for a ${buf.length}-byte buffer`);
  }
  // The header alone parses the same: it is self-delimiting.
  same(parseProxyHeader(buf.subarray(0, r.headerBytes)), r);
  if (r.version === 1) {
    const again = complete(parseProxyHeader(encodeProxyV1(r.header.addresses)));
    same(again.header, r.header);
    stats.reencoded++;
    return;
  }
  if (r.header.command === 'PROXY' && r.header.addresses === undefined) return; // AF_UNSPEC: nothing to re-encode
  const options = toEncodeOptions(r.header);
  const encoded = encodeProxyV2(options);
  const again = complete(parseProxyHeader(encoded, { maxHeaderBytes: 65551 }));
  same(views(again.header), views(r.header));
  if (again.header.crc32cValid === false) expect.fail('a re-encoded CRC32C does not verify');
  if (!encodeProxyV2(toEncodeOptions(again.header)).equals(encoded)) expect.fail('encode(parse(encode(x))) differs from encode(x)');
  stats.reencoded++;
}

describe('fuzz', () => {
  const corpus: Buffer[] = [
    GOLDEN_TCP4,
    GOLDEN_TCP6,
    GOLDEN_LOCAL,
    GOLDEN_RICH,
    GOLDEN_CRC,
    encodeProxyV2({ ...RICH_OPTIONS, crc32c: true, uniqueId: Buffer.from('u-1') }),
    encodeProxyV2({ addresses: A6, ssl: { client: 7, verify: 0, version: 'TLSv1.3', cn: 'c', sigAlg: 'RSA-SHA256', keyAlg: 'RSA2048' }, crc32c: true }),
    encodeProxyV2({ command: 'LOCAL', alpn: 'mqtt', customTlvs: [{ type: 0xf3, value: Buffer.from([1, 2, 3]) }] }),
    ascii('PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n'),
    ascii('PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 40000 2083\r\n'),
    ascii('PROXY UNKNOWN\r\n'),
    ascii('PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n'),
  ];
  const newStats = (): FuzzStats => ({ complete: 0, reencoded: 0, invalid: 0, notProxy: 0, incomplete: 0 });

  it('50,000 mutations of encoded headers: never throws, results are consistent', () => {
    const rnd = mulberry32(0x5eed);
    const int = (n: number): number => Math.floor(rnd() * n);
    // Most mutations land after the 12-byte v2 signature / the "PROXY " of v1, where the parser has more to get wrong.
    const pos = (len: number): number => (len > 14 && int(8) > 0 ? 13 + int(len - 13) : int(len));
    const stats = newStats();
    const MUTATIONS = 50_000;
    for (let i = 0; i < MUTATIONS; i++) {
      const base = corpus[int(corpus.length)] ?? GOLDEN_TCP4;
      let b = Buffer.from(base);
      const rounds = 1 + int(3);
      for (let m = 0; m < rounds; m++) {
        const op = int(7);
        if (b.length === 0) break;
        if (op === 0)
          b[pos(b.length)] = int(256); // byte replace
        else if (op === 1) {
          const at = pos(b.length);
          b[at] = b.readUInt8(at) ^ (1 << int(8)); // bit flip
        } else if (op === 2)
          b = b.subarray(0, int(b.length)); // truncation
        else if (op === 3 && b.length >= 16 && b[0] === 0x0d)
          b.writeUInt16BE(Math.max(0, Math.min(0xffff, b.readUInt16BE(14) + int(9) - 4)), 14); // length tweak
        else if (op === 4 && b.length > 19) {
          // a TLV-ish length tweak somewhere after the fixed part
          const at = 16 + int(b.length - 17);
          b.writeUInt16BE(int(4) === 0 ? int(0x10000) : Math.max(0, b.readUInt16BE(at) + int(5) - 2), at);
        } else if (op === 5) {
          const at = pos(b.length + 1);
          const ins = Buffer.from(Array.from({ length: 1 + int(4) }, () => (int(2) === 0 ? int(256) : ([0x20, 0x0d, 0x0a, 0x3a, 0x2e, 0x30][int(6)] ?? 0))));
          b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        } else {
          const at = pos(b.length);
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(3))]); // deletion
        }
      }
      if (int(4) === 0) b = Buffer.concat([b, Buffer.from('payload')]);
      checkInvariants(b, rnd, stats);
    }
    console.log(`proxy-protocol fuzz (mutations): ${MUTATIONS}`, stats);
    expect(stats.complete).toBeGreaterThan(1000);
    expect(stats.invalid).toBeGreaterThan(1000);
  });

  it('20,000 random buffers: never throws, results are consistent', () => {
    const rnd = mulberry32(0xc0ffee);
    const int = (n: number): number => Math.floor(rnd() * n);
    const stats = newStats();
    const RANDOM = 20_000;
    const prefixes = [Buffer.alloc(0), hex(`${SIG} 21`), hex(`${SIG} 21 11`), hex(`${SIG} 20 00`), ascii('PROXY '), ascii('PROXY TCP4 '), ascii('PROXY TCP6 ')];
    const v1Alphabet = ascii('0123456789abcdefABCDEF:. \r\nTCP46UNKOW');
    for (let i = 0; i < RANDOM; i++) {
      const prefix = prefixes[int(prefixes.length)] ?? Buffer.alloc(0);
      const textual = prefix.length > 0 && prefix[0] === 0x50;
      const body = Buffer.from(Array.from({ length: int(160) }, () => (textual && int(8) > 0 ? (v1Alphabet[int(v1Alphabet.length)] ?? 0) : int(256))));
      checkInvariants(Buffer.concat([prefix, body]), rnd, stats);
    }
    console.log(`proxy-protocol fuzz (random): ${RANDOM}`, stats);
    expect(stats.invalid + stats.notProxy).toBeGreaterThan(10_000);
  });

  it('10,000 random well-framed v2 headers (random TLV types, lengths and contents): consistent', () => {
    const rnd = mulberry32(0xfeed);
    const int = (n: number): number => Math.floor(rnd() * n);
    const stats = newStats();
    const GENERATED = 10_000;
    const types = [0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30, 0xe0, 0xe4, 0xe5, 0xe6, 0xef, 0xf0, 0xf7, 0xf8, 0xff, 0x00, 0x21];
    const subTypes = [0x21, 0x22, 0x23, 0x24, 0x25, 0x28, 0x00, 0x2f];
    const bytes = (n: number, text: boolean): Buffer => Buffer.from(Array.from({ length: n }, () => (text && int(10) > 0 ? 0x20 + int(0x5f) : int(256))));
    const tlv = (type: number, value: Buffer): Buffer => {
      const h = Buffer.alloc(3);
      h[0] = type;
      h.writeUInt16BE(value.length, 1);
      return Buffer.concat([h, value]);
    };
    for (let i = 0; i < GENERATED; i++) {
      const fam = [0x00, 0x11, 0x21, 0x11, 0x21, 0x12][int(6)] ?? 0x11;
      const verCmd = int(5) === 0 ? 0x20 : 0x21;
      const addressBytes = fam === 0x00 ? 0 : fam === 0x21 ? 36 : 12;
      const parts: Buffer[] = [bytes(addressBytes, false)];
      const n = int(6);
      for (let t = 0; t < n; t++) {
        const type = types[int(types.length)] ?? 0xe0;
        if (type === 0x20) {
          const subs = Array.from({ length: int(4) }, () => tlv(subTypes[int(subTypes.length)] ?? 0x22, bytes(int(12), true)));
          parts.push(tlv(type, Buffer.concat([bytes(5, false), ...subs])));
        } else if (type === 0x03) {
          parts.push(tlv(type, bytes(int(8) === 0 ? int(6) : 4, false)));
        } else {
          parts.push(tlv(type, bytes(int(40), type === 0x01 || type === 0x02)));
        }
      }
      const body = Buffer.concat(parts);
      const head = Buffer.concat([hex(SIG), Buffer.from([verCmd, fam, body.length >> 8, body.length & 0xff])]);
      checkInvariants(Buffer.concat([head, body, bytes(int(3), false)]), rnd, stats);
    }
    console.log(`proxy-protocol fuzz (generated): ${GENERATED}`, stats);
    expect(stats.complete).toBeGreaterThan(2000);
  });
});
