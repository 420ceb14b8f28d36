/**
 * Issue 10, finding 11: peeking at a ClientHello must cost linear work in
 * the bytes received, however the client fragments it (1-byte TLS records,
 * 1-byte TCP writes). The old peek re-joined and re-parsed the whole buffer
 * on every data event: quadratic.
 *
 * peekSocket runs over a PassThrough stream, where every write is one data
 * event (deterministic, unlike TCP), with the real ClientHello parser wrapped
 * to count its invocations and the bytes it was handed.
 */
import { PassThrough } from 'node:stream';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseClientHello, type ClientHelloInfo } from '../../src/protocol/client-hello.js';
import { parseProxyHeader, encodeProxyV2 } from '../../src/protocol/proxy-protocol.js';
import { peekSocket, type IncrementalParser, type PeekResult } from '../../src/connection/peek.js';
import { alpnExtension, daneClientIdExtension, ext, helloMessage, records, sniExtension, versionsExtension } from '../lab/client-hello-builder.js';

const MAX = 16 * 1024;

/** A realistic ClientHello message (with padding to `size` bytes when asked). */
function hello(size?: number): Buffer {
  const extensions = [sniExtension('broker.example.test'), alpnExtension('mqtt'), versionsExtension(0x0304, 0x0303), daneClientIdExtension('nas1._device.example.test')];
  const base = helloMessage({ extensions });
  if (size === undefined || size <= base.length + 4) return base;
  return helloMessage({ extensions: [...extensions, ext(21, Buffer.alloc(size - base.length - 4))] });
}

interface Counted<T> {
  readonly parse: IncrementalParser<T>;
  calls: number;
  bytes: number;
}

function countedClientHelloParser(): Counted<ClientHelloInfo> {
  const counted: Counted<ClientHelloInfo> = {
    calls: 0,
    bytes: 0,
    parse: (buffered) => {
      counted.calls++;
      counted.bytes += buffered.length;
      const parsed = parseClientHello(buffered, { maxBytes: MAX });
      if (parsed.status === 'complete') return { status: 'complete', value: parsed.hello, consumed: parsed.hello.recordBytes };
      return parsed;
    },
  };
  return counted;
}

/** Feed `pieces` one write (= one data event) at a time, as listener.ts peeks a ClientHello. */
async function peekPieces<T>(pieces: readonly Buffer[], parse: IncrementalParser<T>, maxBytes = MAX + 5): Promise<{ result: PeekResult<T>; unshifted: Buffer }> {
  const stream = new PassThrough();
  // peekSocket uses only the Readable side of a socket (data/end/close/error, pause/resume/unshift).
  const result = peekSocket(stream as unknown as Socket, parse, { maxBytes, timeoutMs: 10_000, unshiftAll: true });
  for (const piece of pieces) {
    stream.write(piece);
    await Promise.resolve();
  }
  const settled = await result;
  const unshifted = (stream.read() as Buffer | null) ?? Buffer.alloc(0);
  stream.destroy();
  return { result: settled, unshifted };
}

/** Every byte of `b` as its own piece. */
const bytewise = (b: Buffer): Buffer[] => [...b].map((x) => Buffer.from([x]));

describe('finding 11: the ClientHello peek does linear work', () => {
  it.each([
    ['one record, one write', (m: Buffer) => [records(m)]],
    ['1-byte TLS records, one record per write', (m: Buffer) => bytewise(m).map((b) => records(b))],
    ['1-byte TLS records, 1-byte TCP writes', (m: Buffer) => bytewise(records(m, 1))],
    ['one record, 1-byte writes', (m: Buffer) => bytewise(records(m))],
    [
      '7-byte records, 3-byte writes',
      (m: Buffer) => {
        const wire = records(m, 7);
        const out: Buffer[] = [];
        for (let i = 0; i < wire.length; i += 3) out.push(wire.subarray(i, i + 3));
        return out;
      },
    ],
  ])('%s: the decision is right, every byte is handed on, the parser runs at most 3 times', async (_label, split) => {
    for (const size of [undefined, 600, 2_000]) {
      const message = hello(size);
      const pieces = split(message);
      const wire = Buffer.concat(pieces);
      const counted = countedClientHelloParser();
      const { result, unshifted } = await peekPieces(pieces, counted.parse);
      expect(result.status).toBe('complete');
      if (result.status !== 'complete') return;
      expect(result.value).toMatchObject({ serverName: 'broker.example.test', alpn: ['mqtt'], daneClientId: { present: true, name: 'nas1._device.example.test' }, recordBytes: wire.length });
      expect(unshifted.equals(wire)).toBe(true);
      // Linear: a constant number of parses, each over at most the whole buffer.
      expect(counted.calls).toBeLessThanOrEqual(3);
      expect(counted.bytes).toBeLessThanOrEqual(3 * wire.length);
    }
  });

  it('the largest ClientHello the limit allows, in 1-byte records: still a constant number of parses', async () => {
    // 1-byte records cost 6 wire bytes per handshake byte: the wire limit (MAX + 5) allows ~2,700 of them.
    const message = hello(2_700);
    const pieces = bytewise(message).map((b) => records(b));
    const wireBytes = pieces.length * 6;
    expect(wireBytes).toBeLessThanOrEqual(MAX + 5);
    const counted = countedClientHelloParser();
    const { result } = await peekPieces(pieces, counted.parse);
    expect(result.status).toBe('complete');
    expect(counted.calls).toBeLessThanOrEqual(3);
    expect(counted.bytes).toBeLessThanOrEqual(3 * wireBytes);
  });

  it.each([
    ['a record that is not a handshake', Buffer.from([23, 3, 3, 0, 1, 0]), 'not a TLS handshake record (content type 23)'],
    ['a plain HTTP request', Buffer.from('GET / HTTP/1.1\r\n'), 'plain HTTP request on a TLS port'],
    ['a bad record version', Buffer.from([22, 2, 0, 0, 1, 1]), 'TLS record version major byte 0x02 is not 0x03'],
    ['an empty record', Buffer.from([22, 3, 1, 0, 0]), 'empty TLS handshake record (length 0)'],
    ['a record over 16384 bytes', Buffer.from([22, 3, 1, 0x40, 0x01]), 'TLS record length 16385 exceeds 16384'],
    ['a handshake that is not a ClientHello', Buffer.from([22, 3, 1, 0, 1, 2]), 'expected a ClientHello (handshake type 1), got handshake type 2'],
    ['a ClientHello over the limit', Buffer.from([22, 3, 1, 0, 4, 1, 0, 0x40, 0x00]), `ClientHello of ${0x4000 + 4} bytes exceeds the limit of ${MAX}`],
    ['bytes after the ClientHello in its record', Buffer.concat([records(hello()).subarray(0, 3), Buffer.from([0x01, 0x00]), records(hello()).subarray(5)]), undefined],
  ])("%s, one byte per write: refused with the parser's own reason as soon as the framing shows it", async (_label, bytes, reason) => {
    const counted = countedClientHelloParser();
    const { result } = await peekPieces(bytewise(bytes), counted.parse);
    expect(result.status).toBe('invalid');
    if (reason !== undefined) expect(result).toEqual({ status: 'invalid', reason });
    else expect(result).toMatchObject({ status: 'invalid', reason: expect.stringMatching(/bytes after the ClientHello in the same record$/) });
    expect(counted.calls).toBeLessThanOrEqual(3);
  });

  it('records beyond the wire limit are refused as the parser refuses them', async () => {
    const counted = countedClientHelloParser();
    // A first record of 100 bytes (a ClientHello of 16,372 bytes begins), then a record announcing
    // 16,384 bytes: more than the limit leaves room for.
    const first = Buffer.concat([Buffer.from([22, 3, 1, 0, 100, 1, 0, 0x3f, 0xf0]), Buffer.alloc(96)]);
    const { result } = await peekPieces(bytewise(Buffer.concat([first, Buffer.from([22, 3, 1, 0x40, 0x00, 1])])), counted.parse);
    expect(result).toEqual({ status: 'invalid', reason: `ClientHello records exceed the limit of ${MAX + 5} bytes` });
    expect(counted.calls).toBeLessThanOrEqual(3);
  });

  it('a PROXY v2 header (not TLS) is still parsed chunk by chunk and its payload handed on', async () => {
    const header = encodeProxyV2({ addresses: { family: 'tcp4', sourceAddress: '198.51.100.7', sourcePort: 1, destinationAddress: '203.0.113.1', destinationPort: 2 } });
    const payload = records(hello());
    const parse: IncrementalParser<number> = (buffered) => {
      const parsed = parseProxyHeader(buffered);
      if (parsed.status === 'complete') return { status: 'complete', value: parsed.version, consumed: parsed.headerBytes };
      if (parsed.status === 'incomplete') return { status: 'incomplete' };
      return { status: 'invalid', reason: parsed.status };
    };
    const stream = new PassThrough();
    const result = peekSocket(stream as unknown as Socket, parse, { maxBytes: 4112, timeoutMs: 10_000, unshiftAll: false });
    for (const piece of bytewise(Buffer.concat([header, payload.subarray(0, 10)]))) stream.write(piece);
    expect(await result).toEqual({ status: 'complete', value: 2, consumed: header.length });
    // Everything after the header, unshifted and written since: one read() on Node 20, several on Node 26.
    const rest: Buffer[] = [];
    for (let chunk = stream.read() as Buffer | null; chunk !== null; chunk = stream.read() as Buffer | null) rest.push(chunk);
    expect(Buffer.concat(rest).equals(payload.subarray(0, 10))).toBe(true);
    stream.destroy();
  });
});

describe('the PROXY header peek (framing auto) with a TLS record where the header should be', () => {
  it('is refused on the first chunk, not when the ClientHello is complete', async () => {
    const parse: IncrementalParser<number> = (buffered) => {
      const parsed = parseProxyHeader(buffered);
      if (parsed.status === 'complete') return { status: 'complete', value: parsed.version, consumed: parsed.headerBytes };
      if (parsed.status === 'incomplete') return { status: 'incomplete' };
      return { status: 'invalid', reason: parsed.status === 'invalid' ? parsed.reason : 'a PROXY protocol header is required from this address' };
    };
    // Only the first 5 bytes of a record arrive: the framing alone would wait for more.
    const { result } = await peekPieces([Buffer.from([22, 3, 1, 0, 200])], parse, 4112);
    expect(result).toEqual({ status: 'invalid', reason: 'a PROXY protocol header is required from this address' });
  });
});
