/**
 * bench/peek-fragmented: dancegate's CPU per connection for a ClientHello
 * sent in one record versus as 1-byte TLS records (issue 10, finding 11).
 *
 * dancegate runs in a child process (TCP mode, a local TLSA file); its own
 * CPU time (process.cpuUsage, user + system) is read over IPC before and
 * after each batch. Each client sends a TLS 1.2 ClientHello of SIZE bytes
 * (padding extension) with dane_clientid naming an allowlisted client, in
 * the given framing, one write per event-loop turn with Nagle off, waits
 * for the server's first answer (ServerHello…: the peek is done), and
 * closes. Loopback only, bounded in count.
 *
 *   tsc -p tsconfig.bench.json && node dist-bench/bench/peek-fragmented.js
 *   (CONNECTIONS=20 MAX_HELLO=16384, the listener's maxClientHelloBytes; SIZE
 *   defaults to the largest ClientHello whose 1-byte records fit that limit)
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createCertificate } from '../certs/pki.js';
import { loadConfig } from '../src/config/load.js';
import { parseClientHello } from '../src/protocol/client-hello.js';
import { peekSocket } from '../src/connection/peek.js';
import { startProxy } from '../src/process/running-proxy.js';
import { PassThrough } from 'node:stream';
import { daneClientIdExtension, ext, records, sniExtension, u16, u24, u8, vec16, vec8 } from '../test/lab/client-hello-builder.js';

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 20);
/** The listener's maxClientHelloBytes: the default 16384, or up to 65536. */
const MAX_HELLO = Number(process.env.MAX_HELLO ?? 16384);
/** Handshake message size: the largest whose 1-byte records (6 wire bytes each) fit the limit (2,730 bytes for 16 KiB). */
const SIZE = Number(process.env.SIZE ?? Math.floor((MAX_HELLO + 5) / 6));
const SNI = 'bench.proxy.test';
const NAME = 'nas1._device.bench.test';

/** A TLS 1.2 ClientHello handshake message OpenSSL answers, padded to `size` bytes. */
function helloMessage(size: number): Buffer {
  const extensions = [
    sniExtension(SNI),
    ext(10, vec16(Buffer.from([0x00, 0x1d, 0x00, 0x17]))),
    ext(11, vec8(Buffer.from([0]))),
    ext(13, vec16(Buffer.from([0x04, 0x03, 0x08, 0x04, 0x04, 0x01]))),
    ext(23, Buffer.alloc(0)),
    ext(0xff01, vec8(Buffer.alloc(0))),
    daneClientIdExtension(NAME),
  ];
  const build = (padding: number): Buffer => {
    const body = Buffer.concat([
      u16(0x0303),
      randomBytes(32),
      vec8(Buffer.alloc(0)),
      vec16(Buffer.from([0xc0, 0x2b, 0xc0, 0x2f])),
      vec8(Buffer.from([0])),
      vec16(Buffer.concat([...extensions, ...(padding >= 0 ? [ext(21, Buffer.alloc(padding))] : [])])),
    ]);
    return Buffer.concat([u8(1), u24(body.length), body]);
  };
  const bare = build(-1).length;
  return size > bare + 4 ? build(size - bare - 4) : build(-1);
}

async function child(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-bench-peek-'));
  const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], extendedKeyUsage: 'server' });
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  await writeFile(join(dir, 'tlsa.txt'), '');
  // No penalty box: every bench client goes away mid-handshake, which is what it punishes.
  await writeFile(
    join(dir, 'dancegate.yaml'),
    `resolver:
  localTlsaFile: tlsa.txt
limits:
  penaltyBox: false
listeners:
  - name: bench
    listen: 127.0.0.1:0
    mode: tcp
    maxClientHelloBytes: ${MAX_HELLO}
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - upstream: tcp://127.0.0.1:9
        allow: ['*._device.bench.test']
`,
  );
  const config = await loadConfig(join(dir, 'dancegate.yaml'));
  const proxy = await startProxy(config, { log: () => undefined });
  process.on('message', (m: string) => {
    if (m === 'cpu') {
      const u = process.cpuUsage();
      process.send?.({ cpuMs: (u.user + u.system) / 1000 });
    } else if (m === 'stop') {
      void proxy
        .close()
        .then(() => rm(dir, { recursive: true, force: true }))
        .then(() => process.exit(0));
    }
  });
  process.send?.({ port: proxy.listeners[0]?.port });
}

/** One client: the ClientHello in `pieces` (one write per event-loop turn), until the server answers or closes. */
async function connection(port: number, pieces: readonly Buffer[]): Promise<boolean> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  let answered = false;
  const done = new Promise<void>((resolve) => {
    socket.once('data', () => {
      answered = true;
      resolve();
    });
    socket.once('close', () => resolve());
  });
  for (const piece of pieces) {
    if (socket.destroyed) break;
    socket.write(piece);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await done;
  socket.destroy();
  return answered;
}

/**
 * The peek alone, in this process, over a PassThrough stream where every
 * write is one data event (what a server sees when each segment is read on
 * its own): CPU ms per ClientHello.
 */
async function peekOnly(pieces: readonly Buffer[]): Promise<number> {
  const rounds = 5;
  let start = process.cpuUsage();
  // One warm-up round (JIT), then `rounds` measured.
  for (let r = -1; r < rounds; r++) {
    if (r === 0) start = process.cpuUsage();
    const stream = new PassThrough();
    // peekSocket uses only the Readable side of a socket.
    const result = peekSocket(
      stream as unknown as net.Socket,
      (buffered) => {
        const parsed = parseClientHello(buffered, { maxBytes: MAX_HELLO });
        return parsed.status === 'complete' ? { status: 'complete', value: parsed.hello, consumed: parsed.hello.recordBytes } : parsed;
      },
      { maxBytes: MAX_HELLO + 5, timeoutMs: 600_000, unshiftAll: true },
    );
    for (const piece of pieces) stream.write(piece);
    const settled = await result;
    if (settled.status !== 'complete') throw new Error(`peek did not complete: ${JSON.stringify(settled)}`);
    stream.destroy();
  }
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000 / rounds;
}

async function main(): Promise<void> {
  if (process.argv[2] === 'child') return child();
  const proc = fork(process.argv[1] as string, ['child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = async <T>(message?: string): Promise<T> => {
    const reply = once(proc, 'message') as Promise<[T]>;
    if (message) proc.send(message);
    return (await reply)[0];
  };
  const { port } = await ask<{ port: number }>();
  const message = helloMessage(SIZE);
  const framings: Array<[string, (m: Buffer) => Buffer[]]> = [
    ['one record, one write', (m) => [records(m)]],
    ['1-byte records, one record per write', (m) => [...m].map((b) => records(Buffer.from([b])))],
    ['1-byte records, 1-byte writes', (m) => [...records(m, 1)].map((b) => Buffer.from([b]))],
  ];
  console.log(`maxClientHelloBytes ${MAX_HELLO}; ClientHello message ${message.length} bytes; ${CONNECTIONS} connections per framing; Node ${process.version}`);
  console.log('The peek alone (in process, every write one data event):');
  for (const [label, split] of framings) {
    const pieces = split(message);
    console.log(`  ${label.padEnd(40)} ${String(pieces.length).padStart(5)} data events: ${(await peekOnly(pieces)).toFixed(1).padStart(8)} ms CPU/ClientHello`);
  }
  console.log('The whole proxy (child process, real TCP; the kernel may merge segments):');
  for (const [label, split] of framings) {
    const pieces = split(message);
    const wire = pieces.reduce((n, p) => n + p.length, 0);
    await connection(port, pieces); // warm-up
    const before = await ask<{ cpuMs: number }>('cpu');
    let answered = 0;
    for (let i = 0; i < CONNECTIONS; i++) if (await connection(port, pieces)) answered++;
    const after = await ask<{ cpuMs: number }>('cpu');
    const perConnection = (after.cpuMs - before.cpuMs) / CONNECTIONS;
    console.log(
      `  ${label.padEnd(40)} ${String(wire).padStart(6)} wire bytes, ${String(pieces.length).padStart(5)} writes: dancegate CPU ${perConnection.toFixed(1).padStart(7)} ms/connection (${answered}/${CONNECTIONS} answered)`,
    );
  }
  proc.send('stop');
  await once(proc, 'exit');
}

await main();
