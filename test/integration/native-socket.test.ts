/**
 * NativeTlsSocket (src/tls/native-socket.ts) on the real addon, over
 * loopback TCP: a server socket over a net.Socket from a net.Server on
 * 127.0.0.1, against a node:tls client or a client-mode NativeTlsSocket.
 * The handshake pauses in certificate verification until decide(); bytes
 * flow both ways exactly, with back-pressure onto the raw socket; a refusal
 * reaches a TLS 1.3 client as alert 40 on its first read; a client that
 * goes away while paused closes the socket without an error; what it sends
 * meanwhile is held, bounded, and never fed before the decision; half-close;
 * a client's writes (and end) before its handshake is done are delivered
 * after it. The cap on paused handshakes ('busy') and destroy() of paused
 * handshakes under gc run in child processes: the cap is once per thread.
 *
 * The addon is loaded explicitly (not through DANCEGATE_NATIVE): this tests
 * the stream, and CI runs test/integration under DANCEGATE_NATIVE=0 too.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import type { NativeBinding, NativeConnection, NativeConnectionOptions, NativeContext, NativeVerifyInfo } from '../../src/tls/native-binding.js';
import { loadNativeEngine } from '../../src/tls/native-engine.js';
import { NativeTlsError, NativeTlsSocket } from '../../src/tls/native-socket.js';

const ROOT = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);
const EXTENSION = 65280;
const SERVER_NAME = 'api.example.test';
const CLIENT_NAME = 'sensor7._device.example.test';
const KIB = 1024;
const MIB = 1024 * KIB;

let binding: NativeBinding;
let addonPath: string;
let ca: IssuedCertificate;
let server: IssuedCertificate;
let client: IssuedCertificate;
let serverContext: NativeContext;
let clientContext: NativeContext;
let dir: string;

beforeAll(async () => {
  const load = loadNativeEngine({ env: {}, versions: process.versions, from: join(ROOT, 'src', 'tls') });
  if (!load.ok) throw new Error(`the native engine must be built for these tests (node native/tls-engine/build.mjs): ${load.reason}`);
  binding = load.binding;
  addonPath = load.path;
  dir = await mkdtemp(join(tmpdir(), 'dancegate-native-socket-'));
  ca = await createCertificate({ commonName: 'test ca', isCA: true });
  server = await createCertificate({ commonName: 'api', dnsNames: [SERVER_NAME], issuer: ca, extendedKeyUsage: 'server' });
  client = await createCertificate({ commonName: 'sensor7', dnsNames: ['san-only.example.test'], issuer: ca, extendedKeyUsage: 'client' });
  serverContext = binding.createContext({
    role: 'server',
    certPem: server.certPem + ca.certPem,
    keyPem: server.keyPem,
    extensionType: EXTENSION,
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    alpn: ['http/1.1'],
  });
  clientContext = binding.createContext({
    role: 'client',
    certPem: client.certPem + ca.certPem,
    keyPem: client.keyPem,
    extensionType: EXTENSION,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    alpn: ['http/1.1'],
    caPem: ca.certPem,
  });
});
afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Everything a test opened, closed after it whatever happened. */
const opened: Array<{ destroy(): unknown }> = [];
const servers: net.Server[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((done) => s.close(() => done()))));
});

/** The promise, or a rejection naming what did not happen in time. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once check() holds (polled), or rejects after ms. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((done) => setTimeout(done, 5));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/** The engine's calls, recorded: which ones, and how many bytes each feed() was given. */
interface Recorder {
  readonly calls: string[];
  readonly engine: NativeConnection;
}

function recording(engine: NativeConnection): Recorder {
  const calls: string[] = [];
  return {
    calls,
    engine: {
      feed: (data?: Buffer) => {
        calls.push(`feed ${data?.length ?? 0}`);
        return engine.feed(data);
      },
      decide: (accept: boolean) => {
        calls.push(`decide ${accept}`);
        return engine.decide(accept);
      },
      write: (data: Buffer) => {
        calls.push(`write ${data.length}`);
        return engine.write(data);
      },
      shutdown: () => {
        calls.push('shutdown');
        return engine.shutdown();
      },
      destroy: () => {
        calls.push('destroy');
        engine.destroy();
      },
    },
  };
}

interface ServerSide {
  readonly socket: NativeTlsSocket;
  readonly raw: net.Socket;
  readonly recorder: Recorder;
  /** The first 'verify', with raw.bytesRead and the number of engine calls at that moment. */
  readonly verified: Promise<{ info: NativeVerifyInfo; bytesRead: number; calls: number }>;
  readonly errors: Error[];
}

/** A server like the listener's (paused on connect, half-open allowed); each accepted connection becomes a NativeTlsSocket. */
async function startServer(options: NativeConnectionOptions = { requireCertificate: true, pauseForVerify: true }): Promise<{ port: number; next: () => Promise<ServerSide> }> {
  const accepted: ServerSide[] = [];
  const waiting: Array<(side: ServerSide) => void> = [];
  const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (raw) => {
    opened.push(raw);
    const recorder = recording(new binding.Connection(serverContext, options));
    const socket = new NativeTlsSocket(raw, recorder.engine);
    opened.push(socket);
    const errors: Error[] = [];
    socket.on('error', (err: Error) => errors.push(err));
    const verified = new Promise<{ info: NativeVerifyInfo; bytesRead: number; calls: number }>((done) => {
      socket.once('verify', (info: NativeVerifyInfo) => done({ info, bytesRead: raw.bytesRead, calls: recorder.calls.length }));
    });
    const side = { socket, raw, recorder, verified, errors };
    const waiter = waiting.shift();
    if (waiter !== undefined) waiter(side);
    else accepted.push(side);
    socket.start();
  });
  servers.push(srv);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  const next = (): Promise<ServerSide> => {
    const side = accepted.shift();
    return side !== undefined ? Promise.resolve(side) : within(new Promise<ServerSide>((done) => waiting.push(done)), 5000, 'a connection accepted');
  };
  return { port, next };
}

/** A node:tls client; `secured`: its 'secureConnect' (listened for at once: a TLS 1.3 client may finish before the server decides). */
function nodeClient(port: number, options: tls.ConnectionOptions = {}): tls.TLSSocket & { secured: Promise<unknown> } {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    servername: SERVER_NAME,
    ca: ca.certPem,
    cert: client.certPem + ca.certPem,
    key: client.keyPem,
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['http/1.1'],
    ...options,
  });
  opened.push(socket);
  return Object.assign(socket, { secured: within(once(socket, 'secureConnect'), 5000, 'client secureConnect') });
}

/** A client-mode NativeTlsSocket, not started; `secured`: its 'secure'. */
function nativeClient(port: number, options: Partial<NativeConnectionOptions> = {}): { socket: NativeTlsSocket; raw: net.Socket; secured: Promise<unknown> } {
  const raw = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  opened.push(raw);
  const connection = new binding.Connection(clientContext, { serverName: SERVER_NAME, verifyHost: SERVER_NAME, clientName: CLIENT_NAME, clientNameForm: 'certificate', ...options });
  const socket = new NativeTlsSocket(raw, connection);
  opened.push(socket);
  return { socket, raw, secured: within(once(socket, 'secure'), 5000, 'client secure') };
}

/** All a stream gives until its end (not with for-await, which destroys the stream at its end: no half-close). */
function readAll(stream: NodeJS.ReadableStream, what = 'stream'): Promise<Buffer> {
  return new Promise((done, fail) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => done(Buffer.concat(chunks)));
    stream.once('close', () => fail(new Error(`${what}: closed before its end`)));
  });
}

/** The event, without once()'s rejection on 'error' (some tests expect both). */
const event = (emitter: NodeJS.EventEmitter, name: string): Promise<unknown[]> => new Promise((done) => emitter.once(name, (...args: unknown[]) => done(args)));

describe('NativeTlsSocket: handshake and data', () => {
  it('pauses for verify, completes on decide(true), then carries 1 MiB each way byte-exact', async () => {
    const { port, next } = await startServer();
    const tlsClient = nodeClient(port);
    const side = await next();
    let secureBeforeDecide = false;
    side.socket.once('secure', () => (secureBeforeDecide = !decided));
    let decided = false;
    const { info } = await within(side.verified, 5000, 'verify');
    expect(side.socket.verifying).toBe(true);
    expect(info.protocol).toBe('TLSv1.3');
    // node:tls knows nothing of dane_clientid: no name in its Certificate.
    expect(info.clientName).toBe(null);
    expect(info.certificates.map((der) => der.toString('hex'))).toEqual([client.der.toString('hex'), ca.der.toString('hex')]);
    expect(side.socket.getProtocol()).toBe(null);
    expect(side.socket.alpnProtocol).toBe(null);
    // A TLS 1.3 client finishes before the server has verified it.
    await tlsClient.secured;
    await sleep(50);
    expect(side.socket.listenerCount('secure')).toBe(1);
    decided = true;
    const secure = once(side.socket, 'secure');
    side.socket.decide(true);
    await within(secure, 5000, 'secure');
    expect(secureBeforeDecide).toBe(false);
    expect(side.socket.verifying).toBe(false);
    expect(side.socket.getProtocol()).toBe('TLSv1.3');
    expect(side.socket.alpnProtocol).toBe('http/1.1');
    expect(tlsClient.alpnProtocol).toBe('http/1.1');
    expect(side.socket.getCipher()).toEqual({ name: tlsClient.getCipher().standardName, standardName: tlsClient.getCipher().standardName, version: 'TLSv1.3' });
    expect(side.socket.remotePort).toBe(tlsClient.localPort);

    const up = randomBytes(MIB);
    const down = randomBytes(MIB);
    const serverGot = readAll(side.socket);
    const clientGot = readAll(tlsClient);
    tlsClient.end(up);
    side.socket.end(down);
    expect((await within(serverGot, 10_000, 'server read')).equals(up)).toBe(true);
    expect((await within(clientGot, 10_000, 'client read')).equals(down)).toBe(true);
    expect(side.errors).toEqual([]);
    expect(side.raw.bytesRead).toBeGreaterThan(MIB);
    expect(side.socket.bytesRead).toBe(side.raw.bytesRead);
  });

  it('a reader that does not read stops the raw socket: the peer stalls, and gets everything once it reads', async () => {
    const { port, next } = await startServer();
    const tlsClient = nodeClient(port);
    const side = await next();
    await within(side.verified, 5000, 'verify');
    side.socket.decide(true);
    await tlsClient.secured;
    // More than loopback's socket buffers (a few MiB) can hold.
    const total = 32 * MIB;
    const sent = randomBytes(total);
    for (let at = 0; at < total; at += MIB) tlsClient.write(sent.subarray(at, at + MIB));
    // Nobody reads the server socket: its buffer fills, then the raw socket stops being read.
    await until(() => side.raw.isPaused(), 5000, 'raw socket paused');
    let stable = side.raw.bytesRead;
    for (;;) {
      await sleep(200);
      if (side.raw.bytesRead === stable) break;
      stable = side.raw.bytesRead;
    }
    expect(side.raw.isPaused()).toBe(true);
    expect(side.raw.bytesRead).toBeLessThan(total / 2);
    // The peer's writes stall: most of what it wrote is still in its own buffer.
    expect(tlsClient.writableLength).toBeGreaterThan(total / 4);
    const got = readAll(side.socket);
    tlsClient.end();
    expect((await within(got, 20_000, 'all bytes read')).equals(sent)).toBe(true);
    expect(tlsClient.writableLength).toBe(0);
  });

  it('decide(false): the node:tls client reads alert 40, the server socket errs with alertSent 40, and no byte passes', async () => {
    const { port, next } = await startServer();
    const tlsClient = nodeClient(port);
    const clientData: Buffer[] = [];
    tlsClient.on('data', (chunk: Buffer) => clientData.push(chunk));
    const clientError = once(tlsClient, 'error');
    const side = await next();
    const serverData: Buffer[] = [];
    side.socket.on('data', (chunk: Buffer) => serverData.push(chunk));
    await within(side.verified, 5000, 'verify');
    await tlsClient.secured;
    tlsClient.write('a request the server must never read');
    await until(() => side.raw.bytesRead > 0 && side.recorder.calls.length > 0, 1000, 'bytes arrive');
    let secure = false;
    side.socket.on('secure', () => (secure = true));
    const closed = event(side.socket, 'close');
    side.socket.decide(false);
    const [err] = (await within(clientError, 5000, 'client error')) as [Error & { code?: string }];
    // OpenSSL 3.0 (Node 20) names it "sslv3 alert", 3.5 (Node 22+) "ssl/tls alert".
    expect(err.code).toMatch(/^ERR_SSL_(SSLV3|SSL\/TLS)_ALERT_HANDSHAKE_FAILURE$/);
    expect(err.message).toContain('alert number 40');
    await within(closed, 5000, 'server close');
    expect(side.errors).toHaveLength(1);
    const serverError = side.errors[0];
    expect(serverError).toBeInstanceOf(NativeTlsError);
    expect((serverError as NativeTlsError).alertSent).toBe(40);
    expect((serverError as NativeTlsError).alertReceived).toBe(undefined);
    expect(serverError?.message).toMatch(/\(alert sent 40\)$/);
    expect(side.socket.alertSent).toBe(40);
    expect(secure).toBe(false);
    expect(serverData).toEqual([]);
    expect(clientData).toEqual([]);
    expect(side.recorder.calls.filter((call) => call.startsWith('decide'))).toEqual(['decide false']);
  });
});

describe('NativeTlsSocket: the peer while the handshake is paused', () => {
  it('half-closes (FIN): no error and no close while paused; the stream ends after the decision', async () => {
    const { port, next } = await startServer();
    const tlsClient = nodeClient(port);
    const side = await next();
    await within(side.verified, 5000, 'verify');
    await tlsClient.secured;
    // destroy(): FIN without close_notify, as a client process that exits.
    tlsClient.destroy();
    await until(() => side.raw.readableEnded, 5000, 'FIN read');
    await sleep(50);
    expect(side.socket.destroyed).toBe(false);
    expect(side.errors).toEqual([]);
    const ended = readAll(side.socket, 'server');
    side.socket.decide(true);
    expect((await within(ended, 5000, 'server end')).length).toBe(0);
    expect(side.socket.getProtocol()).toBe('TLSv1.3');
    expect(side.recorder.calls.filter((call) => call.startsWith('decide'))).toEqual(['decide true']);
  });

  it('half-closes and is refused: the socket errs with alertSent 40 only (the refusal), and closes', async () => {
    const { port, next } = await startServer();
    const tlsClient = nodeClient(port);
    tlsClient.on('error', () => undefined);
    const side = await next();
    await within(side.verified, 5000, 'verify');
    await tlsClient.secured;
    tlsClient.end();
    await until(() => side.raw.readableEnded, 5000, 'FIN read');
    const closed = event(side.socket, 'close');
    side.socket.decide(false);
    await within(closed, 5000, 'server close');
    expect(side.errors.map((err) => (err as NativeTlsError).alertSent)).toEqual([40]);
  });

  it('resets the connection (RST): the socket closes without an error', async () => {
    const { port, next } = await startServer();
    const c = nativeClient(port);
    c.socket.on('error', () => undefined);
    c.socket.start();
    const side = await next();
    await within(side.verified, 5000, 'verify');
    await c.secured;
    const closed = once(side.socket, 'close');
    c.raw.resetAndDestroy();
    await within(closed, 5000, 'server socket close');
    expect(side.errors).toEqual([]);
    expect(side.recorder.calls.at(-1)).toBe('destroy');
  });

  it('sends 100 KiB after its Finished: held at most 16 KiB past one read, the raw socket paused, nothing fed before decide', async () => {
    const { port, next } = await startServer();
    const c = nativeClient(port);
    c.socket.on('error', () => undefined);
    c.socket.start();
    const side = await next();
    const atVerify = await within(side.verified, 5000, 'verify');
    expect(atVerify.info.clientName?.toString()).toBe(CLIENT_NAME);
    await c.secured;
    // Not TLS records: were they fed, the engine would fail the connection.
    c.raw.write(Buffer.alloc(100 * KIB, 0x17));
    await until(() => side.raw.isPaused(), 5000, 'raw socket paused');
    await sleep(100);
    expect(side.raw.isPaused()).toBe(true);
    expect(side.recorder.calls.slice(atVerify.calls)).toEqual([]);
    // What the socket holds: read from the kernel, less what the raw socket still buffers itself.
    const held = side.raw.bytesRead - atVerify.bytesRead - side.raw.readableLength;
    expect(held).toBeGreaterThanOrEqual(16 * KIB);
    expect(held).toBeLessThanOrEqual(16 * KIB + 64 * KIB);
    expect(side.raw.bytesRead - atVerify.bytesRead).toBeLessThan(100 * KIB + 1);
    expect(side.errors).toEqual([]);
    // Freed while paused: nothing fed, nothing thrown.
    const closed = once(side.socket, 'close');
    side.socket.destroy();
    await within(closed, 5000, 'server socket close');
    expect(side.recorder.calls.slice(atVerify.calls)).toEqual(['destroy']);
  });

  it('sends its first request after its Finished: held, and read once accepted', async () => {
    const { port, next } = await startServer();
    const c = nativeClient(port);
    c.socket.start();
    c.socket.write('GET / HTTP/1.1\r\n\r\n');
    const side = await next();
    const atVerify = await within(side.verified, 5000, 'verify');
    await c.secured;
    // The request follows the client's Finished at once (TCP_NODELAY on both ends): it comes in the same read as the
    // flight (left in the engine's input) or just after (held by the socket); either way nothing is fed meanwhile.
    await sleep(100);
    expect(side.recorder.calls.slice(atVerify.calls)).toEqual([]);
    expect(side.raw.isPaused()).toBe(false);
    const got = once(side.socket, 'data');
    side.socket.decide(true);
    expect(((await within(got, 5000, 'request read')) as [Buffer])[0].toString()).toBe('GET / HTTP/1.1\r\n\r\n');
  });
});

describe('NativeTlsSocket: half-close and the client role', () => {
  it('the peer sends close_notify; the server still writes, and the peer reads it', async () => {
    const { port, next } = await startServer();
    const tlsClient = nodeClient(port);
    const side = await next();
    await within(side.verified, 5000, 'verify');
    side.socket.decide(true);
    await tlsClient.secured;
    const clientGot = readAll(tlsClient);
    tlsClient.end('request, then close_notify');
    expect((await within(readAll(side.socket), 5000, 'server read to its end')).toString()).toBe('request, then close_notify');
    expect(side.socket.writable).toBe(true);
    const answer = randomBytes(200 * KIB);
    side.socket.end(answer);
    expect((await within(clientGot, 5000, 'client read to its end')).equals(answer)).toBe(true);
    expect(side.errors).toEqual([]);
  });

  it('a client socket written to before its handshake is done sends it after, in order; its end comes last', async () => {
    const { port, next } = await startServer();
    const c = nativeClient(port);
    c.socket.start();
    const writes: string[] = [];
    c.socket.write('one ', () => writes.push('one'));
    c.socket.write('two', () => writes.push('two'));
    c.socket.end();
    let secureAt = -1;
    c.socket.once('secure', () => (secureAt = writes.length));
    const side = await next();
    const { info } = await within(side.verified, 5000, 'verify');
    expect(info.clientName?.toString()).toBe(CLIENT_NAME);
    expect(info.certificates).toHaveLength(2);
    const serverGot = readAll(side.socket, 'server');
    // A TLS 1.3 client is done before the server has decided: its writes go out then, and wait on the server's side.
    await c.secured;
    await until(() => writes.length === 2, 5000, 'the writes taken');
    expect(secureAt).toBe(0);
    expect(writes).toEqual(['one', 'two']);
    await sleep(50);
    expect(side.socket.readableLength).toBe(0);
    expect(side.recorder.calls.filter((call) => call.startsWith('decide'))).toEqual([]);
    side.socket.decide(true);
    expect((await within(serverGot, 5000, 'server read to its end')).toString()).toBe('one two');
    expect(c.socket.getProtocol()).toBe('TLSv1.3');
    expect(c.socket.alpnProtocol).toBe('http/1.1');
    side.socket.end('bye');
    expect((await within(readAll(c.socket, 'client'), 5000, 'client read to its end')).toString()).toBe('bye');
  });

  it('a client socket ended before its handshake is done (nothing written) still completes it, then sends close_notify', async () => {
    const { port, next } = await startServer();
    const c = nativeClient(port);
    c.socket.start();
    c.socket.end();
    const side = await next();
    await within(side.verified, 5000, 'verify');
    await sleep(50);
    const secure = once(side.socket, 'secure');
    const serverGot = readAll(side.socket);
    side.socket.decide(true);
    await within(secure, 5000, 'server secure');
    expect((await within(serverGot, 5000, 'server read to its end')).length).toBe(0);
    expect(side.errors).toEqual([]);
    side.socket.end('still here');
    expect((await within(readAll(c.socket), 5000, 'client read to its end')).toString()).toBe('still here');
  });
});

/** The stream and loader, transpiled for a plain node child (type-only imports vanish). */
async function transpiledTlsModules(): Promise<string> {
  const out = await mkdtemp(join(dir, 'child-'));
  for (const name of ['native-socket', 'native-engine']) {
    const source = await readFile(join(ROOT, 'src', 'tls', `${name}.ts`), 'utf8');
    const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
    await writeFile(join(out, `${name}.mjs`), js);
  }
  await writeFile(
    join(out, 'pki.json'),
    JSON.stringify({ serverCert: server.certPem + ca.certPem, serverKey: server.keyPem, clientCert: client.certPem + ca.certPem, clientKey: client.keyPem, ca: ca.certPem }),
  );
  return out;
}

/** The child's common part: the addon, contexts, a paused-on-connect server, node:tls clients. */
const CHILD_PRELUDE = `
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { NativeTlsSocket } from './native-socket.mjs';
const [addon, pkiFile] = process.argv.slice(2);
const b = createRequire(import.meta.url)(addon);
const pki = JSON.parse(readFileSync(pkiFile, 'utf8'));
const ctx = b.createContext({ role: 'server', certPem: pki.serverCert, keyPem: pki.serverKey, extensionType: ${EXTENSION}, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' });
const fail = (why) => { console.error(why); process.exit(1); };
setTimeout(() => fail('child timed out'), 20000).unref();
function serve(onSocket) {
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (raw) => {
    const socket = new NativeTlsSocket(raw, new b.Connection(ctx, { requireCertificate: true, pauseForVerify: true }));
    socket.on('error', () => {});
    onSocket(socket);
    socket.start();
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done(server)));
}
function connect(port) {
  const c = tls.connect({ host: '127.0.0.1', port, servername: '${SERVER_NAME}', ca: pki.ca, cert: pki.clientCert, key: pki.clientKey, minVersion: 'TLSv1.3' });
  c.on('error', () => {});
  return c;
}
const until = async (check, what) => { const end = Date.now() + 10000; while (!check()) { if (Date.now() > end) fail(what); await new Promise((r) => setTimeout(r, 5)); } };
`;

const BUSY_CHILD = `${CHILD_PRELUDE}
const limited = b.limitPausedHandshakes(2);
const again = b.limitPausedHandshakes(3);
const sockets = [];
const waiting = [];
let verifying = 0;
let maxVerifying = 0;
let releasing = false;
const server = await serve((socket) => {
  sockets.push(socket);
  socket.on('verify', () => {
    verifying++;
    maxVerifying = Math.max(maxVerifying, verifying);
    if (releasing) setTimeout(() => { verifying--; socket.decide(true); }, 10);
    else waiting.push(socket);
  });
  socket.on('secure', () => socket.end('ok'));
});
const port = server.address().port;
const answers = [];
const clients = [];
for (let i = 0; i < 5; i++) {
  const c = connect(port);
  let got = '';
  c.on('data', (d) => (got += d));
  c.on('end', () => answers.push(got));
  clients.push(c);
}
await until(() => sockets.length === 5 && waiting.length === 2 && sockets.filter((s) => s.busyRetries > 0).length === 3, 'two paused and three busy');
await new Promise((r) => setTimeout(r, 100));
const busyWhilePaused = sockets.filter((s) => s.busyRetries > 0).length;
const pausedWhileBusy = waiting.length;
releasing = true;
for (const socket of waiting.splice(0)) { verifying--; socket.decide(true); }
await until(() => answers.length === 5, 'all five answered');
for (const c of clients) c.end();
server.close();
console.log(JSON.stringify({ limited, again, busyWhilePaused, pausedWhileBusy, maxVerifying, answers, retried: sockets.map((s) => s.busyRetries > 0).sort() }));
`;

const DESTROY_CHILD = `${CHILD_PRELUDE}
const verified = [];
let closed = 0;
const server = await serve((socket) => {
  socket.on('verify', () => { verified.push(1); socket.destroy(); });
  socket.on('close', () => closed++);
});
const port = server.address().port;
let clientsClosed = 0;
for (let batch = 0; batch < 10; batch++) {
  for (let i = 0; i < 20; i++) connect(port).on('close', () => clientsClosed++);
  await until(() => clientsClosed === (batch + 1) * 20, 'batch ' + batch + ' closed');
  globalThis.gc();
}
await until(() => closed === 200, 'all server sockets closed');
for (let i = 0; i < 3; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }
server.close();
console.log(JSON.stringify({ verified: verified.length, closed, clientsClosed }));
`;

describe('NativeTlsSocket in a process of its own', () => {
  it("'busy': with at most 2 paused handshakes, 3 of 5 retry, and all 5 complete once decided", async () => {
    const out = await transpiledTlsModules();
    await writeFile(join(out, 'busy.mjs'), BUSY_CHILD);
    const { stdout } = await within(run(process.execPath, [join(out, 'busy.mjs'), addonPath, join(out, 'pki.json')]), 25_000, 'busy child');
    expect(JSON.parse(stdout)).toEqual({
      limited: true,
      again: false,
      busyWhilePaused: 3,
      pausedWhileBusy: 2,
      maxVerifying: 2,
      answers: ['ok', 'ok', 'ok', 'ok', 'ok'],
      retried: [false, false, true, true, true],
    });
  });

  it('destroy() of 200 paused handshakes, under --expose-gc with gc() between batches: no crash, all closed', async () => {
    const out = await transpiledTlsModules();
    await writeFile(join(out, 'destroy.mjs'), DESTROY_CHILD);
    const { stdout } = await within(run(process.execPath, ['--expose-gc', join(out, 'destroy.mjs'), addonPath, join(out, 'pki.json')]), 25_000, 'destroy child');
    expect(JSON.parse(stdout)).toEqual({ verified: 200, closed: 200, clientsClosed: 200 });
  });
});
