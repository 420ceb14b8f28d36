/**
 * The RADIUS codec (src/protocol/radius.ts). Packets are built here byte by byte with a small
 * helper of the test's own, and every MD5 / HMAC-MD5 value is computed here independently, from
 * the RFC formulas. Known vectors: RFC 2865 §7.1 (Access-Request with User-Password, and its
 * Access-Accept) and RFC 5997 §6 (Status-Server with Message-Authenticator), secret "xyzzy5461".
 */
import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  accountingRequestAuthenticator,
  buildIdentityAttribute,
  checkIdentityAttribute,
  codeName,
  DANCEGATE_CLIENT_NAME_TYPE,
  DANCEGATE_VENDOR_ID,
  DEFAULT_IDENTITY_ATTRIBUTE,
  encodePacket,
  framePacket,
  messageAuthenticatorBasis,
  parsePacket,
  parseVendorSpecific,
  RADIUS_ATTRIBUTE,
  RADIUS_CODE,
  RADIUS_HEADER_BYTES,
  resignAccountingResponse,
  responseAuthenticator,
  rewriteRequest,
  signMessageAuthenticator,
  stripIdentity,
  verifyMessageAuthenticator,
  type IdentityAttribute,
  type RadiusAttribute,
  type RewriteResult,
} from '../../src/protocol/radius.js';

// ---------------------------------------------------------------------------------------------
// The test's own packet builder and signatures

const hex = (s: string): Buffer => Buffer.from(s.replace(/#[^\n]*/g, '').replace(/\s+/g, ''), 'hex');
const md5 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
};
const hmac = (secret: string, data: Uint8Array): Buffer => createHmac('md5', secret).update(data).digest();
const bytes = (v: Buffer | string): Buffer => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v);

/** One attribute: Type, Length, Value. */
const attr = (type: number, value: Buffer | string): Buffer => Buffer.concat([Buffer.from([type, 2 + bytes(value).length]), bytes(value)]);
/** One vendor sub-attribute: Vendor type, Vendor length, Value. */
const sub = (type: number, value: Buffer | string): Buffer => attr(type, value);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
/** A Vendor-Specific attribute: 26, Length, Vendor-Id, sub-attributes. */
const vsa = (vendorId: number, ...subs: Buffer[]): Buffer => attr(26, Buffer.concat([u32(vendorId), ...subs]));
const ours = (name: string): Buffer => vsa(32473, sub(1, name));
const ZERO16 = Buffer.alloc(16);
const maZero = (): Buffer => attr(80, ZERO16);

/** A packet with its Length field computed (or forced). */
function pkt(code: number, identifier: number, authenticator: Buffer, attrs: Buffer[], forcedLength?: number): Buffer {
  const body = Buffer.concat(attrs);
  const head = Buffer.alloc(4);
  head.writeUInt8(code, 0);
  head.writeUInt8(identifier, 1);
  head.writeUInt16BE(forcedLength ?? 20 + body.length, 2);
  return Buffer.concat([head, authenticator, body]);
}

/** The offset of the (first) Message-Authenticator value, walking well-formed attributes. */
function maValueAt(packet: Buffer): number {
  for (let o = 20; o < packet.length; o += packet[o + 1] ?? 1) if (packet[o] === 80) return o + 2;
  throw new Error('no Message-Authenticator');
}

/** HMAC-MD5 over the packet with the MA value zeroed and `basis` in the Authenticator field. */
function expectedMa(packet: Buffer, secret: string, basis: Buffer): Buffer {
  const copy = Buffer.from(packet);
  basis.copy(copy, 4);
  const at = maValueAt(copy);
  copy.fill(0, at, at + 16);
  return hmac(secret, copy);
}

/** Fills the MA in place (basis 'own' keeps the packet's own authenticator). */
function withMa(packet: Buffer, secret: string, basis: Buffer | 'own'): Buffer {
  const out = Buffer.from(packet);
  expectedMa(out, secret, basis === 'own' ? out.subarray(4, 20) : basis).copy(out, maValueAt(out));
  return out;
}

/** RFC 2866: MD5(Code|Id|Length|16 zero|Attributes|secret), written into the packet. */
function withAccountingAuthenticator(packet: Buffer, secret: string): Buffer {
  const out = Buffer.from(packet);
  md5(out.subarray(0, 4), ZERO16, out.subarray(20), Buffer.from(secret)).copy(out, 4);
  return out;
}

/** A response signed over `requestAuthenticator` (MA first, if it has one, then the Response Authenticator). */
function signedResponse(code: number, identifier: number, attrs: Buffer[], secret: string, requestAuthenticator: Buffer): Buffer {
  let out = pkt(code, identifier, requestAuthenticator, attrs);
  if (attrs.some((a) => a[0] === 80)) out = withMa(out, secret, requestAuthenticator);
  md5(out.subarray(0, 4), requestAuthenticator, out.subarray(20), Buffer.from(secret)).copy(out, 4);
  return out;
}

function ok(r: RewriteResult): Extract<RewriteResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected ok, got ${r.problem}: ${r.reason}`);
  return r;
}

const SECRET = 'radsec';
const NAME = 'nas1.nas.radsec.example';
const AUTH = hex('0f403f94739780 57bd83d5cb98f4227a');
const OPTIONS = { secret: SECRET, identity: DEFAULT_IDENTITY_ATTRIBUTE, name: NAME };

// ---------------------------------------------------------------------------------------------
// RFC vectors

const RFC2865_ACCESS_REQUEST = hex(`
  01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a
  01 06 6e 65 6d 6f                                      # User-Name "nemo"
  02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee  # User-Password (arctangent)
  04 06 c0 a8 01 10                                      # NAS-IP-Address 192.168.1.16
  05 06 00 00 00 03                                      # NAS-Port 3
`);
const RFC2865_ACCESS_ACCEPT = hex(`
  02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2
  06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03
`);
const RFC5997_STATUS_SERVER = hex(`
  0c da 00 26 8a 54 f4 68 6f b3 94 c5 28 66 e3 02 18 5d 06 23
  50 12 5a 66 5e 2e 1e 84 11 f3 e2 43 82 20 97 c8 4f a3
`);

describe('RFC vectors', () => {
  it('parses the RFC 2865 §7.1 Access-Request', () => {
    const parsed = parsePacket(RFC2865_ACCESS_REQUEST);
    expect(parsed).toEqual({
      ok: true,
      packet: {
        code: 1,
        identifier: 0,
        authenticator: RFC2865_ACCESS_REQUEST.subarray(4, 20),
        attributes: [
          { type: 1, value: Buffer.from('nemo') },
          { type: 2, value: hex('0dbe708d93d413ce3196e43f782a0aee') },
          { type: 4, value: hex('c0a80110') },
          { type: 5, value: hex('00000003') },
        ],
      },
    });
  });

  it('computes the RFC 2865 §7.1 Access-Accept Response Authenticator', () => {
    expect(responseAuthenticator(RFC2865_ACCESS_ACCEPT, 'xyzzy5461', RFC2865_ACCESS_REQUEST.subarray(4, 20))).toEqual(RFC2865_ACCESS_ACCEPT.subarray(4, 20));
  });

  it('verifies the RFC 5997 §6 Status-Server Message-Authenticator, and passes it byte for byte', () => {
    expect(verifyMessageAuthenticator(RFC5997_STATUS_SERVER, 'xyzzy5461')).toEqual({ ok: true, present: true });
    expect(verifyMessageAuthenticator(RFC5997_STATUS_SERVER, 'wrong')).toEqual({
      ok: false,
      reason: 'Status-Server id 218: Message-Authenticator does not verify with the shared secret',
      problem: 'unauthenticated',
    });
    const r = ok(rewriteRequest(RFC5997_STATUS_SERVER, { ...OPTIONS, secret: 'xyzzy5461' }));
    expect(r.kind).toBe('passed');
    expect(r.bytes).toBe(RFC5997_STATUS_SERVER);
    expect(r.removedCopies).toBe(0);
  });

  it('rewrites the RFC 2865 Access-Request: MA first, identity last, Request Authenticator and User-Password unchanged', () => {
    const r = ok(rewriteRequest(RFC2865_ACCESS_REQUEST, { ...OPTIONS, secret: 'xyzzy5461' }));
    const expected = withMa(pkt(1, 0, RFC2865_ACCESS_REQUEST.subarray(4, 20), [maZero(), RFC2865_ACCESS_REQUEST.subarray(20), ours(NAME)]), 'xyzzy5461', 'own');
    expect(r.bytes).toEqual(expected);
    expect(r.kind).toBe('rewritten');
    // The password still decrypts with the (unchanged) Request Authenticator: RFC 2865 §5.2.
    const at = 20 + 18 + 6 + 2;
    const b = md5(Buffer.from('xyzzy5461'), r.bytes.subarray(4, 20));
    const plain = Buffer.from(r.bytes.subarray(at, at + 16).map((x, i) => x ^ (b[i] ?? 0)));
    expect(plain.toString('latin1').replace(/\0+$/, '')).toBe('arctangent');
    // So the server's RFC 2865 Access-Accept verifies against the rewritten request as it is.
    expect(responseAuthenticator(RFC2865_ACCESS_ACCEPT, 'xyzzy5461', r.bytes.subarray(4, 20))).toEqual(RFC2865_ACCESS_ACCEPT.subarray(4, 20));
  });
});

// ---------------------------------------------------------------------------------------------
// Constants

describe('constants', () => {
  it('has the IANA codes and attribute numbers', () => {
    expect(RADIUS_CODE).toEqual({
      ACCESS_REQUEST: 1,
      ACCESS_ACCEPT: 2,
      ACCESS_REJECT: 3,
      ACCOUNTING_REQUEST: 4,
      ACCOUNTING_RESPONSE: 5,
      ACCESS_CHALLENGE: 11,
      STATUS_SERVER: 12,
      STATUS_CLIENT: 13,
      DISCONNECT_REQUEST: 40,
      DISCONNECT_ACK: 41,
      DISCONNECT_NAK: 42,
      COA_REQUEST: 43,
      COA_ACK: 44,
      COA_NAK: 45,
      PROTOCOL_ERROR: 52,
    });
    expect(RADIUS_HEADER_BYTES).toBe(20);
    expect(RADIUS_ATTRIBUTE.MESSAGE_AUTHENTICATOR).toBe(80);
    expect(RADIUS_ATTRIBUTE.VENDOR_SPECIFIC).toBe(26);
    expect([DANCEGATE_VENDOR_ID, DANCEGATE_CLIENT_NAME_TYPE]).toEqual([32473, 1]);
    expect(DEFAULT_IDENTITY_ATTRIBUTE).toEqual({ kind: 'vsa', vendorId: 32473, vendorType: 1 });
    expect([codeName(43), codeName(52), codeName(99)]).toEqual(['CoA-Request', 'Protocol-Error', 'code 99']);
  });

  it.each([
    [1, 'packet'],
    [12, 'packet'],
    [13, 'packet'],
    [4, 'zero'],
    [40, 'zero'],
    [43, 'zero'],
    [2, 'request'],
    [5, 'request'],
    [11, 'request'],
    [41, 'request'],
    [45, 'request'],
    [52, 'request'],
  ] as const)('Message-Authenticator basis of code %i is %s', (code, basis) => {
    expect(messageAuthenticatorBasis(code)).toBe(basis);
  });
});

// ---------------------------------------------------------------------------------------------
// Framing

describe('framePacket', () => {
  const header = (length: number, extra: number): Buffer => {
    const b = Buffer.alloc(Math.max(4, extra));
    b.writeUInt8(1, 0);
    b.writeUInt16BE(length, 2);
    return b;
  };
  it.each([
    ['nothing', Buffer.alloc(0), 4096, 'incomplete'],
    ['three bytes', Buffer.from([1, 2, 0]), 4096, 'incomplete'],
    ['length 20, 19 bytes', header(20, 19), 4096, 'incomplete'],
    ['length 65535 at the 65535 limit, 4 bytes', header(65535, 4), 65535, 'incomplete'],
    ['length 19', header(19, 4), 4096, { status: 'invalid', reason: 'RADIUS Length field is 19, less than the 20-byte header' }],
    ['length 0', header(0, 30), 4096, { status: 'invalid', reason: 'RADIUS Length field is 0, less than the 20-byte header' }],
    ['length 4097', header(4097, 4), 4096, { status: 'invalid', reason: 'RADIUS Length field is 4097, over the 4096-byte limit' }],
    ['length 21 over a 20 limit', header(21, 4), 20, { status: 'invalid', reason: 'RADIUS Length field is 21, over the 20-byte limit' }],
  ] as const)('%s', (_what, buffered, max, expected) => {
    expect(framePacket(buffered, max)).toEqual(expected);
  });

  it('cuts exactly one packet out of more bytes', () => {
    const two = Buffer.concat([RFC5997_STATUS_SERVER, RFC2865_ACCESS_ACCEPT]);
    const frame = framePacket(two, 4096);
    expect(frame).toEqual({ status: 'complete', bytes: RFC5997_STATUS_SERVER });
  });

  it.each([19, 65536, 1.5, Number.NaN])('refuses maxBytes %s', (max) => {
    expect(() => framePacket(Buffer.alloc(0), max)).toThrow(`maxBytes must be an integer from 20 to 65535, got ${String(max)}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Parsing and encoding

describe('parsePacket', () => {
  it.each([
    ['19 bytes', Buffer.alloc(19), 'RADIUS packet is 19 bytes, less than the 20-byte header'],
    ['Length field larger than the bytes', pkt(1, 1, AUTH, [], 30), 'RADIUS Length field says 30 bytes but the packet is 20 bytes'],
    ['Length field smaller than the bytes', pkt(1, 1, AUTH, [attr(1, 'a')], 20), 'RADIUS Length field says 20 bytes but the packet is 23 bytes'],
    ['attribute Length 0', pkt(1, 1, AUTH, [Buffer.from([1, 0, 0, 0])]), 'attribute 1 at offset 20 has Length 0 (an attribute is at least 2 bytes)'],
    ['attribute Length 1', pkt(1, 1, AUTH, [attr(4, 'abcd'), Buffer.from([7, 1])]), 'attribute 7 at offset 26 has Length 1 (an attribute is at least 2 bytes)'],
    ['attribute overrunning', pkt(1, 1, AUTH, [Buffer.from([1, 10, 0x61, 0x62, 0x63])]), 'attribute 1 at offset 20 has Length 10 and overruns the packet by 5 byte(s)'],
    ['one trailing byte', pkt(1, 1, AUTH, [attr(1, 'nemo'), Buffer.from([5])]), '1 trailing byte at offset 26 cannot hold an attribute'],
    ['15-byte Message-Authenticator', pkt(1, 1, AUTH, [attr(80, Buffer.alloc(15))]), 'Message-Authenticator at offset 20 has a 15-byte value (it must be 16)'],
    ['17-byte Message-Authenticator', pkt(1, 1, AUTH, [attr(1, 'x'), attr(80, Buffer.alloc(17))]), 'Message-Authenticator at offset 23 has a 17-byte value (it must be 16)'],
    ['two Message-Authenticators', pkt(1, 1, AUTH, [maZero(), attr(1, 'x'), maZero()]), 'Message-Authenticator appears more than once (offsets 20 and 41)'],
  ])('refuses %s', (_what, packet, reason) => {
    expect(parsePacket(packet)).toEqual({ ok: false, reason });
    expect(rewriteRequest(packet, OPTIONS)).toEqual({ ok: false, reason, problem: 'malformed' });
  });

  it('refuses what is not bytes without throwing', () => {
    expect(parsePacket('not bytes' as unknown as Buffer)).toEqual({ ok: false, reason: 'a RADIUS packet must be given as bytes' });
    expect(parsePacket(undefined as unknown as Buffer)).toEqual({ ok: false, reason: 'a RADIUS packet must be given as bytes' });
  });

  it('accepts an empty attribute value and a header-only packet, copying values out', () => {
    const packet = pkt(4, 200, AUTH, [attr(44, Buffer.alloc(0))]);
    const parsed = parsePacket(packet);
    expect(parsed).toEqual({ ok: true, packet: { code: 4, identifier: 200, authenticator: AUTH, attributes: [{ type: 44, value: Buffer.alloc(0) }] } });
    expect(parsePacket(pkt(99, 0, AUTH, []))).toEqual({ ok: true, packet: { code: 99, identifier: 0, authenticator: AUTH, attributes: [] } });
    packet.fill(0xee, 4, 20);
    if (parsed.ok) expect(parsed.packet.authenticator).toEqual(AUTH);
  });
});

describe('encodePacket', () => {
  it('writes what parsePacket reads', () => {
    const attributes: RadiusAttribute[] = [
      { type: 1, value: Buffer.from('nemo') },
      { type: 26, value: Buffer.concat([u32(9), sub(1, 'x')]) },
      { type: 80, value: ZERO16 },
    ];
    const encoded = encodePacket({ code: 43, identifier: 7, authenticator: AUTH, attributes });
    expect(encoded).toEqual(pkt(43, 7, AUTH, [attr(1, 'nemo'), vsa(9, sub(1, 'x')), maZero()]));
    expect(parsePacket(encoded)).toEqual({ ok: true, packet: { code: 43, identifier: 7, authenticator: AUTH, attributes } });
  });

  it.each([
    ['code 256', { code: 256 }, 'code must be an integer from 0 to 255, got 256'],
    ['identifier -1', { identifier: -1 }, 'identifier must be an integer from 0 to 255, got -1'],
    ['15-byte authenticator', { authenticator: Buffer.alloc(15) }, 'authenticator must be 16 bytes'],
    ['attribute type 300', { attributes: [{ type: 300, value: Buffer.alloc(0) }] }, 'attribute 0 type must be an integer from 0 to 255, got 300'],
    ['254-byte value', { attributes: [{ type: 1, value: Buffer.alloc(254) }] }, 'attribute 0 (type 1) value is 254 bytes, over 253'],
    ['over 65535 bytes', { attributes: Array.from({ length: 258 }, () => ({ type: 1, value: Buffer.alloc(253) })) }, 'packet would be 65810 bytes, over 65535'],
  ])('refuses %s', (_what, change, message) => {
    expect(() => encodePacket({ code: 1, identifier: 1, authenticator: AUTH, attributes: [], ...change })).toThrow(message);
  });
});

// ---------------------------------------------------------------------------------------------
// Authenticators

describe('Message-Authenticator and authenticators', () => {
  it('verifies an Access-Request MA over its own authenticator, and reports a missing one', () => {
    const signed = withMa(pkt(1, 7, AUTH, [attr(1, 'nemo'), maZero()]), SECRET, 'own');
    expect(verifyMessageAuthenticator(signed, SECRET)).toEqual({ ok: true, present: true });
    expect(verifyMessageAuthenticator(pkt(1, 7, AUTH, [attr(1, 'nemo')]), SECRET)).toEqual({ ok: true, present: false });
    const tampered = Buffer.from(signed);
    tampered[22] = (tampered[22] ?? 0) ^ 1; // inside User-Name
    expect(verifyMessageAuthenticator(tampered, SECRET)).toEqual({
      ok: false,
      reason: 'Access-Request id 7: Message-Authenticator does not verify with the shared secret',
      problem: 'unauthenticated',
    });
    expect(verifyMessageAuthenticator(Buffer.alloc(3), SECRET)).toEqual({ ok: false, reason: 'RADIUS packet is 3 bytes, less than the 20-byte header', problem: 'malformed' });
  });

  it('signs a CoA-Request MA over a zero authenticator (RFC 5176 §3.5), then its Request Authenticator', () => {
    const unsigned = pkt(43, 9, ZERO16, [maZero(), attr(1, 'nemo')]);
    const signed = signMessageAuthenticator(unsigned, SECRET);
    expect(signed.subarray(22, 38)).toEqual(expectedMa(unsigned, SECRET, ZERO16));
    const authenticator = accountingRequestAuthenticator(signed, SECRET);
    expect(authenticator).toEqual(md5(signed.subarray(0, 4), ZERO16, signed.subarray(20), Buffer.from(SECRET)));
    authenticator.copy(signed, 4);
    expect(verifyMessageAuthenticator(signed, SECRET)).toEqual({ ok: true, present: true });
  });

  it('verifies a response MA over the request authenticator, and needs that authenticator', () => {
    const response = signedResponse(2, 7, [maZero(), attr(18, 'hello')], SECRET, AUTH);
    expect(verifyMessageAuthenticator(response, SECRET, AUTH)).toEqual({ ok: true, present: true });
    expect(verifyMessageAuthenticator(response, SECRET, ZERO16).ok).toBe(false);
    expect(() => verifyMessageAuthenticator(response, SECRET)).toThrow("the Message-Authenticator of a Access-Accept covers the request's authenticator: pass it");
  });

  it('accepts the secret as bytes', () => {
    const signed = withMa(pkt(1, 7, AUTH, [maZero()]), SECRET, 'own');
    expect(verifyMessageAuthenticator(signed, Buffer.from(SECRET))).toEqual({ ok: true, present: true });
  });

  it('refuses to sign what has no Message-Authenticator or does not parse', () => {
    expect(() => signMessageAuthenticator(pkt(1, 1, AUTH, []), SECRET)).toThrow('cannot sign: the packet has no Message-Authenticator');
    expect(() => signMessageAuthenticator(Buffer.alloc(5), SECRET)).toThrow('cannot sign: RADIUS packet is 5 bytes, less than the 20-byte header');
  });
});

// ---------------------------------------------------------------------------------------------
// The identity attribute

describe('identity attribute', () => {
  it.each<[string, IdentityAttribute, string | undefined]>([
    ['the default', DEFAULT_IDENTITY_ATTRIBUTE, undefined],
    ['User-Name', { kind: 'attribute', type: 1 }, undefined],
    ['vendor 0', { kind: 'vsa', vendorId: 0, vendorType: 1 }, 'vendorId must be an integer from 1 to 16777215, got 0'],
    ['vendor 2^24', { kind: 'vsa', vendorId: 0x1000000, vendorType: 1 }, 'vendorId must be an integer from 1 to 16777215, got 16777216'],
    ['vendor type 0', { kind: 'vsa', vendorId: 9, vendorType: 0 }, 'vendorType must be an integer from 1 to 255, got 0'],
    ['vendor type 256', { kind: 'vsa', vendorId: 9, vendorType: 256 }, 'vendorType must be an integer from 1 to 255, got 256'],
    ['type 0', { kind: 'attribute', type: 0 }, 'type must be an integer from 1 to 255, got 0'],
    ['User-Password', { kind: 'attribute', type: 2 }, 'type 2 cannot carry the identity: User-Password (2) is encrypted with the shared secret, not plain text'],
    ['Vendor-Specific', { kind: 'attribute', type: 26 }, 'type 26 cannot carry the identity: Vendor-Specific (26) is a container: use { vendorId, vendorType }'],
    ['EAP-Message', { kind: 'attribute', type: 79 }, 'type 79 cannot carry the identity: EAP-Message (79) carries EAP, not a name'],
    ['Message-Authenticator', { kind: 'attribute', type: 80 }, 'type 80 cannot carry the identity: Message-Authenticator (80) is the packet signature'],
    ['an extended type', { kind: 'attribute', type: 241 }, 'type 241 is an RFC 6929 extended attribute (241-246), not a plain one'],
    ['an unknown kind', { kind: 'other' } as unknown as IdentityAttribute, 'identity attribute must be of kind "vsa" or "attribute"'],
  ])('%s', (_what, identity, reason) => {
    expect(checkIdentityAttribute(identity)).toBe(reason);
  });

  it('builds the Vendor-Specific and the plain attribute', () => {
    expect(buildIdentityAttribute(DEFAULT_IDENTITY_ATTRIBUTE, 'a.b')).toEqual({ type: 26, value: hex('00 00 7e d9  01 05 61 2e 62') });
    expect(buildIdentityAttribute({ kind: 'attribute', type: 1 }, 'a.b')).toEqual({ type: 1, value: Buffer.from('a.b') });
    expect(buildIdentityAttribute(DEFAULT_IDENTITY_ATTRIBUTE, 'x'.repeat(247)).value.length).toBe(253);
    expect(buildIdentityAttribute({ kind: 'attribute', type: 1 }, 'x'.repeat(253)).value.length).toBe(253);
  });

  it.each<[string, IdentityAttribute, string, string]>([
    ['248 bytes in a Vendor-Specific', DEFAULT_IDENTITY_ATTRIBUTE, 'x'.repeat(248), 'identity name is 248 bytes: a Vendor-Specific sub-attribute holds at most 247'],
    ['254 bytes in a plain attribute', { kind: 'attribute', type: 1 }, 'x'.repeat(254), 'identity name is 254 bytes: attribute 1 holds at most 253'],
    ['an empty name', DEFAULT_IDENTITY_ATTRIBUTE, '', 'identity name must be a non-empty string'],
    ['a lone surrogate', DEFAULT_IDENTITY_ATTRIBUTE, 'a\ud800', 'identity name is not well-formed Unicode'],
    ['a bad attribute', { kind: 'attribute', type: 80 }, 'a', 'identity attribute: type 80 cannot carry the identity: Message-Authenticator (80) is the packet signature'],
  ])('refuses %s, never truncating', (_what, identity, name, message) => {
    expect(() => buildIdentityAttribute(identity, name)).toThrow(message);
  });

  it('parses Vendor-Specific values', () => {
    expect(parseVendorSpecific(Buffer.concat([u32(32473), sub(1, 'a'), sub(9, '')]))).toEqual({
      ok: true,
      vendorId: 32473,
      subAttributes: [
        { type: 1, value: Buffer.from('a') },
        { type: 9, value: Buffer.alloc(0) },
      ],
    });
    expect(parseVendorSpecific(u32(5))).toEqual({ ok: true, vendorId: 5, subAttributes: [] });
    expect(parseVendorSpecific(hex('000000'))).toEqual({ ok: false, reason: 'Vendor-Specific value is 3 bytes, too short for its 4-byte Vendor-Id' });
  });
});

describe('stripIdentity', () => {
  const list = (...raw: Buffer[]): RadiusAttribute[] => raw.map((a) => ({ type: a[0] ?? 0, value: a.subarray(2) }));
  const refusal = (detail: string): string => `${detail} (refused: it might hide vendor 32473 type 1)`;
  it.each<[string, Buffer[], IdentityAttribute, Buffer[], number]>([
    ['nothing to strip', [attr(1, 'nemo')], DEFAULT_IDENTITY_ATTRIBUTE, [attr(1, 'nemo')], 0],
    ['our Vendor-Specific alone', [attr(1, 'nemo'), ours('forged.example'), attr(4, hex('c0a80110'))], DEFAULT_IDENTITY_ATTRIBUTE, [attr(1, 'nemo'), attr(4, hex('c0a80110'))], 1],
    ['ours among other vendors', [vsa(9, sub(1, 'cisco')), ours('forged'), vsa(311, sub(1, 'ms')), ours('again')], DEFAULT_IDENTITY_ATTRIBUTE, [vsa(9, sub(1, 'cisco')), vsa(311, sub(1, 'ms'))], 2],
    ['several sub-attributes', [vsa(32473, sub(1, 'a'), sub(2, 'keep'), sub(1, 'b'), sub(3, ''))], DEFAULT_IDENTITY_ATTRIBUTE, [vsa(32473, sub(2, 'keep'), sub(3, ''))], 2],
    ['our vendor, other types only', [vsa(32473, sub(2, 'keep'))], DEFAULT_IDENTITY_ATTRIBUTE, [vsa(32473, sub(2, 'keep'))], 0],
    ['another vendor with malformed sub-attributes', [vsa(9, Buffer.from([1, 0, 7]))], DEFAULT_IDENTITY_ATTRIBUTE, [vsa(9, Buffer.from([1, 0, 7]))], 0],
    ['a Vendor-Id with a non-zero high octet', [vsa(0x01007ed9, sub(1, 'x'))], DEFAULT_IDENTITY_ATTRIBUTE, [vsa(0x01007ed9, sub(1, 'x'))], 0],
    ['a plain attribute, every copy', [attr(1, 'a'), attr(4, hex('c0a80110')), attr(1, 'b')], { kind: 'attribute', type: 1 }, [attr(4, hex('c0a80110'))], 2],
    ['a plain attribute leaves Vendor-Specifics alone', [ours('x')], { kind: 'attribute', type: 1 }, [ours('x')], 0],
  ])('%s', (_what, input, identity, expected, removed) => {
    expect(stripIdentity(list(...input), identity)).toEqual({ ok: true, attributes: list(...expected), removedCopies: removed });
  });

  it.each([
    ['a sub-attribute of length 1', vsa(32473, Buffer.from([1, 1])), refusal('Vendor-Specific of vendor 32473: sub-attribute 1 at offset 4 has length 1 (at least 2)')],
    ['a sub-attribute of length 0', vsa(32473, sub(2, 'ok'), Buffer.from([1, 0, 0])), refusal('Vendor-Specific of vendor 32473: sub-attribute 1 at offset 8 has length 0 (at least 2)')],
    ['an overrunning sub-attribute', vsa(32473, Buffer.from([1, 9, 0x61])), refusal('Vendor-Specific of vendor 32473: sub-attribute 1 at offset 4 has length 9 and overruns the value')],
    ['one trailing byte', vsa(32473, sub(1, 'a'), Buffer.from([1])), refusal('Vendor-Specific of vendor 32473: 1 trailing byte at offset 7 cannot hold a sub-attribute')],
    ['a Vendor-Specific too short to name its vendor', attr(26, hex('00007e')), 'a Vendor-Specific of 3 bytes cannot name its vendor (it might hide vendor 32473 type 1)'],
  ])('refuses %s (fail closed)', (_what, raw, reason) => {
    expect(stripIdentity(list(attr(1, 'nemo'), raw), DEFAULT_IDENTITY_ATTRIBUTE)).toEqual({ ok: false, reason });
  });
});

// ---------------------------------------------------------------------------------------------
// rewriteRequest

describe('rewriteRequest: Access-Request', () => {
  it('adds a Message-Authenticator when there is none', () => {
    const r = ok(rewriteRequest(pkt(1, 7, AUTH, [attr(1, 'nemo'), attr(4, hex('c0a80110'))]), OPTIONS));
    expect(r).toEqual({ ok: true, kind: 'rewritten', removedCopies: 0, bytes: withMa(pkt(1, 7, AUTH, [maZero(), attr(1, 'nemo'), attr(4, hex('c0a80110')), ours(NAME)]), SECRET, 'own') });
    expect(r.bytes.subarray(22, 38)).toEqual(expectedMa(r.bytes, SECRET, AUTH));
  });

  it('verifies the client MA, moves the new one first, and removes forged copies', () => {
    const input = withMa(pkt(1, 8, AUTH, [attr(1, 'nemo'), ours('forged.example'), maZero(), vsa(9, sub(1, 'cisco')), vsa(32473, sub(2, 'x'), sub(1, 'f2'))]), SECRET, 'own');
    const r = ok(rewriteRequest(input, OPTIONS));
    expect(r.removedCopies).toBe(2);
    expect(r.bytes).toEqual(withMa(pkt(1, 8, AUTH, [maZero(), attr(1, 'nemo'), vsa(9, sub(1, 'cisco')), vsa(32473, sub(2, 'x')), ours(NAME)]), SECRET, 'own'));
  });

  it('replaces User-Name when that is the identity attribute', () => {
    const r = ok(rewriteRequest(pkt(1, 9, AUTH, [attr(1, 'claimed'), attr(5, hex('00000003'))]), { ...OPTIONS, identity: { kind: 'attribute', type: 1 } }));
    expect(r.removedCopies).toBe(1);
    expect(r.bytes).toEqual(withMa(pkt(1, 9, AUTH, [maZero(), attr(5, hex('00000003')), attr(1, NAME)]), SECRET, 'own'));
  });

  it('refuses a Message-Authenticator that does not verify (close: RFC 6613 §2.6.4)', () => {
    const input = withMa(pkt(1, 10, AUTH, [maZero(), attr(1, 'nemo')]), 'other-secret', 'own');
    expect(rewriteRequest(input, OPTIONS)).toEqual({ ok: false, reason: 'Access-Request id 10: Message-Authenticator does not verify with the shared secret', problem: 'unauthenticated' });
  });

  it('refuses, not drops silently, our vendor with malformed sub-attributes', () => {
    expect(rewriteRequest(pkt(1, 11, AUTH, [vsa(32473, Buffer.from([1, 1]))]), OPTIONS)).toEqual({
      ok: false,
      reason: 'Access-Request id 11: Vendor-Specific of vendor 32473: sub-attribute 1 at offset 4 has length 1 (at least 2) (refused: it might hide vendor 32473 type 1)',
      problem: 'refused',
    });
  });

  it('refuses a rewrite over the size limit instead of truncating', () => {
    const input = pkt(1, 12, AUTH, [attr(1, 'x'.repeat(60))]); // 82 bytes; + MA 18 + VSA 2+4+2+23 = 131
    expect(rewriteRequest(input, { ...OPTIONS, maxPacketBytes: 130 })).toEqual({
      ok: false,
      reason: 'Access-Request id 12: the rewritten packet would be 131 bytes, over the 130-byte limit',
      problem: 'refused',
    });
    expect(ok(rewriteRequest(input, { ...OPTIONS, maxPacketBytes: 131 })).bytes.length).toBe(131);
  });

  it('throws for configuration, not for traffic', () => {
    expect(() => rewriteRequest(RFC2865_ACCESS_REQUEST, { ...OPTIONS, name: '' })).toThrow('identity name must be a non-empty string');
    expect(() => rewriteRequest(RFC2865_ACCESS_REQUEST, { ...OPTIONS, maxPacketBytes: 70000 })).toThrow('maxPacketBytes must be an integer from 20 to 65535, got 70000');
  });
});

describe('rewriteRequest: Accounting-Request', () => {
  const acct = (identifier: number, attrs: Buffer[], ma: boolean): Buffer => {
    let p = pkt(4, identifier, ZERO16, ma ? [maZero(), ...attrs] : attrs);
    if (ma) p = withMa(p, SECRET, ZERO16);
    return withAccountingAuthenticator(p, SECRET);
  };

  it('checks the authenticator, adds the identity and computes the authenticator again', () => {
    const input = acct(20, [attr(40, hex('00000001')), attr(44, 'sess-1'), ours('forged')], false);
    const r = ok(rewriteRequest(input, OPTIONS));
    expect(r.bytes).toEqual(withAccountingAuthenticator(pkt(4, 20, ZERO16, [attr(40, hex('00000001')), attr(44, 'sess-1'), ours(NAME)]), SECRET));
    expect(r.originalAuthenticator).toEqual(input.subarray(4, 20));
    expect(r.removedCopies).toBe(1);
    expect(r.kind).toBe('rewritten');
  });

  it('with a Message-Authenticator: verifies it, and signs MA (zero basis) then the authenticator', () => {
    const input = acct(21, [attr(40, hex('00000002'))], true);
    expect(verifyMessageAuthenticator(input, SECRET)).toEqual({ ok: true, present: true });
    const r = ok(rewriteRequest(input, OPTIONS));
    const expected = withAccountingAuthenticator(withMa(pkt(4, 21, ZERO16, [maZero(), attr(40, hex('00000002')), ours(NAME)]), SECRET, ZERO16), SECRET);
    expect(r.bytes).toEqual(expected);
  });

  it('refuses a wrong Request Authenticator', () => {
    const input = acct(22, [attr(40, hex('00000001'))], false);
    input[19] = (input[19] ?? 0) ^ 0xff;
    expect(rewriteRequest(input, OPTIONS)).toEqual({
      ok: false,
      reason: 'Accounting-Request id 22: Request Authenticator does not verify with the shared secret (RFC 2866)',
      problem: 'unauthenticated',
    });
  });

  it('refuses a Message-Authenticator computed over the wrong basis, the authenticator being right', () => {
    const p = withMa(pkt(4, 23, AUTH, [maZero(), attr(40, hex('00000001'))]), SECRET, 'own');
    const input = withAccountingAuthenticator(p, SECRET);
    expect(rewriteRequest(input, OPTIONS)).toEqual({ ok: false, reason: 'Accounting-Request id 23: Message-Authenticator does not verify with the shared secret', problem: 'unauthenticated' });
  });

  it('round trip: the server signs over our authenticator, the client verifies the re-signed answer over its own', () => {
    for (const withMaAttribute of [false, true]) {
      const input = acct(24, [attr(40, hex('00000001')), attr(44, 'sess-2')], withMaAttribute);
      const r = ok(rewriteRequest(input, OPTIONS));
      const ourAuth = r.bytes.subarray(4, 20);
      const clientAuth = r.originalAuthenticator ?? Buffer.alloc(0);
      expect(ourAuth).not.toEqual(clientAuth);
      const answer = signedResponse(5, 24, withMaAttribute ? [maZero(), attr(18, 'ok')] : [attr(18, 'ok')], SECRET, Buffer.from(ourAuth));
      const resigned = resignAccountingResponse(answer, { secret: SECRET, ourRequestAuthenticator: ourAuth, clientRequestAuthenticator: clientAuth });
      expect(resigned).toEqual({ ok: true, bytes: signedResponse(5, 24, withMaAttribute ? [maZero(), attr(18, 'ok')] : [attr(18, 'ok')], SECRET, clientAuth) });
      if (resigned.ok) {
        expect(resigned.bytes.subarray(4, 20)).toEqual(md5(resigned.bytes.subarray(0, 4), clientAuth, resigned.bytes.subarray(20), Buffer.from(SECRET)));
        if (withMaAttribute) expect(verifyMessageAuthenticator(resigned.bytes, SECRET, clientAuth)).toEqual({ ok: true, present: true });
      }
    }
  });
});

describe('resignAccountingResponse', () => {
  const ourAuth = hex('11'.repeat(16));
  const clientAuth = hex('22'.repeat(16));
  const options = { secret: SECRET, ourRequestAuthenticator: ourAuth, clientRequestAuthenticator: clientAuth };

  it('refuses a Response Authenticator made over another request authenticator', () => {
    const answer = signedResponse(5, 30, [], SECRET, clientAuth);
    expect(resignAccountingResponse(answer, options)).toEqual({
      ok: false,
      reason: 'Accounting-Response id 30: Response Authenticator does not verify against the Accounting-Request dancegate sent',
      problem: 'unauthenticated',
    });
    expect(resignAccountingResponse(signedResponse(5, 30, [], 'other', ourAuth), options).ok).toBe(false);
  });

  it('refuses a bad Message-Authenticator under a good Response Authenticator', () => {
    let answer = pkt(5, 31, ourAuth, [maZero()]);
    answer = withMa(answer, 'other', ourAuth);
    md5(answer.subarray(0, 4), ourAuth, answer.subarray(20), Buffer.from(SECRET)).copy(answer, 4);
    expect(resignAccountingResponse(answer, options)).toEqual({
      ok: false,
      reason: 'Accounting-Response id 31: Message-Authenticator does not verify with the shared secret',
      problem: 'unauthenticated',
    });
  });

  it('refuses other codes and malformed packets', () => {
    expect(resignAccountingResponse(signedResponse(2, 32, [], SECRET, ourAuth), options)).toEqual({
      ok: false,
      reason: 'Access-Accept id 32: only an Accounting-Response is re-signed',
      problem: 'refused',
    });
    expect(resignAccountingResponse(pkt(5, 33, ourAuth, [], 40), options)).toEqual({ ok: false, reason: 'RADIUS Length field says 40 bytes but the packet is 20 bytes', problem: 'malformed' });
    expect(() => resignAccountingResponse(pkt(5, 33, ourAuth, []), { ...options, ourRequestAuthenticator: Buffer.alloc(15) })).toThrow('ourRequestAuthenticator must be 16 bytes');
  });
});

describe('rewriteRequest: Status-Server and other codes', () => {
  it('passes a Status-Server byte for byte; one carrying our attribute is refused (it cannot be rewritten)', () => {
    const input = withMa(pkt(12, 40, AUTH, [maZero(), attr(1, 'x')]), SECRET, 'own');
    const r = ok(rewriteRequest(input, OPTIONS));
    expect(r).toEqual({ ok: true, kind: 'passed', bytes: input, removedCopies: 0 });
    expect(r.bytes).toBe(input);
    const forged = withMa(pkt(12, 40, AUTH, [maZero(), ours('forged')]), SECRET, 'own');
    expect(rewriteRequest(forged, OPTIONS)).toEqual({
      ok: false,
      reason: 'Status-Server id 40: carries the identity attribute, which only dancegate sets (a packet passed untouched cannot have it removed)',
      problem: 'refused',
    });
  });

  it.each([
    ['without a Message-Authenticator', pkt(12, 41, AUTH, [attr(1, 'x')]), 'Status-Server id 41: no Message-Authenticator (RFC 5997 requires one)'],
    ['with a wrong Message-Authenticator', withMa(pkt(12, 42, AUTH, [maZero()]), 'other', 'own'), 'Status-Server id 42: Message-Authenticator does not verify with the shared secret'],
  ])('refuses a Status-Server %s', (_what, input, reason) => {
    expect(rewriteRequest(input, OPTIONS)).toEqual({ ok: false, reason, problem: 'unauthenticated' });
  });

  it.each([41, 42, 44, 45, 52])('passes code %i (an answer to a request the server sent) untouched, unless it carries our attribute', (code) => {
    const input = pkt(code, 50, AUTH, [attr(18, 'done')]);
    expect(rewriteRequest(input, OPTIONS)).toEqual({ ok: true, kind: 'passed', bytes: input, removedCopies: 0 });
    const forged = pkt(code, 50, AUTH, [ours('not ours to judge')]);
    const result = rewriteRequest(forged, OPTIONS);
    expect(result).toMatchObject({ ok: false, problem: 'refused' });
    expect(result.ok ? '' : result.reason).toMatch(/: carries the identity attribute, which only dancegate sets \(a packet passed untouched cannot have it removed\)$/);
  });

  it.each([
    [2, 'Access-Accept'],
    [3, 'Access-Reject'],
    [5, 'Accounting-Response'],
    [11, 'Access-Challenge'],
    [13, 'Status-Client'],
    [40, 'Disconnect-Request'],
    [43, 'CoA-Request'],
    [0, 'code 0'],
    [99, 'code 99'],
    [255, 'code 255'],
  ])('refuses code %i from the client', (code, name) => {
    expect(rewriteRequest(pkt(code, 51, AUTH, []), OPTIONS)).toEqual({ ok: false, reason: `${name} id 51: this code is not accepted from a RADSEC client`, problem: 'refused' });
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

/** Copies of the identity (vendor 32473 type 1) in a well-formed packet, counted by the test's own walk. */
function identityValues(packet: Buffer): string[] {
  const found: string[] = [];
  for (let o = 20; o < packet.length; o += packet[o + 1] ?? 1) {
    const len = packet[o + 1] ?? 2;
    if (packet[o] !== 26 || len < 6 || packet.readUInt32BE(o + 2) !== 32473) continue;
    for (let s = o + 6; s < o + len; s += packet[s + 1] ?? 1) if (packet[s] === 1) found.push(packet.toString('utf8', s + 2, s + (packet[s + 1] ?? 2)));
  }
  return found;
}

const subArb = fc.tuple(fc.integer({ min: 1, max: 4 }), fc.uint8Array({ maxLength: 30 })).map(([t, v]) => sub(t, Buffer.from(v)));
const attributeArb = fc.oneof(
  fc
    .tuple(
      fc.integer({ min: 1, max: 255 }).filter((t) => t !== 80 && t !== 26),
      fc.uint8Array({ maxLength: 60 }),
    )
    .map(([t, v]) => attr(t, Buffer.from(v))),
  fc.array(subArb, { maxLength: 4 }).map((subs) => vsa(32473, ...subs)),
  fc.tuple(fc.integer({ min: 1, max: 40000 }), fc.array(subArb, { maxLength: 3 })).map(([v, subs]) => vsa(v, ...subs)),
  fc.uint8Array({ maxLength: 12 }).map((v) => attr(26, Buffer.from(v))), // raw values: short or malformed ones too
);

describe('properties', () => {
  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (raw, fixLength) => {
        const b = Buffer.from(raw);
        if (fixLength && b.length >= 4) b.writeUInt16BE(b.length, 2);
        framePacket(b, 4096);
        parsePacket(b);
        verifyMessageAuthenticator(b, SECRET, AUTH);
        const r = rewriteRequest(b, OPTIONS);
        if (r.ok) expect(parsePacket(r.bytes).ok).toBe(true);
        resignAccountingResponse(b, { secret: SECRET, ourRequestAuthenticator: AUTH, clientRequestAuthenticator: ZERO16 });
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on random codes with random attribute bytes; a rewrite always parses', () => {
    fc.assert(
      fc.property(fc.constantFrom(1, 4, 12, 41, 43, 52, 7), fc.uint8Array({ maxLength: 120 }), (code, body) => {
        const r = rewriteRequest(pkt(code, 1, AUTH, [Buffer.from(body)]), OPTIONS);
        if (r.ok) expect(parsePacket(r.bytes).ok).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('Access-Requests: the rewrite parses, verifies with the secret, and carries exactly our name', () => {
    fc.assert(
      fc.property(fc.array(attributeArb, { maxLength: 12 }), fc.boolean(), fc.nat({ max: 12 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), (attrs, signed, maAt, auth) => {
        const list = [...attrs];
        if (signed) list.splice(Math.min(maAt, list.length), 0, maZero());
        let input = pkt(1, 3, Buffer.from(auth), list);
        if (signed) input = withMa(input, SECRET, 'own');
        const r = rewriteRequest(input, { ...OPTIONS, maxPacketBytes: 1000 });
        if (!r.ok) {
          expect(r.problem).toBe('refused'); // our vendor's sub-attributes malformed, or too big
          return;
        }
        expect(parsePacket(r.bytes).ok).toBe(true);
        expect(r.bytes.length).toBeLessThanOrEqual(1000);
        expect(r.bytes.subarray(4, 20)).toEqual(Buffer.from(auth));
        expect(r.bytes[20]).toBe(80);
        expect(r.bytes.subarray(22, 38)).toEqual(expectedMa(r.bytes, SECRET, Buffer.from(auth)));
        expect(identityValues(r.bytes)).toEqual([NAME]);
      }),
      { numRuns: 500 },
    );
  });

  it('Accounting-Requests: the rewrite verifies, carries exactly our name, and its answer re-signs to the client', () => {
    fc.assert(
      fc.property(fc.array(attributeArb, { maxLength: 10 }), fc.boolean(), (attrs, signed) => {
        let input = pkt(4, 9, ZERO16, signed ? [maZero(), ...attrs] : attrs);
        if (signed) input = withMa(input, SECRET, ZERO16);
        input = withAccountingAuthenticator(input, SECRET);
        const r = rewriteRequest(input, { ...OPTIONS, maxPacketBytes: 1000 });
        if (!r.ok) {
          expect(r.problem).toBe('refused');
          return;
        }
        expect(r.bytes.subarray(4, 20)).toEqual(md5(r.bytes.subarray(0, 4), ZERO16, r.bytes.subarray(20), Buffer.from(SECRET)));
        if (signed) expect(r.bytes.subarray(22, 38)).toEqual(expectedMa(r.bytes, SECRET, ZERO16));
        expect(identityValues(r.bytes)).toEqual([NAME]);
        const ourAuth = Buffer.from(r.bytes.subarray(4, 20));
        const answer = signedResponse(5, 9, [maZero()], SECRET, ourAuth);
        const resigned = resignAccountingResponse(answer, { secret: SECRET, ourRequestAuthenticator: ourAuth, clientRequestAuthenticator: input.subarray(4, 20) });
        expect(resigned).toEqual({ ok: true, bytes: signedResponse(5, 9, [maZero()], SECRET, input.subarray(4, 20)) });
      }),
      { numRuns: 300 },
    );
  });
});
