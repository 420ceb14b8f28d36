/**
 * Read a TLS ClientHello from a raw socket without consuming it: bytes are
 * buffered (bounded) until the parser has the whole message, then pushed
 * back with unshift() so node:tls sees every byte unchanged. The same
 * mechanism reads an inbound PROXY protocol header first, when configured.
 */
import type { Socket } from 'node:net';

export type PeekResult<T> =
  | { readonly status: 'complete'; readonly value: T; readonly consumed: number }
  | { readonly status: 'invalid'; readonly reason: string }
  | { readonly status: 'timeout' }
  | { readonly status: 'closed' };

export type IncrementalParser<T> = (
  buffered: Buffer,
) => { status: 'incomplete' } | { status: 'invalid'; reason: string } | { status: 'complete'; value: T; consumed: number };

/**
 * Buffer data from `socket` until `parse` completes, fails, `maxBytes` is
 * exceeded or `timeoutMs` passes. On completion the socket is paused and
 * the bytes after `consumed` (and, if `unshiftAll`, all bytes) are unshifted.
 */
export function peekSocket<T>(
  socket: Socket,
  parse: IncrementalParser<T>,
  options: { maxBytes: number; timeoutMs: number; unshiftAll: boolean },
): Promise<PeekResult<T>> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
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
      chunks.push(chunk);
      length += chunk.length;
      const buffered = chunks.length === 1 ? chunk : Buffer.concat(chunks, length);
      if (chunks.length > 1) {
        chunks.length = 0;
        chunks.push(buffered);
      }
      const parsed = parse(buffered);
      if (parsed.status === 'complete') {
        finish({ status: 'complete', value: parsed.value, consumed: parsed.consumed }, options.unshiftAll ? buffered : buffered.subarray(parsed.consumed));
      } else if (parsed.status === 'invalid') {
        finish({ status: 'invalid', reason: parsed.reason });
      } else if (length > options.maxBytes) {
        finish({ status: 'invalid', reason: `more than ${options.maxBytes} bytes without a complete message` });
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

/** A fatal TLS alert record (RFC 8446 6.2): handshake_failure (40) by default. */
export function fatalAlertRecord(description = 40): Buffer {
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]);
}
