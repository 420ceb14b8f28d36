/**
 * Issue 10, finding 6 (handshakes in flight per address), against the real
 * proxy: OpenSSL verifies a client chain as soon as its Certificate message
 * arrives, and a client that then stalls is judged only at the handshake
 * deadline. So one address opening N connections, each sending a costly
 * chain then stalling, used to have all N chains verified before the first
 * ban. Now at most limits.handshakes.maxTlsHandshakesPerIp (default 4) of an
 * address's connections are in the TLS handshake at once; the others wait
 * with their ClientHello not yet handed to OpenSSL, and end without reaching
 * TLS when the address is banned.
 *
 * Measured without timings: a hostile connection whose ClientHello reached
 * OpenSSL gets a ServerHello back; one that never gets one had no chain
 * verified. The configuration names no new key (the default applies), so the
 * file runs unchanged against a checkout without the cap (and fails there).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { certificateMessage, records, stallingTls12Hello } from '../lab/client-hello-builder.js';
import { freePort } from '../lab/dnssec-lab.js';
import { createHostileRsaChain, type HostileChain } from '../lab/hostile-rsa-chain.js';
import { waitUntil } from '../lab/wait.js';

const SNI = 'api.proxy.test';
const LEGIT = 'legit._device.clients.test';
const HOSTILE = 'hostile._device.clients.test';
/** limits.handshakes.maxTlsHandshakesPerIp's default. */
const CAP = 4;
const HOSTILE_CONNECTIONS = 8;

function tlsaLine(name: string, der: Buffer): string {
  const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  return `${name} IN TLSA 3 1 1 ${createHash('sha256').update(spki).digest('hex')}\n`;
}

const dersOf = (chain: HostileChain): Buffer[] =>
  chain.chainPem
    .split('-----END CERTIFICATE-----')
    .slice(0, -1)
    .map((pem) => Buffer.from(pem.replace(/-----BEGIN CERTIFICATE-----|\s/g, ''), 'base64'));

/** A raw TLS 1.2 client that sends its ClientHello, then `flight` (if any) once the server's flight is done, then stalls. */
interface StallingClient {
  readonly socket: net.Socket;
  /** The proxy answered the ClientHello (a TLS handshake record came back): it reached OpenSSL. */
  readonly answered: () => boolean;
  readonly flightSent: () => boolean;
  readonly closed: Promise<unknown>;
}

describe('TLS handshakes per address (maxTlsHandshakesPerIp)', () => {
  let dir: string;
  let proxy: RunningProxy;
  let backend: http.Server;
  let port: number;
  let serverCa: IssuedCertificate;
  let legit: IssuedCertificate;
  /** 13 certificates: the Certificate message alone is over the 16384-byte flight limit. */
  let hostile: HostileChain;
  const decisions: DecisionRecord[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-tlsip-'));
    serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
    legit = await createCertificate({ commonName: LEGIT, dnsNames: [LEGIT] });
    hostile = await createHostileRsaChain({ leafName: HOSTILE, length: 13 });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'tlsa.txt'), tlsaLine(LEGIT, legit.der) + tlsaLine(HOSTILE, hostile.leafDer));
    backend = http.createServer((req, res) => res.end(`hello ${req.headers['x-dane-client-id'] ?? 'nobody'}`));
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    port = await freePort();
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:
  localTlsaFile: tlsa.txt
limits:
  handshakes: { maxConcurrent: 100, maxConcurrentPerIp: 16 }
  newConnectionsPerIp: false
  penaltyBox: { failures: 20, windowMs: 60000, banMs: 60000 }
listeners:
  - name: api
    listen: 127.0.0.1:${port}
    mode: http
    clientHelloTimeoutMs: 2000
    handshakeTimeoutMs: 3000
    tls:
      certificates: [{ certFile: server.pem, keyFile: server.key }]
    routes:
      - upstream: http://127.0.0.1:${(backend.address() as net.AddressInfo).port}
        allow: ['*._device.clients.test']
`,
    );
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    backend?.closeAllConnections();
    await new Promise<void>((resolve) => (backend ? backend.close(() => resolve()) : resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  const from = (address: string): DecisionRecord[] => decisions.filter((d) => d.source.startsWith(`${address}:`));

  async function stallingClient(localAddress: string, flight: Buffer | undefined): Promise<StallingClient> {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    socket.on('error', () => undefined);
    // Closed, whether by an end or a reset: a connection banned before its ClientHello was read ends with a reset.
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await once(socket, 'connect');
    let received = Buffer.alloc(0);
    let sent = false;
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      // ServerHelloDone (type 14, empty) ends the server's flight: send ours, then nothing more.
      if (flight !== undefined && !sent && received.subarray(-4).equals(Buffer.from([14, 0, 0, 0]))) {
        sent = true;
        socket.write(flight);
      }
    });
    socket.write(stallingTls12Hello(SNI, HOSTILE));
    // A handshake record (22) back: the ServerHello, which OpenSSL writes only once it has the ClientHello.
    return { socket, answered: () => received[0] === 22, flightSent: () => sent, closed };
  }

  /** One GET over TLS from `localAddress`: the response text, or what ended the connection. */
  function get(localAddress: string): Promise<string> {
    return new Promise((resolve) => {
      const raw = net.connect({ host: '127.0.0.1', port, localAddress });
      raw.on('error', () => undefined);
      const socket = tls.connect({ socket: raw, servername: SNI, ca: serverCa.certPem, cert: legit.certPem, key: legit.keyPem });
      let text = '';
      socket.on('secureConnect', () => socket.write(`GET / HTTP/1.1\r\nHost: ${SNI}\r\nConnection: close\r\n\r\n`));
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('error', (err: Error) => (text += `[error: ${err.message}]`));
      socket.on('close', () => resolve(text));
    });
  }

  it(`${HOSTILE_CONNECTIONS} stalled costly flights (> 16 KiB of huge-exponent RSA chain each) from one address: at most ${CAP} reach OpenSSL before the ban; a legitimate client from another address is served`, async () => {
    const attacker = '127.0.0.11';
    const flight = records(certificateMessage(dersOf(hostile)), 16_384, 0x0303);
    expect(flight.length).toBeGreaterThan(16_384);
    const clients = await Promise.all(Array.from({ length: HOSTILE_CONNECTIONS }, () => stallingClient(attacker, flight)));
    // The admitted flights are in (and being verified, or verified); the others wait for a slot.
    await waitUntil('a first hostile flight', () => clients.some((c) => c.flightSent()));
    expect(await get('127.0.0.12')).toContain(`hello ${LEGIT}`);
    await Promise.all(clients.map((c) => c.closed));

    const reachedTls = clients.filter((c) => c.answered()).length;
    expect(reachedTls, `hostile connections whose ClientHello reached OpenSSL (and whose chain it verified)`).toBeLessThanOrEqual(CAP);
    expect(reachedTls).toBeGreaterThanOrEqual(1);
    expect(clients.filter((c) => c.flightSent()).length).toBe(reachedTls);
    // One chain judged over limits at its deadline; every other connection of the address ended by the ban.
    await waitUntil('every hostile decision', () => from(attacker).length === HOSTILE_CONNECTIONS);
    const reasons = from(attacker).map((d) => d.reason);
    expect(reasons.filter((r) => r === 'chain-over-limits')).toHaveLength(1);
    expect(reasons.filter((r) => r === 'penalty-box')).toHaveLength(HOSTILE_CONNECTIONS - 1);
    expect(proxy.admission.admitConnection(attacker)).toMatchObject({ ok: false, reason: 'penalty-box' });
    // Nothing left behind: no slot held, nobody waiting, no handshake budget.
    expect(proxy.admission.tlsHandshakeAddresses).toBe(0);
    await waitUntil('the handshake budget to be free', () => proxy.admission.handshakesInProgress === 0);
  }, 60_000);

  it(`a connection waiting behind ${CAP} stalled handshakes of its address gets its turn when one of them closes, and is served`, async () => {
    const address = '127.0.0.13';
    // ClientHello only, then silence: each holds a TLS slot until its deadline, or until it goes away.
    const stalled = await Promise.all(Array.from({ length: CAP }, () => stallingClient(address, undefined)));
    await waitUntil(`${CAP} ServerHellos`, () => stalled.every((c) => c.answered()));
    const answer = get(address);
    await waitUntil('the legitimate connection to wait for a slot', () => proxy.admission.tlsHandshakesOf(address).waiting === 1);
    expect(proxy.admission.tlsHandshakesOf(address)).toEqual({ held: CAP, waiting: 1 });
    stalled[0]?.socket.destroy();
    expect(await answer).toContain(`hello ${LEGIT}`);
    for (const c of stalled) c.socket.destroy();
    await Promise.all(stalled.map((c) => c.closed));
    await waitUntil('every slot to be given back', () => proxy.admission.tlsHandshakeAddresses === 0);
    expect(from(address).filter((d) => d.outcome === 'forwarded')).toHaveLength(1);
  }, 60_000);
});
