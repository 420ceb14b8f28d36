/**
 * A TCP relay in front of a TLS server that re-frames the client's first
 * flight: the handshake bytes of the ClientHello are re-sent as TLS records
 * of `recordBytes` payload bytes each, written `writeBytes` at a time, one
 * write per event-loop turn with Nagle off (1 and 1: one-byte records in
 * one-byte TCP writes). Everything
 * after the ClientHello, both ways, is relayed unchanged. Re-framing is
 * invisible to TLS (the transcript hashes handshake messages, not records),
 * so a real client still completes its handshake through it.
 */
import { once } from 'node:events';
import * as net from 'node:net';

export interface RecordSplitter {
  readonly port: number;
  /** Wire bytes of re-framed ClientHellos sent upstream so far. */
  reframedBytes(): number;
  close(): Promise<void>;
}

/** The first handshake message's bytes out of the TLS records at the start of `buf`, or undefined if incomplete. */
function firstHandshakeMessage(buf: Buffer): { message: Buffer; recordBytes: number } | undefined {
  const payload: Buffer[] = [];
  let have = 0;
  let off = 0;
  while (off + 5 <= buf.length) {
    const length = buf.readUInt16BE(off + 3);
    if (off + 5 + length > buf.length) return undefined;
    payload.push(buf.subarray(off + 5, off + 5 + length));
    have += length;
    off += 5 + length;
    const joined = Buffer.concat(payload, have);
    if (joined.length >= 4) {
      const total = 4 + ((joined[1] ?? 0) << 16) + ((joined[2] ?? 0) << 8) + (joined[3] ?? 0);
      if (joined.length >= total) return { message: joined.subarray(0, total), recordBytes: off };
    }
  }
  return undefined;
}

export async function startRecordSplitter(target: { host: string; port: number }, options: { recordBytes: number; writeBytes: number }): Promise<RecordSplitter> {
  const sockets = new Set<net.Socket>();
  let reframed = 0;
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ host: target.host, port: target.port });
    upstream.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const first = firstHandshakeMessage(buffered);
      if (first === undefined) return;
      client.off('data', onData);
      client.pause();
      const version = buffered.readUInt16BE(1);
      const wire: Buffer[] = [];
      for (let i = 0; i < first.message.length; i += options.recordBytes) {
        const piece = first.message.subarray(i, i + options.recordBytes);
        const header = Buffer.from([22, version >> 8, version & 0xff, piece.length >> 8, piece.length & 0xff]);
        wire.push(header, piece);
      }
      const bytes = Buffer.concat(wire);
      reframed += bytes.length;
      const rest = buffered.subarray(first.recordBytes);
      void (async () => {
        if (upstream.connecting) await once(upstream, 'connect');
        // One write per turn of the event loop, so that the writes leave as separate segments.
        for (let i = 0; i < bytes.length && !upstream.destroyed; i += options.writeBytes) {
          upstream.write(bytes.subarray(i, i + options.writeBytes));
          await new Promise((resolve) => setImmediate(resolve));
        }
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream);
        upstream.pipe(client);
      })().catch(() => client.destroy());
    };
    client.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    reframedBytes: () => reframed,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
