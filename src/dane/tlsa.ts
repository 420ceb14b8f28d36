/**
 * TLSA records (RFC 6698 section 2): the model, its presentation and wire
 * forms, and records generated from a certificate.
 */
import { createHash } from 'node:crypto';

export const Usage = { PKIX_TA: 0, PKIX_EE: 1, DANE_TA: 2, DANE_EE: 3 } as const;
export const Selector = { CERT: 0, SPKI: 1 } as const;
export const MatchingType = { FULL: 0, SHA256: 1, SHA512: 2 } as const;

export const USAGE_NAMES: Readonly<Record<number, string>> = { 0: 'PKIX-TA', 1: 'PKIX-EE', 2: 'DANE-TA', 3: 'DANE-EE' };
export const SELECTOR_NAMES: Readonly<Record<number, string>> = { 0: 'Cert', 1: 'SPKI' };
export const MATCHING_TYPE_NAMES: Readonly<Record<number, string>> = { 0: 'Full', 1: 'SHA2-256', 2: 'SHA2-512' };

/** Digest length in bytes for the digest matching types. */
export const DIGEST_LENGTH: Readonly<Record<number, number>> = { 1: 32, 2: 64 };

export interface TlsaRecord {
  /** 0..255; only 0..3 are usable. */
  readonly usage: number;
  /** 0..255; only 0..1 are usable. */
  readonly selector: number;
  /** 0..255; only 0..2 are usable. */
  readonly matchingType: number;
  /** Certificate association data. */
  readonly data: Buffer;
}

export class TlsaParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsaParseError';
  }
}

/** Longest association data we accept from text: a full certificate is rarely above 8 KB; 64 KiB is the DNS limit. */
const MAX_DATA_BYTES = 65535 - 3;

function parseOctetField(token: string | undefined, field: string): number {
  if (token === undefined) throw new TlsaParseError(`missing ${field} field`);
  if (!/^\d{1,3}$/.test(token)) throw new TlsaParseError(`${field} field '${token}' is not a number from 0 to 255`);
  const value = Number(token);
  if (value > 255) throw new TlsaParseError(`${field} field ${value} is not a number from 0 to 255`);
  return value;
}

/** Remove comments (';' to end of line) and parentheses, which zone-file syntax allows for continuation lines. */
function tokenize(text: string): string[] {
  const withoutComments = text
    .split(/\r?\n/)
    .map((line) => {
      const semi = line.indexOf(';');
      return semi === -1 ? line : line.slice(0, semi);
    })
    .join(' ');
  let depth = 0;
  for (const c of withoutComments) {
    if (c === '(') depth++;
    if (c === ')') depth--;
    if (depth < 0) throw new TlsaParseError("unbalanced ')'");
  }
  if (depth !== 0) throw new TlsaParseError("unbalanced '('");
  return withoutComments
    .replace(/[()]/g, ' ')
    .split(/\s+/)
    .filter((t) => t.length > 0);
}

function parseRdataTokens(tokens: string[]): TlsaRecord {
  const usage = parseOctetField(tokens[0], 'usage');
  const selector = parseOctetField(tokens[1], 'selector');
  const matchingType = parseOctetField(tokens[2], 'matching type');
  const hex = tokens.slice(3).join('');
  if (hex.length === 0) throw new TlsaParseError('missing certificate association data');
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new TlsaParseError('certificate association data is not hexadecimal');
  if (hex.length % 2 !== 0) throw new TlsaParseError('certificate association data has an odd number of hex digits');
  if (hex.length / 2 > MAX_DATA_BYTES) throw new TlsaParseError('certificate association data is longer than a DNS record can hold');
  return { usage, selector, matchingType, data: Buffer.from(hex, 'hex') };
}

/**
 * Parse TLSA RDATA in presentation format: `3 1 1 ab12…`. The hex data may be
 * split by whitespace and wrapped in parentheses across lines; ';' comments
 * are ignored. Unknown usage/selector/matching-type values parse (they are
 * "unusable" at matching time, RFC 7671), values outside 0..255 do not.
 */
export function parseTlsaRdata(text: string): TlsaRecord {
  return parseRdataTokens(tokenize(text));
}

export interface OwnedTlsaRecord {
  /** The owner name as written (not canonicalised here), without a trailing dot. */
  readonly owner: string;
  readonly ttl: number | undefined;
  readonly record: TlsaRecord;
}

/**
 * Parse one zone-file style line: `owner [ttl] [IN] TLSA u s m hex`
 * (TTL and class in either order). The owner must be written out in full.
 */
export function parseTlsaResourceRecord(text: string): OwnedTlsaRecord {
  const tokens = tokenize(text);
  const owner = tokens.shift();
  if (owner === undefined) throw new TlsaParseError('empty record');
  let ttl: number | undefined;
  let sawClass = false;
  for (;;) {
    const token = tokens[0];
    if (token === undefined) throw new TlsaParseError("missing record type 'TLSA'");
    if (/^\d+$/.test(token) && ttl === undefined) {
      ttl = Number(token);
      if (!Number.isSafeInteger(ttl) || ttl > 0x7fffffff) throw new TlsaParseError(`TTL ${token} is out of range`);
      tokens.shift();
    } else if (token.toUpperCase() === 'IN' && !sawClass) {
      sawClass = true;
      tokens.shift();
    } else if (token.toUpperCase() === 'TLSA') {
      tokens.shift();
      break;
    } else {
      throw new TlsaParseError(`expected TTL, class IN or type TLSA, found '${token}'`);
    }
  }
  return { owner: owner.endsWith('.') ? owner.slice(0, -1) : owner, ttl, record: parseRdataTokens(tokens) };
}

/** Parse TLSA RDATA from the wire (RFC 6698 section 2.1). */
export function parseTlsaWire(rdata: Uint8Array): TlsaRecord {
  if (rdata.length < 4) {
    throw new TlsaParseError(`TLSA RDATA is ${rdata.length} bytes; at least 4 are needed (3 fields and some data)`);
  }
  const bytes = Buffer.from(rdata.buffer, rdata.byteOffset, rdata.byteLength);
  return {
    usage: bytes[0] as number,
    selector: bytes[1] as number,
    matchingType: bytes[2] as number,
    data: Buffer.from(bytes.subarray(3)),
  };
}

export function encodeTlsaWire(record: TlsaRecord): Buffer {
  return Buffer.concat([Buffer.from([record.usage, record.selector, record.matchingType]), record.data]);
}

/** `3 1 1 abcd…` (lowercase hex, one token). */
export function formatTlsaRdata(record: TlsaRecord): string {
  return `${record.usage} ${record.selector} ${record.matchingType} ${record.data.toString('hex')}`;
}

/** `owner. IN TLSA 3 1 1 abcd…` when an owner is given, else the RDATA alone. */
export function formatTlsaRecord(record: TlsaRecord, owner?: string): string {
  const rdata = formatTlsaRdata(record);
  return owner === undefined ? rdata : `${owner.endsWith('.') ? owner : `${owner}.`} IN TLSA ${rdata}`;
}

/** "DANE-EE(3) SPKI(1) SHA2-256(1)": for logs and CLI output. */
export function describeTlsaParameters(record: Pick<TlsaRecord, 'usage' | 'selector' | 'matchingType'>): string {
  const name = (table: Readonly<Record<number, string>>, v: number): string => `${table[v] ?? 'unknown'}(${v})`;
  return `${name(USAGE_NAMES, record.usage)} ${name(SELECTOR_NAMES, record.selector)} ${name(MATCHING_TYPE_NAMES, record.matchingType)}`;
}

/** Apply a known matching type to selected bytes; undefined for unknown types. */
export function applyMatchingType(matchingType: number, selected: Buffer): Buffer | undefined {
  switch (matchingType) {
    case MatchingType.FULL:
      return selected;
    case MatchingType.SHA256:
      return createHash('sha256').update(selected).digest();
    case MatchingType.SHA512:
      return createHash('sha512').update(selected).digest();
    default:
      return undefined;
  }
}

export function sameTlsaRecord(a: TlsaRecord, b: TlsaRecord): boolean {
  return a.usage === b.usage && a.selector === b.selector && a.matchingType === b.matchingType && a.data.equals(b.data);
}

/**
 * The TLSA record that designates `cert` with the given parameters
 * (e.g. `3 1 1` for the client's own key, `2 0 1` for its CA certificate).
 */
export function tlsaRecordForCertificate(cert: { readonly der: Buffer; readonly spki: Buffer }, usage: number, selector: number, matchingType: number): TlsaRecord {
  if (!Number.isInteger(usage) || usage < 0 || usage > 3) throw new RangeError(`usage ${usage} is not 0..3`);
  if (selector !== Selector.CERT && selector !== Selector.SPKI) throw new RangeError(`selector ${selector} is not 0 or 1`);
  const data = applyMatchingType(matchingType, selector === Selector.CERT ? cert.der : cert.spki);
  if (data === undefined) throw new RangeError(`matching type ${matchingType} is not 0, 1 or 2`);
  return { usage, selector, matchingType, data: Buffer.from(data) };
}
