/**
 * Builds TLS ClientHello bytes independently of the parser under test: for
 * the parser's unit tests, and for hostile clients (tests and bench/) that
 * send a real-looking TLS 1.2 ClientHello with `dane_clientid` and then
 * never finish the handshake.
 */
import { randomBytes } from 'node:crypto';

export const u8 = (n: number): Buffer => Buffer.from([n]);
export const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
export const u24 = (n: number): Buffer => Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff]);
export const vec8 = (b: Buffer): Buffer => Buffer.concat([u8(b.length), b]);
export const vec16 = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);
export const ext = (type: number, data: Buffer): Buffer => Buffer.concat([u16(type), vec16(data)]);

export const sniExtension = (name: string): Buffer => ext(0, vec16(Buffer.concat([u8(0), vec16(Buffer.from(name, 'latin1'))])));
export const alpnExtension = (...names: string[]): Buffer => ext(16, vec16(Buffer.concat(names.map((n) => vec8(Buffer.from(n, 'latin1'))))));
export const versionsExtension = (...v: number[]): Buffer => ext(43, vec8(Buffer.concat(v.map(u16))));
export const daneClientIdExtension = (name: string, type = 65500): Buffer => ext(type, vec8(Buffer.from(name, 'latin1')));

export interface HelloParts {
  legacyVersion?: number;
  sessionId?: Buffer;
  suites?: Buffer;
  compression?: Buffer;
  /** undefined = no extensions block at all */
  extensions?: Buffer[] | undefined;
  rawExtensions?: Buffer;
}

/** The ClientHello handshake message (type + length + body). */
export function helloMessage(p: HelloParts = {}): Buffer {
  const extensions = p.rawExtensions ?? (p.extensions === undefined ? Buffer.alloc(0) : vec16(Buffer.concat(p.extensions)));
  const body = Buffer.concat([
    u16(p.legacyVersion ?? 0x0303),
    Buffer.alloc(32, 7),
    vec8(p.sessionId ?? Buffer.alloc(32, 1)),
    vec16(p.suites ?? Buffer.from([0x13, 0x01, 0xc0, 0x2b])),
    vec8(p.compression ?? Buffer.from([0])),
    extensions,
  ]);
  return Buffer.concat([u8(1), u24(body.length), body]);
}

/** Split a handshake message into TLS records of at most `fragment` bytes. */
export function records(message: Buffer, fragment = 16384, recordVersion = 0x0301): Buffer {
  const out: Buffer[] = [];
  for (let off = 0; off < message.length; off += fragment) {
    const chunk = message.subarray(off, off + fragment);
    out.push(Buffer.concat([u8(22), u16(recordVersion), u16(chunk.length), chunk]));
  }
  return Buffer.concat(out);
}

/** The TLS 1.2 Certificate handshake message carrying `ders` (leaf first), as a client sends it in the clear. */
export function certificateMessage(ders: readonly Buffer[]): Buffer {
  const list = Buffer.concat(ders.map((d) => Buffer.concat([u24(d.length), d])));
  return Buffer.concat([u8(11), u24(list.length + 3), u24(list.length), list]);
}

/**
 * A TLS 1.2 ClientHello that OpenSSL (node:tls) accepts and answers with
 * ServerHello…ServerHelloDone for an ECDSA P-256 or RSA server certificate,
 * carrying `dane_clientid` = `name`. The sender then stalls: the handshake
 * never completes.
 */
export function stallingTls12Hello(serverName: string, name: string, extensionType = 65500): Buffer {
  const body = Buffer.concat([
    u16(0x0303),
    randomBytes(32),
    vec8(Buffer.alloc(0)),
    // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256
    vec16(Buffer.from([0xc0, 0x2b, 0xc0, 0x2f])),
    vec8(Buffer.from([0])),
    vec16(
      Buffer.concat([
        sniExtension(serverName),
        ext(10, vec16(Buffer.from([0x00, 0x1d, 0x00, 0x17]))), // supported_groups: x25519, secp256r1
        ext(11, vec8(Buffer.from([0]))), // ec_point_formats: uncompressed
        ext(13, vec16(Buffer.from([0x04, 0x03, 0x08, 0x04, 0x04, 0x01]))), // signature_algorithms
        ext(23, Buffer.alloc(0)), // extended_master_secret
        ext(0xff01, vec8(Buffer.alloc(0))), // renegotiation_info
        daneClientIdExtension(name, extensionType),
      ]),
    ),
  ]);
  return records(Buffer.concat([u8(1), u24(body.length), body]));
}
