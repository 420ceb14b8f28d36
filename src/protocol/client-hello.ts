/**
 * Parse a TLS ClientHello from the raw bytes a client sent, before node:tls
 * sees them (the caller unshifts every byte afterwards). We need SNI, ALPN,
 * supported_versions and the `dane_clientid` extension
 * (draft-ietf-dance-tls-clientid: `opaque ClientName<0..255>`), which
 * node:tls does not expose.
 *
 * Pure, incremental and strict: call it again with the whole buffer each
 * time more bytes arrive. It answers 'incomplete' until the complete
 * ClientHello handshake message has been received (reassembled across any
 * number of TLS records), 'invalid' with a short specific reason on the
 * first violation of RFC 8446 section 4.1.2 / 5.1, RFC 5246, RFC 6066 (SNI)
 * or RFC 7301 (ALPN), and never throws on any buffer content. Every length
 * is checked against its parent before it is used.
 *
 * Bounds: the handshake message may not exceed `maxBytes` (checked as soon
 * as its 4-byte header is seen), and the TLS records that carry it may not
 * exceed `maxBytes + 5` bytes in total (checked as soon as each record
 * header is seen), so an 'incomplete' answer always means at most
 * `maxBytes + 5` bytes are buffered.
 */

/** Our default extension type for dane_clientid (IANA has assigned none; Private Use range 65280-65535). */
export const DEFAULT_DANE_CLIENTID_TYPE = 65500;
/** Default limit for the whole ClientHello handshake message, 4-byte header included. */
export const DEFAULT_MAX_CLIENT_HELLO_BYTES = 16 * 1024;

export interface ClientHelloInfo {
  /** Bytes of the TLS records consumed to get the complete ClientHello (all of them must later be unshifted). */
  readonly recordBytes: number;
  /** ClientHello.legacy_version, e.g. 0x0303. */
  readonly legacyVersion: number;
  /** SNI host_name, lowercased; letters, digits, '-', '_', '.', 1..253 bytes, no empty label. */
  readonly serverName: string | undefined;
  /** ALPN protocol names in the client's order (bytes decoded as latin1, so they round-trip). */
  readonly alpn: readonly string[];
  /** supported_versions (43) in the client's order (GREASE values included); empty if absent. */
  readonly supportedVersions: readonly number[];
  /** 0x0304 is in supportedVersions. */
  readonly offersTls13: boolean;
  /** dane_clientid: name '' is the empty extension ("my name is in my certificate"); raw ASCII, not canonicalised. */
  readonly daneClientId: { readonly present: false } | { readonly present: true; readonly name: string };
  /** Every extension type in the order sent (GREASE included). */
  readonly extensionTypes: readonly number[];
}

export type ClientHelloParse = { readonly status: 'incomplete' } | { readonly status: 'invalid'; readonly reason: string } | { readonly status: 'complete'; readonly hello: ClientHelloInfo };

export interface ClientHelloOptions {
  /** Extension type of dane_clientid: an integer 0..65535 other than 0, 16 and 43. Default DEFAULT_DANE_CLIENTID_TYPE. */
  readonly daneClientIdType?: number;
  /** Limit for the ClientHello handshake message including its header: an integer >= 1. Default DEFAULT_MAX_CLIENT_HELLO_BYTES. */
  readonly maxBytes?: number;
}

/** Prefix of the reason returned if the parser itself failed unexpectedly (tests assert it never happens). */
export const INTERNAL_ERROR_PREFIX = 'internal ClientHello parser error';

const CONTENT_TYPE_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const RECORD_HEADER_BYTES = 5;
const HANDSHAKE_HEADER_BYTES = 4;
const MAX_RECORD_PAYLOAD = 16384;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;
const SNI_HOST_NAME = 0;
const TLS13 = 0x0304;

const INCOMPLETE: ClientHelloParse = Object.freeze({ status: 'incomplete' });

type Failure = { readonly status: 'invalid'; readonly reason: string };
const invalid = (reason: string): Failure => ({ status: 'invalid', reason });

const hex2 = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;
const hex4 = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;

/**
 * Parse the ClientHello at the start of `buffered`.
 * Throws (RangeError) only for invalid options, never for any buffer content.
 */
export function parseClientHello(buffered: Buffer, options?: ClientHelloOptions): ClientHelloParse {
  const daneType = options?.daneClientIdType ?? DEFAULT_DANE_CLIENTID_TYPE;
  const maxBytes = options?.maxBytes ?? DEFAULT_MAX_CLIENT_HELLO_BYTES;
  if (!Number.isInteger(daneType) || daneType < 0 || daneType > 0xffff) {
    throw new RangeError(`daneClientIdType must be an integer 0..65535, got ${daneType}`);
  }
  if (daneType === EXT_SERVER_NAME || daneType === EXT_ALPN || daneType === EXT_SUPPORTED_VERSIONS) {
    throw new RangeError(`daneClientIdType ${daneType} collides with an extension this parser reads`);
  }
  if (!Number.isInteger(maxBytes) || maxBytes < 1) {
    throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`);
  }
  try {
    return parseRecords(buffered, daneType, maxBytes);
  } catch (err) {
    // Unreachable by design (every read is bounds-checked first); kept so a bug
    // can only close one connection, never crash the process.
    return invalid(`${INTERNAL_ERROR_PREFIX}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** What the first bytes of a stream that is not a TLS handshake record look like. */
function describeNonHandshake(buf: Buffer): string {
  const b0 = buf[0] ?? 0;
  // An HTTP method: 1..7 uppercase letters followed by a space (or the end of what we have so far).
  let letters = 0;
  while (letters < 8 && letters < buf.length) {
    const c = buf[letters] ?? 0;
    if (c < 0x41 || c > 0x5a) break;
    letters++;
  }
  if (letters >= 1 && letters <= 7 && (letters === buf.length || buf[letters] === 0x20)) {
    return 'plain HTTP request on a TLS port';
  }
  // SSLv2 record: 2-byte header with the high bit set, then msg_type 1 (CLIENT-HELLO).
  if ((b0 & 0x80) !== 0 && (buf.length < 3 || buf[2] === 1)) {
    return 'SSLv2-style ClientHello is not supported';
  }
  return `not a TLS handshake record (content type ${b0})`;
}

function parseRecords(buf: Buffer, daneType: number, maxBytes: number): ClientHelloParse {
  if (buf.length === 0) return INCOMPLETE;
  if (buf[0] !== CONTENT_TYPE_HANDSHAKE) return invalid(describeNonHandshake(buf));

  const recordLimit = maxBytes + RECORD_HEADER_BYTES;
  const header: number[] = []; // the first 4 handshake bytes, gathered across records
  let messageLength = -1; // whole handshake message incl. header, once known
  let handshakeBytes = 0; // handshake bytes carried by the records seen so far (declared lengths)
  const fragments: Array<readonly [number, number]> = [];
  let off = 0;

  for (;;) {
    if (off >= buf.length) return INCOMPLETE;
    // A further record needs at least a header and one payload byte.
    if (off + RECORD_HEADER_BYTES + 1 > recordLimit) {
      return invalid(`ClientHello records exceed the limit of ${recordLimit} bytes`);
    }
    const contentType = buf[off] ?? 0;
    if (contentType !== CONTENT_TYPE_HANDSHAKE) return invalid(`not a TLS handshake record (content type ${contentType})`);
    if (off + 2 > buf.length) return INCOMPLETE;
    const major = buf[off + 1] ?? 0;
    if (major !== 3) return invalid(`TLS record version major byte ${hex2(major)} is not 0x03`);
    if (off + RECORD_HEADER_BYTES > buf.length) return INCOMPLETE;
    const length = buf.readUInt16BE(off + 3);
    if (length === 0) return invalid('empty TLS handshake record (length 0)');
    if (length > MAX_RECORD_PAYLOAD) return invalid(`TLS record length ${length} exceeds ${MAX_RECORD_PAYLOAD}`);
    const payloadStart = off + RECORD_HEADER_BYTES;
    const recordEnd = payloadStart + length;
    if (recordEnd > recordLimit) return invalid(`ClientHello records exceed the limit of ${recordLimit} bytes`);
    const available = Math.min(recordEnd, buf.length);

    // Gather the handshake header from whatever payload has arrived.
    for (let i = payloadStart; i < available && header.length < HANDSHAKE_HEADER_BYTES; i++) {
      const b = buf[i] ?? 0;
      if (header.length === 0 && b !== HANDSHAKE_CLIENT_HELLO) {
        return invalid(`expected a ClientHello (handshake type 1), got handshake type ${b}`);
      }
      header.push(b);
      if (header.length === HANDSHAKE_HEADER_BYTES) {
        messageLength = HANDSHAKE_HEADER_BYTES + (((header[1] ?? 0) << 16) | ((header[2] ?? 0) << 8) | (header[3] ?? 0));
        if (messageLength > maxBytes) return invalid(`ClientHello of ${messageLength} bytes exceeds the limit of ${maxBytes}`);
      }
    }

    handshakeBytes += length;
    if (messageLength >= 0 && handshakeBytes > messageLength) {
      return invalid(`${handshakeBytes - messageLength} bytes after the ClientHello in the same record`);
    }
    fragments.push([payloadStart, recordEnd]);
    if (recordEnd > buf.length) return INCOMPLETE;
    if (handshakeBytes === messageLength) {
      const message =
        fragments.length === 1
          ? buf.subarray(payloadStart, recordEnd)
          : Buffer.concat(
              fragments.map(([s, e]) => buf.subarray(s, e)),
              messageLength,
            );
      return parseMessage(message, recordEnd, daneType);
    }
    off = recordEnd;
  }
}

/** Bounds-checked reader over one vector; every method returns undefined when the bytes are not there. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    public pos: number,
    public readonly end: number,
  ) {}

  get left(): number {
    return this.end - this.pos;
  }

  u8(): number | undefined {
    if (this.pos + 1 > this.end) return undefined;
    const v = this.buf[this.pos] ?? 0;
    this.pos += 1;
    return v;
  }

  u16(): number | undefined {
    if (this.pos + 2 > this.end) return undefined;
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  /** The next n bytes as a sub-reader, or undefined if fewer are left. */
  take(n: number): Reader | undefined {
    if (n < 0 || this.pos + n > this.end) return undefined;
    const sub = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return sub;
  }

  bytes(): Buffer {
    return this.buf.subarray(this.pos, this.end);
  }
}

function parseMessage(message: Buffer, recordBytes: number, daneType: number): ClientHelloParse {
  const r = new Reader(message, HANDSHAKE_HEADER_BYTES, message.length);
  const legacyVersion = r.u16();
  if (legacyVersion === undefined) return invalid('ClientHello ends inside legacy_version');
  if (legacyVersion >> 8 !== 3) return invalid(`ClientHello legacy_version ${hex4(legacyVersion)} is not 3.x`);
  if (r.take(32) === undefined) return invalid('ClientHello ends inside random');

  const sessionIdLength = r.u8();
  if (sessionIdLength === undefined) return invalid('ClientHello ends before session_id');
  if (sessionIdLength > 32) return invalid(`session_id length ${sessionIdLength} exceeds 32`);
  if (r.take(sessionIdLength) === undefined) return invalid('ClientHello ends inside session_id');

  const suitesLength = r.u16();
  if (suitesLength === undefined) return invalid('ClientHello ends before cipher_suites');
  if (suitesLength === 0) return invalid('cipher_suites is empty');
  if (suitesLength % 2 !== 0) return invalid(`cipher_suites length ${suitesLength} is odd`);
  if (r.take(suitesLength) === undefined) return invalid(`cipher_suites length ${suitesLength} overflows the ClientHello`);

  const compressionLength = r.u8();
  if (compressionLength === undefined) return invalid('ClientHello ends before compression_methods');
  if (compressionLength === 0) return invalid('compression_methods is empty');
  if (r.take(compressionLength) === undefined) {
    return invalid(`compression_methods length ${compressionLength} overflows the ClientHello`);
  }

  const extensionTypes: number[] = [];
  let serverName: string | undefined;
  let alpn: string[] = [];
  let supportedVersions: number[] = [];
  let daneClientId: ClientHelloInfo['daneClientId'] = { present: false };

  if (r.left > 0) {
    const extensionsLength = r.u16();
    if (extensionsLength === undefined) return invalid('ClientHello ends inside the extensions length');
    if (extensionsLength > r.left) {
      return invalid(`extensions length ${extensionsLength} overflows the ClientHello (${r.left} bytes left)`);
    }
    if (extensionsLength < r.left) return invalid(`${r.left - extensionsLength} trailing bytes after the extensions`);
    const seen = new Set<number>();
    while (r.left > 0) {
      const type = r.u16();
      const length = r.u16();
      if (type === undefined || length === undefined) return invalid('extensions end inside an extension header');
      const data = r.take(length);
      if (data === undefined) {
        return invalid(`extension ${type} length ${length} overflows the extensions (${r.left} bytes left)`);
      }
      if (seen.has(type)) return invalid(`duplicate extension ${type}`);
      seen.add(type);
      extensionTypes.push(type);
      if (type === daneType) {
        const parsed = parseDaneClientId(data);
        if (typeof parsed !== 'string') return parsed;
        daneClientId = { present: true, name: parsed };
      } else if (type === EXT_SERVER_NAME) {
        const parsed = parseServerName(data);
        if (typeof parsed !== 'string') return parsed;
        serverName = parsed;
      } else if (type === EXT_ALPN) {
        const parsed = parseAlpn(data);
        if (!Array.isArray(parsed)) return parsed;
        alpn = parsed;
      } else if (type === EXT_SUPPORTED_VERSIONS) {
        const parsed = parseSupportedVersions(data);
        if (!Array.isArray(parsed)) return parsed;
        supportedVersions = parsed;
      }
    }
  }

  const hello: ClientHelloInfo = {
    recordBytes,
    legacyVersion,
    serverName,
    alpn,
    supportedVersions,
    offersTls13: supportedVersions.includes(TLS13),
    daneClientId,
    extensionTypes,
  };
  return { status: 'complete', hello };
}

/**
 * A vector with a 2-byte length that must fill the extension data exactly;
 * returns the reader for its contents or the failure.
 */
function exactVector16(data: Reader, what: string): Reader | Failure {
  const total = data.left;
  const length = data.u16();
  if (length === undefined) return invalid(`${what} extension of ${total} bytes has no list length`);
  if (length !== data.left) return invalid(`${what} list length ${length} does not match the extension length ${total}`);
  if (length === 0) return invalid(`empty ${what} list`);
  return data.take(length) ?? invalid(`${what} list length ${length} overflows the extension`);
}

/** RFC 6066 section 3: exactly one host_name entry counts; other name types are skipped (as Go does). */
function parseServerName(data: Reader): string | Failure {
  const list = exactVector16(data, 'server_name');
  if (!(list instanceof Reader)) return list;
  let hostName: string | undefined;
  while (list.left > 0) {
    const nameType = list.u8();
    const length = list.u16();
    if (nameType === undefined || length === undefined) return invalid('server_name list ends inside an entry header');
    const name = list.take(length);
    if (name === undefined) return invalid(`server_name entry length ${length} overflows the list`);
    if (nameType !== SNI_HOST_NAME) continue;
    if (hostName !== undefined) return invalid('two host_name entries in server_name');
    const checked = checkHostName(name.bytes());
    if (typeof checked !== 'string') return checked;
    hostName = checked;
  }
  return hostName ?? invalid('server_name has no host_name entry');
}

function checkHostName(bytes: Buffer): string | Failure {
  if (bytes.length === 0) return invalid('empty SNI host_name');
  if (bytes.length > 253) return invalid(`SNI host_name of ${bytes.length} bytes exceeds 253`);
  let out = '';
  let labelLength = 0;
  for (const c of bytes) {
    if (c === 0x2e) {
      if (labelLength === 0) return invalid('SNI host_name has an empty label');
      labelLength = 0;
      out += '.';
      continue;
    }
    const lower = c >= 0x41 && c <= 0x5a ? c + 0x20 : c;
    const ok = (lower >= 0x61 && lower <= 0x7a) || (lower >= 0x30 && lower <= 0x39) || lower === 0x2d || lower === 0x5f;
    if (!ok) return invalid(`SNI host_name contains byte ${hex2(c)}`);
    labelLength++;
    out += String.fromCharCode(lower);
  }
  if (labelLength === 0) return invalid('SNI host_name has an empty label');
  return out;
}

/** RFC 7301 section 3.1: ProtocolName protocol_name_list<2..2^16-1>, ProtocolName<1..2^8-1>. */
function parseAlpn(data: Reader): string[] | Failure {
  const list = exactVector16(data, 'ALPN');
  if (!(list instanceof Reader)) return list;
  const names: string[] = [];
  while (list.left > 0) {
    const length = list.u8() ?? 0;
    if (length === 0) return invalid('empty ALPN protocol name');
    const name = list.take(length);
    if (name === undefined) return invalid(`ALPN protocol name length ${length} overflows the list`);
    names.push(name.bytes().toString('latin1'));
  }
  return names;
}

/** RFC 8446 section 4.2.1: ProtocolVersion versions<2..254>. */
function parseSupportedVersions(data: Reader): number[] | Failure {
  const total = data.left;
  const length = data.u8();
  if (length === undefined) return invalid('supported_versions extension is empty');
  if (length !== data.left) return invalid(`supported_versions length ${length} does not match the extension length ${total}`);
  if (length === 0) return invalid('empty supported_versions list');
  if (length % 2 !== 0) return invalid(`supported_versions length ${length} is odd`);
  const versions: number[] = [];
  while (data.left > 0) versions.push(data.u16() ?? 0);
  return versions;
}

/**
 * draft-ietf-dance-tls-clientid: opaque ClientName<0..255>, presentation
 * format, ASCII. ClientName of length 0 (and, leniently, extension data of
 * length 0) is the empty extension: "my name is in my certificate".
 */
function parseDaneClientId(data: Reader): string | Failure {
  const total = data.left;
  if (total === 0) return '';
  const length = data.u8() ?? 0;
  if (length !== data.left) return invalid(`dane_clientid name length ${length} does not match the extension length ${total}`);
  const bytes = data.bytes();
  for (const c of bytes) {
    if (c < 0x21 || c > 0x7e) return invalid(`dane_clientid name contains byte ${hex2(c)} (not printable ASCII)`);
  }
  return bytes.toString('latin1');
}
