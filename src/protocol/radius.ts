/**
 * RADIUS packet codec for RADIUS over TLS (RADSEC) — pure functions, no I/O (node:crypto for MD5
 * and HMAC-MD5 only).
 *
 * Written from the RFCs: RFC 2865 (packet format, Response Authenticator), RFC 2866 (Accounting
 * Request Authenticator), RFC 3579 §3.2 (Message-Authenticator), RFC 5176 §3.5 (CoA/Disconnect),
 * RFC 5997 (Status-Server), RFC 6613 (RADIUS over TCP: framing by the Length field), RFC 6614
 * (RADIUS over TLS) and RFC 7930 (Length up to 65535 over TCP). We checked npm first: the `radius`
 * package (node-radius) has been unmaintained since about 2017 and decodes every attribute through
 * its dictionary; dancegate needs only the framing, the attribute list kept byte for byte, the
 * authenticator computations and one identity attribute, so it has this small codec of its own.
 *
 * What dancegate does with it (the client → server direction of a RADSEC connection):
 *  - `framePacket` cuts the byte stream into packets by their Length field;
 *  - `parsePacket` checks a packet's structure (attribute lengths, exact fill, one 16-byte
 *    Message-Authenticator at most) and never throws;
 *  - `rewriteRequest` checks the peer's Message-Authenticator / Accounting Request Authenticator,
 *    removes every copy of the identity attribute the peer sent, adds ours (the verified DANE
 *    name) and signs the packet again with the shared secret;
 *  - `resignAccountingResponse` re-signs the server's Accounting-Response (computed over the
 *    authenticator dancegate sent) against the authenticator the peer sent.
 *
 * Failures carry a `problem` that says what RFC 6613 §2.6.4 asks of the connection:
 *  - 'malformed' (bad lengths, attributes that do not fill the packet) and 'unauthenticated' (a
 *    Request/Response Authenticator or Message-Authenticator that does not verify, or a missing
 *    one where it is required): "silently discard and close the connection";
 *  - 'refused' (a code not accepted in that direction, or a packet dancegate will not rewrite: a
 *    malformed sub-attribute list in a Vendor-Specific of the identity's vendor, a rewrite over the
 *    size limit): the packet is dropped; RFC 6613 lets the connection stay open for a well-formed
 *    but unexpected packet.
 *
 * The identity attribute goes last, and a Message-Authenticator first (the position recommended
 * since the BlastRADIUS attack, CVE-2024-3596), in every packet dancegate rewrites.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** RADIUS packet codes (IANA "Packet Type Codes"). */
export const RADIUS_CODE = {
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
  /** RFC 7930 §4: a response saying a request could not be handled (for example, its answer would be too big). */
  PROTOCOL_ERROR: 52,
} as const;

const CODE_NAMES: ReadonlyMap<number, string> = new Map([
  [RADIUS_CODE.ACCESS_REQUEST, 'Access-Request'],
  [RADIUS_CODE.ACCESS_ACCEPT, 'Access-Accept'],
  [RADIUS_CODE.ACCESS_REJECT, 'Access-Reject'],
  [RADIUS_CODE.ACCOUNTING_REQUEST, 'Accounting-Request'],
  [RADIUS_CODE.ACCOUNTING_RESPONSE, 'Accounting-Response'],
  [RADIUS_CODE.ACCESS_CHALLENGE, 'Access-Challenge'],
  [RADIUS_CODE.STATUS_SERVER, 'Status-Server'],
  [RADIUS_CODE.STATUS_CLIENT, 'Status-Client'],
  [RADIUS_CODE.DISCONNECT_REQUEST, 'Disconnect-Request'],
  [RADIUS_CODE.DISCONNECT_ACK, 'Disconnect-ACK'],
  [RADIUS_CODE.DISCONNECT_NAK, 'Disconnect-NAK'],
  [RADIUS_CODE.COA_REQUEST, 'CoA-Request'],
  [RADIUS_CODE.COA_ACK, 'CoA-ACK'],
  [RADIUS_CODE.COA_NAK, 'CoA-NAK'],
  [RADIUS_CODE.PROTOCOL_ERROR, 'Protocol-Error'],
]);

/** "Access-Request", …, or "code 99" for a code without a name here. */
export function codeName(code: number): string {
  return CODE_NAMES.get(code) ?? `code ${code}`;
}

/** Attribute types this module knows by name. */
export const RADIUS_ATTRIBUTE = {
  USER_NAME: 1,
  USER_PASSWORD: 2,
  VENDOR_SPECIFIC: 26,
  EAP_MESSAGE: 79,
  MESSAGE_AUTHENTICATOR: 80,
} as const;

/** Code(1) Identifier(1) Length(2) Authenticator(16). */
export const RADIUS_HEADER_BYTES = 20;
export const RADIUS_AUTHENTICATOR_BYTES = 16;
/** RFC 2865 §3: the largest packet over UDP, and the default limit here. */
export const RADIUS_CLASSIC_MAX_PACKET_BYTES = 4096;
/** RFC 7930: over TCP the Length field may use its whole range. */
export const RADIUS_MAX_PACKET_BYTES = 65535;
/** An attribute's Length byte covers its 2-byte header: at most 253 bytes of value. */
export const MAX_ATTRIBUTE_VALUE_BYTES = 253;
export const MESSAGE_AUTHENTICATOR_VALUE_BYTES = 16;
/** Vendor-Id(4) before the sub-attributes of a Vendor-Specific value (RFC 2865 §5.26). */
const VENDOR_ID_BYTES = 4;
/** IANA's example enterprise number (RFC 5612), used by dancegate's default identity attribute. */
export const DANCEGATE_VENDOR_ID = 32473;
/** Vendor type of `Dancegate-Client-Name` (string) under DANCEGATE_VENDOR_ID. */
export const DANCEGATE_CLIENT_NAME_TYPE = 1;

/** Where the verified name goes: a sub-attribute of a Vendor-Specific (26) attribute, or a plain attribute. */
export type IdentityAttribute = { readonly kind: 'vsa'; readonly vendorId: number; readonly vendorType: number } | { readonly kind: 'attribute'; readonly type: number };

export const DEFAULT_IDENTITY_ATTRIBUTE: IdentityAttribute = Object.freeze({ kind: 'vsa', vendorId: DANCEGATE_VENDOR_ID, vendorType: DANCEGATE_CLIENT_NAME_TYPE });

export interface RadiusAttribute {
  readonly type: number;
  readonly value: Buffer;
}

export interface RadiusPacket {
  readonly code: number;
  readonly identifier: number;
  /** 16 bytes. */
  readonly authenticator: Buffer;
  /** In wire order, values copied out of the packet. */
  readonly attributes: readonly RadiusAttribute[];
}

export type RadiusFrame = 'incomplete' | { readonly status: 'complete'; readonly bytes: Buffer } | { readonly status: 'invalid'; readonly reason: string };

export type PacketParse = { readonly ok: true; readonly packet: RadiusPacket } | { readonly ok: false; readonly reason: string };

/** The shared secret: a string is used as its UTF-8 bytes. */
export type RadiusSecret = string | Uint8Array;

/** What a failure asks of the connection (RFC 6613 §2.6.4): see the module comment. */
export type RadiusProblem = 'malformed' | 'unauthenticated' | 'refused';

export interface RewriteOptions {
  readonly secret: RadiusSecret;
  readonly identity: IdentityAttribute;
  /** The verified DANE name, written as the identity attribute's value (UTF-8). */
  readonly name: string;
  /** A rewritten packet over this size is refused, never truncated. Default 4096; 20 to 65535. */
  readonly maxPacketBytes?: number;
}

export type RewriteResult =
  | {
      readonly ok: true;
      /** The packet to send on; for kind 'passed', the very bytes given. */
      readonly bytes: Buffer;
      readonly kind: 'rewritten' | 'passed';
      /** Accounting-Request only: the Request Authenticator the peer sent (its Accounting-Response must be signed over it). */
      readonly originalAuthenticator?: Buffer;
      /** How many copies of the identity attribute the peer's packet carried (all removed). */
      readonly removedCopies: number;
    }
  | { readonly ok: false; readonly reason: string; readonly problem: RadiusProblem };

export interface ResignOptions {
  readonly secret: RadiusSecret;
  /** The Request Authenticator of the Accounting-Request dancegate sent to the server. */
  readonly ourRequestAuthenticator: Uint8Array;
  /** The Request Authenticator of the Accounting-Request the peer sent to dancegate. */
  readonly clientRequestAuthenticator: Uint8Array;
}

export type ResignResult = { readonly ok: true; readonly bytes: Buffer } | { readonly ok: false; readonly reason: string; readonly problem: RadiusProblem };

export type StripResult = { readonly ok: true; readonly attributes: RadiusAttribute[]; readonly removedCopies: number } | { readonly ok: false; readonly reason: string };

export type VendorSpecificParse = { readonly ok: true; readonly vendorId: number; readonly subAttributes: RadiusAttribute[] } | { readonly ok: false; readonly reason: string };

/**
 * Which Authenticator field value the Message-Authenticator's HMAC-MD5 covers:
 *  - 'packet': the packet's own Request Authenticator (Access-Request, RFC 3579 §3.2; Status-Server
 *    and Status-Client, RFC 5997 §3);
 *  - 'zero': sixteen zero bytes, the MA being computed before the Request Authenticator
 *    (Accounting-Request, CoA-Request, Disconnect-Request: RFC 5176 §3.5 and the practice of
 *    FreeRADIUS and hostapd for accounting);
 *  - 'request': the Request Authenticator of the request being answered (every response).
 */
export type MessageAuthenticatorBasis = 'packet' | 'zero' | 'request';

export type MessageAuthenticatorCheck = { readonly ok: true; readonly present: boolean } | { readonly ok: false; readonly reason: string; readonly problem: RadiusProblem };

// ---------------------------------------------------------------------------------------------
// Small helpers

const ZERO_AUTHENTICATOR = Buffer.alloc(RADIUS_AUTHENTICATOR_BYTES);

/** "Access-Request id 7": how reasons name a packet. */
const packetLabel = (packet: { readonly code: number; readonly identifier: number }): string => `${codeName(packet.code)} id ${packet.identifier}`;
const invalidFrame = (reason: string): RadiusFrame => ({ status: 'invalid', reason });

function checkMaxBytes(what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < RADIUS_HEADER_BYTES || value > RADIUS_MAX_PACKET_BYTES) {
    throw new RangeError(`${what} must be an integer from ${RADIUS_HEADER_BYTES} to ${RADIUS_MAX_PACKET_BYTES}, got ${String(value)}`);
  }
  return value;
}

function secretBytes(secret: RadiusSecret): Buffer {
  if (typeof secret === 'string') return Buffer.from(secret, 'utf8');
  if (secret instanceof Uint8Array) return Buffer.from(secret);
  throw new RangeError('the shared secret must be a string or bytes');
}

function checkAuthenticatorArgument(what: string, value: unknown): Buffer {
  if (!(value instanceof Uint8Array) || value.length !== RADIUS_AUTHENTICATOR_BYTES) {
    throw new RangeError(`${what} must be ${RADIUS_AUTHENTICATOR_BYTES} bytes`);
  }
  return Buffer.from(value);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------------------------
// Framing and parsing

/**
 * Frames the packet at the start of `buffered` (RFC 6613 §2.6.4: by its Length field). 'complete'
 * gives a view of exactly the packet's bytes (what follows is the next packet); 'invalid' when the
 * Length field is under 20 or over `maxBytes`, which RFC 6613 says must close the connection.
 * Only the Length field is read: the rest is `parsePacket`'s job. Throws RangeError only for a
 * `maxBytes` that is not an integer from 20 to 65535.
 */
export function framePacket(buffered: Buffer, maxBytes: number): RadiusFrame {
  const max = checkMaxBytes('maxBytes', maxBytes);
  if (buffered.length < 4) return 'incomplete';
  const length = buffered.readUInt16BE(2);
  if (length < RADIUS_HEADER_BYTES) return invalidFrame(`RADIUS Length field is ${length}, less than the ${RADIUS_HEADER_BYTES}-byte header`);
  if (length > max) return invalidFrame(`RADIUS Length field is ${length}, over the ${max}-byte limit`);
  if (buffered.length < length) return 'incomplete';
  return { status: 'complete', bytes: buffered.subarray(0, length) };
}

/** An attribute as found in a packet: a view of its value and where its header starts. */
interface LocatedAttribute {
  readonly type: number;
  readonly value: Buffer;
  readonly offset: number;
}

interface WalkedPacket {
  readonly code: number;
  readonly identifier: number;
  readonly authenticator: Buffer;
  readonly attributes: readonly LocatedAttribute[];
  /** Offset of the Message-Authenticator's value (its header + 2), if there is one. */
  readonly messageAuthenticatorAt: number | undefined;
}

type Walk = { readonly ok: true; readonly packet: WalkedPacket } | { readonly ok: false; readonly reason: string };

/** Checks the structure and lists the attributes as views into `bytes`. Never throws. */
function walkPacket(bytes: unknown): Walk {
  if (!(bytes instanceof Uint8Array)) return { ok: false, reason: 'a RADIUS packet must be given as bytes' };
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < RADIUS_HEADER_BYTES) return { ok: false, reason: `RADIUS packet is ${buf.length} bytes, less than the ${RADIUS_HEADER_BYTES}-byte header` };
  const length = buf.readUInt16BE(2);
  if (length !== buf.length) return { ok: false, reason: `RADIUS Length field says ${length} bytes but the packet is ${buf.length} bytes` };
  const attributes: LocatedAttribute[] = [];
  let messageAuthenticatorAt: number | undefined;
  let o = RADIUS_HEADER_BYTES;
  while (o < length) {
    const type = buf.readUInt8(o);
    if (length - o < 2) return { ok: false, reason: `1 trailing byte at offset ${o} cannot hold an attribute` };
    const attrLength = buf.readUInt8(o + 1);
    if (attrLength < 2) return { ok: false, reason: `attribute ${type} at offset ${o} has Length ${attrLength} (an attribute is at least 2 bytes)` };
    if (o + attrLength > length) {
      return { ok: false, reason: `attribute ${type} at offset ${o} has Length ${attrLength} and overruns the packet by ${o + attrLength - length} byte(s)` };
    }
    if (type === RADIUS_ATTRIBUTE.MESSAGE_AUTHENTICATOR) {
      if (attrLength - 2 !== MESSAGE_AUTHENTICATOR_VALUE_BYTES) {
        return { ok: false, reason: `Message-Authenticator at offset ${o} has a ${attrLength - 2}-byte value (it must be ${MESSAGE_AUTHENTICATOR_VALUE_BYTES})` };
      }
      if (messageAuthenticatorAt !== undefined) {
        return { ok: false, reason: `Message-Authenticator appears more than once (offsets ${messageAuthenticatorAt - 2} and ${o})` };
      }
      messageAuthenticatorAt = o + 2;
    }
    attributes.push({ type, value: buf.subarray(o + 2, o + attrLength), offset: o });
    o += attrLength;
  }
  return {
    ok: true,
    packet: { code: buf.readUInt8(0), identifier: buf.readUInt8(1), authenticator: buf.subarray(4, RADIUS_HEADER_BYTES), attributes, messageAuthenticatorAt },
  };
}

/**
 * Parses one whole packet (as framed by `framePacket`): the Length field must equal the byte
 * count, attributes must be at least 2 bytes long and fill the packet exactly, and a
 * Message-Authenticator (RFC 3579: at most one, 16 bytes of value) must be well-formed. The code is
 * not checked here. Never throws on any input.
 */
export function parsePacket(bytes: Buffer): PacketParse {
  const walked = walkPacket(bytes);
  if (!walked.ok) return walked;
  const p = walked.packet;
  return {
    ok: true,
    packet: {
      code: p.code,
      identifier: p.identifier,
      authenticator: Buffer.from(p.authenticator),
      attributes: p.attributes.map((a) => ({ type: a.type, value: Buffer.from(a.value) })),
    },
  };
}

/** Bytes a list of attributes takes on the wire. */
function attributesBytes(attributes: readonly RadiusAttribute[]): number {
  let n = 0;
  for (const a of attributes) n += 2 + a.value.length;
  return n;
}

/** Writes a packet whose fields are known to be in range. */
function writePacket(code: number, identifier: number, authenticator: Uint8Array, attributes: readonly RadiusAttribute[]): Buffer {
  const length = RADIUS_HEADER_BYTES + attributesBytes(attributes);
  const out = Buffer.alloc(length);
  out.writeUInt8(code, 0);
  out.writeUInt8(identifier, 1);
  out.writeUInt16BE(length, 2);
  out.set(authenticator, 4);
  let o = RADIUS_HEADER_BYTES;
  for (const a of attributes) {
    out.writeUInt8(a.type, o);
    out.writeUInt8(2 + a.value.length, o + 1);
    out.set(a.value, o + 2);
    o += 2 + a.value.length;
  }
  return out;
}

function checkByte(what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 255) throw new RangeError(`${what} must be an integer from 0 to 255, got ${String(value)}`);
  return value;
}

/**
 * Encodes a packet as given (no authenticator or Message-Authenticator is computed: see
 * `signMessageAuthenticator`, `accountingRequestAuthenticator`, `responseAuthenticator`). Throws
 * RangeError for a code, identifier or attribute type outside 0–255, an authenticator that is not
 * 16 bytes, an attribute value over 253 bytes, or a packet over 65535 bytes.
 */
export function encodePacket(packet: RadiusPacket): Buffer {
  const code = checkByte('code', packet.code);
  const identifier = checkByte('identifier', packet.identifier);
  const authenticator = checkAuthenticatorArgument('authenticator', packet.authenticator);
  packet.attributes.forEach((a, i) => {
    checkByte(`attribute ${i} type`, a.type);
    if (!(a.value instanceof Uint8Array)) throw new RangeError(`attribute ${i} (type ${a.type}) value must be bytes`);
    if (a.value.length > MAX_ATTRIBUTE_VALUE_BYTES) throw new RangeError(`attribute ${i} (type ${a.type}) value is ${a.value.length} bytes, over ${MAX_ATTRIBUTE_VALUE_BYTES}`);
  });
  const length = RADIUS_HEADER_BYTES + attributesBytes(packet.attributes);
  if (length > RADIUS_MAX_PACKET_BYTES) throw new RangeError(`packet would be ${length} bytes, over ${RADIUS_MAX_PACKET_BYTES}`);
  return writePacket(code, identifier, authenticator, packet.attributes);
}

// ---------------------------------------------------------------------------------------------
// Authenticators

export function messageAuthenticatorBasis(code: number): MessageAuthenticatorBasis {
  switch (code) {
    case RADIUS_CODE.ACCESS_REQUEST:
    case RADIUS_CODE.STATUS_SERVER:
    case RADIUS_CODE.STATUS_CLIENT:
      return 'packet';
    case RADIUS_CODE.ACCOUNTING_REQUEST:
    case RADIUS_CODE.COA_REQUEST:
    case RADIUS_CODE.DISCONNECT_REQUEST:
      return 'zero';
    default:
      return 'request';
  }
}

/** The 16 bytes the Authenticator field holds while the Message-Authenticator is computed. */
function basisAuthenticator(packet: WalkedPacket, requestAuthenticator: Uint8Array | undefined): Buffer {
  switch (messageAuthenticatorBasis(packet.code)) {
    case 'packet':
      return Buffer.from(packet.authenticator);
    case 'zero':
      return ZERO_AUTHENTICATOR;
    case 'request':
      if (requestAuthenticator === undefined) throw new RangeError(`the Message-Authenticator of a ${codeName(packet.code)} covers the request's authenticator: pass it`);
      return checkAuthenticatorArgument('requestAuthenticator', requestAuthenticator);
  }
}

/** HMAC-MD5 over a copy of `bytes` with the MA value zeroed and the basis authenticator in place. */
function messageAuthenticatorOf(bytes: Buffer, packet: WalkedPacket, maAt: number, secret: Buffer, requestAuthenticator: Uint8Array | undefined): Buffer {
  const copy = Buffer.from(bytes);
  copy.set(basisAuthenticator(packet, requestAuthenticator), 4);
  copy.fill(0, maAt, maAt + MESSAGE_AUTHENTICATOR_VALUE_BYTES);
  return createHmac('md5', secret).update(copy).digest();
}

/**
 * Checks the Message-Authenticator of a packet, if it has one (RFC 3579 §3.2, RFC 5176 §3.5,
 * RFC 5997 §3). `requestAuthenticator` is needed for responses (basis 'request') and throws
 * RangeError when missing there; hostile bytes never throw: they give ok: false.
 */
export function verifyMessageAuthenticator(bytes: Buffer, secret: RadiusSecret, requestAuthenticator?: Uint8Array): MessageAuthenticatorCheck {
  const walked = walkPacket(bytes);
  if (!walked.ok) return { ok: false, reason: walked.reason, problem: 'malformed' };
  return checkWalkedMessageAuthenticator(bytes, walked.packet, secretBytes(secret), requestAuthenticator);
}

function checkWalkedMessageAuthenticator(bytes: Buffer, packet: WalkedPacket, secret: Buffer, requestAuthenticator: Uint8Array | undefined): MessageAuthenticatorCheck {
  const at = packet.messageAuthenticatorAt;
  if (at === undefined) return { ok: true, present: false };
  const expected = messageAuthenticatorOf(bytes, packet, at, secret, requestAuthenticator);
  if (!sameBytes(expected, bytes.subarray(at, at + MESSAGE_AUTHENTICATOR_VALUE_BYTES))) {
    return { ok: false, reason: `${packetLabel(packet)}: Message-Authenticator does not verify with the shared secret`, problem: 'unauthenticated' };
  }
  return { ok: true, present: true };
}

/**
 * Returns a copy of `bytes` with its Message-Authenticator computed (whatever its value was). The
 * Authenticator field is left as it is: for an Accounting-Request, CoA-Request or
 * Disconnect-Request compute the Request Authenticator afterwards (RFC 5176 §3.5), for a response
 * the Response Authenticator. Throws RangeError when `bytes` is not a well-formed packet with a
 * Message-Authenticator, or a response's `requestAuthenticator` is missing.
 */
export function signMessageAuthenticator(bytes: Buffer, secret: RadiusSecret, requestAuthenticator?: Uint8Array): Buffer {
  const walked = walkPacket(bytes);
  if (!walked.ok) throw new RangeError(`cannot sign: ${walked.reason}`);
  const at = walked.packet.messageAuthenticatorAt;
  if (at === undefined) throw new RangeError('cannot sign: the packet has no Message-Authenticator');
  const out = Buffer.from(bytes);
  out.set(messageAuthenticatorOf(bytes, walked.packet, at, secretBytes(secret), requestAuthenticator), at);
  return out;
}

/** MD5(Code | Identifier | Length | `middle` | Attributes | secret), over `bytes` (at least 20 bytes). */
function md5Authenticator(bytes: Uint8Array, middle: Uint8Array, secret: Buffer): Buffer {
  if (bytes.length < RADIUS_HEADER_BYTES) throw new RangeError(`a RADIUS packet is at least ${RADIUS_HEADER_BYTES} bytes, got ${bytes.length}`);
  return createHash('md5').update(bytes.subarray(0, 4)).update(middle).update(bytes.subarray(RADIUS_HEADER_BYTES)).update(secret).digest();
}

/**
 * The Request Authenticator of an Accounting-Request (RFC 2866 §3; also CoA-Request and
 * Disconnect-Request, RFC 5176 §3.5): MD5(Code | Identifier | Length | 16 zero bytes | Attributes |
 * secret). The Authenticator field of `bytes` is ignored.
 */
export function accountingRequestAuthenticator(bytes: Uint8Array, secret: RadiusSecret): Buffer {
  return md5Authenticator(bytes, ZERO_AUTHENTICATOR, secretBytes(secret));
}

/**
 * The Response Authenticator (RFC 2865 §3, RFC 2866 §3): MD5(Code | Identifier | Length | the
 * request's Request Authenticator | Attributes | secret). The Authenticator field of `bytes` is ignored.
 */
export function responseAuthenticator(bytes: Uint8Array, secret: RadiusSecret, requestAuthenticator: Uint8Array): Buffer {
  return md5Authenticator(bytes, checkAuthenticatorArgument('requestAuthenticator', requestAuthenticator), secretBytes(secret));
}

// ---------------------------------------------------------------------------------------------
// The identity attribute

/** Types a plain identity attribute may not take, with the reason. */
const FORBIDDEN_IDENTITY_TYPES: ReadonlyMap<number, string> = new Map([
  [RADIUS_ATTRIBUTE.USER_PASSWORD, 'User-Password (2) is encrypted with the shared secret, not plain text'],
  [RADIUS_ATTRIBUTE.VENDOR_SPECIFIC, 'Vendor-Specific (26) is a container: use { vendorId, vendorType }'],
  [RADIUS_ATTRIBUTE.EAP_MESSAGE, 'EAP-Message (79) carries EAP, not a name'],
  [RADIUS_ATTRIBUTE.MESSAGE_AUTHENTICATOR, 'Message-Authenticator (80) is the packet signature'],
]);

/** A reason the identity attribute cannot be used, or undefined when it can. */
export function checkIdentityAttribute(identity: IdentityAttribute): string | undefined {
  const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
  if (identity.kind === 'vsa') {
    // RFC 2865 §5.26: the high-order octet is 0, the low three an SMI Private Enterprise Code.
    if (!isInt(identity.vendorId) || identity.vendorId < 1 || identity.vendorId > 0xffffff) return `vendorId must be an integer from 1 to 16777215, got ${String(identity.vendorId)}`;
    if (!isInt(identity.vendorType) || identity.vendorType < 1 || identity.vendorType > 255) return `vendorType must be an integer from 1 to 255, got ${String(identity.vendorType)}`;
    return undefined;
  }
  if (identity.kind === 'attribute') {
    if (!isInt(identity.type) || identity.type < 1 || identity.type > 255) return `type must be an integer from 1 to 255, got ${String(identity.type)}`;
    const forbidden = FORBIDDEN_IDENTITY_TYPES.get(identity.type);
    if (forbidden !== undefined) return `type ${identity.type} cannot carry the identity: ${forbidden}`;
    // RFC 6929 §2: types 241-246 have the extended formats, which a plain attribute would break.
    if (identity.type >= 241 && identity.type <= 246) return `type ${identity.type} is an RFC 6929 extended attribute (241-246), not a plain one`;
    return undefined;
  }
  return 'identity attribute must be of kind "vsa" or "attribute"';
}

function describeIdentity(identity: IdentityAttribute): string {
  return identity.kind === 'vsa' ? `vendor ${identity.vendorId} type ${identity.vendorType}` : `attribute ${identity.type}`;
}

/**
 * The attribute carrying `name` (UTF-8): a Vendor-Specific holding one sub-attribute, or a plain
 * attribute. Throws RangeError for an unusable identity attribute, an empty or ill-formed name, or
 * a name that does not fit in one attribute (247 bytes in a Vendor-Specific, 253 in a plain one):
 * it is never truncated.
 */
export function buildIdentityAttribute(identity: IdentityAttribute, name: string): RadiusAttribute {
  const problem = checkIdentityAttribute(identity);
  if (problem !== undefined) throw new RangeError(`identity attribute: ${problem}`);
  if (typeof name !== 'string' || name === '') throw new RangeError('identity name must be a non-empty string');
  const value = Buffer.from(name, 'utf8');
  if (value.toString('utf8') !== name) throw new RangeError('identity name is not well-formed Unicode');
  if (identity.kind === 'attribute') {
    if (value.length > MAX_ATTRIBUTE_VALUE_BYTES) throw new RangeError(`identity name is ${value.length} bytes: attribute ${identity.type} holds at most ${MAX_ATTRIBUTE_VALUE_BYTES}`);
    return { type: identity.type, value };
  }
  const room = MAX_ATTRIBUTE_VALUE_BYTES - VENDOR_ID_BYTES - 2;
  if (value.length > room) throw new RangeError(`identity name is ${value.length} bytes: a Vendor-Specific sub-attribute holds at most ${room}`);
  const vsa = Buffer.alloc(VENDOR_ID_BYTES + 2 + value.length);
  vsa.writeUInt32BE(identity.vendorId, 0);
  vsa.writeUInt8(identity.vendorType, 4);
  vsa.writeUInt8(2 + value.length, 5);
  vsa.set(value, 6);
  return { type: RADIUS_ATTRIBUTE.VENDOR_SPECIFIC, value: vsa };
}

/**
 * Parses a Vendor-Specific value in the RFC 2865 §5.26 recommended form: Vendor-Id(4), then
 * sub-attributes Vendor type(1) Vendor length(1, at least 2, covering itself) that fill the value
 * exactly. Values are copied. Never throws.
 */
export function parseVendorSpecific(value: Uint8Array): VendorSpecificParse {
  const v = Buffer.from(value);
  if (v.length < VENDOR_ID_BYTES) return { ok: false, reason: `Vendor-Specific value is ${v.length} bytes, too short for its 4-byte Vendor-Id` };
  const vendorId = v.readUInt32BE(0);
  const subAttributes: RadiusAttribute[] = [];
  let o = VENDOR_ID_BYTES;
  while (o < v.length) {
    const type = v.readUInt8(o);
    if (v.length - o < 2) return { ok: false, reason: `Vendor-Specific of vendor ${vendorId}: 1 trailing byte at offset ${o} cannot hold a sub-attribute` };
    const length = v.readUInt8(o + 1);
    if (length < 2) return { ok: false, reason: `Vendor-Specific of vendor ${vendorId}: sub-attribute ${type} at offset ${o} has length ${length} (at least 2)` };
    if (o + length > v.length) return { ok: false, reason: `Vendor-Specific of vendor ${vendorId}: sub-attribute ${type} at offset ${o} has length ${length} and overruns the value` };
    subAttributes.push({ type, value: Buffer.from(v.subarray(o + 2, o + length)) });
    o += length;
  }
  return { ok: true, vendorId, subAttributes };
}

/**
 * Removes every copy of the identity attribute. For a plain attribute: every attribute of that
 * type. For a vendor attribute: inside every Vendor-Specific of that vendor, every sub-attribute of
 * that vendor type (a Vendor-Specific left empty is dropped, one with other sub-attributes is
 * rebuilt with them in order). Fails closed: a Vendor-Specific too short to name its vendor, or one
 * of the identity's vendor whose sub-attributes do not parse, refuses the whole list, since the
 * server might read a name out of it. Other vendors' Vendor-Specific attributes are kept as they are.
 */
export function stripIdentity(attributes: readonly RadiusAttribute[], identity: IdentityAttribute): StripResult {
  const problem = checkIdentityAttribute(identity);
  if (problem !== undefined) throw new RangeError(`identity attribute: ${problem}`);
  const kept: RadiusAttribute[] = [];
  let removedCopies = 0;
  for (const a of attributes) {
    if (identity.kind === 'attribute') {
      if (a.type === identity.type) removedCopies++;
      else kept.push(a);
      continue;
    }
    if (a.type !== RADIUS_ATTRIBUTE.VENDOR_SPECIFIC) {
      kept.push(a);
      continue;
    }
    if (a.value.length < VENDOR_ID_BYTES) return { ok: false, reason: `a Vendor-Specific of ${a.value.length} bytes cannot name its vendor (it might hide ${describeIdentity(identity)})` };
    if (a.value.readUInt32BE(0) !== identity.vendorId) {
      kept.push(a);
      continue;
    }
    const vsa = parseVendorSpecific(a.value);
    if (!vsa.ok) return { ok: false, reason: `${vsa.reason} (refused: it might hide ${describeIdentity(identity)})` };
    const rest = vsa.subAttributes.filter((s) => s.type !== identity.vendorType);
    const removedHere = vsa.subAttributes.length - rest.length;
    removedCopies += removedHere;
    if (removedHere === 0) kept.push(a);
    else if (rest.length > 0) {
      const value = Buffer.alloc(VENDOR_ID_BYTES + attributesBytes(rest));
      value.writeUInt32BE(identity.vendorId, 0);
      let o = VENDOR_ID_BYTES;
      for (const s of rest) {
        value.writeUInt8(s.type, o);
        value.writeUInt8(2 + s.value.length, o + 1);
        value.set(s.value, o + 2);
        o += 2 + s.value.length;
      }
      kept.push({ type: RADIUS_ATTRIBUTE.VENDOR_SPECIFIC, value });
    }
  }
  return { ok: true, attributes: kept, removedCopies };
}

// ---------------------------------------------------------------------------------------------
// Rewriting

/** Responses a NAS sends to requests the server started (RFC 5176; RFC 7930's Protocol-Error): passed untouched. */
const CLIENT_RESPONSE_CODES: ReadonlySet<number> = new Set([RADIUS_CODE.DISCONNECT_ACK, RADIUS_CODE.DISCONNECT_NAK, RADIUS_CODE.COA_ACK, RADIUS_CODE.COA_NAK, RADIUS_CODE.PROTOCOL_ERROR]);

const failure = (reason: string, problem: RadiusProblem): { ok: false; reason: string; problem: RadiusProblem } => ({ ok: false, reason, problem });

/** The peer's attributes without its Message-Authenticator and identity copies, or a refusal. */
function strippedAttributes(packet: WalkedPacket, identity: IdentityAttribute): StripResult {
  const withoutMa = packet.attributes.filter((a) => a.type !== RADIUS_ATTRIBUTE.MESSAGE_AUTHENTICATOR).map((a) => ({ type: a.type, value: a.value }));
  return stripIdentity(withoutMa, identity);
}

function sizeRefusal(packet: WalkedPacket, size: number, max: number): { ok: false; reason: string; problem: RadiusProblem } {
  return failure(`${packetLabel(packet)}: the rewritten packet would be ${size} bytes, over the ${max}-byte limit`, 'refused');
}

const MA_PLACEHOLDER: RadiusAttribute = Object.freeze({ type: RADIUS_ATTRIBUTE.MESSAGE_AUTHENTICATOR, value: Buffer.alloc(MESSAGE_AUTHENTICATOR_VALUE_BYTES) });
/** Where the value of a Message-Authenticator written first in the attributes starts. */
const FIRST_MA_VALUE_AT = RADIUS_HEADER_BYTES + 2;

/**
 * Rewrites a request the RADSEC peer sent, for the server:
 *  - Access-Request: its Message-Authenticator, if any, must verify; identity copies are removed,
 *    the identity attribute added, and a Message-Authenticator (added when absent) computed. The
 *    Request Authenticator is kept, so the server's answer (and User-Password) need no change.
 *  - Accounting-Request: its Request Authenticator and Message-Authenticator (if any) must verify;
 *    copies removed, identity added, the Message-Authenticator (only if it had one) and the Request
 *    Authenticator computed again. `originalAuthenticator` is the peer's, for
 *    `resignAccountingResponse`.
 *  - Status-Server: a Message-Authenticator is required (RFC 5997 §3) and must verify; the packet is
 *    passed byte for byte.
 *  - CoA-ACK/NAK, Disconnect-ACK/NAK, Protocol-Error (answers to requests the server sent): passed.
 *  - Any other code: refused.
 * Never throws on any `bytes`; throws RangeError for unusable options (identity attribute, name,
 * maxPacketBytes), which are configuration, not traffic.
 */
export function rewriteRequest(bytes: Buffer, options: RewriteOptions): RewriteResult {
  const max = checkMaxBytes('maxPacketBytes', options.maxPacketBytes ?? RADIUS_CLASSIC_MAX_PACKET_BYTES);
  const identityAttribute = buildIdentityAttribute(options.identity, options.name);
  const secret = secretBytes(options.secret);
  const walked = walkPacket(bytes);
  if (!walked.ok) return failure(walked.reason, 'malformed');
  const packet = walked.packet;
  const what = packetLabel(packet);

  switch (packet.code) {
    case RADIUS_CODE.ACCESS_REQUEST: {
      const ma = checkWalkedMessageAuthenticator(bytes, packet, secret, undefined);
      if (!ma.ok) return ma;
      const stripped = strippedAttributes(packet, options.identity);
      if (!stripped.ok) return failure(`${what}: ${stripped.reason}`, 'refused');
      const attributes = [MA_PLACEHOLDER, ...stripped.attributes, identityAttribute];
      const size = RADIUS_HEADER_BYTES + attributesBytes(attributes);
      if (size > max) return sizeRefusal(packet, size, max);
      const out = writePacket(packet.code, packet.identifier, packet.authenticator, attributes);
      out.set(createHmac('md5', secret).update(out).digest(), FIRST_MA_VALUE_AT); // the MA value is zero and the Request Authenticator in place
      return { ok: true, bytes: out, kind: 'rewritten', removedCopies: stripped.removedCopies };
    }
    case RADIUS_CODE.ACCOUNTING_REQUEST: {
      if (!sameBytes(md5Authenticator(bytes, ZERO_AUTHENTICATOR, secret), packet.authenticator)) {
        return failure(`${what}: Request Authenticator does not verify with the shared secret (RFC 2866)`, 'unauthenticated');
      }
      const ma = checkWalkedMessageAuthenticator(bytes, packet, secret, undefined);
      if (!ma.ok) return ma;
      const stripped = strippedAttributes(packet, options.identity);
      if (!stripped.ok) return failure(`${what}: ${stripped.reason}`, 'refused');
      const attributes = ma.present ? [MA_PLACEHOLDER, ...stripped.attributes, identityAttribute] : [...stripped.attributes, identityAttribute];
      const size = RADIUS_HEADER_BYTES + attributesBytes(attributes);
      if (size > max) return sizeRefusal(packet, size, max);
      const out = writePacket(packet.code, packet.identifier, ZERO_AUTHENTICATOR, attributes);
      if (ma.present) out.set(createHmac('md5', secret).update(out).digest(), FIRST_MA_VALUE_AT); // RFC 5176 §3.5: MA first, over a zero authenticator
      out.set(md5Authenticator(out, ZERO_AUTHENTICATOR, secret), 4);
      return { ok: true, bytes: out, kind: 'rewritten', originalAuthenticator: Buffer.from(packet.authenticator), removedCopies: stripped.removedCopies };
    }
    case RADIUS_CODE.STATUS_SERVER: {
      if (packet.messageAuthenticatorAt === undefined) return failure(`${what}: no Message-Authenticator (RFC 5997 requires one)`, 'unauthenticated');
      const ma = checkWalkedMessageAuthenticator(bytes, packet, secret, undefined);
      if (!ma.ok) return ma;
      return passedUntouched(bytes, packet, options.identity, what);
    }
    default:
      if (CLIENT_RESPONSE_CODES.has(packet.code)) return passedUntouched(bytes, packet, options.identity, what);
      return failure(`${what}: this code is not accepted from a RADSEC client`, 'refused');
  }
}

/**
 * A packet passed byte for byte (Status-Server, answers to server-initiated requests) must not carry
 * the identity attribute: it is not rewritten, so a copy the peer put there would reach the server
 * as if dancegate had vouched for it. Such a packet is refused (dropped), not passed.
 */
function passedUntouched(bytes: Buffer, packet: WalkedPacket, identity: IdentityAttribute, what: string): RewriteResult {
  const stripped = strippedAttributes(packet, identity);
  if (!stripped.ok) return failure(`${what}: ${stripped.reason}`, 'refused');
  if (stripped.removedCopies > 0) return failure(`${what}: carries the identity attribute, which only dancegate sets (a packet passed untouched cannot have it removed)`, 'refused');
  return { ok: true, bytes, kind: 'passed', removedCopies: 0 };
}

/**
 * Re-signs the server's Accounting-Response for the peer. The server signed it over the Request
 * Authenticator dancegate sent: its Response Authenticator (and Message-Authenticator, if any) must
 * verify against `ourRequestAuthenticator` (else 'unauthenticated'); both are then computed again
 * over `clientRequestAuthenticator`, attributes untouched. Never throws on any `responseBytes`;
 * throws RangeError when an authenticator option is not 16 bytes.
 */
export function resignAccountingResponse(responseBytes: Buffer, options: ResignOptions): ResignResult {
  const ours = checkAuthenticatorArgument('ourRequestAuthenticator', options.ourRequestAuthenticator);
  const clients = checkAuthenticatorArgument('clientRequestAuthenticator', options.clientRequestAuthenticator);
  const secret = secretBytes(options.secret);
  const walked = walkPacket(responseBytes);
  if (!walked.ok) return failure(walked.reason, 'malformed');
  const packet = walked.packet;
  const what = packetLabel(packet);
  if (packet.code !== RADIUS_CODE.ACCOUNTING_RESPONSE) return failure(`${what}: only an Accounting-Response is re-signed`, 'refused');
  if (!sameBytes(md5Authenticator(responseBytes, ours, secret), packet.authenticator)) {
    return failure(`${what}: Response Authenticator does not verify against the Accounting-Request dancegate sent`, 'unauthenticated');
  }
  const ma = checkWalkedMessageAuthenticator(responseBytes, packet, secret, ours);
  if (!ma.ok) return ma;
  const out = Buffer.from(responseBytes);
  const at = packet.messageAuthenticatorAt;
  if (at !== undefined) out.set(messageAuthenticatorOf(out, packet, at, secret, clients), at);
  out.set(md5Authenticator(out, clients, secret), 4);
  return { ok: true, bytes: out };
}
