/**
 * A tiny raw HTTP/2 frame kit for attack tests (RFC 9113): it writes the
 * frames a well-behaved client library refuses to send (connection-specific
 * headers, duplicated or misplaced pseudo-headers, CONTINUATION floods,
 * streams reset as soon as opened) and parses what the server sends back.
 *
 * Header blocks are HPACK literals without indexing with plain (not
 * Huffman) strings: every field costs its bytes, nothing is left in a
 * dynamic table, and each block decodes on its own. Reading the server's
 * header blocks is only done far enough to find `:status` when it is sent
 * as a static-table index or a plain literal (see statusOf). Test tooling only.
 */
import type { Duplex } from 'node:stream';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
export const SETTING = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6 } as const;
/** RFC 9113 §7 error codes. */
export const H2_ERROR = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  SETTINGS_TIMEOUT: 4,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  CONNECT_ERROR: 10,
  ENHANCE_YOUR_CALM: 11,
  INADEQUATE_SECURITY: 12,
  HTTP_1_1_REQUIRED: 13,
} as const;

/** One frame: a 9-byte header and its payload. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length > 0xffffff) throw new Error('frame payload over 2^24-1 bytes');
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix. */
export function hpackInteger(value: number, prefixBits: number, first = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const bytes = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

function hpackString(text: string | Buffer): Buffer {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  // H bit 0: the octets as they are.
  return Buffer.concat([hpackInteger(bytes.length, 7), bytes]);
}

/** A header field as a literal without indexing, new name (RFC 7541 §6.2.2): 0x00, name, value. */
export function literal(name: string, value: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
}

/** A header block of the fields, in the order given (pseudo-headers wherever they are put). */
export function headerBlock(fields: ReadonlyArray<readonly [string, string | Buffer]>): Buffer {
  return Buffer.concat(fields.map(([name, value]) => literal(name, value)));
}

/** The fields of an ordinary GET (add or override with `extra`, appended after). */
export function getFields(path: string, authority: string, extra: ReadonlyArray<readonly [string, string]> = []): Array<readonly [string, string]> {
  return [[':method', 'GET'], [':scheme', 'https'], [':path', path], [':authority', authority], ...extra];
}

export function settingsFrame(settings: ReadonlyArray<readonly [number, number]> = []): Buffer {
  const payload = Buffer.alloc(settings.length * 6);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, payload);
}

export const settingsAck = (): Buffer => frame(FRAME.SETTINGS, FLAG.ACK, 0);

/** HEADERS with the block (END_HEADERS unless `endHeaders` is false; END_STREAM when `endStream`). */
export function headersFrame(streamId: number, block: Buffer, options: { endStream?: boolean; endHeaders?: boolean } = {}): Buffer {
  const flags = (options.endStream === true ? FLAG.END_STREAM : 0) | (options.endHeaders === false ? 0 : FLAG.END_HEADERS);
  return frame(FRAME.HEADERS, flags, streamId, block);
}

export function continuationFrame(streamId: number, block: Buffer, endHeaders = false): Buffer {
  return frame(FRAME.CONTINUATION, endHeaders ? FLAG.END_HEADERS : 0, streamId, block);
}

export function dataFrame(streamId: number, data: Buffer, endStream = false): Buffer {
  return frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, streamId, data);
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, payload);
}

export function goawayFrame(lastStreamId: number, code: number): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(lastStreamId & 0x7fffffff);
  payload.writeUInt32BE(code, 4);
  return frame(FRAME.GOAWAY, 0, 0, payload);
}

export function pingFrame(data: Buffer = Buffer.alloc(8), ack = false): Buffer {
  if (data.length !== 8) throw new Error('PING carries 8 bytes');
  return frame(FRAME.PING, ack ? FLAG.ACK : 0, 0, data);
}

export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment & 0x7fffffff);
  return frame(FRAME.WINDOW_UPDATE, 0, streamId, payload);
}

/** The preface, an empty SETTINGS: what opens a client connection. */
export const clientStart = (settings: ReadonlyArray<readonly [number, number]> = []): Buffer => Buffer.concat([PREFACE, settingsFrame(settings)]);

/** A frame read from the server. */
export interface ParsedFrame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
  /** GOAWAY: the last stream id and the error code. */
  readonly lastStreamId?: number;
  /** GOAWAY and RST_STREAM: the error code. */
  readonly errorCode?: number;
  /** SETTINGS (not ACK): id → value. */
  readonly settings?: ReadonlyMap<number, number>;
}

function parse(type: number, flags: number, streamId: number, payload: Buffer): ParsedFrame {
  if (type === FRAME.GOAWAY && payload.length >= 8) return { type, flags, streamId, payload, lastStreamId: payload.readUInt32BE(0) & 0x7fffffff, errorCode: payload.readUInt32BE(4) };
  if (type === FRAME.RST_STREAM && payload.length === 4) return { type, flags, streamId, payload, errorCode: payload.readUInt32BE(0) };
  if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0) {
    const settings = new Map<number, number>();
    for (let at = 0; at + 6 <= payload.length; at += 6) settings.set(payload.readUInt16BE(at), payload.readUInt32BE(at + 2));
    return { type, flags, streamId, payload, settings };
  }
  return { type, flags, streamId, payload };
}

/** Splits a byte stream into frames; keeps at most one partial frame (bounded by the frame length field). */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  /** The whole frames that `chunk` completes. */
  push(chunk: Buffer): ParsedFrame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: ParsedFrame[] = [];
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + length) break;
      const type = this.pending.readUInt8(3);
      const flags = this.pending.readUInt8(4);
      const streamId = this.pending.readUInt32BE(5) & 0x7fffffff;
      frames.push(parse(type, flags, streamId, Buffer.from(this.pending.subarray(9, 9 + length))));
      this.pending = this.pending.subarray(9 + length);
    }
    return frames;
  }
}

/** Everything a raw client saw, filled as it arrives. */
export interface FrameLog {
  readonly frames: ParsedFrame[];
  /** Set when the connection closed (either way). */
  closed: boolean;
  /** The first GOAWAY, if any. */
  goaway(): ParsedFrame | undefined;
  /** RST_STREAM frames by stream id (the last one of each). */
  resets(): Map<number, number>;
  /** The first HEADERS frame of the stream, if any. */
  headersOf(streamId: number): ParsedFrame | undefined;
}

/** Parse every frame the socket receives into a log; answers the server's SETTINGS with an ACK unless `ackSettings` is false. */
export function recordFrames(socket: Duplex, options: { ackSettings?: boolean } = {}): FrameLog {
  const reader = new FrameReader();
  const frames: ParsedFrame[] = [];
  const log: FrameLog = {
    frames,
    closed: false,
    goaway: () => frames.find((f) => f.type === FRAME.GOAWAY),
    resets: () => new Map(frames.filter((f) => f.type === FRAME.RST_STREAM).map((f) => [f.streamId, f.errorCode ?? -1])),
    headersOf: (streamId) => frames.find((f) => f.type === FRAME.HEADERS && f.streamId === streamId),
  };
  socket.on('data', (chunk: Buffer) => {
    for (const f of reader.push(chunk)) {
      frames.push(f);
      if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0 && options.ackSettings !== false && socket.writable) socket.write(settingsAck());
    }
  });
  socket.on('close', () => (log.closed = true));
  socket.on('error', () => undefined);
  return log;
}

/** RFC 7541 Appendix A entries 8-14: the :status values of the static table. */
const STATIC_STATUS: Readonly<Record<number, number>> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

/**
 * The :status of a response header block when its first field can be read
 * without Huffman decoding or a dynamic table: an indexed static-table
 * status (200, 204, 206, 304, 400, 404, 500), or a literal whose name is
 * static index 8 and whose value is a plain string. undefined otherwise.
 */
export function statusOf(block: Buffer): number | undefined {
  const first = block[0];
  if (first === undefined) return undefined;
  if ((first & 0x80) !== 0) return STATIC_STATUS[first & 0x7f];
  // Literal with incremental indexing (01xxxxxx, 6-bit name index) or without / never indexed (0000xxxx / 0001xxxx, 4-bit).
  const nameIndex = (first & 0xc0) === 0x40 ? first & 0x3f : first & 0x0f;
  if (nameIndex < 8 || nameIndex > 14) return undefined;
  const lengthByte = block[1];
  if (lengthByte === undefined || (lengthByte & 0x80) !== 0) return undefined;
  const value = block.subarray(2, 2 + (lengthByte & 0x7f)).toString('latin1');
  return /^[0-9]{3}$/.test(value) ? Number(value) : undefined;
}
