/**
 * maxConnectionsPerIdentity newest-wins needs proof of possession, end to
 * end (the security review's attack, with real bytes): a client that has
 * only a device's certificate (public: DANE-EE records can even publish it)
 * must not close that device's established connection. The attacker here
 * is a node:tls client holding the certificate, behind a relay that passes
 * its records to dancegate only up to and including its Certificate
 * message and withholds the rest of its flight (CertificateVerify,
 * Finished): exactly what a client without the key can send. The native
 * engine verifies the certificate (TLSA lookup, identity slot) while that
 * handshake is paused; the slot stays provisional, the victim is not
 * replaced, and the attacker times out (handshake-timeout). Then a real
 * second connection of the same name, whose handshake completes, does
 * replace the victim (close_notify, then FIN), even while another such
 * attacker is in flight, which in turn only times out.
 *
 * The victim speaks TLS 1.2 through a tap, so that the alert record type of
 * dancegate's last record to it is in the clear. Attackers of both TLS
 * versions: 1.3 (the Certificate is the client's first encrypted record)
 * and 1.2 (the Certificate message is re-framed into a record of its own,
 * which TLS does not see). On node:tls the verification only runs after a
 * completed handshake, so the attacker never gets that far: the same
 * expectations hold. Every listener runs on each TLS engine this machine
 * has. Against the old behaviour (the slot taken, and the oldest replaced,
 * at acquire) the native runs fail: the victim is closed as soon as the
 * attacker's certificate is verified.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseConfigText } from '../../src/config/load.js';
import { connectionReplacedChannel, type ConnectionReplacedEvent } from '../../src/connection/channels.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { TEST_ENGINE } from '../lab/engine.js';
import { waitUntil } from '../lab/wait.js';

const ZONE = 'newest.test';
const SNI = 'broker.newest.test';
const ENGINES: ReadonlyArray<'native' | 'node'> = TEST_ENGINE === 'native' ? ['native', 'node'] : ['node'];
const ATTACKER_VERSIONS = ['TLSv1.3', 'TLSv1.2'] as const;
type AttackerVersion = (typeof ATTACKER_VERSIONS)[number];
/** One device per test (engine × attacker version): the identity slots are shared by every listener. */
const deviceLabel = (engine: 'native' | 'node', version: AttackerVersion): string => `${engine}${version === 'TLSv1.3' ? '13' : '12'}`;
const DEVICES = ENGINES.flatMap((e) => ATTACKER_VERSIONS.map((v) => deviceLabel(e, v)));
const nameOf = (label: string): string => `${label}._device.${ZONE}`;
const HANDSHAKE_TIMEOUT_MS = 2000;
const STALL_DETAIL = `handshake and verification not done within ${HANDSHAKE_TIMEOUT_MS} ms`;
const replacedDetail = (name: string): string => `a newer connection of ${name} took its place (maxConnectionsPerIdentity 1, newest-wins)`;
/** Most client bytes the relay buffers before it gives up on a connection (a flight here is a few KB). */
const RELAY_BUFFER_LIMIT = 1 << 20;
const TLS_RECORD_MAX = 16_384;
const RECORD = { changeCipherSpec: 20, alert: 21, handshake: 22, applicationData: 23 } as const;
const HANDSHAKE_CERTIFICATE = 11;

/** A plain TCP server that records each connection's bytes. */
interface Recorder {
  readonly port: number;
  readonly connections: Array<{ chunks: Buffer[]; closed: boolean; socket: net.Socket }>;
  bytes(i: number): string;
  close(): Promise<void>;
}

async function startRecorder(): Promise<Recorder> {
  const connections: Recorder['connections'] = [];
  const server = net.createServer((socket) => {
    const entry = { chunks: [] as Buffer[], closed: false, socket };
    connections.push(entry);
    socket.on('data', (chunk: Buffer) => entry.chunks.push(chunk));
    socket.on('close', () => (entry.closed = true));
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    bytes: (i) => Buffer.concat(connections[i]?.chunks ?? []).toString(),
    close: async () => {
      for (const c of connections) c.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A client connection and everything that happened to it. */
interface Client {
  readonly socket: tls.TLSSocket;
  readonly data: Buffer[];
  secure: boolean;
  ended: boolean;
  closed: boolean;
  error: Error | undefined;
}

const clients: Client[] = [];
const closers: Array<() => Promise<void>> = [];

/** A node:tls client presenting `device`'s certificate (and holding its key); `wait` for the handshake or the close. */
async function connectAs(device: IssuedCertificate, port: number, versions: tls.ConnectionOptions, wait = true): Promise<Client> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: SNI, cert: device.certPem, key: device.keyPem, rejectUnauthorized: false, ...versions });
  const client: Client = { socket, data: [], secure: false, ended: false, closed: false, error: undefined };
  clients.push(client);
  socket.on('data', (d: Buffer) => client.data.push(d));
  socket.on('secureConnect', () => (client.secure = true));
  socket.on('end', () => (client.ended = true));
  socket.on('close', () => (client.closed = true));
  socket.on('error', (err) => (client.error ??= err));
  if (wait) await new Promise<void>((resolve) => (socket.once('secureConnect', () => resolve()), socket.once('close', () => resolve())));
  return client;
}

/** A TCP pass-through to `target` that records what the server sends, to read its TLS record types. */
interface Tap {
  readonly port: number;
  readonly fromServer: Buffer[];
  /** The server's side sent FIN (not a reset). */
  serverEnded: boolean;
}

async function startTap(target: number): Promise<Tap> {
  const sockets = new Set<net.Socket>();
  const tap = { port: 0, fromServer: [] as Buffer[], serverEnded: false };
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: target, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    upstream.on('data', (d: Buffer) => tap.fromServer.push(d));
    upstream.on('end', () => (tap.serverEnded = true));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return Object.assign(tap, { port: (server.address() as net.AddressInfo).port });
}

/** The content types of the TLS records in `bytes`. */
function recordTypes(bytes: Buffer): number[] {
  const types: number[] = [];
  for (let o = 0; o + 5 <= bytes.length; o += 5 + bytes.readUInt16BE(o + 3)) types.push(bytes[o] ?? -1);
  return types;
}

/**
 * The attacker's path: a relay to `target` that passes the server's bytes
 * unchanged and the client's only up to and including its Certificate
 * message: in TLS 1.3 the client's first encrypted record; in TLS 1.2 the
 * handshake message of type 11, re-framed into its own record (the messages
 * before it too, each in a record of its own). Everything after is
 * withheld, and counted.
 */
interface StopAfterCertificate {
  readonly port: number;
  /** What the relay stopped after: 'encrypted' (TLS 1.3), 'certificate' (TLS 1.2), or undefined (not yet). */
  stoppedAfter: 'encrypted' | 'certificate' | undefined;
  /** The client records held back after the stop: 'handshake type N' (plaintext, by its first message), 'change_cipher_spec', 'encrypted'. */
  readonly withheld: string[];
}

function frame(type: number, version: Buffer, payload: Buffer): Buffer[] {
  const records: Buffer[] = [];
  for (let o = 0; o < payload.length; o += TLS_RECORD_MAX) {
    const part = payload.subarray(o, o + TLS_RECORD_MAX);
    const header = Buffer.from([type, version[0] ?? 3, version[1] ?? 3, 0, 0]);
    header.writeUInt16BE(part.length, 3);
    records.push(header, part);
  }
  return records;
}

async function startStopAfterCertificate(target: number): Promise<StopAfterCertificate> {
  const sockets = new Set<net.Socket>();
  const relay: StopAfterCertificate = { port: 0, stoppedAfter: undefined, withheld: [] };
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: target });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    upstream.pipe(client);
    upstream.on('close', () => client.destroy());
    let pending = Buffer.alloc(0);
    let handshakeBytes = Buffer.alloc(0);
    let sawChangeCipherSpec = false;
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (pending.length > RELAY_BUFFER_LIMIT) return void client.destroy();
      while (pending.length >= 5) {
        const length = pending.readUInt16BE(3);
        if (pending.length < 5 + length) return;
        const record = pending.subarray(0, 5 + length);
        pending = pending.subarray(5 + length);
        const type = record[0] ?? -1;
        const encrypted = type === RECORD.applicationData || (type === RECORD.handshake && sawChangeCipherSpec);
        if (type === RECORD.changeCipherSpec) sawChangeCipherSpec = true;
        if (relay.stoppedAfter !== undefined) {
          relay.withheld.push(type === RECORD.changeCipherSpec ? 'change_cipher_spec' : encrypted ? 'encrypted' : `handshake type ${record[5] ?? -1}`);
          continue;
        }
        if (type === RECORD.applicationData) {
          upstream.write(record);
          relay.stoppedAfter = 'encrypted';
          continue;
        }
        if (type !== RECORD.handshake) {
          upstream.write(record);
          continue;
        }
        // Plaintext handshake messages (the ClientHello; in TLS 1.2 the whole client flight): one record each.
        handshakeBytes = Buffer.concat([handshakeBytes, record.subarray(5)]);
        while (handshakeBytes.length >= 4 && relay.stoppedAfter === undefined) {
          const messageLength = 4 + handshakeBytes.readUIntBE(1, 3);
          if (handshakeBytes.length < messageLength) break;
          const message = handshakeBytes.subarray(0, messageLength);
          handshakeBytes = handshakeBytes.subarray(messageLength);
          for (const part of frame(RECORD.handshake, record.subarray(1, 3), message)) upstream.write(part);
          if (message[0] === HANDSHAKE_CERTIFICATE) relay.stoppedAfter = 'certificate';
        }
        // The rest of that record (ClientKeyExchange, CertificateVerify) is withheld with it.
        if (relay.stoppedAfter !== undefined && handshakeBytes.length > 0) relay.withheld.push(`handshake type ${handshakeBytes[0] ?? -1}`);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return Object.assign(relay, { port: (server.address() as net.AddressInfo).port });
}

describe('newest-wins replaces only a connection whose handshake completed', () => {
  let dir: string;
  let lab: DnsLab;
  let proxy: RunningProxy;
  let upstream: Recorder;
  const devices: Record<string, IssuedCertificate> = {};
  const ports = {} as Record<'native' | 'node', number>;
  const decisions: DecisionRecord[] = [];
  const replaced: ConnectionReplacedEvent[] = [];
  let unsubscribe: (() => void) | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-newest-wins-'));
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    const records: string[] = [];
    for (const label of DEVICES) {
      const cert = await createCertificate({ commonName: nameOf(label), dnsNames: [nameOf(label)] });
      devices[label] = cert;
      records.push(`${label}._device 300 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(cert.der), 3, 1, 1))}`);
    }
    lab = await startDnssecLab([{ origin: ZONE, signing: { algorithm: 13 }, records }]);
    upstream = await startRecorder();
    for (const engine of ENGINES) ports[engine] = await freePort();
    const listener = (engine: 'native' | 'node'): string =>
      `  - name: ${engine}\n    listen: 127.0.0.1:${ports[engine]}\n    mode: tcp\n    clientHelloTimeoutMs: 1000\n    handshakeTimeoutMs: ${HANDSHAKE_TIMEOUT_MS}\n` +
      `    tls: { engine: ${engine}, certificates: [{ certFile: server.pem, keyFile: server.key }] }\n` +
      `    routes:\n      - upstream: tcp://127.0.0.1:${upstream.port}\n        allow: ['*._device.${ZONE}']\n`;
    const config =
      `admin: false\nresolver:\n  servers: [{ address: "127.0.0.1:${lab.resolver.port}" }]\n` +
      `limits:\n  maxConnectionsPerIdentity: { max: 1, overflow: newest-wins }\nlisteners:\n${ENGINES.map(listener).join('')}`;
    proxy = await startProxy(await parseConfigText(config, join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
    unsubscribe = connectionReplacedChannel.subscribe((e) => replaced.push(e));
  }, 60_000);

  afterAll(async () => {
    unsubscribe?.();
    for (const c of clients) c.socket.destroy();
    await Promise.all(closers.splice(0).map((close) => close()));
    await proxy?.close();
    await upstream?.close();
    await lab?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.socket.destroy();
    await Promise.all(closers.splice(0).map((close) => close()));
    // Let dancegate see the closes (and release the identity slots) before the next test.
    await new Promise((resolve) => setTimeout(resolve, 100));
    decisions.length = 0;
    replaced.length = 0;
  });

  describe.each(ENGINES)('engine %s', (engine) => {
    it.each(ATTACKER_VERSIONS)(
      'an attacker (%s) that stops after its Certificate leaves the victim connected and times out; a real second connection replaces the victim',
      async (version) => {
        const device = devices[deviceLabel(engine, version)];
        if (device === undefined) throw new Error('no device certificate');
        const name = nameOf(deviceLabel(engine, version));
        const attackerVersions: tls.ConnectionOptions = version === 'TLSv1.3' ? { minVersion: 'TLSv1.3' } : { maxVersion: 'TLSv1.2' };
        const made = (): Array<[string, string, string | undefined]> => decisions.filter((d) => d.listener === engine).map((d) => [d.outcome, d.reason, d.claimedName]);
        const fromConn = upstream.connections.length;

        // The victim: established, relayed both ways.
        const tap = await startTap(ports[engine]);
        const victim = await connectAs(device, tap.port, { maxVersion: 'TLSv1.2' });
        expect(victim.secure).toBe(true);
        victim.socket.write('one\n');
        await waitUntil('the upstream to get "one"', () => upstream.bytes(fromConn) === 'one\n');

        // The attacker: the victim's certificate, but nothing past its Certificate message reaches dancegate.
        const relay = await startStopAfterCertificate(ports[engine]);
        const attacker = await connectAs(device, relay.port, attackerVersions, false);
        await waitUntil("the attacker's refusal", () => decisions.filter((d) => d.listener === engine).length === 2, HANDSHAKE_TIMEOUT_MS + 5000);
        expect(relay.stoppedAfter).toBe(version === 'TLSv1.3' ? 'encrypted' : 'certificate');
        // Its CertificateVerify and Finished existed (the test client has the key) and were withheld.
        // TLS 1.3: CertificateVerify and Finished; TLS 1.2: ClientKeyExchange (16), CertificateVerify (15), then Finished.
        expect(relay.withheld).toEqual(version === 'TLSv1.3' ? ['encrypted', 'encrypted'] : ['handshake type 16', 'handshake type 15', 'change_cipher_spec', 'encrypted']);
        const refusal = decisions.filter((d) => d.listener === engine)[1];
        expect([refusal?.outcome, refusal?.reason, refusal?.detail]).toEqual(['refused', 'handshake-timeout', STALL_DETAIL]);
        if (engine === 'native') {
          // The native engine did verify the attacker's certificate, in the paused handshake: name claimed, TLSA matched.
          expect(refusal?.claimedName).toBe(name);
          expect(refusal?.tlsa).toBe('3 1 1');
        } else {
          // node:tls verifies after a completed handshake: the attacker's certificate was never looked at.
          expect([refusal?.claimedName, refusal?.tlsa]).toEqual([undefined, undefined]);
        }
        await waitUntil('the attacker to be closed', () => attacker.closed);
        // TLS 1.2: the client waits for the server's Finished, which never comes. (A TLS 1.3 client is done after sending its own.)
        if (version === 'TLSv1.2') expect(attacker.secure).toBe(false);

        // The victim is still there, relayed both ways, and was never told to go.
        expect([victim.ended, victim.closed, victim.error]).toEqual([false, false, undefined]);
        expect(replaced).toEqual([]);
        expect(upstream.connections.length).toBe(fromConn + 1);
        victim.socket.write('after\n');
        await waitUntil('the upstream to get "after"', () => upstream.bytes(fromConn) === 'one\nafter\n');
        upstream.connections[fromConn]?.socket.write('pong\n');
        await waitUntil('the victim to get "pong"', () => Buffer.concat(victim.data).toString() === 'pong\n');

        // Another such attacker in flight while the device reconnects for real.
        const relay2 = await startStopAfterCertificate(ports[engine]);
        await connectAs(device, relay2.port, attackerVersions, false);
        await waitUntil("the second attacker's Certificate to be relayed", () => relay2.stoppedAfter !== undefined);
        const second = await connectAs(device, ports[engine], {});
        expect(second.secure).toBe(true);
        await waitUntil('the victim to end', () => victim.ended && victim.closed);
        expect(victim.error).toBeUndefined();
        // dancegate's last record to the victim is an alert (close_notify), then FIN, not a reset.
        expect(recordTypes(Buffer.concat(tap.fromServer)).at(-1)).toBe(RECORD.alert);
        expect(tap.serverEnded).toBe(true);
        second.socket.write('two\n');
        await waitUntil('the upstream to get "two"', () => upstream.bytes(fromConn + 1) === 'two\n');
        await waitUntil("the victim's upstream side to close", () => upstream.connections[fromConn]?.closed === true);
        // The second attacker was never replaced (nor did it replace anyone): it only times out.
        await waitUntil("the second attacker's refusal", () => decisions.filter((d) => d.listener === engine).length === 4, HANDSHAKE_TIMEOUT_MS + 5000);
        expect(second.closed).toBe(false);
        const forwarded = decisions.filter((d) => d.listener === engine && d.outcome === 'forwarded');
        expect(made()).toEqual([
          ['forwarded', 'authenticated', name],
          ['refused', 'handshake-timeout', engine === 'native' ? name : undefined],
          ['forwarded', 'authenticated', name],
          ['refused', 'handshake-timeout', engine === 'native' ? name : undefined],
        ]);
        expect(replaced).toEqual([{ listener: engine, connectionId: forwarded[0]?.connectionId, identity: name, detail: replacedDetail(name) }]);
        expect(upstream.connections.length).toBe(fromConn + 2);
      },
      20_000,
    );
  });
});
