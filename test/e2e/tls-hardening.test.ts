/**
 * Issue 10, findings 5 and 6, against the real proxy (HTTP mode, local TLSA
 * file): TLS 1.2 renegotiation is refused by OpenSSL (real `openssl
 * s_client -tls1_2` sending `R`), and a client chain of huge-exponent RSA
 * keys is refused as `chain-over-limits` with its address banned, so that
 * concurrent hostile handshakes from one address cost one verification,
 * not one each, while a legitimate client is served. Asserts outcomes and
 * counts, never timings.
 */
import { spawn } from 'node:child_process';
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
const PER_IP = 4;

/** A DANE-EE 3 1 1 record line for a certificate (SHA-256 of its SPKI), computed here with node:crypto only. */
function tlsaLine(name: string, der: Buffer): string {
  const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  return `${name} IN TLSA 3 1 1 ${createHash('sha256').update(spki).digest('hex')}\n`;
}

import { TEST_ENGINE, byEngine } from '../lab/engine.js';

describe('TLS hardening: renegotiation and hostile client chains', () => {
  let dir: string;
  let proxy: RunningProxy;
  let backend: http.Server;
  let port: number;
  let serverCa: IssuedCertificate;
  let legit: IssuedCertificate;
  let hostile: HostileChain;
  /** Long enough that the Certificate message alone passes the 16384-byte flight limit. */
  let longHostile: HostileChain;
  const decisions: DecisionRecord[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-tlsh-'));
    serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
    legit = await createCertificate({ commonName: LEGIT, dnsNames: [LEGIT] });
    // Ten certificates, every key RSA-3072 with a 3070-bit public exponent; the leaf even has a matching DANE-EE record.
    hostile = await createHostileRsaChain({ leafName: HOSTILE, length: 10 });
    longHostile = await createHostileRsaChain({ leafName: HOSTILE, length: 13 });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'ca.pem'), serverCa.certPem);
    await writeFile(join(dir, 'legit.pem'), legit.certPem);
    await writeFile(join(dir, 'legit.key'), legit.keyPem);
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
  handshakes: { maxConcurrent: 100, maxConcurrentPerIp: ${PER_IP} }
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

  /** One GET over TLS from `localAddress`: the raw response text, or what ended the connection. */
  async function get(localAddress: string, cert: string, key: string): Promise<string> {
    const raw = net.connect({ host: '127.0.0.1', port, localAddress });
    raw.on('error', () => undefined);
    await once(raw, 'connect');
    return exchange(raw, cert, key);
  }

  function exchange(raw: net.Socket, cert: string, key: string): Promise<string> {
    return new Promise((resolve) => {
      const socket = tls.connect({ socket: raw, servername: SNI, ca: serverCa.certPem, cert, key });
      let text = '';
      socket.on('secureConnect', () => socket.write(`GET / HTTP/1.1\r\nHost: ${SNI}\r\nConnection: close\r\n\r\n`));
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('error', (err: Error) => (text += `[error: ${err.message}]`));
      socket.on('close', () => resolve(text));
    });
  }

  /** Raw TLS 1.2 from `localAddress`: ClientHello, wait for ServerHelloDone, send `flight`; resolves when the proxy closes. */
  async function rawFlight(localAddress: string, flight: Buffer): Promise<void> {
    const raw = net.connect({ host: '127.0.0.1', port, localAddress });
    raw.on('error', () => undefined);
    await once(raw, 'connect');
    let received = Buffer.alloc(0);
    raw.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
    const closed = once(raw, 'close');
    raw.write(stallingTls12Hello(SNI, HOSTILE));
    // ServerHelloDone (type 14, empty) ends the server's flight.
    await waitUntil('ServerHelloDone', () => received.subarray(-4).equals(Buffer.from([14, 0, 0, 0])));
    raw.write(flight);
    await closed;
  }

  it('a TLS 1.2 renegotiation (openssl s_client, R) is refused with no_renegotiation, the connection ends, the proxy keeps serving', async () => {
    const client = spawn(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', SNI, '-tls1_2', '-CAfile', join(dir, 'ca.pem'), '-cert', join(dir, 'legit.pem'), '-key', join(dir, 'legit.key'), '-msg'],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let output = '';
    client.stdout.on('data', (d: Buffer) => (output += d.toString()));
    client.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // s_client exits once its renegotiation is refused: a write after that is EPIPE, which is the expected end, not an error.
    client.stdin.on('error', () => undefined);
    const exited = once(client, 'exit');
    const serverFinished = (): number => output.match(/<<< TLS 1\.2, Handshake \[length [0-9a-f]+\], Finished/g)?.length ?? 0;
    try {
      await waitUntil('the first handshake', () => serverFinished() === 1);
      await waitUntil('the connection to be authenticated', () => decisions.some((d) => d.claimedName === LEGIT));
      client.stdin.write('R\n');
      await waitUntil('the renegotiation to be answered', () => output.includes('no_renegotiation') || serverFinished() >= 2);
      // What would show a working renegotiation: a second handshake, then the request answered on the same connection.
      client.stdin.write(`GET / HTTP/1.1\r\nHost: ${SNI}\r\nConnection: close\r\n\r\n`);
      const [code] = await Promise.race([exited, new Promise<[null]>((resolve) => setTimeout(() => resolve([null]), 5000))]);
      // s_client's summary lines, without the hex dumps of -msg.
      const summary = output
        .split('\n')
        .filter((line) => !/^\s+[0-9a-f]{2}( |$)/.test(line))
        .join('\n');
      expect(summary).toContain('RENEGOTIATING');
      expect(serverFinished(), `a second server Finished means the renegotiation completed:\n${summary}`).toBe(1);
      expect(summary).not.toContain(`hello ${LEGIT}`);
      expect(summary).toContain('<<< TLS 1.2, Alert [length 0002], warning no_renegotiation');
      expect(summary).toContain('no renegotiation');
      expect(code).toBe(1);
    } finally {
      client.kill();
    }
    // The proxy is alive and serves a new connection.
    expect(await get('127.0.0.1', legit.certPem, legit.keyPem)).toContain(`hello ${LEGIT}`);
  });

  it('a chain of huge-exponent RSA keys is refused as chain-over-limits (403 naming it), and its address is banned', async () => {
    const answer = await get('127.0.0.3', hostile.chainPem, hostile.keyPem);
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('Forbidden: DANE client authentication failed (chain-over-limits)');
    expect(answer).not.toContain('hello');
    expect(from('127.0.0.3')).toMatchObject([
      {
        outcome: 'refused',
        reason: 'chain-over-limits',
        tlsVersion: 'TLSv1.3',
        detail: `certificate 1 of 10 (CN=${HOSTILE}): RSA public exponent of 3070 bits exceeds the limit of 32`,
      },
    ]);
    // The next connection from that address is refused at accept, before any handshake.
    const again = await get('127.0.0.3', legit.certPem, legit.keyPem);
    expect(again).not.toContain('hello');
    await waitUntil('the second decision', () => from('127.0.0.3').length === 2);
    expect(from('127.0.0.3')[1]).toMatchObject({ outcome: 'refused', reason: 'penalty-box' });
  });

  it(`concurrent hostile handshakes from one address: past ${PER_IP} refused at accept, of the ${PER_IP} admitted one chain is verified and the rest ended; a legitimate client is served meanwhile`, async () => {
    const attacker = '127.0.0.4';
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 2 * PER_IP; i++) {
      const raw = net.connect({ host: '127.0.0.1', port, localAddress: attacker });
      raw.on('error', () => undefined);
      await once(raw, 'connect');
      sockets.push(raw);
    }
    await waitUntil('the surplus to be refused', () => from(attacker).filter((d) => d.reason === 'handshake-budget-ip').length === PER_IP);
    const admitted = sockets.filter((s) => !s.destroyed && s.readyState === 'open');
    const answers = Promise.all(sockets.slice(0, PER_IP).map((raw) => exchange(raw, hostile.chainPem, hostile.keyPem)));
    const legitimate = get('127.0.0.1', legit.certPem, legit.keyPem);
    const results = await answers;
    expect(await legitimate).toContain(`hello ${LEGIT}`);
    expect(admitted.length).toBeGreaterThanOrEqual(PER_IP);
    expect(results.filter((r) => r.includes('hello'))).toEqual([]);
    const reasons = from(attacker).map((d) => d.reason);
    expect(reasons.filter((r) => r === 'handshake-budget-ip')).toHaveLength(PER_IP);
    expect(reasons.filter((r) => r === 'chain-over-limits')).toHaveLength(1);
    expect(reasons.filter((r) => r === 'penalty-box')).toHaveLength(PER_IP - 1);
    expect(reasons).toHaveLength(2 * PER_IP);
    for (const s of sockets) s.destroy();
  });

  const ders = (chain: HostileChain): Buffer[] =>
    chain.chainPem
      .split('-----END CERTIFICATE-----')
      .slice(0, -1)
      .map((pem) => Buffer.from(pem.replace(/-----BEGIN CERTIFICATE-----|\s/g, ''), 'base64'));

  // node:tls judges the chain when the handshake stalls or fails (OpenSSL verified it meanwhile); the native engine
  // judges it the moment its Certificate message is in (OpenSSL verifies none of it), so the detail ends there.
  const overFlight = (bytes: number, then: string): string =>
    `the client sent ${bytes} bytes of handshake after its ClientHello; at most 16384 are accepted (limits.handshakes.maxClientFlightBytes)${byEngine({ native: '', node: then })}`;

  it('raw bytes: a costly chain in a TLS 1.2 Certificate message, then a stall, is refused as chain-over-limits (node:tls: at the deadline; native: at once) and bans the address', async () => {
    const flight = records(certificateMessage(ders(longHostile)), 16_384, 0x0303);
    expect(flight.length).toBeGreaterThan(16_384);
    await rawFlight('127.0.0.5', flight);
    expect(from('127.0.0.5')).toMatchObject([{ outcome: 'refused', reason: 'chain-over-limits', detail: overFlight(flight.length, ', then stalled') }]);
    expect(proxy.admission.admitConnection('127.0.0.5')).toMatchObject({ ok: false, reason: 'penalty-box' });
  });

  it('raw bytes: a costly chain, then a broken handshake message, is refused as chain-over-limits (not a mere handshake failure)', async () => {
    // A ClientKeyExchange whose inner length disagrees with its own: OpenSSL fails the handshake after reading the chain.
    const junk = records(Buffer.from([16, 0, 0, 4, 9, 9, 9, 9]), 16_384, 0x0303);
    const certificate = records(certificateMessage(ders(longHostile)), 16_384, 0x0303);
    const flight = Buffer.concat([certificate, junk]);
    await rawFlight('127.0.0.6', flight);
    expect(from('127.0.0.6')).toMatchObject([{ outcome: 'refused', reason: 'chain-over-limits' }]);
    // The native engine judges at the Certificate message: the bytes after it are not counted.
    if (TEST_ENGINE === 'native') expect(from('127.0.0.6')[0]?.detail).toBe(overFlight(certificate.length, ''));
    else {
      expect(from('127.0.0.6')[0]?.detail).toMatch(
        new RegExp(`^the client sent ${flight.length} bytes of handshake after its ClientHello; at most 16384 are accepted \\(limits\\.handshakes\\.maxClientFlightBytes\\), then failed: .+`),
      );
    }
    expect(proxy.admission.admitConnection('127.0.0.6')).toMatchObject({ ok: false, reason: 'penalty-box' });
  });

  it('raw bytes: a small chain of usual keys, then a broken message, is an ordinary handshake failure (no ban)', async () => {
    const junk = records(Buffer.from([16, 0, 0, 4, 9, 9, 9, 9]), 16_384, 0x0303);
    await rawFlight('127.0.0.7', Buffer.concat([records(certificateMessage([legit.der]), 16_384, 0x0303), junk]));
    expect(from('127.0.0.7')).toMatchObject([{ outcome: 'refused', reason: 'handshake-failed' }]);
    const next = proxy.admission.admitConnection('127.0.0.7');
    expect(next.ok).toBe(true);
    if (next.ok) next.release();
  });
});
