/**
 * The ClientHello parser: built hellos (encoded here, independently of the
 * parser), every rejection by its reason, reassembly across records and
 * TCP segments, and fuzzing (never throws, never an internal error).
 * Hellos captured from real clients are in test/integration/client-hello-capture.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DEFAULT_DANE_CLIENTID_TYPE, DEFAULT_MAX_CLIENT_HELLO_BYTES, INTERNAL_ERROR_PREFIX, parseClientHello, type ClientHelloParse } from '../../src/protocol/client-hello.js';
import {
  alpnExtension as alpn,
  daneClientIdExtension as daneClientId,
  ext,
  helloMessage,
  records,
  sniExtension as sni,
  u16,
  u8,
  vec16,
  vec8,
  versionsExtension as versions,
} from '../lab/client-hello-builder.js';

const typical = (): Buffer[] => [sni('api.example.com'), alpn('h2', 'http/1.1'), versions(0x0304, 0x0303), daneClientId('sensor7._device.example.com')];

function complete(result: ClientHelloParse) {
  if (result.status !== 'complete') throw new Error(`expected complete, got ${JSON.stringify(result)}`);
  return result.hello;
}

describe('parseClientHello: complete hellos', () => {
  it('reads every field of a typical hello', () => {
    const bytes = records(helloMessage({ extensions: typical() }));
    expect(parseClientHello(bytes)).toEqual({
      status: 'complete',
      hello: {
        recordBytes: bytes.length,
        legacyVersion: 0x0303,
        serverName: 'api.example.com',
        alpn: ['h2', 'http/1.1'],
        supportedVersions: [0x0304, 0x0303],
        offersTls13: true,
        daneClientId: { present: true, name: 'sensor7._device.example.com' },
        extensionTypes: [0, 16, 43, DEFAULT_DANE_CLIENTID_TYPE],
      },
    });
  });

  it('a hello without any extensions block', () => {
    const hello = complete(parseClientHello(records(helloMessage())));
    expect(hello).toMatchObject({ serverName: undefined, alpn: [], supportedVersions: [], offersTls13: false, daneClientId: { present: false }, extensionTypes: [] });
  });

  it.each([
    ['an empty ClientName (name in the certificate)', ext(DEFAULT_DANE_CLIENTID_TYPE, vec8(Buffer.alloc(0))), ''],
    ['zero-length extension data (leniently the same)', ext(DEFAULT_DANE_CLIENTID_TYPE, Buffer.alloc(0)), ''],
    ['a name, raw and not canonicalised', daneClientId('Sensor7._DEVICE.example.com.'), 'Sensor7._DEVICE.example.com.'],
  ])('dane_clientid: %s', (_label, extension, name) => {
    expect(complete(parseClientHello(records(helloMessage({ extensions: [extension] })))).daneClientId).toEqual({ present: true, name });
  });

  it('reads dane_clientid at a configured type and ignores the default type then', () => {
    const bytes = records(helloMessage({ extensions: [daneClientId('a.example', 65300), daneClientId('b.example')] }));
    expect(complete(parseClientHello(bytes, { daneClientIdType: 65300 })).daneClientId).toEqual({ present: true, name: 'a.example' });
    expect(complete(parseClientHello(bytes)).daneClientId).toEqual({ present: true, name: 'b.example' });
  });

  it('lowercases the SNI host_name and skips non-host_name entries', () => {
    const list = Buffer.concat([u8(7), vec16(Buffer.from('ignored')), u8(0), vec16(Buffer.from('API.Example.COM'))]);
    const hello = complete(parseClientHello(records(helloMessage({ extensions: [ext(0, vec16(list))] }))));
    expect(hello.serverName).toBe('api.example.com');
  });

  it('keeps GREASE values and unknown extensions in order', () => {
    const hello = complete(parseClientHello(records(helloMessage({ extensions: [ext(0x0a0a, Buffer.alloc(0)), versions(0x2a2a, 0x0304), ext(0xff01, vec8(Buffer.alloc(0)))] }))));
    expect(hello.extensionTypes).toEqual([0x0a0a, 43, 0xff01]);
    expect(hello.supportedVersions).toEqual([0x2a2a, 0x0304]);
  });

  it('reports the record bytes consumed, not what follows them', () => {
    const hello = records(helloMessage({ extensions: typical() }));
    const followedBy = Buffer.concat([hello, Buffer.from([0x14, 0x03, 0x03, 0x00, 0x01, 0x01])]);
    expect(complete(parseClientHello(followedBy)).recordBytes).toBe(hello.length);
  });

  it('reassembles a hello split over many records', () => {
    const message = helloMessage({ extensions: typical() });
    for (const fragment of [1, 2, 3, 4, 5, 17, 100]) {
      const bytes = records(message, fragment);
      const hello = complete(parseClientHello(bytes));
      expect(hello.recordBytes).toBe(bytes.length);
      expect(hello.daneClientId).toEqual({ present: true, name: 'sensor7._device.example.com' });
    }
  });

  it('answers incomplete for every proper prefix, byte by byte, and complete at the end', () => {
    const bytes = records(helloMessage({ extensions: typical() }), 40);
    for (let n = 0; n < bytes.length; n++) expect(parseClientHello(bytes.subarray(0, n)).status).toBe('incomplete');
    expect(parseClientHello(bytes).status).toBe('complete');
  });

  it('accepts a hello of exactly maxBytes and refuses one byte more', () => {
    const base = helloMessage({ extensions: [] });
    const pad = (total: number): Buffer => {
      // An extension of 4 + n bytes brings the message to `total`.
      const n = total - base.length - 4;
      return helloMessage({ extensions: [ext(21, Buffer.alloc(n))] });
    };
    const exact = pad(1000);
    expect(exact.length).toBe(1000);
    expect(parseClientHello(records(exact), { maxBytes: 1000 }).status).toBe('complete');
    // In one record the record header already shows it is too long; in small records the handshake header does.
    expect(parseClientHello(records(pad(1001)), { maxBytes: 1000 })).toEqual({ status: 'invalid', reason: 'ClientHello records exceed the limit of 1005 bytes' });
    expect(parseClientHello(records(pad(1001), 100), { maxBytes: 1000 })).toEqual({ status: 'invalid', reason: 'ClientHello of 1001 bytes exceeds the limit of 1000' });
  });

  it('exports the documented defaults', () => {
    expect(DEFAULT_DANE_CLIENTID_TYPE).toBe(65500);
    expect(DEFAULT_MAX_CLIENT_HELLO_BYTES).toBe(16384);
  });
});

describe('parseClientHello: rejections name the problem', () => {
  const message = helloMessage({ extensions: typical() });
  const patched = (offset: number, bytes: number[]): Buffer => {
    const copy = Buffer.from(records(message));
    Buffer.from(bytes).copy(copy, offset);
    return copy;
  };
  const withExtensions = (...e: Buffer[]): Buffer => records(helloMessage({ extensions: e }));

  it.each<[string, Buffer, string]>([
    ['plain HTTP', Buffer.from('GET / HTTP/1.1\r\n'), 'plain HTTP request on a TLS port'],
    ['a partial HTTP method', Buffer.from('POS'), 'plain HTTP request on a TLS port'],
    ['SSLv2', Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02]), 'SSLv2-style ClientHello is not supported'],
    ['an alert record', Buffer.from([21, 3, 3, 0, 2, 2, 40]), 'not a TLS handshake record (content type 21)'],
    ['record version major 2', patched(1, [2]), 'TLS record version major byte 0x02 is not 0x03'],
    ['an empty record', Buffer.from([22, 3, 1, 0, 0]), 'empty TLS handshake record (length 0)'],
    ['a record over 2^14', Buffer.from([22, 3, 1, 0x40, 0x01]), 'TLS record length 16385 exceeds 16384'],
    ['a ServerHello', patched(5, [2]), 'expected a ClientHello (handshake type 1), got handshake type 2'],
    ['a hello announced at 1 MB', Buffer.from([22, 3, 1, 0, 4, 1, 0x10, 0, 0]), 'ClientHello of 1048580 bytes exceeds the limit of 16384'],
    ['legacy_version 2.0', records(helloMessage({ legacyVersion: 0x0200 })), 'ClientHello legacy_version 0x0200 is not 3.x'],
    ['a 33-byte session_id', records(helloMessage({ sessionId: Buffer.alloc(33) })), 'session_id length 33 exceeds 32'],
    ['no cipher suites', records(helloMessage({ suites: Buffer.alloc(0) })), 'cipher_suites is empty'],
    ['an odd cipher_suites length', records(helloMessage({ suites: Buffer.alloc(3) })), 'cipher_suites length 3 is odd'],
    ['no compression methods', records(helloMessage({ compression: Buffer.alloc(0) })), 'compression_methods is empty'],
    ['extensions longer than the hello', records(helloMessage({ rawExtensions: Buffer.from([0, 9, 0, 0]) })), 'extensions length 9 overflows the ClientHello (2 bytes left)'],
    ['bytes after the extensions', records(helloMessage({ rawExtensions: Buffer.from([0, 0, 1]) })), '1 trailing bytes after the extensions'],
    ['a lone byte as extensions', records(helloMessage({ rawExtensions: Buffer.from([0]) })), 'ClientHello ends inside the extensions length'],
    ['an extension overflowing', records(helloMessage({ rawExtensions: Buffer.from([0, 4, 0, 21, 0, 9]) })), 'extension 21 length 9 overflows the extensions (0 bytes left)'],
    ['a duplicate extension', withExtensions(sni('a.example'), sni('b.example')), 'duplicate extension 0'],
    ['SNI with an empty label', withExtensions(sni('a..example')), 'SNI host_name has an empty label'],
    ['SNI ending in a dot', withExtensions(sni('a.example.')), 'SNI host_name has an empty label'],
    ['SNI with a NUL', withExtensions(sni('a\0.example')), 'SNI host_name contains byte 0x00'],
    ['SNI with a space', withExtensions(sni('a b')), 'SNI host_name contains byte 0x20'],
    ['an empty SNI', withExtensions(sni('')), 'empty SNI host_name'],
    ['SNI of 254 bytes', withExtensions(sni(`${'a.'.repeat(126)}ab`)), 'SNI host_name of 254 bytes exceeds 253'],
    ['two host_names', withExtensions(ext(0, vec16(Buffer.concat([u8(0), vec16(Buffer.from('a')), u8(0), vec16(Buffer.from('b'))])))), 'two host_name entries in server_name'],
    ['an SNI list length mismatch', withExtensions(ext(0, Buffer.from([0, 9, 0, 0, 1, 0x61]))), 'server_name list length 9 does not match the extension length 6'],
    ['an empty ALPN name', withExtensions(ext(16, vec16(Buffer.from([0])))), 'empty ALPN protocol name'],
    ['an ALPN name overflowing', withExtensions(ext(16, vec16(Buffer.from([5, 0x68])))), 'ALPN protocol name length 5 overflows the list'],
    ['an empty ALPN list', withExtensions(ext(16, vec16(Buffer.alloc(0)))), 'empty ALPN list'],
    ['an odd supported_versions', withExtensions(ext(43, vec8(Buffer.from([3, 4, 3])))), 'supported_versions length 3 is odd'],
    ['empty supported_versions data', withExtensions(ext(43, Buffer.alloc(0))), 'supported_versions extension is empty'],
    ['a dane_clientid length mismatch', withExtensions(ext(DEFAULT_DANE_CLIENTID_TYPE, Buffer.from([9, 0x61]))), 'dane_clientid name length 9 does not match the extension length 2'],
    ['a dane_clientid with a space', withExtensions(daneClientId('a b.example')), 'dane_clientid name contains byte 0x20 (not printable ASCII)'],
    ['a dane_clientid with UTF-8', withExtensions(ext(DEFAULT_DANE_CLIENTID_TYPE, vec8(Buffer.from('é.example')))), 'dane_clientid name contains byte 0xc3 (not printable ASCII)'],
  ])('%s', (_label, bytes, reason) => {
    expect(parseClientHello(bytes)).toEqual({ status: 'invalid', reason });
  });

  it('refuses a second message inside the hello record', () => {
    const m = helloMessage();
    const bytes = Buffer.concat([u8(22), u16(0x0301), u16(m.length + 4), m, Buffer.from([20, 0, 0, 0])]);
    expect(parseClientHello(bytes)).toEqual({ status: 'invalid', reason: '4 bytes after the ClientHello in the same record' });
  });

  it('refuses an alert record between two fragments of the hello', () => {
    const m = helloMessage();
    const first = records(m.subarray(0, 10));
    const bytes = Buffer.concat([first, Buffer.from([21, 3, 3, 0, 2, 2, 40])]);
    expect(parseClientHello(bytes)).toEqual({ status: 'invalid', reason: 'not a TLS handshake record (content type 21)' });
  });

  it('bounds the records, not only the message: many tiny records cannot exceed maxBytes + 5', () => {
    const bytes = records(helloMessage({ extensions: [ext(21, Buffer.alloc(300))] }), 1);
    const result = parseClientHello(bytes, { maxBytes: 1000 });
    expect(result).toEqual({ status: 'invalid', reason: 'ClientHello records exceed the limit of 1005 bytes' });
  });

  it.each([
    [{ daneClientIdType: 0 }, 'daneClientIdType 0 collides with an extension this parser reads'],
    [{ daneClientIdType: 16 }, 'daneClientIdType 16 collides with an extension this parser reads'],
    [{ daneClientIdType: 65536 }, 'daneClientIdType must be an integer 0..65535, got 65536'],
    [{ maxBytes: 0 }, 'maxBytes must be a positive integer, got 0'],
  ])('throws RangeError for invalid options %j', (options, message) => {
    expect(() => parseClientHello(Buffer.alloc(0), options)).toThrow(new RangeError(message));
  });
});

describe('parseClientHello: fuzz', () => {
  const valid = records(helloMessage({ extensions: typical() }), 60);
  const check = (bytes: Buffer): void => {
    const result = parseClientHello(bytes, { maxBytes: 4096 });
    if (result.status === 'invalid') expect(result.reason.startsWith(INTERNAL_ERROR_PREFIX)).toBe(false);
    if (result.status === 'complete') expect(result.hello.recordBytes).toBeLessThanOrEqual(bytes.length);
  };

  it('20,000 random buffers, half of them starting like a handshake record', () => {
    for (let i = 0; i < 20_000; i++) {
      const bytes = randomBytes(3 + (i % 300));
      if (i % 2 === 0) bytes.set([22, 3, i % 4], 0);
      check(bytes);
    }
  });

  it('20,000 mutations of a valid fragmented hello (byte flips, truncations, insertions)', () => {
    let invalid = 0;
    for (let i = 0; i < 20_000; i++) {
      const bytes = Buffer.from(valid);
      const flips = 1 + (i % 4);
      for (let f = 0; f < flips; f++) bytes[Math.floor(Math.random() * bytes.length)] = Math.floor(Math.random() * 256);
      const cut = i % 3 === 0 ? bytes.subarray(0, Math.floor(Math.random() * bytes.length)) : bytes;
      const mutated = i % 5 === 0 ? Buffer.concat([cut.subarray(0, 20), randomBytes(3), cut.subarray(20)]) : cut;
      const result = parseClientHello(mutated, { maxBytes: 4096 });
      if (result.status === 'invalid') invalid++;
      check(mutated);
    }
    // Most mutations of a strict format are caught: proves the checks are live.
    expect(invalid).toBeGreaterThan(10_000);
  });
});
