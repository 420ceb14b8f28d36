/**
 * Structure-aware mutation of a TLS ClientHello: the seed is split (by this
 * file's own minimal reader, independent of the parser under test) into the
 * fixed fields and the extension list; operations change extensions or
 * fields, then the message is re-encoded with correct lengths and cut into
 * TLS records of a chosen size, so mutations reach the extension parsers
 * instead of stopping at the record layer.
 */
import fc from 'fast-check';
import { applyByteOps, byteOpsArb, type ByteOp } from './bytes.js';

export interface HelloModel {
  readonly recordVersion: number;
  /** legacy_version, random, session_id, cipher_suites, compression_methods: kept raw. */
  readonly fixed: Buffer;
  /** undefined: the hello has no extensions block. */
  readonly extensions: ReadonlyArray<{ readonly type: number; readonly data: Buffer }> | undefined;
}

/** Split a captured ClientHello (TLS records) into its model; undefined if the capture is not one. */
export function parseHelloSeed(bytes: Buffer): HelloModel | undefined {
  const parts: Buffer[] = [];
  let off = 0;
  let recordVersion = 0x0301;
  while (off + 5 <= bytes.length && bytes[off] === 22) {
    const length = bytes.readUInt16BE(off + 3);
    if (off === 0) recordVersion = bytes.readUInt16BE(1);
    parts.push(bytes.subarray(off + 5, off + 5 + length));
    off += 5 + length;
  }
  const msg = Buffer.concat(parts);
  if (msg.length < 4 || msg[0] !== 1) return undefined;
  const end = 4 + msg.readUIntBE(1, 3);
  if (end > msg.length) return undefined;
  let p = 4 + 2 + 32;
  p += 1 + (msg[p] ?? 0); // session_id
  p += 2 + msg.readUInt16BE(p); // cipher_suites
  p += 1 + (msg[p] ?? 0); // compression_methods
  const fixed = Buffer.from(msg.subarray(4, p));
  if (p >= end) return { recordVersion, fixed, extensions: undefined };
  const extEnd = p + 2 + msg.readUInt16BE(p);
  const extensions: Array<{ type: number; data: Buffer }> = [];
  for (let q = p + 2; q + 4 <= extEnd;) {
    const type = msg.readUInt16BE(q);
    const length = msg.readUInt16BE(q + 2);
    extensions.push({ type, data: Buffer.from(msg.subarray(q + 4, q + 4 + length)) });
    q += 4 + length;
  }
  return { recordVersion, fixed, extensions };
}

const EXTENSION_TYPES = [0, 10, 13, 16, 43, 45, 51, 65500, 65281, 0x0a0a, 0xfafa, 65535];

export type HelloOp =
  | { readonly op: 'ext-bytes'; readonly ext: number; readonly ops: readonly ByteOp[] }
  | { readonly op: 'ext-remove'; readonly ext: number }
  | { readonly op: 'ext-duplicate'; readonly ext: number }
  | { readonly op: 'ext-type'; readonly ext: number; readonly type: number }
  | { readonly op: 'ext-graft'; readonly donor: number; readonly ext: number; readonly at: number }
  | { readonly op: 'fixed-bytes'; readonly ops: readonly ByteOp[] }
  | { readonly op: 'no-extensions' };

export const helloOpArb: fc.Arbitrary<HelloOp> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('ext-bytes' as const), ext: fc.nat(), ops: byteOpsArb(3) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('ext-remove' as const), ext: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('ext-duplicate' as const), ext: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('ext-type' as const),
      ext: fc.nat(),
      type: fc.oneof(fc.constantFrom(...EXTENSION_TYPES), fc.integer({ min: 0, max: 0xffff })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('ext-graft' as const), donor: fc.nat(), ext: fc.nat(), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('fixed-bytes' as const), ops: byteOpsArb(2) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'no-extensions' as const }) },
);

/** How the re-encoded message is cut into records: one record, or fragments of `size` bytes. */
export const fragmentArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(16384) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 8 }) },
  { weight: 2, arbitrary: fc.integer({ min: 9, max: 600 }) },
);

const u16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff]);

/** Apply the operations to a copy of `seed` and encode it as TLS records of at most `fragment` bytes. */
export function applyHelloOps(seed: HelloModel, ops: readonly HelloOp[], donors: readonly HelloModel[], fragment: number): Buffer {
  let fixed = seed.fixed;
  let exts = seed.extensions === undefined ? undefined : seed.extensions.map((e) => ({ ...e }));
  for (const o of ops) {
    if (o.op === 'no-extensions') {
      exts = undefined;
      continue;
    }
    if (o.op === 'fixed-bytes') {
      fixed = applyByteOps(fixed, o.ops, []);
      continue;
    }
    exts ??= [];
    const i = exts.length === 0 ? -1 : o.ext % exts.length;
    const e = i < 0 ? undefined : exts[i];
    switch (o.op) {
      case 'ext-bytes':
        if (e !== undefined) e.data = applyByteOps(e.data, o.ops, []);
        break;
      case 'ext-remove':
        if (i >= 0) exts.splice(i, 1);
        break;
      case 'ext-duplicate':
        if (e !== undefined) exts.splice(i, 0, { ...e });
        break;
      case 'ext-type':
        if (e !== undefined) e.type = o.type;
        break;
      case 'ext-graft': {
        const donor = donors.length === 0 ? seed : (donors[o.donor % donors.length] ?? seed);
        const list = donor.extensions ?? [];
        const picked = list[o.ext % Math.max(1, list.length)];
        if (picked !== undefined) exts.splice(o.at % (exts.length + 1), 0, { ...picked });
        break;
      }
    }
  }
  const extBlock =
    exts === undefined
      ? Buffer.alloc(0)
      : (() => {
          const body = Buffer.concat(exts.flatMap((e) => [u16(e.type), u16(e.data.length & 0xffff), e.data]));
          return Buffer.concat([u16(body.length & 0xffff), body]);
        })();
  const body = Buffer.concat([fixed, extBlock]);
  const message = Buffer.concat([Buffer.from([1, (body.length >> 16) & 0xff, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  const records: Buffer[] = [];
  for (let off = 0; off < message.length; off += fragment) {
    const chunk = message.subarray(off, off + fragment);
    records.push(Buffer.from([22]), u16(seed.recordVersion), u16(chunk.length), chunk);
  }
  return Buffer.concat(records);
}
