/**
 * Read a TLS ClientHello from a raw socket without consuming it: bytes are
 * buffered (bounded) until the parser has the whole message, then pushed
 * back with unshift() so node:tls sees every byte unchanged. The same
 * mechanism reads an inbound PROXY protocol header first, when configured.
 *
 * Linear work: chunks are kept as they arrive and joined only when the
 * parser is asked. For a TLS handshake stream a small framing tracker
 * follows the records as bytes arrive (O(1) per record) and asks the parser
 * only when its answer can have changed: on the first chunk, when the
 * handshake message's header is known, when the message is complete, or as
 * soon as the framing breaks a rule (so the parser reports it, with its own
 * reason). A ClientHello sent as 1-byte records costs at most 3 parses, not
 * one per record.
 */
import type { Socket } from 'node:net';
import { TLS_ALERTS } from '../reasons.js';

export type PeekResult<T> =
  | { readonly status: 'complete'; readonly value: T; readonly consumed: number }
  | { readonly status: 'invalid'; readonly reason: string }
  | { readonly status: 'timeout' }
  | { readonly status: 'closed' };

export type IncrementalParser<T> = (buffered: Buffer) => { status: 'incomplete' } | { status: 'invalid'; reason: string } | { status: 'complete'; value: T; consumed: number };

/**
 * When to ask the parser. 'tls-handshake': the stream is TLS records carrying
 * a handshake message that the parser needs whole (a ClientHello); 'none':
 * after every chunk; 'auto' (default): 'tls-handshake' when the first byte is
 * 22 (a TLS handshake record), else 'none'.
 */
export type PeekFraming = 'auto' | 'tls-handshake' | 'none';

export interface PeekOptions {
  readonly maxBytes: number;
  readonly timeoutMs: number;
  readonly unshiftAll: boolean;
  readonly framing?: PeekFraming;
}

const CONTENT_TYPE_HANDSHAKE = 22;
const RECORD_HEADER_BYTES = 5;
const HANDSHAKE_HEADER_BYTES = 4;
const MAX_RECORD_PAYLOAD = 16384;
const HANDSHAKE_CLIENT_HELLO = 1;

/**
 * Follows TLS record framing incrementally and says when a parser that needs
 * the first whole handshake message may answer something new. It checks
 * what the ClientHello parser checks on the framing (content type, version
 * major byte, record length 1..16384, the records' total within `maxWireBytes`,
 * handshake type, no bytes beyond the message) and, on the first violation,
 * stops following and asks for a parse on every chunk: the parser then
 * reports the violation with its own reason.
 */
export class TlsHandshakeFraming {
  private wire = 0;
  private readonly header = Buffer.alloc(RECORD_HEADER_BYTES);
  private headerFill = 0;
  private payloadLeft = 0;
  private readonly handshakeHeader: number[] = [];
  private messageLength = -1;
  /** Handshake bytes announced by the record headers seen so far. */
  private announced = 0;
  /** Framing broken, or the message complete: every further chunk asks for a parse. */
  private settled = false;

  constructor(private readonly maxWireBytes: number) {}

  /** Feed the next bytes of the stream; true when the parser should be asked now. */
  feed(chunk: Buffer): boolean {
    if (this.settled) return true;
    let ask = false;
    let i = 0;
    while (i < chunk.length) {
      if (this.payloadLeft === 0) {
        // Record header, byte by byte, checked as early as the parser checks it.
        if (this.headerFill === 0 && this.wire + RECORD_HEADER_BYTES + 1 > this.maxWireBytes) return this.settle();
        const b = chunk[i] ?? 0;
        this.header[this.headerFill++] = b;
        this.wire++;
        i++;
        if (this.headerFill === 1 && b !== CONTENT_TYPE_HANDSHAKE) return this.settle();
        if (this.headerFill === 2 && b !== 3) return this.settle();
        if (this.headerFill < RECORD_HEADER_BYTES) continue;
        this.headerFill = 0;
        const length = this.header.readUInt16BE(3);
        if (length === 0 || length > MAX_RECORD_PAYLOAD || this.wire + length > this.maxWireBytes) return this.settle();
        this.announced += length;
        if (this.messageLength >= 0 && this.announced > this.messageLength) return this.settle();
        this.payloadLeft = length;
        continue;
      }
      const take = Math.min(this.payloadLeft, chunk.length - i);
      for (let k = 0; k < take && this.handshakeHeader.length < HANDSHAKE_HEADER_BYTES; k++) {
        const b = chunk[i + k] ?? 0;
        if (this.handshakeHeader.length === 0 && b !== HANDSHAKE_CLIENT_HELLO) return this.settle();
        this.handshakeHeader.push(b);
        if (this.handshakeHeader.length === HANDSHAKE_HEADER_BYTES) {
          const [, l1 = 0, l2 = 0, l3 = 0] = this.handshakeHeader;
          this.messageLength = HANDSHAKE_HEADER_BYTES + ((l1 << 16) | (l2 << 8) | l3);
          // The parser checks the announced size against its own limit now.
          ask = true;
          if (this.announced > this.messageLength) return this.settle();
        }
      }
      i += take;
      this.wire += take;
      this.payloadLeft -= take;
      // A record ends with the whole message: the parser can complete (the rest of the chunk is its business).
      if (this.payloadLeft === 0 && this.messageLength >= 0 && this.announced >= this.messageLength) return this.settle();
    }
    return ask;
  }

  private settle(): true {
    this.settled = true;
    return true;
  }
}

export type PeekStep<T> =
  { readonly status: 'more' } | { readonly status: 'complete'; readonly value: T; readonly consumed: number; readonly buffered: Buffer } | { readonly status: 'invalid'; readonly reason: string };

/**
 * The buffering and parsing of peekSocket without the socket: push chunks,
 * get 'more', 'complete' (with every byte buffered) or 'invalid'. Counts the
 * parser's work (`parses`, `parsedBytes`) for tests and benchmarks.
 */
export class PeekAccumulator<T> {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private framing: TlsHandshakeFraming | 'none' | undefined;
  parses = 0;
  parsedBytes = 0;

  constructor(
    private readonly parse: IncrementalParser<T>,
    private readonly options: { readonly maxBytes: number; readonly framing?: PeekFraming },
  ) {}

  push(chunk: Buffer): PeekStep<T> {
    if (chunk.length === 0) return { status: 'more' };
    this.chunks.push(chunk);
    this.length += chunk.length;
    const first = this.framing === undefined;
    if (this.framing === undefined) {
      const mode = this.options.framing ?? 'auto';
      const tls = mode === 'tls-handshake' || (mode === 'auto' && chunk[0] === CONTENT_TYPE_HANDSHAKE);
      this.framing = tls ? new TlsHandshakeFraming(this.options.maxBytes) : 'none';
    }
    // The first chunk always goes to the parser: one that expects something else than TLS (a PROXY
    // header) refuses a TLS record at once instead of waiting for the framing to have news.
    const ask = this.framing === 'none' ? true : this.framing.feed(chunk) || first;
    if (ask) {
      const buffered = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.length);
      if (this.chunks.length > 1) {
        this.chunks.length = 0;
        this.chunks.push(buffered);
      }
      this.parses++;
      this.parsedBytes += buffered.length;
      const parsed = this.parse(buffered);
      if (parsed.status === 'complete') return { status: 'complete', value: parsed.value, consumed: parsed.consumed, buffered };
      if (parsed.status === 'invalid') return { status: 'invalid', reason: parsed.reason };
    }
    if (this.length > this.options.maxBytes) return { status: 'invalid', reason: `more than ${this.options.maxBytes} bytes without a complete message` };
    return { status: 'more' };
  }
}

/**
 * Buffer data from `socket` until `parse` completes, fails, `maxBytes` is
 * exceeded or `timeoutMs` passes. On completion the socket is paused and
 * the bytes after `consumed` (and, if `unshiftAll`, all bytes) are unshifted.
 */
export function peekSocket<T>(socket: Socket, parse: IncrementalParser<T>, options: PeekOptions): Promise<PeekResult<T>> {
  return new Promise((resolve) => {
    const accumulator = new PeekAccumulator(parse, options);
    const finish = (result: PeekResult<T>, unshift?: Buffer): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onClosed);
      socket.removeListener('close', onClosed);
      socket.removeListener('error', onClosed);
      socket.pause();
      if (unshift !== undefined && unshift.length > 0) socket.unshift(unshift);
      resolve(result);
    };
    const onClosed = (): void => finish({ status: 'closed' });
    const onData = (chunk: Buffer): void => {
      const step = accumulator.push(chunk);
      if (step.status === 'complete') {
        finish({ status: 'complete', value: step.value, consumed: step.consumed }, options.unshiftAll ? step.buffered : step.buffered.subarray(step.consumed));
      } else if (step.status === 'invalid') {
        finish({ status: 'invalid', reason: step.reason });
      }
    };
    const timer = setTimeout(() => finish({ status: 'timeout' }), options.timeoutMs);
    socket.on('data', onData);
    socket.once('end', onClosed);
    socket.once('close', onClosed);
    socket.once('error', onClosed);
    socket.resume();
  });
}

/** A fatal TLS alert record (RFC 8446 6.2) with `description` (a TLS_ALERTS value): handshake_failure by default. */
export function fatalAlertRecord(description: number = TLS_ALERTS.handshake_failure): Buffer {
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]);
}
