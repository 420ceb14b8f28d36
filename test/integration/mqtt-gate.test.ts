/**
 * The MQTT gate on real TLS connections (node:tls on 127.0.0.1): the server
 * side hands its paused TLSSocket to readMqttConnect, the client sends
 * CONNECTs written by mqtt-packet (whole, a byte per write, followed by a
 * PUBLISH in the same write). Checked: the exact bytes passed on, nothing
 * lost or read after the gate, the CONNACK a refused client receives and the
 * close after it, and the timeout, oversize, invalid and closed cases, where
 * the client receives nothing and is closed.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { generate, type IConnectPacket } from 'mqtt-packet';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { readMqttConnect, type MqttGateOptions, type MqttGateResult } from '../../src/forward/mqtt-gate.js';

const NAME = 'sensor7._device.fleet.test';
const SERVER_NAME = 'mqtt.gate.test';
const STRICT: MqttGateOptions = {
  name: NAME,
  policy: { clientId: 'require-identity', username: 'identity', password: 'keep' },
  maxConnectBytes: 16384,
  timeoutMs: 5000,
};

let ca: IssuedCertificate;
let serverCert: IssuedCertificate;

beforeAll(async () => {
  ca = await createCertificate({ commonName: 'mqtt gate test ca', isCA: true });
  serverCert = await createCertificate({ commonName: 'mqtt gate', dnsNames: [SERVER_NAME], issuer: ca, extendedKeyUsage: 'server' });
});

const opened: Array<{ destroy(): unknown }> = [];
const servers: tls.Server[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((done) => s.close(() => done()))));
});

/** What the server side saw of one connection. */
interface Gated {
  readonly socket: tls.TLSSocket;
  readonly result: MqttGateResult;
  /** 'data' events during the gate (a listener prepended before it, removed after). */
  readonly chunks: number;
  /** Listener counts before the gate, and after it for the ok case. */
  readonly before: Record<string, number>;
  readonly after: Record<string, number>;
  readonly elapsedMs: number;
}

const EVENTS = ['data', 'end', 'close', 'error', 'readable'] as const;
const listenerCounts = (socket: tls.TLSSocket): Record<string, number> => Object.fromEntries(EVENTS.map((e) => [e, socket.listenerCount(e)]));

/** A TLS server on 127.0.0.1 that runs the gate on each connection's paused socket; resolves each connection's outcome in order. */
async function startGate(options: MqttGateOptions): Promise<{ port: number; next(): Promise<Gated> }> {
  const outcomes: Promise<Gated>[] = [];
  const waiting: Array<(g: Promise<Gated>) => void> = [];
  const server = tls.createServer({ cert: serverCert.certPem + ca.certPem, key: serverCert.keyPem }, (socket) => {
    opened.push(socket);
    socket.pause();
    // The pipeline keeps an error listener of its own on every socket it hands over.
    socket.on('error', () => socket.destroy());
    const before = listenerCounts(socket);
    let chunks = 0;
    const count = (): void => {
      chunks++;
    };
    socket.prependListener('data', count);
    const started = performance.now();
    const outcome = readMqttConnect(socket, options).then((result) => {
      socket.removeListener('data', count);
      return { socket, result, chunks, before, after: listenerCounts(socket), elapsedMs: performance.now() - started };
    });
    const taker = waiting.shift();
    if (taker) taker(outcome);
    else outcomes.push(outcome);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    next: () => {
      const ready = outcomes.shift();
      return ready ?? new Promise<Gated>((resolve) => waiting.push((g) => void g.then(resolve)));
    },
  };
}

/** A TLS client: what it received, and a promise of its close. */
interface Client {
  readonly socket: tls.TLSSocket;
  received(): Buffer;
  readonly closed: Promise<void>;
}

async function connect(port: number): Promise<Client> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: SERVER_NAME, ca: ca.certPem });
  opened.push(socket);
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  const closed = once(socket, 'close').then(() => undefined);
  await once(socket, 'secureConnect');
  socket.setNoDelay(true);
  return { socket, received: () => Buffer.concat(chunks), closed };
}

const write = (socket: tls.TLSSocket, bytes: Buffer): Promise<void> => new Promise((resolve, reject) => socket.write(bytes, (err) => (err ? reject(err) : resolve())));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Each byte in its own write (its own TLS record), the next one after the last is flushed and a turn of the event loop. */
async function writeByteByByte(socket: tls.TLSSocket, bytes: Buffer): Promise<void> {
  for (const byte of bytes) {
    await write(socket, Buffer.from([byte]));
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** What the server socket delivers once resumed, until `length` bytes have come. */
async function readAfter(socket: tls.TLSSocket, length: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    total += chunk.length;
  });
  socket.resume();
  const deadline = Date.now() + 5000;
  while (total < length && Date.now() < deadline) await sleep(5);
  return Buffer.concat(chunks);
}

const connectPacket = (fields: Partial<IConnectPacket>): IConnectPacket => ({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: NAME, ...fields });
const PUBLISH = generate({ cmd: 'publish', topic: `devices/${NAME}/t`, payload: Buffer.from('21.5'), qos: 1, messageId: 1, retain: false, dup: false });
const PINGREQ = generate({ cmd: 'pingreq' });

function ok(g: Gated): Extract<MqttGateResult, { ok: true }> {
  if (!g.result.ok) throw new Error(`expected the CONNECT to pass, got ${g.result.reason}: ${g.result.detail}`);
  return g.result;
}

describe('readMqttConnect over TLS: accepted', () => {
  it('a whole CONNECT in one write: the rewritten CONNECT exactly, the socket left paused with only the pipeline listeners', async () => {
    const gate = await startGate(STRICT);
    const client = await connect(gate.port);
    const sent = connectPacket({ username: 'bob', password: Buffer.from('pw'), will: { topic: 'w', payload: Buffer.from('bye'), qos: 1, retain: false } });
    await write(client.socket, generate(sent));
    const g = await gate.next();
    const result = ok(g);
    expect(result.first).toEqual(generate({ ...sent, username: NAME }));
    expect(result.clientId).toBe(NAME);
    expect(result.changes).toEqual(['username "bob" replaced by the identity']);
    expect(g.after).toEqual(g.before);
    expect(g.socket.isPaused()).toBe(true);
    // The client's next packets, sent after the gate answered, reach whoever resumes the socket, and nothing else does.
    await write(client.socket, PINGREQ);
    await sleep(50);
    expect(await readAfter(g.socket, PINGREQ.length)).toEqual(PINGREQ);
    expect(client.received()).toEqual(Buffer.alloc(0));
  });

  it('a CONNECT and a PUBLISH in the same write: the rewritten CONNECT, then the PUBLISH unchanged', async () => {
    const gate = await startGate(STRICT);
    const client = await connect(gate.port);
    const sent = connectPacket({ clientId: '' });
    await write(client.socket, Buffer.concat([generate(sent), PUBLISH, PINGREQ]));
    const result = ok(await gate.next());
    expect(result.first).toEqual(Buffer.concat([generate({ ...sent, clientId: NAME, username: NAME }), PUBLISH, PINGREQ]));
    expect(result.changes).toEqual(['client id set to the identity (the client sent an empty one)', 'username set to the identity (the client sent none)']);
  });

  it('an MQTT 5 CONNECT a byte per TLS record, then a PUBLISH: the same bytes as in one write, nothing after the CONNECT read', async () => {
    const gate = await startGate({ ...STRICT, policy: { clientId: 'prefix-identity', username: 'keep', password: 'drop' } });
    const client = await connect(gate.port);
    const sent = connectPacket({
      protocolVersion: 5,
      clientId: `${NAME}/pump`,
      username: 'operator',
      password: Buffer.from('secret'),
      properties: { sessionExpiryInterval: 600, userProperties: { site: 'north' } },
    });
    const connectBytes = generate(sent);
    await writeByteByByte(client.socket, connectBytes);
    const g = await gate.next();
    const result = ok(g);
    expect(result.first).toEqual(generate({ ...sent, password: undefined }));
    expect(result.clientId).toBe(`${NAME}/pump`);
    expect(result.changes).toEqual(['password dropped']);
    // It did arrive in pieces.
    expect(g.chunks).toBeGreaterThan(connectBytes.length / 2);
    expect(g.after).toEqual(g.before);
    const publish5 = generate({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, { protocolVersion: 5 });
    await writeByteByByte(client.socket, publish5);
    expect(await readAfter(g.socket, publish5.length)).toEqual(publish5);
  });

  it('a CONNECT and a PUBLISH byte by byte: the bytes after the CONNECT that came with its last byte are in `first`, the rest stays in the socket', async () => {
    const gate = await startGate(STRICT);
    const client = await connect(gate.port);
    const sent = connectPacket({ username: NAME });
    const connectBytes = generate(sent);
    // The CONNECT's last byte and the PUBLISH's first three in one record, then the rest of the PUBLISH a byte at a time.
    await writeByteByByte(client.socket, connectBytes.subarray(0, -1));
    await write(client.socket, Buffer.concat([connectBytes.subarray(-1), PUBLISH.subarray(0, 3)]));
    const result = ok(await gate.next());
    expect(result.first).toEqual(Buffer.concat([connectBytes, PUBLISH.subarray(0, 3)]));
    expect(result.changes).toEqual([]);
  });
});

describe('readMqttConnect over TLS: refused with a CONNACK, then closed', () => {
  const cases: { name: string; connect: IConnectPacket; connack: string; reason: string; clientId: string }[] = [
    { name: 'MQTT 3.1.1, another client id', connect: connectPacket({ clientId: 'other' }), connack: '20020002', reason: 'client-id-not-identity', clientId: 'other' },
    {
      name: 'MQTT 3.1, another client id',
      connect: connectPacket({ protocolId: 'MQIsdp', protocolVersion: 3, clientId: 'other' }),
      connack: '20020002',
      reason: 'client-id-not-identity',
      clientId: 'other',
    },
    { name: 'MQTT 5, another client id', connect: connectPacket({ protocolVersion: 5, clientId: 'other' }), connack: '2003008500', reason: 'client-id-not-identity', clientId: 'other' },
  ];
  for (const c of cases) {
    it(`${c.name}: CONNACK ${c.connack}, close_notify, closed (the PUBLISH sent with the CONNECT is discarded)`, async () => {
      const gate = await startGate(STRICT);
      const client = await connect(gate.port);
      const ended = once(client.socket, 'end');
      await write(client.socket, Buffer.concat([generate(c.connect), PUBLISH]));
      const g = await gate.next();
      expect(g.result).toEqual({ ok: false, reason: c.reason, detail: `client id "${c.clientId}" is not the identity ${NAME}`, clientId: c.clientId });
      await ended;
      await client.closed;
      expect(client.received().toString('hex')).toBe(c.connack);
      await once(g.socket, 'close');
    });
  }

  it('a refused client that keeps its side open is destroyed after flushMs', async () => {
    const gate = await startGate({ ...STRICT, flushMs: 300 });
    // tls.connect passes allowHalfOpen on to its socket (not in @types/node's ConnectionOptions): the client never ends its side.
    const halfOpen: tls.ConnectionOptions & { allowHalfOpen: boolean } = { host: '127.0.0.1', port: gate.port, servername: SERVER_NAME, ca: ca.certPem, allowHalfOpen: true };
    const socket = tls.connect(halfOpen);
    opened.push(socket);
    socket.on('error', () => undefined);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    await once(socket, 'secureConnect');
    await write(socket, generate(connectPacket({ clientId: 'other' })));
    const g = await gate.next();
    expect(g.result.ok).toBe(false);
    const started = performance.now();
    await once(g.socket, 'close');
    expect(performance.now() - started).toBeGreaterThan(200);
    expect(Buffer.concat(received).toString('hex')).toBe('20020002');
  });
});

describe('readMqttConnect over TLS: closed without a CONNACK', () => {
  it('no whole CONNECT within timeoutMs: connect-timeout', async () => {
    const gate = await startGate({ ...STRICT, timeoutMs: 300 });
    const client = await connect(gate.port);
    const bytes = generate(connectPacket({}));
    await write(client.socket, bytes.subarray(0, 10));
    const g = await gate.next();
    expect(g.result).toEqual({ ok: false, reason: 'connect-timeout', detail: 'no whole CONNECT within 300 ms (10 bytes received)', clientId: undefined });
    expect(g.elapsedMs).toBeGreaterThanOrEqual(290);
    await client.closed;
    expect(client.received()).toEqual(Buffer.alloc(0));
  });

  it('nothing at all within timeoutMs: connect-timeout', async () => {
    const gate = await startGate({ ...STRICT, timeoutMs: 200 });
    const client = await connect(gate.port);
    const g = await gate.next();
    expect(g.result).toEqual({ ok: false, reason: 'connect-timeout', detail: 'no whole CONNECT within 200 ms (0 bytes received)', clientId: undefined });
    await client.closed;
  });

  it('a fixed header announcing more than maxConnectBytes: connect-too-large at once, before the bytes', async () => {
    const gate = await startGate({ ...STRICT, maxConnectBytes: 64, timeoutMs: 5000 });
    const client = await connect(gate.port);
    const big = generate(connectPacket({ clientId: `${NAME}/${'x'.repeat(100)}` }));
    await write(client.socket, big.subarray(0, 3));
    const g = await gate.next();
    expect(g.result).toEqual({ ok: false, reason: 'connect-too-large', detail: `the CONNECT announces ${big.length} bytes, over the 64-byte bound`, clientId: undefined });
    expect(g.elapsedMs).toBeLessThan(2000);
    await client.closed;
    expect(client.received()).toEqual(Buffer.alloc(0));
  });

  it('a CONNECT of exactly maxConnectBytes passes', async () => {
    const sent = connectPacket({ username: NAME });
    const bytes = generate(sent);
    const gate = await startGate({ ...STRICT, maxConnectBytes: bytes.length });
    const client = await connect(gate.port);
    await write(client.socket, Buffer.concat([bytes, PINGREQ]));
    expect(ok(await gate.next()).first).toEqual(Buffer.concat([bytes, PINGREQ]));
  });

  const invalid: { name: string; bytes: Buffer; detail: string }[] = [
    { name: 'a PUBLISH first', bytes: PUBLISH, detail: 'the first packet is PUBLISH, not CONNECT' },
    { name: 'a PINGREQ first', bytes: PINGREQ, detail: 'the first packet is PINGREQ, not CONNECT' },
    { name: 'HTTP', bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), detail: 'the first packet is PUBACK, not CONNECT' },
    { name: 'protocol level 6', bytes: Buffer.from('101000044d5154540602003c000464657631', 'hex'), detail: 'malformed CONNECT: Invalid protocol version' },
  ];
  for (const c of invalid) {
    it(`${c.name}: connect-invalid, nothing sent back, closed`, async () => {
      const gate = await startGate(STRICT);
      const client = await connect(gate.port);
      await write(client.socket, c.bytes);
      const g = await gate.next();
      expect(g.result).toEqual({ ok: false, reason: 'connect-invalid', detail: c.detail, clientId: undefined });
      await client.closed;
      expect(client.received()).toEqual(Buffer.alloc(0));
      expect(g.socket.destroyed).toBe(true);
    });
  }

  it('a client that closes mid-CONNECT (byte by byte): client-closed', async () => {
    const gate = await startGate(STRICT);
    const client = await connect(gate.port);
    await writeByteByByte(client.socket, generate(connectPacket({})).subarray(0, 7));
    client.socket.end();
    const g = await gate.next();
    expect(g.result).toMatchObject({ ok: false, reason: 'client-closed', clientId: undefined });
    expect(g.result.ok === false && g.result.detail).toMatch(/^the (client closed its side|connection closed) after 7 bytes, before a whole CONNECT$/);
    await client.closed;
  });

  it('a client reset mid-CONNECT: client-closed', async () => {
    const gate = await startGate(STRICT);
    const client = await connect(gate.port);
    await write(client.socket, generate(connectPacket({})).subarray(0, 5));
    await sleep(20);
    client.socket.destroy();
    const g = await gate.next();
    expect(g.result).toMatchObject({ ok: false, reason: 'client-closed', clientId: undefined });
  });
});
