/**
 * Structure-aware mutation of DER (certificates): the seed is split into a
 * tree of TLVs, including the DER encapsulated in OCTET STRINGs and BIT
 * STRINGs (extension values, the public key), one node is changed, and every
 * length above it is recomputed. Random bytes alone rarely get past the outer
 * SEQUENCE lengths; this reaches the extension and name decoders.
 */
import fc from 'fast-check';
import { applyByteOps, byteOpsArb, type ByteOp } from './bytes.js';

export interface DerNode {
  /** Tag byte (low-tag-number form; a high tag number stays inside `content` of its parent as raw bytes). */
  tag: number;
  /** Raw content when primitive (or when its content does not parse as DER). */
  content: Buffer | undefined;
  children: DerNode[] | undefined;
  /** 0x00 for a BIT STRING whose content is DER after the unused-bits byte; undefined otherwise. */
  bitStringPad: number | undefined;
}

function readHeader(buf: Buffer, off: number, end: number): { tag: number; start: number; stop: number } | undefined {
  if (off + 2 > end) return undefined;
  const tag = buf[off] ?? 0;
  if ((tag & 0x1f) === 0x1f) return undefined; // high tag numbers: keep as raw bytes
  let length = buf[off + 1] ?? 0;
  let start = off + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3 || start + count > end) return undefined;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (buf[start + i] ?? 0);
    start += count;
  }
  if (start + length > end) return undefined;
  return { tag, start, stop: start + length };
}

/** Parse buf[start, end) as a sequence of TLVs, or undefined when it is not exactly that. */
function parseList(buf: Buffer, start: number, end: number, depth: number): DerNode[] | undefined {
  if (depth > 24) return undefined;
  const out: DerNode[] = [];
  let off = start;
  while (off < end) {
    const h = readHeader(buf, off, end);
    if (h === undefined) return undefined;
    out.push(parseNode(buf, h.tag, h.start, h.stop, depth + 1));
    off = h.stop;
  }
  return out;
}

function parseNode(buf: Buffer, tag: number, start: number, stop: number, depth: number): DerNode {
  const raw = Buffer.from(buf.subarray(start, stop));
  if (tag & 0x20) {
    const children = parseList(buf, start, stop, depth);
    if (children !== undefined) return { tag, content: undefined, children, bitStringPad: undefined };
  } else if (tag === 0x04 && stop > start) {
    const children = parseList(buf, start, stop, depth);
    if (children !== undefined) return { tag, content: undefined, children, bitStringPad: undefined };
  } else if (tag === 0x03 && stop > start + 1 && buf[start] === 0) {
    const children = parseList(buf, start + 1, stop, depth);
    if (children !== undefined && children.length > 0) return { tag, content: undefined, children, bitStringPad: 0 };
  }
  return { tag, content: raw, children: undefined, bitStringPad: undefined };
}

/** The seed as one TLV tree (a seed that is not one DER TLV becomes a single opaque node). */
export function parseDer(buf: Buffer): DerNode {
  const h = readHeader(buf, 0, buf.length);
  if (h === undefined || h.stop !== buf.length) return { tag: 0x30, content: Buffer.from(buf), children: undefined, bitStringPad: undefined };
  return parseNode(buf, h.tag, h.start, h.stop, 0);
}

function encodeLength(n: number, form: 'minimal' | 'long'): Buffer {
  if (form === 'minimal' && n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if (bytes.length === 0) bytes.push(0);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Encode with recomputed lengths; `longForm` nodes get a non-minimal (BER, not DER) length. */
export function encodeDer(node: DerNode, longForm: ReadonlySet<DerNode> = new Set()): Buffer {
  let content: Buffer;
  if (node.children !== undefined) {
    const inner = Buffer.concat(node.children.map((c) => encodeDer(c, longForm)));
    content = node.bitStringPad !== undefined ? Buffer.concat([Buffer.from([node.bitStringPad]), inner]) : inner;
  } else {
    content = node.content ?? Buffer.alloc(0);
  }
  return Buffer.concat([Buffer.from([node.tag]), encodeLength(content.length, longForm.has(node) ? 'long' : 'minimal'), content]);
}

function clone(node: DerNode): DerNode {
  return {
    tag: node.tag,
    content: node.content,
    children: node.children?.map(clone),
    bitStringPad: node.bitStringPad,
  };
}

/** Preorder list of [node, parent] pairs. */
function flatten(root: DerNode): Array<readonly [DerNode, DerNode | undefined]> {
  const out: Array<readonly [DerNode, DerNode | undefined]> = [];
  const walk = (n: DerNode, parent: DerNode | undefined): void => {
    out.push([n, parent]);
    for (const c of n.children ?? []) walk(c, n);
  };
  walk(root, undefined);
  return out;
}

const INTERESTING_TAGS = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x16, 0x17, 0x18, 0x1e, 0x30, 0x31, 0x80, 0x81, 0x82, 0x86, 0x87, 0x88, 0xa0, 0xa3];

export type DerOp =
  | { readonly op: 'bytes'; readonly node: number; readonly ops: readonly ByteOp[] }
  | { readonly op: 'tag'; readonly node: number; readonly tag: number }
  | { readonly op: 'delete'; readonly node: number }
  | { readonly op: 'repeat'; readonly node: number; readonly times: number }
  | { readonly op: 'graft'; readonly node: number; readonly donor: number; readonly donorNode: number }
  | { readonly op: 'empty'; readonly node: number }
  | { readonly op: 'long-length'; readonly node: number };

export const derOpArb: fc.Arbitrary<DerOp> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('bytes' as const), node: fc.nat(), ops: byteOpsArb(3) }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('tag' as const), node: fc.nat(), tag: fc.oneof(fc.constantFrom(...INTERESTING_TAGS), fc.integer({ min: 0, max: 255 })) }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), node: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('repeat' as const), node: fc.nat(), times: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 5, max: 3000 })) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('graft' as const), node: fc.nat(), donor: fc.nat(), donorNode: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('empty' as const), node: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('long-length' as const), node: fc.nat() }) },
);

/** Apply DER operations to a copy of `seed` and encode it with consistent lengths. */
export function applyDerOps(seed: DerNode, ops: readonly DerOp[], donors: readonly DerNode[]): Buffer {
  const root = clone(seed);
  const longForm = new Set<DerNode>();
  for (const o of ops) {
    const nodes = flatten(root);
    const [node, parent] = nodes[o.node % nodes.length] ?? [root, undefined];
    const siblings = parent?.children;
    const index = siblings?.indexOf(node) ?? -1;
    switch (o.op) {
      case 'bytes': {
        const current = node.content ?? encodeDer(node).subarray(2);
        node.content = applyByteOps(current, o.ops, []);
        node.children = undefined;
        node.bitStringPad = undefined;
        break;
      }
      case 'tag':
        node.tag = o.tag;
        break;
      case 'delete':
        if (siblings !== undefined && index >= 0) siblings.splice(index, 1);
        break;
      case 'repeat': {
        // At most ~70 KB of copies: past the certificate size limit, short of a memory test.
        const times = Math.min(o.times, Math.floor(70_000 / Math.max(1, encodeDer(node).length)));
        if (siblings !== undefined && index >= 0) siblings.splice(index, 0, ...Array.from({ length: times }, () => clone(node)));
        break;
      }
      case 'graft': {
        const donorTree = donors.length === 0 ? root : (donors[o.donor % donors.length] ?? root);
        const donorNodes = flatten(donorTree);
        const [picked] = donorNodes[o.donorNode % donorNodes.length] ?? [donorTree];
        const copy = clone(picked);
        if (siblings !== undefined && index >= 0) siblings[index] = copy;
        break;
      }
      case 'empty':
        node.content = Buffer.alloc(0);
        node.children = undefined;
        node.bitStringPad = undefined;
        break;
      case 'long-length':
        longForm.add(node);
        break;
    }
  }
  return encodeDer(root, longForm);
}
