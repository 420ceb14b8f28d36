/**
 * Issue 14 end to end: a real dancegate (startProxy) authenticating real
 * node:tls clients by DANE (TLSA 3 1 1 records in a zone signed for real,
 * served by NSD behind a validating Unbound), relaying to plain Node TCP
 * servers that record every byte and connection:
 *  (a) maxConnectionsPerIdentity: newest-wins closes the older connection
 *      of a name with a close_notify, refuse-new refuses the newer one;
 *  (b) ALPN on a TCP listener: the server's preference, routes chosen by
 *      it, what a client offering none of ours gets, the protocol offered to
 *      a tls:// upstream and carried in the PROXY v2 header (≤ 500 bytes);
 *  (c) mode: mqtt: a spoofed CONNECT gets CONNACK 2 and the upstream never
 *      hears of the client; a good one arrives rewritten, with what followed it;
 *  (d) mode: radsec: the identity attribute added once, a forged copy
 *      removed, the packet re-signed; a bad Message-Authenticator ends it;
 *  (e) tcpKeepAlive on accepted sockets.
 * Every listener runs on each TLS engine this machine has (the native one
 * when it is built, and node:tls), one listener per engine.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { generate, parser, type IConnectPacket, type Packet } from 'mqtt-packet';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseConfigText } from '../../src/config/load.js';
import { connectionReplacedChannel, type ConnectionReplacedEvent } from '../../src/connection/channels.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { mqttConnectChannel, radiusPacketChannel, type MqttConnectEvent, type RadiusPacketEvent } from '../../src/forward/channels.js';
import { parseProxyHeader, type ProxyV2Header } from '../../src/protocol/proxy-protocol.js';
import {
  buildIdentityAttribute,
  encodePacket,
  framePacket,
  parsePacket,
  parseVendorSpecific,
  RADIUS_ATTRIBUTE,
  signMessageAuthenticator,
  verifyMessageAuthenticator,
  type RadiusAttribute,
  type RadiusPacket,
} from '../../src/protocol/radius.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { TEST_ENGINE } from '../lab/engine.js';
import { waitUntil } from '../lab/wait.js';

const ZONE = 'bindings.test';
const SNI = 'broker.bindings.test';
const DEVICES = ['dev1', 'dev2', 'dev3', 'dev5', 'dev6', 'nas1'] as const;
type DeviceLabel = (typeof DEVICES)[number];
const nameOf = (label: string): string => `${label}._device.${ZONE}`;
/** Published by nobody: the name dev3 claims as its MQTT client id. */
const SPOOFED = nameOf('dev4');
/** The engines every listener runs on: both when the native one is built. */
const ENGINES: ReadonlyArray<'native' | 'node'> = TEST_ENGINE === 'native' ? ['native', 'node'] : ['node'];
const LISTENERS = ['plain', 'alpn', 'alpnonly', 'alpntls', 'mqtt', 'radsec', 'nokeep', 'refuse'] as const;
type ListenerKey = (typeof LISTENERS)[number];
const REPLACED_DETAIL = `a newer connection of ${nameOf('dev1')} took its place (maxConnectionsPerIdentity 1, newest-wins)`;

/** A plain TCP server that records each connection's bytes (and answers with `reply`, if given, to each chunk). */
interface Recorder {
  readonly port: number;
  readonly connections: Array<{ chunks: Buffer[]; ended: boolean; closed: boolean; socket: net.Socket }>;
  bytes(i: number): Buffer;
  close(): Promise<void>;
}

async function startRecorder(reply?: (chunk: Buffer, socket: net.Socket) => void): Promise<Recorder> {
  const connections: Recorder['connections'] = [];
  const server = net.createServer((socket) => {
    const entry = { chunks: [] as Buffer[], ended: false, closed: false, socket };
    connections.push(entry);
    socket.on('data', (chunk: Buffer) => {
      entry.chunks.push(chunk);
      reply?.(chunk, socket);
    });
    socket.on('end', () => (entry.ended = true));
    socket.on('close', () => (entry.closed = true));
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    bytes: (i) => Buffer.concat(connections[i]?.chunks ?? []),
    close: async () => {
      for (const c of connections) c.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A node:tls server upstream that records the ALPN protocols offered to it and what was chosen, and echoes upper-cased. */
interface TlsUpstream {
  readonly port: number;
  readonly offered: string[][];
  readonly negotiated: Array<string | false>;
  readonly received: string[];
  close(): Promise<void>;
}

async function startTlsUpstream(cert: IssuedCertificate): Promise<TlsUpstream> {
  const offered: string[][] = [];
  const negotiated: Array<string | false> = [];
  const received: string[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({
    cert: cert.certPem,
    key: cert.keyPem,
    ALPNCallback: ({ protocols }) => {
      offered.push([...protocols]);
      return protocols.includes('mqtt') ? 'mqtt' : undefined;
    },
  });
  server.on('secureConnection', (socket) => {
    sockets.add(socket);
    negotiated.push(socket.alpnProtocol ?? false);
    socket.on('data', (d: Buffer) => {
      received.push(d.toString());
      socket.write(d.toString().toUpperCase());
    });
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', () => undefined);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    offered,
    negotiated,
    received,
    close: async () => {
      for (const s of sockets) s.destroy();
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
  received(): Buffer;
}

const clients: Client[] = [];
const taps: Tap[] = [];

/** A node:tls client presenting `device`'s certificate; resolves once the handshake is over or the connection failed. */
async function connectAs(device: IssuedCertificate, port: number, alpn?: string[], maxVersion?: tls.SecureVersion): Promise<Client> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    servername: SNI,
    cert: device.certPem,
    key: device.keyPem,
    rejectUnauthorized: false,
    ...(alpn !== undefined && { ALPNProtocols: alpn }),
    ...(maxVersion !== undefined && { maxVersion }),
  });
  const client: Client = { socket, data: [], secure: false, ended: false, closed: false, error: undefined, received: () => Buffer.concat(client.data) };
  clients.push(client);
  socket.on('data', (d: Buffer) => client.data.push(d));
  socket.on('end', () => (client.ended = true));
  socket.on('close', () => (client.closed = true));
  socket.on('error', (err) => (client.error ??= err));
  await new Promise<void>((resolve) => {
    socket.once('secureConnect', () => {
      client.secure = true;
      resolve();
    });
    socket.once('close', () => resolve());
  });
  return client;
}

/** A TCP pass-through to `target` that records what the server sends, to read its TLS record types. */
interface Tap {
  readonly port: number;
  readonly fromServer: Buffer[];
  /** The server's side sent FIN (not a reset). */
  serverEnded: boolean;
  close(): Promise<void>;
}

async function startTap(target: number): Promise<Tap> {
  const sockets = new Set<net.Socket>();
  const tap: Tap = { port: 0, fromServer: [], serverEnded: false, close: async () => undefined };
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
  return Object.assign(tap, {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}

/** The content types of the TLS records in `bytes` (22 handshake, 20 change_cipher_spec, 21 alert, 23 application data). */
function recordTypes(bytes: Buffer): number[] {
  const types: number[] = [];
  for (let o = 0; o + 5 <= bytes.length; o += 5 + bytes.readUInt16BE(o + 3)) types.push(bytes[o] ?? -1);
  return types;
}

/** The v2 header a recorder connection began with, and what followed it. */
function proxied(bytes: Buffer): { header: ProxyV2Header; headerBytes: number; rest: Buffer } {
  const parsed = parseProxyHeader(bytes);
  if (parsed.status !== 'complete' || parsed.version !== 2) throw new Error(`expected a PROXY v2 header, got ${JSON.stringify(parsed)}`);
  return { header: parsed.header, headerBytes: parsed.headerBytes, rest: bytes.subarray(parsed.headerBytes) };
}

/** Every MQTT packet in `bytes` (mqtt-packet's own parser) and what was left unparsed. */
function mqttPackets(bytes: Buffer, protocolVersion = 4): { packets: Packet[]; error: string | undefined; left: number } {
  const p = parser({ protocolVersion });
  const packets: Packet[] = [];
  let error: string | undefined;
  p.on('packet', (packet) => packets.push(packet));
  p.on('error', (err: Error) => (error ??= err.message));
  const left = p.parse(bytes);
  return { packets, error, left };
}

/** Every RADIUS packet framed from `bytes` (whole packets only). */
function radiusPackets(bytes: Buffer): Array<{ bytes: Buffer; packet: RadiusPacket }> {
  const out: Array<{ bytes: Buffer; packet: RadiusPacket }> = [];
  let rest = bytes;
  for (;;) {
    const frame = framePacket(rest, 4096);
    if (frame === 'incomplete') return out;
    if (frame.status === 'invalid') throw new Error(`the upstream got an invalid frame: ${frame.reason}`);
    const parsed = parsePacket(frame.bytes);
    if (!parsed.ok) throw new Error(`the upstream got a malformed packet: ${parsed.reason}`);
    out.push({ bytes: Buffer.from(frame.bytes), packet: parsed.packet });
    rest = rest.subarray(frame.bytes.length);
  }
}

/** An Access-Request from the NAS, signed with `secret`, carrying `extra` attributes after User-Name. */
function accessRequest(identifier: number, extra: RadiusAttribute[], secret = 'radsec'): Buffer {
  const unsigned = encodePacket({
    code: 1,
    identifier,
    authenticator: randomBytes(16),
    attributes: [{ type: RADIUS_ATTRIBUTE.MESSAGE_AUTHENTICATOR, value: Buffer.alloc(16) }, { type: RADIUS_ATTRIBUTE.USER_NAME, value: Buffer.from('bob') }, ...extra],
  });
  return signMessageAuthenticator(unsigned, secret);
}

/** The values of every identity VSA (vendor 32473, type 1) in a packet. */
function identityValues(packet: RadiusPacket): string[] {
  const values: string[] = [];
  for (const a of packet.attributes) {
    if (a.type !== RADIUS_ATTRIBUTE.VENDOR_SPECIFIC) continue;
    const vsa = parseVendorSpecific(a.value);
    if (!vsa.ok || vsa.vendorId !== 32473) continue;
    for (const sub of vsa.subAttributes) if (sub.type === 1) values.push(sub.value.toString());
  }
  return values;
}

const settle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('issue 14 bindings through a real dancegate', () => {
  let dir: string;
  let lab: DnsLab;
  let proxy: RunningProxy;
  let refuseProxy: RunningProxy;
  const devices = {} as Record<DeviceLabel, IssuedCertificate>;
  const ports = {} as Record<'native' | 'node', Record<ListenerKey, number>>;
  const decisions: DecisionRecord[] = [];
  const replacedEvents: ConnectionReplacedEvent[] = [];
  const mqttEvents: MqttConnectEvent[] = [];
  const radiusEvents: RadiusPacketEvent[] = [];
  const unsubscribe: Array<() => void> = [];
  const up = {} as Record<'plain' | 'mqttA' | 'xother' | 'fallback' | 'mqtt' | 'radius' | 'refuse', Recorder>;
  let tlsUp: TlsUpstream;

  const decisionsOf = (listener: string): DecisionRecord[] => decisions.filter((d) => d.listener === listener);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-bindings-'));
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

    const backendCa = await createCertificate({ commonName: 'backend CA', isCA: true });
    const backendCert = await createCertificate({ commonName: 'backend.test', dnsNames: ['backend.test'], issuer: backendCa, extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'backend-ca.pem'), backendCa.certPem);
    tlsUp = await startTlsUpstream(backendCert);
    up.plain = await startRecorder();
    up.mqttA = await startRecorder();
    up.xother = await startRecorder();
    up.fallback = await startRecorder();
    up.refuse = await startRecorder();
    up.radius = await startRecorder();
    // The broker answers the (rewritten) CONNECT with a CONNACK.
    up.mqtt = await startRecorder((chunk, socket) => {
      if (chunk[0] === 0x10) socket.write(generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }));
    });

    for (const engine of ENGINES) {
      ports[engine] = {} as Record<ListenerKey, number>;
      for (const key of LISTENERS) ports[engine][key] = await freePort();
    }
    const tlsBlock = (engine: string): string => `    tls: { engine: ${engine}, certificates: [{ certFile: server.pem, keyFile: server.key }] }\n`;
    const allow = "        allow: ['*._device.bindings.test']\n";
    const listener = (engine: 'native' | 'node', key: ListenerKey, mode: string, head: string, routes: string): string =>
      `  - name: ${engine}-${key}\n    listen: 127.0.0.1:${ports[engine][key]}\n    mode: ${mode}\n${head}${tlsBlock(engine)}    routes:\n${routes}`;
    const tcpUp = (r: Recorder): string => `tcp://127.0.0.1:${r.port}`;
    const listeners = (engine: 'native' | 'node'): string =>
      [
        listener(engine, 'plain', 'tcp', '', `      - upstream: ${tcpUp(up.plain)}\n${allow}`),
        listener(
          engine,
          'alpn',
          'tcp',
          '    alpn: [mqtt, x-other]\n',
          `      - upstream: ${tcpUp(up.mqttA)}\n        alpn: [mqtt]\n        proxyHeader: v2\n${allow}` +
            `      - upstream: ${tcpUp(up.xother)}\n        alpn: [x-other]\n        proxyHeader: v2\n${allow}` +
            `      - upstream: ${tcpUp(up.fallback)}\n${allow}`,
        ),
        listener(engine, 'alpnonly', 'tcp', '    alpn: [mqtt]\n', `      - upstream: ${tcpUp(up.mqttA)}\n        alpn: [mqtt]\n${allow}`),
        listener(
          engine,
          'alpntls',
          'tcp',
          '    alpn: [mqtt]\n',
          `      - upstream: tls://127.0.0.1:${tlsUp.port}\n        upstreamTls: { caFile: backend-ca.pem, serverName: backend.test }\n${allow}`,
        ),
        listener(engine, 'mqtt', 'mqtt', '', `      - upstream: ${tcpUp(up.mqtt)}\n${allow}`),
        listener(engine, 'radsec', 'radsec', '', `      - upstream: ${tcpUp(up.radius)}\n${allow}`),
        listener(engine, 'nokeep', 'tcp', '    tcpKeepAlive: false\n', `      - upstream: ${tcpUp(up.plain)}\n${allow}`),
      ].join('');
    const resolver = `admin: false\nresolver:\n  servers: [{ address: "127.0.0.1:${lab.resolver.port}" }]\n`;
    const main = `${resolver}limits:\n  maxConnectionsPerIdentity: { max: 1, overflow: newest-wins }\nlisteners:\n${ENGINES.map(listeners).join('')}`;
    proxy = await startProxy(await parseConfigText(main, join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
    const refuse = `${resolver}limits:\n  maxConnectionsPerIdentity: 1\nlisteners:\n${ENGINES.map((e) => listener(e, 'refuse', 'tcp', '', `      - upstream: ${tcpUp(up.refuse)}\n${allow}`)).join('')}`;
    refuseProxy = await startProxy(await parseConfigText(refuse, join(dir, 'refuse.yaml')), { log: (d) => decisions.push(d) });
    unsubscribe.push(
      connectionReplacedChannel.subscribe((e) => replacedEvents.push(e)),
      mqttConnectChannel.subscribe((e) => mqttEvents.push(e)),
      radiusPacketChannel.subscribe((e) => radiusEvents.push(e)),
    );
  }, 60_000);

  afterAll(async () => {
    for (const u of unsubscribe) u();
    for (const c of clients) c.socket.destroy();
    await proxy?.close();
    await refuseProxy?.close();
    await Promise.all([...Object.values(up).map((r) => r.close()), tlsUp?.close()]);
    await lab?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    for (const c of clients.splice(0)) c.socket.destroy();
    await Promise.all(taps.splice(0).map((t) => t.close()));
    // Let dancegate see the closes (and release the identity slots) before the next test.
    await settle(100);
    for (const list of [decisions, replacedEvents, mqttEvents, radiusEvents] as unknown[][]) list.length = 0;
  });

  describe.each(ENGINES)('engine %s', (engine) => {
    const port = (key: ListenerKey): number => ports[engine][key];
    const listenerName = (key: ListenerKey): string => `${engine}-${key}`;

    describe('(a) maxConnectionsPerIdentity', () => {
      it('newest-wins: a second connection of the same name closes the first with close_notify; the second is relayed', async () => {
        const fromConn = up.plain.connections.length;
        // The first speaks TLS 1.2 through a tap: its alert record's type is in the clear there (TLS 1.3 hides it).
        const tap = await startTap(port('plain'));
        taps.push(tap);
        const first = await connectAs(devices.dev1, tap.port, undefined, 'TLSv1.2');
        expect(first.secure).toBe(true);
        first.socket.write('one\n');
        await waitUntil('the upstream to get "one"', () => up.plain.bytes(fromConn).toString() === 'one\n');
        const second = await connectAs(devices.dev1, port('plain'));
        expect(second.secure).toBe(true);
        await waitUntil('the first connection to end', () => first.ended && first.closed);
        expect(first.error).toBeUndefined();
        // dancegate's last record to the first client is an alert (close_notify), then FIN, not a reset.
        expect(recordTypes(Buffer.concat(tap.fromServer)).at(-1)).toBe(21);
        expect(tap.serverEnded).toBe(true);
        second.socket.write('two\n');
        await waitUntil('the upstream to get "two"', () => up.plain.bytes(fromConn + 1).toString() === 'two\n');
        await waitUntil("the first connection's upstream side to close", () => up.plain.connections[fromConn]?.closed === true);
        expect(second.closed).toBe(false);
        const made = decisionsOf(listenerName('plain'));
        expect(made.map((d) => [d.outcome, d.reason, d.claimedName])).toEqual([
          ['forwarded', 'authenticated', nameOf('dev1')],
          ['forwarded', 'authenticated', nameOf('dev1')],
        ]);
        expect(replacedEvents.filter((e) => e.listener === listenerName('plain'))).toEqual([
          { listener: listenerName('plain'), connectionId: made[0]?.connectionId, identity: nameOf('dev1'), detail: REPLACED_DETAIL },
        ]);
      });

      it('refuse-new: a second connection of the same name is refused (identity-limit) and never reaches the upstream', async () => {
        const fromConn = up.refuse.connections.length;
        const first = await connectAs(devices.dev6, port('refuse'));
        first.socket.write('one\n');
        await waitUntil('the upstream to get "one"', () => up.refuse.bytes(fromConn).toString() === 'one\n');
        const second = await connectAs(devices.dev6, port('refuse'));
        second.socket.write('two\n');
        await waitUntil('the second connection to close', () => second.closed);
        expect(second.received().length).toBe(0);
        first.socket.write('more\n');
        await waitUntil('the first to be relayed still', () => up.refuse.bytes(fromConn).toString() === 'one\nmore\n');
        expect(up.refuse.connections.length).toBe(fromConn + 1);
        expect(first.closed).toBe(false);
        expect(decisionsOf(listenerName('refuse')).map((d) => [d.outcome, d.reason, d.detail])).toEqual([
          ['forwarded', 'authenticated', expect.any(String)],
          ['refused', 'identity-limit', `${nameOf('dev6')} already has 1 connections`],
        ]);
      });
    });

    describe('(b) ALPN', () => {
      it.each<[string, string[], 'mqttA' | 'xother', string]>([
        ['mqtt', ['mqtt'], 'mqttA', 'mqtt'],
        ['x-other', ['x-other'], 'xother', 'x-other'],
        ['x-other then mqtt: the server prefers mqtt', ['x-other', 'mqtt'], 'mqttA', 'mqtt'],
      ])('a client offering %s is routed by the negotiated protocol, which the PROXY v2 header carries (≤ 500 bytes)', async (_label, offered, upstream, chosen) => {
        const others = (['mqttA', 'xother', 'fallback'] as const).filter((u) => u !== upstream).map((u) => [u, up[u].connections.length] as const);
        const fromConn = up[upstream].connections.length;
        const client = await connectAs(devices.dev2, port('alpn'), offered);
        expect(client.secure).toBe(true);
        expect(client.socket.alpnProtocol).toBe(chosen);
        client.socket.write('hello\n');
        await waitUntil('the upstream to get the header and the payload', () => {
          const bytes = up[upstream].bytes(fromConn);
          return parseProxyHeader(bytes).status === 'complete' && bytes.toString().endsWith('hello\n');
        });
        const { header, headerBytes, rest } = proxied(up[upstream].bytes(fromConn));
        expect(rest.toString()).toBe('hello\n');
        expect(headerBytes).toBeLessThanOrEqual(500);
        expect(header.alpn).toBe(chosen);
        expect(header.ssl?.cn).toBe(nameOf('dev2'));
        expect(header.authority).toBe(SNI);
        for (const [u, n] of others) expect(up[u].connections.length).toBe(n);
        expect(decisionsOf(listenerName('alpn')).map((d) => [d.outcome, d.reason, d.alpn])).toEqual([['forwarded', 'authenticated', chosen]]);
      });

      it('a client offering no ALPN gets none and the route without alpn; its decision has no alpn', async () => {
        const fromConn = up.fallback.connections.length;
        const client = await connectAs(devices.dev2, port('alpn'));
        expect(client.socket.alpnProtocol).toBe(false);
        client.socket.write('plain\n');
        await waitUntil('the fallback upstream to get the payload', () => up.fallback.bytes(fromConn).toString() === 'plain\n');
        const [decision] = decisionsOf(listenerName('alpn'));
        expect([decision?.outcome, decision?.reason]).toEqual(['forwarded', 'authenticated']);
        expect(decision !== undefined && 'alpn' in decision).toBe(false);
      });

      it('a client offering only h2 gets the no_application_protocol alert (120) and nothing reaches any upstream', async () => {
        const before = (['mqttA', 'xother', 'fallback'] as const).map((u) => up[u].connections.length);
        const client = await connectAs(devices.dev2, port('alpn'), ['h2']);
        await waitUntil('the connection to close', () => client.closed);
        expect(client.secure).toBe(false);
        expect(client.error?.message).toMatch(/no application protocol.*SSL alert number 120|alert number 120/);
        await waitUntil('the decision', () => decisionsOf(listenerName('alpn')).length === 1);
        const [decision] = decisionsOf(listenerName('alpn'));
        // Refused before any route is chosen, whatever the engine.
        expect([decision?.outcome, decision?.reason, decision?.route, decision?.detail]).toEqual([
          'refused',
          'no-application-protocol',
          undefined,
          'the client offered "h2"; this listener speaks mqtt, x-other',
        ]);
        expect(decision !== undefined && 'alpn' in decision).toBe(false);
        expect((['mqttA', 'xother', 'fallback'] as const).map((u) => up[u].connections.length)).toEqual(before);
      });

      it('a listener whose routes all name ALPN: a client offering only h2 gets no_application_protocol (120), as the contract says', async () => {
        const before = up.mqttA.connections.length;
        const client = await connectAs(devices.dev2, port('alpnonly'), ['h2']);
        await waitUntil('the connection to close', () => client.closed);
        expect(client.secure).toBe(false);
        await waitUntil('the decision', () => decisionsOf(listenerName('alpnonly')).length === 1);
        const [decision] = decisionsOf(listenerName('alpnonly'));
        expect([decision?.outcome, decision?.reason, decision?.detail]).toEqual(['refused', 'no-application-protocol', 'the client offered "h2"; this listener speaks mqtt']);
        expect(up.mqttA.connections.length).toBe(before);
        // Not unrecognized_name (112): its SNI is served, only its ALPN is wrong.
        expect(client.error?.message).toMatch(/alert number 120/);
      });

      it('a listener whose routes all name ALPN: a client offering no ALPN is refused as no-route (unrecognized_name, 112)', async () => {
        const client = await connectAs(devices.dev2, port('alpnonly'));
        await waitUntil('the connection to close', () => client.closed);
        expect(client.secure).toBe(false);
        expect(client.error?.message).toMatch(/alert number 112/);
        await waitUntil('the decision', () => decisionsOf(listenerName('alpnonly')).length === 1);
        const [decision] = decisionsOf(listenerName('alpnonly'));
        expect([decision?.outcome, decision?.reason, decision?.detail]).toEqual(['refused', 'no-route', `no route serves ${SNI}`]);
      });

      it('a tls:// upstream is offered the protocol the client negotiated (and only it)', async () => {
        const from = tlsUp.offered.length;
        const fromNegotiated = tlsUp.negotiated.length;
        const client = await connectAs(devices.dev2, port('alpntls'), ['mqtt']);
        client.socket.write('ping\n');
        await waitUntil('the echo', () => client.received().toString() === 'PING\n');
        expect(tlsUp.offered.slice(from)).toEqual([['mqtt']]);
        expect(tlsUp.negotiated.slice(fromNegotiated)).toEqual(['mqtt']);
        expect(decisionsOf(listenerName('alpntls')).map((d) => d.alpn)).toEqual(['mqtt']);
      });

      it('a tls:// upstream is offered no ALPN when the client negotiated none', async () => {
        const from = tlsUp.offered.length;
        const fromNegotiated = tlsUp.negotiated.length;
        const client = await connectAs(devices.dev2, port('alpntls'));
        client.socket.write('ping\n');
        await waitUntil('the echo', () => client.received().toString() === 'PING\n');
        expect(tlsUp.offered.slice(from)).toEqual([]);
        expect(tlsUp.negotiated.slice(fromNegotiated)).toEqual([false]);
      });
    });

    describe('(c) mode: mqtt', () => {
      const connect = (over: Partial<IConnectPacket>): Buffer => generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: nameOf('dev3'), ...over });
      const publish = generate({ cmd: 'publish', topic: `telemetry/${nameOf('dev3')}/temp`, payload: Buffer.from('21.5'), qos: 0, retain: false, dup: false });

      it('a CONNECT claiming another client id gets CONNACK 2 (identifier rejected); the upstream never gets a connection', async () => {
        const fromConn = up.mqtt.connections.length;
        const client = await connectAs(devices.dev3, port('mqtt'));
        expect(client.secure).toBe(true);
        client.socket.write(Buffer.concat([connect({ clientId: SPOOFED }), publish]));
        await waitUntil('the connection to close', () => client.closed);
        const { packets, error, left } = mqttPackets(client.received());
        expect({ packets: packets.map((p) => ({ cmd: p.cmd, returnCode: 'returnCode' in p ? p.returnCode : undefined })), error, left }).toEqual({
          packets: [{ cmd: 'connack', returnCode: 2 }],
          error: undefined,
          left: 0,
        });
        await settle(300);
        expect(up.mqtt.connections.length).toBe(fromConn);
        const events = mqttEvents.filter((e) => e.listener === listenerName('mqtt'));
        expect(events.map((e) => [e.outcome, e.identity, e.clientId, e.reason])).toEqual([['refused', nameOf('dev3'), SPOOFED, 'client-id-not-identity']]);
        expect(decisionsOf(listenerName('mqtt')).map((d) => [d.outcome, d.reason])).toEqual([['forwarded', 'authenticated']]);
      });

      it('a good CONNECT arrives rewritten (username = the verified name) followed by the PUBLISH sent in the same write', async () => {
        const fromConn = up.mqtt.connections.length;
        const client = await connectAs(devices.dev3, port('mqtt'));
        client.socket.write(Buffer.concat([connect({ username: 'mallory', password: Buffer.from('pw') }), publish]));
        await waitUntil('the upstream to get both packets', () => mqttPackets(up.mqtt.bytes(fromConn)).packets.length === 2);
        const { packets, error, left } = mqttPackets(up.mqtt.bytes(fromConn));
        expect([error, left]).toEqual([undefined, 0]);
        const [forwarded, published] = packets;
        expect(forwarded).toMatchObject({ cmd: 'connect', protocolVersion: 4, clientId: nameOf('dev3'), username: nameOf('dev3'), password: Buffer.from('pw'), keepalive: 60 });
        expect(published).toMatchObject({ cmd: 'publish', topic: `telemetry/${nameOf('dev3')}/temp`, payload: Buffer.from('21.5') });
        // The broker's CONNACK comes back through dancegate.
        await waitUntil("the broker's CONNACK", () => mqttPackets(client.received()).packets.length === 1);
        expect(mqttPackets(client.received()).packets[0]).toMatchObject({ cmd: 'connack', returnCode: 0 });
        expect(mqttEvents.filter((e) => e.listener === listenerName('mqtt')).map((e) => [e.outcome, e.clientId])).toEqual([['forwarded', nameOf('dev3')]]);
      });
    });

    describe('(d) mode: radsec', () => {
      const forged = buildIdentityAttribute({ kind: 'vsa', vendorId: 32473, vendorType: 1 }, 'evil.nas.example');

      it('the identity VSA arrives once with the verified name, the forged copy removed, the Message-Authenticator verifying with radsec', async () => {
        const fromConn = up.radius.connections.length;
        const client = await connectAs(devices.nas1, port('radsec'));
        client.socket.write(accessRequest(7, [forged]));
        await waitUntil('the upstream to get one packet', () => radiusPackets(up.radius.bytes(fromConn)).length === 1);
        const [got] = radiusPackets(up.radius.bytes(fromConn));
        expect(got?.packet.code).toBe(1);
        expect(got?.packet.identifier).toBe(7);
        expect(identityValues(got?.packet as RadiusPacket)).toEqual([nameOf('nas1')]);
        expect(got?.packet.attributes.filter((a) => a.type === RADIUS_ATTRIBUTE.USER_NAME).map((a) => a.value.toString())).toEqual(['bob']);
        expect(verifyMessageAuthenticator(got?.bytes as Buffer, 'radsec')).toEqual({ ok: true, present: true });
        const events = radiusEvents.filter((e) => e.listener === listenerName('radsec'));
        expect(events.map((e) => [e.direction, e.outcome, e.code, e.identifier])).toEqual([
          ['from-client', 'stripped', 1, 7],
          ['from-client', 'rewritten', 1, 7],
        ]);
      });

      it('a packet whose Message-Authenticator does not verify is not forwarded, and the connection ends', async () => {
        const fromConn = up.radius.connections.length;
        const client = await connectAs(devices.nas1, port('radsec'));
        client.socket.write(accessRequest(8, []));
        await waitUntil('the good packet', () => radiusPackets(up.radius.bytes(fromConn)).length === 1);
        client.socket.write(accessRequest(9, [], 'not-the-secret'));
        await waitUntil('the connection to close', () => client.closed);
        await settle(200);
        expect(radiusPackets(up.radius.bytes(fromConn)).map((p) => p.packet.identifier)).toEqual([8]);
        const refused = radiusEvents.filter((e) => e.listener === listenerName('radsec') && e.outcome === 'refused');
        expect(refused).toHaveLength(1);
        expect(refused[0]?.reason).toContain('Access-Request id 9: Message-Authenticator does not verify with the shared secret');
      });
    });

    describe('(e) tcpKeepAlive', () => {
      /** The setKeepAlive calls made on sockets accepted by the listener on `p`. */
      const callsOn = (spy: ReturnType<typeof vi.spyOn>, p: number): unknown[][] =>
        spy.mock.calls.filter((_args: unknown[], i: number) => (spy.mock.contexts[i] as net.Socket | undefined)?.localPort === p) as unknown[][];

      it('accepted sockets get setKeepAlive(true, 60000) by default', async () => {
        const spy = vi.spyOn(net.Socket.prototype, 'setKeepAlive');
        const client = await connectAs(devices.dev5, port('plain'));
        expect(client.secure).toBe(true);
        expect(callsOn(spy, port('plain'))).toEqual([[true, 60000]]);
      });

      it('tcpKeepAlive: false: never called', async () => {
        const spy = vi.spyOn(net.Socket.prototype, 'setKeepAlive');
        const client = await connectAs(devices.dev5, port('nokeep'));
        expect(client.secure).toBe(true);
        client.socket.write('x');
        await waitUntil('a decision', () => decisionsOf(listenerName('nokeep')).length > 0);
        expect(callsOn(spy, port('nokeep'))).toEqual([]);
      });
    });
  });
});
