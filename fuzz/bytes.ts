/**
 * Byte-level mutations of a seed, described as data so that fast-check can
 * generate, replay (seed + path) and shrink them. Positions and lengths are
 * taken modulo the current input size, so every operation applies to every
 * input and shrinking towards 0 stays meaningful.
 */
import fc from 'fast-check';

/** Byte values that sit on boundaries parsers care about. */
export const INTERESTING_8: readonly number[] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x10, 0x1f, 0x20, 0x2e, 0x3a, 0x40, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84, 0xc0, 0xfe, 0xff];
/** 16-bit values: lengths around powers of two, DNS compression pointers, TLS versions. */
export const INTERESTING_16: readonly number[] = [
  0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x000c, 0x0010, 0x007f, 0x0080, 0x00ff, 0x0100, 0x03ff, 0x0400, 0x0401, 0x0fff, 0x1000, 0x3fff, 0x4000, 0x4001, 0x7fff, 0x8000, 0xc000, 0xc00c,
  0xfeff, 0xfffe, 0xffff, 0x0301, 0x0303, 0x0304,
];

export type ByteOp =
  | { readonly op: 'flip'; readonly at: number; readonly bit: number }
  | { readonly op: 'set'; readonly at: number; readonly value: number }
  | { readonly op: 'set16'; readonly at: number; readonly value: number }
  | { readonly op: 'add'; readonly at: number; readonly delta: number }
  | { readonly op: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly op: 'delete'; readonly at: number; readonly length: number }
  | { readonly op: 'duplicate'; readonly at: number; readonly length: number; readonly to: number; readonly times: number }
  | { readonly op: 'truncate'; readonly at: number }
  | { readonly op: 'splice'; readonly donor: number; readonly from: number; readonly length: number; readonly at: number };

const position = fc.nat();
const byteValue = fc.oneof(fc.constantFrom(...INTERESTING_8), fc.integer({ min: 0, max: 255 }));

export const byteOpArb: fc.Arbitrary<ByteOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('set' as const), at: position, value: byteValue }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('set16' as const), at: position, value: fc.constantFrom(...INTERESTING_16) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('add' as const), at: position, delta: fc.integer({ min: -4, max: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 64 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('duplicate' as const),
      at: position,
      length: fc.integer({ min: 1, max: 64 }),
      to: position,
      times: fc.integer({ min: 1, max: 64 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: position }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('splice' as const), donor: fc.nat(), from: position, length: fc.integer({ min: 1, max: 128 }), at: position }),
  },
);

/** Up to `max` byte operations (none is allowed: the seed itself is an input too). */
export const byteOpsArb = (max: number): fc.Arbitrary<readonly ByteOp[]> => fc.array(byteOpArb, { maxLength: max });

/** Inputs never grow past this, so one mutation cannot turn into a memory test. */
export const MAX_MUTATED_BYTES = 128 * 1024;

/** Apply byte operations to a copy of `input`; `donors` are the other seeds, for splicing. */
export function applyByteOps(input: Uint8Array, ops: readonly ByteOp[], donors: readonly Uint8Array[]): Buffer {
  let b = Buffer.from(input);
  for (const o of ops) {
    const n = b.length;
    switch (o.op) {
      case 'flip':
        if (n > 0) b[o.at % n] = (b[o.at % n] ?? 0) ^ (1 << o.bit);
        break;
      case 'set':
        if (n > 0) b[o.at % n] = o.value;
        break;
      case 'set16':
        if (n >= 2) b.writeUInt16BE(o.value, o.at % (n - 1));
        break;
      case 'add':
        if (n > 0) b[o.at % n] = ((b[o.at % n] ?? 0) + o.delta) & 0xff;
        break;
      case 'insert': {
        const at = o.at % (n + 1);
        b = Buffer.concat([b.subarray(0, at), o.bytes, b.subarray(at)]);
        break;
      }
      case 'delete': {
        if (n === 0) break;
        const at = o.at % n;
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + o.length)]);
        break;
      }
      case 'duplicate': {
        if (n === 0) break;
        const from = o.at % n;
        const chunk = b.subarray(from, from + o.length);
        const to = o.to % (n + 1);
        b = Buffer.concat([b.subarray(0, to), ...Array.from({ length: o.times }, () => chunk), b.subarray(to)]);
        break;
      }
      case 'truncate':
        b = b.subarray(0, o.at % (n + 1));
        break;
      case 'splice': {
        const donor = donors.length === 0 ? b : (donors[o.donor % donors.length] ?? b);
        if (donor.length === 0) break;
        const from = o.from % donor.length;
        const at = o.at % (n + 1);
        b = Buffer.concat([b.subarray(0, at), donor.subarray(from, from + o.length), b.subarray(at)]);
        break;
      }
    }
    if (b.length > MAX_MUTATED_BYTES) b = b.subarray(0, MAX_MUTATED_BYTES);
  }
  return Buffer.from(b);
}
