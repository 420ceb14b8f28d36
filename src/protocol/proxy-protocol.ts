/**
 * PROXY protocol v1 (text) and v2 (binary) codec — pure functions, no I/O.
 *
 * Reference: HAProxy's doc/proxy-protocol.txt. dancegate uses it in two directions:
 *  - outbound: `encodeProxyV2` / `encodeProxyV1` build the header written (in one write, before any
 *    payload) to a TCP backend, carrying the verified DANE client identity in TLVs;
 *  - inbound: `parseProxyHeader` reads a v1 or v2 header sent by a trusted L4 load balancer.
 *
 * The parser is incremental: call it on everything buffered so far. It answers 'incomplete' only
 * while the bytes are still a prefix of some valid header; as soon as they cannot be, it answers
 * 'not-proxy' (the bytes never looked like a PROXY signature) or 'invalid' (they did, then broke a
 * rule). A decision other than 'incomplete' never changes when more bytes arrive, and errors are
 * reported for the first offending field, so the reason is stable too.
 *
 * Limits worth knowing when choosing what to send:
 *  - HAProxy refuses a received TLV whose value exceeds 1024 bytes (HA_PP2_MAX_ALLOC), an AUTHORITY
 *    over 255 bytes and a UNIQUE_ID over 128 bytes; nginx refuses a header over 4096 bytes. The
 *    encoder's defaults (maxTlvValueBytes 1024, maxHeaderBytes 4096) keep every header acceptable to
 *    both; the wire format itself allows a value up to 65535 - 3 bytes (the 16-bit header length
 *    must also cover the TLV's own 3-byte type/length).
 */
import { crc32c } from '@node-rs/crc32';

/** The 12-byte v2 signature: 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A. */
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** A private copy, so that a caller mutating the exported signature cannot change parsing. */
const V2_SIGNATURE_PRIVATE = Buffer.from(PROXY_V2_SIGNATURE);

/** Registered top-level TLV types. */
export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  NETNS: 0x30,
} as const;

/** Sub-TLV types inside the SSL TLV. */
export const PP2_SSL_SUBTYPE = {
  VERSION: 0x21,
  CN: 0x22,
  CIPHER: 0x23,
  SIG_ALG: 0x24,
  KEY_ALG: 0x25,
  CLIENT_CERT: 0x28,
} as const;

/** Bits of the SSL TLV's `client` byte. */
export const PP2_CLIENT = { SSL: 0x01, CERT_CONN: 0x02, CERT_SESS: 0x04 } as const;

/** Longest v1 line, CRLF included ("PROXY UNKNOWN <v6> <v6> 65535 65535\r\n"). */
export const PROXY_V1_MAX_LINE_BYTES = 107;
/** Default cap on a whole header (nginx's limit). */
export const DEFAULT_MAX_HEADER_BYTES = 4096;
/** Default cap on one TLV value when encoding (HAProxy drops larger received TLVs). */
export const DEFAULT_MAX_TLV_VALUE_BYTES = 1024;
/** The largest TLV value the v2 length field can describe. */
export const MAX_TLV_VALUE_BYTES = 65535 - 3;
/** Largest UNIQUE_ID value (spec: "up to 128 bytes"). */
export const MAX_UNIQUE_ID_BYTES = 128;
/** Largest AUTHORITY value HAProxy accepts (HA_PP2_AUTHORITY_MAX). */
export const MAX_AUTHORITY_BYTES = 255;

const V2_FIXED_BYTES = 16;
const V2_MAX_HEADER_BYTES = V2_FIXED_BYTES + 0xffff;

export interface ProxyAddresses {
  readonly family: 'tcp4' | 'tcp6';
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly destinationAddress: string;
  readonly destinationPort: number;
}

export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

export interface SslTlv {
  /** Bits: 0x01 SSL, 0x02 CERT_CONN, 0x04 CERT_SESS. */
  readonly client: number;
  /** 0 = a certificate was presented and verified. */
  readonly verify: number;
  readonly version?: string;
  readonly cn?: string;
  readonly cipher?: string;
  readonly sigAlg?: string;
  readonly keyAlg?: string;
  /** Every sub-TLV as decoded, in wire order (including unknown ones such as CLIENT_CERT). */
  readonly subTlvs: readonly ProxyTlv[];
}

export interface ProxyV2Header {
  readonly command: 'PROXY' | 'LOCAL';
  /** undefined for LOCAL, for AF_UNSPEC and for v1 'UNKNOWN'. */
  readonly addresses: ProxyAddresses | undefined;
  /** Every top-level TLV in wire order, SSL (0x20), NOOP and CRC32C included, values raw. */
  readonly tlvs: readonly ProxyTlv[];
  readonly alpn?: string;
  readonly authority?: string;
  readonly uniqueId?: Buffer;
  readonly ssl?: SslTlv;
  /**
   * true when a CRC32C TLV was present (and therefore matched): a header whose checksum does not
   * match is 'invalid', never 'complete', since the spec says the receiver MUST reject it.
   */
  readonly crc32cValid?: boolean;
}

export interface EncodeSslOptions {
  readonly client: number;
  readonly verify: number;
  readonly version?: string;
  readonly cn?: string;
  readonly cipher?: string;
  readonly sigAlg?: string;
  readonly keyAlg?: string;
}

export interface EncodeV2Options {
  /** Default 'PROXY'. */
  readonly command?: 'PROXY' | 'LOCAL';
  /** Required for PROXY; must be absent for LOCAL. */
  readonly addresses?: ProxyAddresses;
  readonly alpn?: string;
  /** At most 255 bytes of UTF-8 (HAProxy rejects longer). */
  readonly authority?: string;
  /** At most 128 bytes. */
  readonly uniqueId?: Buffer;
  readonly ssl?: EncodeSslOptions;
  /** Types must be 0xE0–0xEF (custom) or 0xF0–0xF7 (experimental); written in the given order. */
  readonly customTlvs?: readonly ProxyTlv[];
  /** Append a CRC32C TLV computed over the whole header with the checksum field zeroed. */
  readonly crc32c?: boolean;
  /** Default 4096 (nginx's cap). */
  readonly maxHeaderBytes?: number;
  /** Default 1024 (HAProxy's receive cap, HA_PP2_MAX_ALLOC); at most 65532. Applies to every top-level TLV value. */
  readonly maxTlvValueBytes?: number;
}

export type ProxyParse =
  | { readonly status: 'incomplete' }
  | { readonly status: 'invalid'; readonly reason: string }
  | { readonly status: 'not-proxy' }
  | { readonly status: 'complete'; readonly version: 1 | 2; readonly header: ProxyV2Header; readonly headerBytes: number };

export interface ParseOptions {
  /** Default 4096; an integer from 16 to 65551. A v1 line is also bounded by 107 bytes. */
  readonly maxHeaderBytes?: number;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const hex2 = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(2, '0')}`;
const hex8 = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(8, '0')}`;

const INCOMPLETE: ProxyParse = Object.freeze({ status: 'incomplete' });
const NOT_PROXY: ProxyParse = Object.freeze({ status: 'not-proxy' });
const invalid = (reason: string): ProxyParse => ({ status: 'invalid', reason });

/**
 * True when buf[start, end) can be well-formed UTF-8 (no overlongs, surrogates or code points above
 * U+10FFFF) with only buf[start, received) received so far.
 */
function isUtf8(buf: Uint8Array, start: number, received: number, end: number): boolean {
  let i = start;
  while (i < received) {
    const c = buf[i] ?? 0;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0;
      else if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f;
    } else return false;
    if (i + need >= end) return false; // the sequence would not fit in the value
    for (let k = 1; k <= need; k++) {
      if (i + k >= received) return true; // the rest of the sequence is still to come
      const d = buf[i + k] ?? 0;
      if (d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return false;
    }
    i += need + 1;
  }
  return true;
}

/** UTF-8 bytes of a string, refusing lone surrogates (they could not round-trip). */
function utf8Bytes(what: string, s: unknown): Buffer {
  if (typeof s !== 'string') throw new RangeError(`${what} must be a string`);
  const b = Buffer.from(s, 'utf8');
  if (b.toString('utf8') !== s) throw new RangeError(`${what} is not well-formed Unicode`);
  return b;
}

// ---------------------------------------------------------------------------------------------
// IP address text <-> bytes

/**
 * Scans dotted-quad IPv4 text (no leading zeros, each part 0..255). With `complete`, returns the
 * 4 bytes or undefined. Without, returns the parts seen so far when the text can still grow into a
 * valid address, else undefined.
 */
function scanIPv4(text: string, complete: boolean): number[] | undefined {
  const parts = text.split('.');
  if (parts.length > 4) return undefined;
  const out: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] ?? '';
    if (p === '') {
      if (!complete && i === parts.length - 1) break;
      return undefined;
    }
    if (!/^[0-9]{1,3}$/.test(p) || (p.length > 1 && p.startsWith('0'))) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    out.push(v);
  }
  if (complete && out.length !== 4) return undefined;
  return out;
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * Scans IPv6 text as inet_pton does (1–4 hex digits per group, at most one "::" standing for at
 * least one zero group, an optional dotted-quad tail; no zone index). With `complete`, returns the 16
 * bytes or undefined. Without, returns an empty array when the text can still grow into a valid
 * address, else undefined.
 */
function scanIPv6(text: string, complete: boolean): Uint8Array | undefined {
  if (!complete) {
    // A trailing single ':' may become '::' or be followed by another group: try both.
    if (text.endsWith(':') && !text.endsWith('::')) {
      return scanIPv6(`${text}:`, false) ?? scanIPv6(`${text}0`, false);
    }
    if (text === '') return new Uint8Array(0);
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const hasGap = halves.length === 2;
  const head = halves[0] === '' || halves[0] === undefined ? [] : halves[0].split(':');
  const tailText = halves[1] ?? '';
  const tail = !hasGap || tailText === '' ? [] : tailText.split(':');
  const pieces = [...head, ...tail];
  const lastIndex = pieces.length - 1;
  const lastIsPartial = !complete && !text.endsWith('::') && lastIndex >= 0;
  const groups: number[] = [];
  let v4: number[] | undefined;
  for (let i = 0; i < pieces.length; i++) {
    const p = pieces[i] ?? '';
    const isLast = i === lastIndex;
    if (p.includes('.')) {
      // A dotted quad must end the text ("1.2.3.4::" is not an address).
      if (!isLast || (hasGap && tail.length === 0)) return undefined;
      v4 = scanIPv4(p, !lastIsPartial);
      if (v4 === undefined) return undefined;
    } else if (!HEX_GROUP.test(p)) {
      return undefined;
    } else {
      groups.push(parseInt(p, 16));
    }
  }
  const count = groups.length + (v4 === undefined ? 0 : 2);
  if (!complete) {
    const ends = v4 !== undefined; // nothing may follow a dotted-quad tail
    if (hasGap) return count <= 7 ? new Uint8Array(0) : undefined;
    return (ends ? count === 8 : count <= 8) ? new Uint8Array(0) : undefined;
  }
  if (hasGap ? count > 7 : count !== 8) return undefined;
  const words: number[] = [];
  const headGroups = head.length - (v4 !== undefined && !hasGap ? 1 : 0);
  for (let i = 0; i < headGroups; i++) words.push(groups[i] ?? 0);
  if (hasGap) for (let i = 0; i < 8 - count; i++) words.push(0);
  for (let i = headGroups; i < groups.length; i++) words.push(groups[i] ?? 0);
  if (v4 !== undefined) words.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

function formatIPv4(b: Uint8Array, offset: number): string {
  return `${b[offset] ?? 0}.${b[offset + 1] ?? 0}.${b[offset + 2] ?? 0}.${b[offset + 3] ?? 0}`;
}

/**
 * Formats 16 bytes the way Node formats a socket's IPv6 address (libuv's inet_ntop): lower-case,
 * the longest run (>= 2, first on a tie) of zero groups as "::", and "::a.b.c.d" / "::ffff:a.b.c.d"
 * for IPv4-compatible and IPv4-mapped addresses.
 */
function formatIPv6(b: Uint8Array, offset: number): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push(((b[offset + 2 * i] ?? 0) << 8) | (b[offset + 2 * i + 1] ?? 0));
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  for (let i = 0; i < 8; i++) {
    if (w[i] === 0) {
      if (curBase < 0) curBase = i;
      if (i - curBase + 1 > bestLen) {
        bestBase = curBase;
        bestLen = i - curBase + 1;
      }
    } else {
      curBase = -1;
    }
  }
  if (bestLen < 2) bestBase = -1;
  if (bestBase === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
    return `::${bestLen === 5 ? 'ffff:' : ''}${formatIPv4(b, offset + 12)}`;
  }
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase >= 0 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) s += '::';
      continue;
    }
    if (i > 0 && !s.endsWith(':')) s += ':';
    s += (w[i] ?? 0).toString(16);
  }
  return s;
}

interface CheckedAddresses {
  readonly family: 'tcp4' | 'tcp6';
  readonly source: Uint8Array;
  readonly destination: Uint8Array;
  readonly sourcePort: number;
  readonly destinationPort: number;
}

function checkPort(what: string, port: unknown): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`invalid ${what} port: ${String(port)} (must be an integer 0-65535)`);
  }
  return port;
}

function checkAddress(family: 'tcp4' | 'tcp6', what: string, text: unknown): Uint8Array {
  const parsed =
    typeof text !== 'string'
      ? undefined
      : family === 'tcp4'
        ? (() => {
            const q = scanIPv4(text, true);
            return q === undefined ? undefined : Uint8Array.from(q);
          })()
        : scanIPv6(text, true);
  if (parsed === undefined) {
    throw new RangeError(`invalid ${family === 'tcp4' ? 'IPv4' : 'IPv6'} ${what} address: ${JSON.stringify(text) ?? String(text)}`);
  }
  return parsed;
}

function checkAddresses(a: ProxyAddresses): CheckedAddresses {
  if (a.family !== 'tcp4' && a.family !== 'tcp6') {
    throw new RangeError(`unknown address family: ${JSON.stringify(a.family) ?? String(a.family)} (expected 'tcp4' or 'tcp6')`);
  }
  return {
    family: a.family,
    source: checkAddress(a.family, 'source', a.sourceAddress),
    destination: checkAddress(a.family, 'destination', a.destinationAddress),
    sourcePort: checkPort('source', a.sourcePort),
    destinationPort: checkPort('destination', a.destinationPort),
  };
}

function formatAddress(family: 'tcp4' | 'tcp6', b: Uint8Array): string {
  return family === 'tcp4' ? formatIPv4(b, 0) : formatIPv6(b, 0);
}

// ---------------------------------------------------------------------------------------------
// Encoding

function checkLimit(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  return v;
}

/**
 * Builds a complete v2 header (signature, version/command, family, length, addresses, TLVs) as one
 * Buffer, to be written in a single write before any payload. TLV order: ALPN, AUTHORITY, UNIQUE_ID,
 * SSL (sub-TLVs VERSION, CN, CIPHER, SIG_ALG, KEY_ALG), the custom TLVs as given, then CRC32C.
 * Throws RangeError on anything the peer would reject or the format cannot carry.
 */
export function encodeProxyV2(options: EncodeV2Options): Buffer {
  const command = options.command ?? 'PROXY';
  if (command !== 'PROXY' && command !== 'LOCAL') throw new RangeError(`unknown command: ${String(command)}`);
  const maxHeaderBytes = checkLimit('maxHeaderBytes', options.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES, V2_FIXED_BYTES, Number.MAX_SAFE_INTEGER);
  const maxTlvValueBytes = checkLimit('maxTlvValueBytes', options.maxTlvValueBytes, DEFAULT_MAX_TLV_VALUE_BYTES, 0, MAX_TLV_VALUE_BYTES);

  let addresses: CheckedAddresses | undefined;
  if (command === 'PROXY') {
    if (options.addresses === undefined) throw new RangeError('PROXY command requires addresses');
    addresses = checkAddresses(options.addresses);
  } else if (options.addresses !== undefined) {
    throw new RangeError('LOCAL command must not carry addresses');
  }

  const tlvs: ProxyTlv[] = [];
  if (options.alpn !== undefined) tlvs.push({ type: PP2_TYPE.ALPN, value: utf8Bytes('alpn', options.alpn) });
  if (options.authority !== undefined) {
    const value = utf8Bytes('authority', options.authority);
    if (value.length > MAX_AUTHORITY_BYTES) {
      throw new RangeError(`authority is ${value.length} bytes; HAProxy rejects an AUTHORITY TLV over ${MAX_AUTHORITY_BYTES} bytes`);
    }
    tlvs.push({ type: PP2_TYPE.AUTHORITY, value });
  }
  if (options.uniqueId !== undefined) {
    if (options.uniqueId.length > MAX_UNIQUE_ID_BYTES) {
      throw new RangeError(`uniqueId is ${options.uniqueId.length} bytes; the limit is ${MAX_UNIQUE_ID_BYTES}`);
    }
    tlvs.push({ type: PP2_TYPE.UNIQUE_ID, value: Buffer.from(options.uniqueId) });
  }
  if (options.ssl !== undefined) tlvs.push({ type: PP2_TYPE.SSL, value: encodeSslValue(options.ssl) });
  for (const t of options.customTlvs ?? []) {
    if (!Number.isInteger(t.type) || t.type < 0xe0 || t.type > 0xf7) {
      const shown = Number.isInteger(t.type) && t.type >= 0 && t.type <= 0xff ? hex2(t.type) : String(t.type);
      throw new RangeError(`customTlvs: type ${shown} is not a custom (0xE0-0xEF) or experimental (0xF0-0xF7) TLV type`);
    }
    tlvs.push({ type: t.type, value: Buffer.from(t.value) });
  }
  for (const t of tlvs) {
    if (t.value.length > maxTlvValueBytes) {
      throw new RangeError(`TLV ${hex2(t.type)} value is ${t.value.length} bytes, over maxTlvValueBytes (${maxTlvValueBytes})`);
    }
  }
  if (options.crc32c === true) tlvs.push({ type: PP2_TYPE.CRC32C, value: Buffer.alloc(4) });

  const addressBytes = addresses === undefined ? 0 : addresses.family === 'tcp4' ? 12 : 36;
  const total = tlvs.reduce((n, t) => n + 3 + t.value.length, V2_FIXED_BYTES + addressBytes);
  if (total > maxHeaderBytes) throw new RangeError(`PROXY v2 header would be ${total} bytes, over maxHeaderBytes (${maxHeaderBytes})`);
  if (total > V2_MAX_HEADER_BYTES) throw new RangeError(`PROXY v2 header would be ${total} bytes, over the format's ${V2_MAX_HEADER_BYTES}`);

  const out = Buffer.alloc(total);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = command === 'PROXY' ? 0x21 : 0x20;
  out[13] = addresses === undefined ? 0x00 : addresses.family === 'tcp4' ? 0x11 : 0x21;
  out.writeUInt16BE(total - V2_FIXED_BYTES, 14);
  let o = V2_FIXED_BYTES;
  if (addresses !== undefined) {
    out.set(addresses.source, o);
    o += addresses.source.length;
    out.set(addresses.destination, o);
    o += addresses.destination.length;
    out.writeUInt16BE(addresses.sourcePort, o);
    out.writeUInt16BE(addresses.destinationPort, o + 2);
    o += 4;
  }
  for (const t of tlvs) {
    out[o] = t.type;
    out.writeUInt16BE(t.value.length, o + 1);
    t.value.copy(out, o + 3);
    o += 3 + t.value.length;
  }
  if (options.crc32c === true) out.writeUInt32BE(crc32c(out), total - 4);
  return out;
}

function encodeSslValue(ssl: EncodeSslOptions): Buffer {
  if (!Number.isInteger(ssl.client) || ssl.client < 0 || ssl.client > 0xff) {
    throw new RangeError(`ssl.client must be an integer 0-255, got ${String(ssl.client)}`);
  }
  if (!Number.isInteger(ssl.verify) || ssl.verify < 0 || ssl.verify > 0xffffffff) {
    throw new RangeError(`ssl.verify must be an integer 0-4294967295, got ${String(ssl.verify)}`);
  }
  const head = Buffer.alloc(5);
  head[0] = ssl.client;
  head.writeUInt32BE(ssl.verify, 1);
  const parts: Buffer[] = [head];
  const subs: Array<[number, string, string | undefined]> = [
    [PP2_SSL_SUBTYPE.VERSION, 'ssl.version', ssl.version],
    [PP2_SSL_SUBTYPE.CN, 'ssl.cn', ssl.cn],
    [PP2_SSL_SUBTYPE.CIPHER, 'ssl.cipher', ssl.cipher],
    [PP2_SSL_SUBTYPE.SIG_ALG, 'ssl.sigAlg', ssl.sigAlg],
    [PP2_SSL_SUBTYPE.KEY_ALG, 'ssl.keyAlg', ssl.keyAlg],
  ];
  for (const [type, what, text] of subs) {
    if (text === undefined) continue;
    const value = utf8Bytes(what, text);
    if (value.length > 0xffff) throw new RangeError(`${what} is ${value.length} bytes, over 65535`);
    const th = Buffer.alloc(3);
    th[0] = type;
    th.writeUInt16BE(value.length, 1);
    parts.push(th, value);
  }
  return Buffer.concat(parts);
}

/**
 * Builds a v1 line: "PROXY TCP4 src dst sport dport\r\n", "PROXY TCP6 …\r\n", or "PROXY UNKNOWN\r\n"
 * when `addresses` is undefined. IPv6 addresses are written in Node's canonical form. At most 104 bytes.
 */
export function encodeProxyV1(addresses: ProxyAddresses | undefined): Buffer {
  if (addresses === undefined) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const a = checkAddresses(addresses);
  const proto = a.family === 'tcp4' ? 'TCP4' : 'TCP6';
  const line = `PROXY ${proto} ${formatAddress(a.family, a.source)} ${formatAddress(a.family, a.destination)} ${a.sourcePort} ${a.destinationPort}\r\n`;
  return Buffer.from(line, 'latin1');
}

// ---------------------------------------------------------------------------------------------
// Parsing

/**
 * Parses the PROXY header at the start of `buffered` (v1 or v2). On 'complete', `headerBytes` is
 * the header's exact length: everything after it is payload the caller must keep (unshift).
 * Never throws on any input; throws RangeError only for a bad `maxHeaderBytes` option.
 */
export function parseProxyHeader(buffered: Buffer, options?: ParseOptions): ProxyParse {
  const maxHeaderBytes = checkLimit('maxHeaderBytes', options?.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES, V2_FIXED_BYTES, V2_MAX_HEADER_BYTES);
  if (buffered.length === 0) return INCOMPLETE;
  const first = buffered[0];
  if (first === 0x0d) return parseV2(buffered, maxHeaderBytes);
  if (first === 0x50) return parseV1(buffered, maxHeaderBytes);
  return NOT_PROXY;
}

// --- v1 --------------------------------------------------------------------------------------

const V1_SIGNATURE = Buffer.from('PROXY', 'latin1');
const V1_PROTOCOLS = ['TCP4', 'TCP6', 'UNKNOWN'] as const;
type V1Protocol = (typeof V1_PROTOCOLS)[number];
const V1_FIELDS = ['protocol', 'source address', 'destination address', 'source port', 'destination port'] as const;

interface V1Line {
  readonly protocol: V1Protocol;
  /** Source address, destination address, source port, destination port (empty for UNKNOWN). */
  readonly fields: readonly string[];
}

/** Checks a port token left to right, so that the reason depends only on the first bad character. */
function checkV1Port(name: string, token: string): string | undefined {
  let value = 0;
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return `PROXY v1: ${name} is not a decimal number`;
    if (i === 1 && token.charCodeAt(0) === 0x30) return `PROXY v1: ${name} has a leading zero`;
    value = value * 10 + (c - 0x30);
    if (value > 65535) return `PROXY v1: ${name} is out of range (0-65535)`;
  }
  return undefined;
}

/**
 * Validates the v1 line content (everything before CR/LF). `complete` says the content is known to
 * be whole (a CR or LF followed it). Returns a reason, undefined while a partial content is still
 * viable, or the fields of a complete valid line.
 */
function checkV1Content(content: string, complete: boolean): string | V1Line | undefined {
  let protocol: V1Protocol | undefined;
  const fields: string[] = [];
  let pos = V1_SIGNATURE.length;
  for (let f = 0; f < V1_FIELDS.length; f++) {
    const name = V1_FIELDS[f] ?? '';
    if (pos === content.length) return complete ? `PROXY v1: missing ${name}` : undefined;
    if (content[pos] !== ' ') return 'PROXY v1: expected a single space after "PROXY"'; // only reachable for f = 0
    const start = pos + 1;
    const space = content.indexOf(' ', start);
    const end = space < 0 ? content.length : space;
    const token = content.slice(start, end);
    const partial = !complete && end === content.length;
    if (token === '') {
      if (space >= 0) return 'PROXY v1: fields must be separated by exactly one space';
      return complete ? `PROXY v1: missing ${name}` : undefined;
    }
    if (f === 0) {
      const match = V1_PROTOCOLS.find((p) => (partial ? p.startsWith(token) : p === token));
      if (match === undefined) return 'PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)';
      if (partial) return undefined;
      protocol = match;
      // UNKNOWN: the receiver must ignore anything before the CRLF.
      if (protocol === 'UNKNOWN') return complete ? { protocol, fields } : undefined;
    } else if (f <= 2) {
      const ok = protocol === 'TCP4' ? scanIPv4(token, !partial) !== undefined : scanIPv6(token, !partial) !== undefined;
      if (!ok) return `PROXY v1: invalid ${protocol ?? ''} ${name}`;
    } else {
      const reason = checkV1Port(name, token);
      if (reason !== undefined) return reason;
    }
    if (partial) return undefined;
    if (f > 0) fields.push(token);
    pos = end;
  }
  if (pos < content.length) return 'PROXY v1: unexpected data after the destination port';
  return { protocol: protocol ?? 'UNKNOWN', fields };
}

function parseV1(buf: Buffer, maxHeaderBytes: number): ProxyParse {
  const sigLen = Math.min(buf.length, V1_SIGNATURE.length);
  for (let i = 0; i < sigLen; i++) if (buf[i] !== V1_SIGNATURE[i]) return NOT_PROXY;
  if (buf.length < V1_SIGNATURE.length) return INCOMPLETE;
  const limit = Math.min(PROXY_V1_MAX_LINE_BYTES, maxHeaderBytes);
  const scanEnd = Math.min(buf.length, limit);
  let end = -1;
  for (let i = 0; i < scanEnd; i++) {
    const c = buf[i];
    if (c === 0x0d || c === 0x0a) {
      end = i;
      break;
    }
  }
  const complete = end >= 0;
  const checked = checkV1Content(buf.toString('latin1', 0, complete ? end : scanEnd), complete);
  if (typeof checked === 'string') return invalid(checked);
  const noCrlf = `PROXY v1: no CRLF within ${limit} bytes`;
  if (checked === undefined) return buf.length >= limit ? invalid(noCrlf) : INCOMPLETE;
  if (buf[end] !== 0x0d) return invalid('PROXY v1: line must end with CRLF');
  if (end + 2 > limit) return invalid(noCrlf);
  if (end + 1 >= buf.length) return INCOMPLETE;
  if (buf[end + 1] !== 0x0a) return invalid('PROXY v1: line must end with CRLF');

  let addresses: ProxyAddresses | undefined;
  if (checked.protocol !== 'UNKNOWN') {
    const family = checked.protocol === 'TCP4' ? 'tcp4' : 'tcp6';
    const [src = '', dst = '', sport = '', dport = ''] = checked.fields;
    const canonical = (t: string): string => (family === 'tcp4' ? t : formatIPv6(scanIPv6(t, true) ?? new Uint8Array(16), 0));
    addresses = {
      family,
      sourceAddress: canonical(src),
      sourcePort: Number(sport),
      destinationAddress: canonical(dst),
      destinationPort: Number(dport),
    };
  }
  return { status: 'complete', version: 1, header: { command: 'PROXY', addresses, tlvs: [] }, headerBytes: end + 2 };
}

// --- v2 --------------------------------------------------------------------------------------

/** Address block length for a family/transport byte, or a reason. LOCAL ignores the family but must skip its block. */
function addressBlockBytes(fam: number, local: boolean): number | string {
  switch (fam) {
    case 0x00:
      return 0;
    case 0x11:
      return 12;
    case 0x21:
      return 36;
    case 0x12:
      return local ? 12 : 'PROXY v2: UDP over IPv4 is not supported';
    case 0x22:
      return local ? 36 : 'PROXY v2: UDP over IPv6 is not supported';
    case 0x31:
      return local ? 216 : 'PROXY v2: UNIX stream is not supported';
    case 0x32:
      return local ? 216 : 'PROXY v2: UNIX datagram is not supported';
    default:
      return `PROXY v2: invalid address family/transport byte ${hex2(fam)}`;
  }
}

const TLV_NAMES: ReadonlyMap<number, string> = new Map([
  [PP2_TYPE.ALPN, 'ALPN'],
  [PP2_TYPE.AUTHORITY, 'AUTHORITY'],
  [PP2_TYPE.CRC32C, 'CRC32C'],
  [PP2_TYPE.UNIQUE_ID, 'UNIQUE_ID'],
  [PP2_TYPE.SSL, 'SSL'],
  [PP2_TYPE.NETNS, 'NETNS'],
]);
const SSL_SUB_NAMES: ReadonlyMap<number, string> = new Map([
  [PP2_SSL_SUBTYPE.VERSION, 'SSL VERSION'],
  [PP2_SSL_SUBTYPE.CN, 'SSL CN'],
  [PP2_SSL_SUBTYPE.CIPHER, 'SSL CIPHER'],
  [PP2_SSL_SUBTYPE.SIG_ALG, 'SSL SIG_ALG'],
  [PP2_SSL_SUBTYPE.KEY_ALG, 'SSL KEY_ALG'],
  [PP2_SSL_SUBTYPE.CLIENT_CERT, 'SSL CLIENT_CERT'],
]);
const TEXT_TLVS: ReadonlySet<number> = new Set([PP2_TYPE.ALPN, PP2_TYPE.AUTHORITY]);
const TEXT_SSL_SUBS: ReadonlySet<number> = new Set([PP2_SSL_SUBTYPE.VERSION, PP2_SSL_SUBTYPE.CN, PP2_SSL_SUBTYPE.CIPHER, PP2_SSL_SUBTYPE.SIG_ALG, PP2_SSL_SUBTYPE.KEY_ALG]);

/**
 * Walks TLVs in [start, end) with only [0, avail) received, appending whole ones to `out`. Errors
 * are found in wire order, as early as the received bytes allow. Returns a reason or undefined.
 */
function walkTlvs(buf: Buffer, start: number, end: number, avail: number, inSsl: boolean, out: ProxyTlv[]): string | undefined {
  const names = inSsl ? SSL_SUB_NAMES : TLV_NAMES;
  const texts = inSsl ? TEXT_SSL_SUBS : TEXT_TLVS;
  const what = inSsl ? 'SSL sub-TLV' : 'TLV';
  const within = inSsl ? 'the SSL TLV' : 'the header';
  const seen = new Set<number>();
  let o = start;
  while (o < end) {
    if (end - o < 3) return `PROXY v2: ${end - o} trailing byte(s) in ${within} cannot hold a ${what}`;
    if (o + 3 > avail) return undefined;
    const type = buf.readUInt8(o);
    const length = buf.readUInt16BE(o + 1);
    const valueStart = o + 3;
    const valueEnd = valueStart + length;
    const name = names.get(type);
    if (valueEnd > end) return `PROXY v2: ${what} ${hex2(type)} overruns ${within}`;
    if (name !== undefined) {
      if (seen.has(type)) return `PROXY v2: duplicate ${name} TLV`;
      seen.add(type);
    }
    if (!inSsl) {
      if (type === PP2_TYPE.CRC32C && length !== 4) return 'PROXY v2: CRC32C TLV must be 4 bytes';
      if (type === PP2_TYPE.UNIQUE_ID && length > MAX_UNIQUE_ID_BYTES) return `PROXY v2: UNIQUE_ID TLV is over ${MAX_UNIQUE_ID_BYTES} bytes`;
      if (type === PP2_TYPE.AUTHORITY && length > MAX_AUTHORITY_BYTES) return `PROXY v2: AUTHORITY TLV is over ${MAX_AUTHORITY_BYTES} bytes`;
      if (type === PP2_TYPE.SSL && length < 5) return 'PROXY v2: SSL TLV is shorter than 5 bytes';
    }
    const received = Math.min(valueEnd, avail);
    if (texts.has(type) && !isUtf8(buf, valueStart, received, valueEnd)) {
      return `PROXY v2: ${name ?? hex2(type)} TLV is not valid UTF-8`;
    }
    if (!inSsl && type === PP2_TYPE.SSL) {
      const reason = walkTlvs(buf, valueStart + 5, valueEnd, avail, true, []);
      if (reason !== undefined) return reason;
    }
    if (valueEnd > avail) return undefined;
    out.push({ type, value: Buffer.from(buf.subarray(valueStart, valueEnd)) });
    o = valueEnd;
  }
  return undefined;
}

function decodeSsl(value: Buffer): SslTlv {
  const subTlvs: ProxyTlv[] = [];
  walkTlvs(value, 5, value.length, value.length, true, subTlvs); // already validated
  const text = (type: number): string | undefined => {
    const t = subTlvs.find((s) => s.type === type);
    return t === undefined ? undefined : t.value.toString('utf8');
  };
  const version = text(PP2_SSL_SUBTYPE.VERSION);
  const cn = text(PP2_SSL_SUBTYPE.CN);
  const cipher = text(PP2_SSL_SUBTYPE.CIPHER);
  const sigAlg = text(PP2_SSL_SUBTYPE.SIG_ALG);
  const keyAlg = text(PP2_SSL_SUBTYPE.KEY_ALG);
  return {
    client: value.readUInt8(0),
    verify: value.readUInt32BE(1),
    ...(version !== undefined && { version }),
    ...(cn !== undefined && { cn }),
    ...(cipher !== undefined && { cipher }),
    ...(sigAlg !== undefined && { sigAlg }),
    ...(keyAlg !== undefined && { keyAlg }),
    subTlvs,
  };
}

function parseV2(buf: Buffer, maxHeaderBytes: number): ProxyParse {
  const sigLen = Math.min(buf.length, PROXY_V2_SIGNATURE.length);
  for (let i = 0; i < sigLen; i++) if (buf[i] !== V2_SIGNATURE_PRIVATE[i]) return NOT_PROXY;
  if (buf.length < 13) return INCOMPLETE;
  const verCmd = buf.readUInt8(12);
  if (verCmd >> 4 !== 2) return invalid(`PROXY v2: unsupported version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return invalid(`PROXY v2: unknown command ${hex2(cmd)}`);
  const local = cmd === 0;
  if (buf.length < 14) return INCOMPLETE;
  const fam = buf.readUInt8(13);
  const addressBytes = addressBlockBytes(fam, local);
  if (typeof addressBytes === 'string') return invalid(addressBytes);
  if (buf.length < V2_FIXED_BYTES) return INCOMPLETE;
  const length = buf.readUInt16BE(14);
  const total = V2_FIXED_BYTES + length;
  if (total > maxHeaderBytes) return invalid(`PROXY v2: header is ${total} bytes, over the ${maxHeaderBytes}-byte limit`);
  if (length < addressBytes) return invalid(`PROXY v2: length ${length} does not cover the ${addressBytes}-byte address block`);

  const tlvs: ProxyTlv[] = [];
  const reason = walkTlvs(buf, V2_FIXED_BYTES + addressBytes, total, Math.min(buf.length, total), false, tlvs);
  if (reason !== undefined) return invalid(reason);
  if (buf.length < total) return INCOMPLETE;

  let addresses: ProxyAddresses | undefined;
  if (!local && (fam === 0x11 || fam === 0x21)) {
    const family = fam === 0x11 ? 'tcp4' : 'tcp6';
    const n = family === 'tcp4' ? 4 : 16;
    const at = V2_FIXED_BYTES;
    const format = (offset: number): string => (family === 'tcp4' ? formatIPv4(buf, offset) : formatIPv6(buf, offset));
    addresses = {
      family,
      sourceAddress: format(at),
      sourcePort: buf.readUInt16BE(at + 2 * n),
      destinationAddress: format(at + n),
      destinationPort: buf.readUInt16BE(at + 2 * n + 2),
    };
  }

  let alpn: string | undefined;
  let authority: string | undefined;
  let uniqueId: Buffer | undefined;
  let ssl: SslTlv | undefined;
  let crc32cValid: boolean | undefined;
  let o = V2_FIXED_BYTES + addressBytes;
  for (const t of tlvs) {
    switch (t.type) {
      case PP2_TYPE.ALPN:
        alpn = t.value.toString('utf8');
        break;
      case PP2_TYPE.AUTHORITY:
        authority = t.value.toString('utf8');
        break;
      case PP2_TYPE.UNIQUE_ID:
        uniqueId = Buffer.from(t.value);
        break;
      case PP2_TYPE.SSL:
        ssl = decodeSsl(t.value);
        break;
      case PP2_TYPE.CRC32C: {
        const copy = Buffer.from(buf.subarray(0, total));
        copy.fill(0, o + 3, o + 7);
        const computed = crc32c(copy) >>> 0;
        const sent = t.value.readUInt32BE(0);
        // The spec: "the receiver MUST reject the connection" when the checksum does not match.
        if (computed !== sent) return invalid(`PROXY v2: CRC32C checksum mismatch (header says ${hex8(sent)}, the bytes give ${hex8(computed)})`);
        crc32cValid = true;
        break;
      }
      default:
        break; // NOOP, NETNS, custom, experimental, future: only in `tlvs`
    }
    o += 3 + t.value.length;
  }
  const header: ProxyV2Header = {
    command: local ? 'LOCAL' : 'PROXY',
    addresses,
    tlvs,
    ...(alpn !== undefined && { alpn }),
    ...(authority !== undefined && { authority }),
    ...(uniqueId !== undefined && { uniqueId }),
    ...(ssl !== undefined && { ssl }),
    ...(crc32cValid !== undefined && { crc32cValid }),
  };
  return { status: 'complete', version: 2, header, headerBytes: total };
}

/**
 * The smallest v2 header that still says who the client is, in the worst case: the fixed part, an
 * IPv6 address block, the ALPN TLV (when `alpnBytes` > 0), the SSL TLV with its client and verify
 * fields and a CN of 253 bytes (the longest DNS name), and the CRC32C TLV when asked for. A cap on
 * the header below this could not carry every valid identity.
 */
export function proxyV2FloorBytes(alpnBytes: number, crc32c: boolean): number {
  const tlv = (valueBytes: number): number => 3 + valueBytes;
  return V2_FIXED_BYTES + 36 + (alpnBytes > 0 ? tlv(alpnBytes) : 0) + tlv(5 + tlv(253)) + (crc32c ? tlv(4) : 0);
}
