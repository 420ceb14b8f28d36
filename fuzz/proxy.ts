/**
 * Structure-aware mutation of PROXY protocol headers. v2: the seed is split
 * into its fixed part, address block and TLVs (SSL sub-TLVs included);
 * operations change them, then the length field is recomputed and, when
 * asked, the CRC32C TLV too, so that mutations get past the framing and the
 * checksum. v1: operations replace, drop or repeat the space-separated tokens.
 */
import { crc32c } from '@node-rs/crc32';
import fc from 'fast-check';
import { applyByteOps, byteOpsArb, type ByteOp } from './bytes.js';

interface Tlv {
  type: number;
  value: Buffer;
  /** SSL (0x20): client + verify (5 bytes) and sub-TLVs, when the value parsed as such. */
  ssl: { head: Buffer; subs: Tlv[] } | undefined;
}

export type ProxyModel = { readonly version: 2; readonly fixed: Buffer; readonly addresses: Buffer; readonly tlvs: readonly Tlv[] } | { readonly version: 1; readonly tokens: readonly string[] };

const V2_SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function parseTlvs(buf: Buffer, sslAware: boolean): Tlv[] | undefined {
  const out: Tlv[] = [];
  for (let o = 0; o < buf.length;) {
    if (o + 3 > buf.length) return undefined;
    const type = buf[o] ?? 0;
    const length = buf.readUInt16BE(o + 1);
    if (o + 3 + length > buf.length) return undefined;
    const value = Buffer.from(buf.subarray(o + 3, o + 3 + length));
    const subs = sslAware && type === 0x20 && value.length >= 5 ? parseTlvs(value.subarray(5), false) : undefined;
    out.push({ type, value, ssl: subs === undefined ? undefined : { head: Buffer.from(value.subarray(0, 5)), subs } });
    o += 3 + length;
  }
  return out;
}

/** The seed's model; undefined when it is neither a well-formed v1 line nor a v2 header. */
export function parseProxySeed(bytes: Buffer): ProxyModel | undefined {
  if (bytes.subarray(0, 12).equals(V2_SIG) && bytes.length >= 16) {
    const fam = bytes[13] ?? 0;
    const addressBytes = fam === 0x11 ? 12 : fam === 0x21 ? 36 : fam === 0x31 ? 216 : 0;
    const total = 16 + bytes.readUInt16BE(14);
    const tlvs = parseTlvs(bytes.subarray(16 + addressBytes, total), true);
    if (tlvs === undefined) return undefined;
    return { version: 2, fixed: Buffer.from(bytes.subarray(0, 14)), addresses: Buffer.from(bytes.subarray(16, 16 + addressBytes)), tlvs };
  }
  const text = bytes.toString('latin1');
  const end = text.indexOf('\r\n');
  if (!text.startsWith('PROXY ') || end < 0) return undefined;
  return { version: 1, tokens: text.slice(0, end).split(' ') };
}

const TLV_TYPES = [0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x28, 0x30, 0xe4, 0xe5, 0xe6, 0xf0, 0xff];
const V1_TOKENS = [
  'PROXY',
  'TCP4',
  'TCP6',
  'UNKNOWN',
  'TCP',
  '',
  '0',
  '00',
  '65535',
  '65536',
  '99999999999',
  '-1',
  '+1',
  '1.2.3.4',
  '255.255.255.255',
  '256.1.1.1',
  '01.2.3.4',
  '1.2.3',
  '1.2.3.4.5',
  '::',
  '::1',
  '::ffff:1.2.3.4',
  '1::2::3',
  'fe80::1%eth0',
  '1:2:3:4:5:6:7:8',
  '1:2:3:4:5:6:7:8:9',
  '[::1]',
  'a'.repeat(60),
  '\t',
  ' ',
];

export type ProxyOp =
  | { readonly op: 'tlv-bytes'; readonly tlv: number; readonly sub: number; readonly inSsl: boolean; readonly ops: readonly ByteOp[] }
  | { readonly op: 'tlv-remove'; readonly tlv: number }
  | { readonly op: 'tlv-duplicate'; readonly tlv: number }
  | { readonly op: 'tlv-type'; readonly tlv: number; readonly type: number }
  | { readonly op: 'tlv-graft'; readonly donor: number; readonly tlv: number; readonly at: number }
  | { readonly op: 'fixed-bytes'; readonly ops: readonly ByteOp[] }
  | { readonly op: 'address-bytes'; readonly ops: readonly ByteOp[] }
  | { readonly op: 'token'; readonly at: number; readonly token: string }
  | { readonly op: 'token-remove'; readonly at: number }
  | { readonly op: 'token-repeat'; readonly at: number };

export const proxyOpArb: fc.Arbitrary<ProxyOp> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({ op: fc.constant('tlv-bytes' as const), tlv: fc.nat(), sub: fc.nat(), inSsl: fc.boolean(), ops: byteOpsArb(3) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('tlv-remove' as const), tlv: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('tlv-duplicate' as const), tlv: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('tlv-type' as const), tlv: fc.nat(), type: fc.oneof(fc.constantFrom(...TLV_TYPES), fc.integer({ min: 0, max: 255 })) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('tlv-graft' as const), donor: fc.nat(), tlv: fc.nat(), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('fixed-bytes' as const), ops: byteOpsArb(2) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('address-bytes' as const), ops: byteOpsArb(2) }) },
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant('token' as const), at: fc.nat(), token: fc.oneof(fc.constantFrom(...V1_TOKENS), fc.string({ maxLength: 12 })) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('token-remove' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('token-repeat' as const), at: fc.nat() }) },
);

const cloneTlv = (t: Tlv): Tlv => ({ type: t.type, value: t.value, ssl: t.ssl && { head: t.ssl.head, subs: t.ssl.subs.map(cloneTlv) } });

function encodeTlvs(list: readonly Tlv[]): Buffer {
  return Buffer.concat(
    list.map((t) => {
      const value = t.ssl === undefined ? t.value : Buffer.concat([t.ssl.head, encodeTlvs(t.ssl.subs)]);
      const head = Buffer.from([t.type, (value.length >> 8) & 0xff, value.length & 0xff]);
      return Buffer.concat([head, value]);
    }),
  );
}

/**
 * Apply the operations to a copy of `seed` and encode it. For v2 the length is recomputed and, with
 * `fixCrc`, every CRC32C TLV is set to the header's checksum.
 */
export function applyProxyOps(seed: ProxyModel, ops: readonly ProxyOp[], donors: readonly ProxyModel[], fixCrc: boolean): Buffer {
  if (seed.version === 1) {
    const tokens = [...seed.tokens];
    for (const o of ops) {
      const i = tokens.length === 0 ? 0 : ('at' in o ? o.at : 0) % tokens.length;
      if (o.op === 'token') tokens[i] = o.token;
      else if (o.op === 'token-remove') tokens.splice(i, 1);
      else if (o.op === 'token-repeat') tokens.splice(i, 0, tokens[i] ?? '');
    }
    return Buffer.from(`${tokens.join(' ')}\r\n`, 'latin1');
  }
  let fixed = seed.fixed;
  let addresses = seed.addresses;
  const tlvs = seed.tlvs.map(cloneTlv);
  for (const o of ops) {
    const i = tlvs.length === 0 ? -1 : ('tlv' in o ? o.tlv : 0) % tlvs.length;
    const t = i < 0 ? undefined : tlvs[i];
    switch (o.op) {
      case 'tlv-bytes': {
        if (t === undefined) break;
        const sub = o.inSsl && t.ssl !== undefined && t.ssl.subs.length > 0 ? t.ssl.subs[o.sub % t.ssl.subs.length] : undefined;
        if (sub !== undefined) sub.value = applyByteOps(sub.value, o.ops, []);
        else if (o.inSsl && t.ssl !== undefined) t.ssl.head = applyByteOps(t.ssl.head, o.ops, []);
        else {
          t.value = t.ssl === undefined ? t.value : encodeTlvs([t]).subarray(3);
          t.ssl = undefined;
          t.value = applyByteOps(t.value, o.ops, []);
        }
        break;
      }
      case 'tlv-remove':
        if (i >= 0) tlvs.splice(i, 1);
        break;
      case 'tlv-duplicate':
        if (t !== undefined) tlvs.splice(i, 0, cloneTlv(t));
        break;
      case 'tlv-type':
        if (t !== undefined) t.type = o.type;
        break;
      case 'tlv-graft': {
        const donor = donors[o.donor % Math.max(1, donors.length)];
        if (donor?.version !== 2 || donor.tlvs.length === 0) break;
        const picked = donor.tlvs[o.tlv % donor.tlvs.length];
        if (picked !== undefined) tlvs.splice(o.at % (tlvs.length + 1), 0, cloneTlv(picked));
        break;
      }
      case 'fixed-bytes':
        fixed = applyByteOps(fixed, o.ops, []).subarray(0, 14);
        break;
      case 'address-bytes':
        addresses = applyByteOps(addresses, o.ops, []);
        break;
      default:
        break; // v1 operations do nothing to a v2 header
    }
  }
  const rest = Buffer.concat([addresses, encodeTlvs(tlvs)]);
  const out = Buffer.concat([fixed, Buffer.from([(rest.length >> 8) & 0xff, rest.length & 0xff]), rest]);
  if (fixCrc) {
    // Zero every CRC32C value, checksum the header, write the checksum into each.
    const at: number[] = [];
    for (let o = 16 + addresses.length; o + 3 <= out.length;) {
      const length = out.readUInt16BE(o + 1);
      if (out[o] === 0x03 && length === 4 && o + 7 <= out.length) {
        at.push(o + 3);
        out.fill(0, o + 3, o + 7);
      }
      o += 3 + length;
    }
    const sum = crc32c(out);
    for (const a of at) out.writeUInt32BE(sum, a);
  }
  return out;
}
