/**
 * Abuse resistance with a small hostile load against the real lab: hostile
 * clients claim names in an allowlisted zone whose authoritative server is
 * black-holed (the one allowed fake) and never finish their handshakes,
 * while a legitimate client still authenticates. Asserts outcomes and
 * counts (gate state, Unbound's query log, decision reasons), not timings.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { stallingTls12Hello } from '../lab/client-hello-builder.js';
import { waitUntil } from '../lab/wait.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { startSilentDns, type SilentDns } from '../lab/silent-dns.js';

const run = promisify(execFile);
const SNI = 'api.proxy.test';
const LEGIT = 'legit._device.clients.test';
const HOSTILE_CONNECTIONS = 30;

describe('abuse resistance under a small hostile load', () => {
  let dir: string;
  let lab: DnsLab;
  let blackHole: SilentDns;
  let proxy: RunningProxy;
  let backend: http.Server;
  let port: number;
  const decisions: DecisionRecord[] = [];
  const hostile: net.Socket[] = [];
  const certs: Record<string, IssuedCertificate> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-abuse-'));
    const serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
    certs.legit = await createCertificate({ commonName: LEGIT, dnsNames: [LEGIT] });
    certs.stranger = await createCertificate({ commonName: LEGIT, dnsNames: [LEGIT] });
    certs.evil = await createCertificate({ commonName: 'evil.slow.test', dnsNames: ['evil.slow.test'] });
    for (const [name, c] of Object.entries(certs)) {
      await writeFile(join(dir, `${name}.pem`), c.certPem);
      await writeFile(join(dir, `${name}.key`), c.keyPem);
    }
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'server-ca.pem'), serverCa.certPem);
    blackHole = await startSilentDns('drop');
    lab = await startDnssecLab(
      [
        {
          origin: 'clients.test',
          signing: { algorithm: 13 },
          records: [`legit._device 300 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer((certs.legit as IssuedCertificate).der), 3, 1, 1))}`],
        },
      ],
      { extraStubZones: [{ name: 'slow.test', host: blackHole.host, port: blackHole.port }] },
    );
    backend = http.createServer((req, res) => res.end(`hello ${req.headers['x-dane-client-id'] ?? 'nobody'}`));
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    port = await freePort();
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:
  servers: [{ address: "127.0.0.1:${lab.resolver.port}" }]
  attemptTimeoutMs: 4000
  totalTimeoutMs: 8000
limits:
  resolverGate: { maxInFlight: 16, maxInFlightPerZone: 2, maxQueued: 8, maxQueuedPerZone: 2, maxQueueWaitMs: 20000 }
  handshakes: { maxConcurrent: 500, maxConcurrentPerIp: 5 }
  penaltyBox: { failures: 3, windowMs: 60000, banMs: 60000 }
listeners:
  - name: api
    listen: 127.0.0.1:${port}
    mode: http
    handshakeTimeoutMs: 30000
    clientHelloTimeoutMs: 30000
    tls:
      certificates: [{ certFile: server.pem, keyFile: server.key }]
    routes:
      - upstream: http://127.0.0.1:${(backend.address() as net.AddressInfo).port}
        allow: ['*._device.clients.test', '*.slow.test']
`,
    );
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
  }, 120_000);

  afterAll(async () => {
    for (const s of hostile) s.destroy();
    await proxy?.close();
    await new Promise<void>((resolve) => (backend ? backend.close(() => resolve()) : resolve()));
    await lab?.stop();
    await blackHole?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('hostile claims saturate only the slow zone: 2 queries in flight, 2 queued, the rest refused at once', async () => {
    await lab.resetQueryLog();
    for (let i = 0; i < HOSTILE_CONNECTIONS; i++) {
      // Each from its own loopback address, so the per-address budget is not what stops them.
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.1.${i + 1}` });
      socket.on('error', () => undefined);
      socket.on('data', () => undefined);
      await once(socket, 'connect');
      socket.write(stallingTls12Hello(SNI, `h${i}.slow.test`));
      hostile.push(socket);
    }
    await waitUntil('the gate to refuse the surplus', () => (proxy.gate?.stats().refused.zoneQueueFull ?? 0) === HOSTILE_CONNECTIONS - 4);
    expect(proxy.gate?.stats()).toMatchObject({ inFlight: 2, queued: 2, zonesSaturated: 1 });
    // Only the two in flight reached Unbound.
    await waitUntil('Unbound to log the two queries', async () => (await lab.clientQueries()).length >= 2);
    expect((await lab.clientQueries()).filter((q) => q.name.endsWith('slow.test')).length).toBe(2);
    // The stalled handshakes are all held, none decided yet.
    expect(proxy.admission.handshakesInProgress).toBe(HOSTILE_CONNECTIONS);
  });

  it('a legitimate client in another zone still authenticates meanwhile (cold cache, real DNSSEC lookup)', async () => {
    const { stdout } = await run('curl', [
      '-sS',
      '--max-time',
      '10',
      '--cacert',
      join(dir, 'server-ca.pem'),
      '--resolve',
      `${SNI}:${port}:127.0.0.1`,
      '--cert',
      join(dir, 'legit.pem'),
      '--key',
      join(dir, 'legit.key'),
      `https://${SNI}:${port}/`,
    ]);
    expect(stdout).toBe(`hello ${LEGIT}`);
    expect(decisions.at(-1)).toMatchObject({ outcome: 'forwarded', reason: 'authenticated', claimedName: LEGIT, cache: 'miss' });
  });

  it('a hostile client that completes its handshake gets 503 dns-over-capacity, and that refusal is not cached', async () => {
    const result = await run('curl', [
      '-sS',
      '--max-time',
      '10',
      '--cacert',
      join(dir, 'server-ca.pem'),
      '--resolve',
      `${SNI}:${port}:127.0.0.1`,
      '--cert',
      join(dir, 'evil.pem'),
      '--key',
      join(dir, 'evil.key'),
      '-w',
      '\n%{http_code}',
      `https://${SNI}:${port}/`,
    ]);
    expect(result.stdout).toBe('Service Unavailable: DANE client authentication temporarily impossible (dns-over-capacity)\n\n503');
    expect(decisions.at(-1)).toMatchObject({ outcome: 'refused', reason: 'dns-over-capacity', claimedName: 'evil.slow.test' });
    expect(proxy.counters.total('refused', 'dns-over-capacity')).toBe(1);
  });

  it('per-address handshake budget: the 6th undecided connection from one address is refused at once', async () => {
    const held: net.Socket[] = [];
    for (let i = 0; i < 5; i++) {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.2.1' });
      s.on('error', () => undefined);
      await once(s, 'connect');
      held.push(s);
    }
    await waitUntil('five handshakes to be held', () => proxy.admission.handshakesInProgress === HOSTILE_CONNECTIONS + 5);
    const sixth = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.2.1' });
    sixth.on('error', () => undefined);
    await once(sixth, 'close');
    expect(decisions.at(-1)).toMatchObject({ outcome: 'refused', reason: 'handshake-budget-ip', source: expect.stringMatching(/^127\.0\.2\.1:/) });
    for (const s of held) s.destroy();
    await waitUntil('the budget to be released', () => proxy.admission.handshakesInProgress === HOSTILE_CONNECTIONS);
  });

  it('penalty box: an address that fails three times is refused outright afterwards', async () => {
    const attempt = (): Promise<void> =>
      new Promise((resolve) => {
        const raw = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.3.1' });
        raw.on('error', () => resolve());
        const s = tls.connect({ socket: raw, servername: SNI, rejectUnauthorized: false, cert: certs.stranger?.certPem, key: certs.stranger?.keyPem });
        s.on('error', () => resolve());
        s.on('secureConnect', () => s.end(`GET / HTTP/1.1\r\nHost: ${SNI}\r\n\r\n`));
        s.on('data', () => undefined);
        s.on('close', () => resolve());
      });
    for (let i = 0; i < 4; i++) await attempt();
    const fromThere = decisions.filter((d) => d.source.startsWith('127.0.3.1:')).map((d) => d.reason);
    expect(fromThere).toEqual(['no-matching-record', 'no-matching-record', 'no-matching-record', 'penalty-box']);
  });

  it('when the hostile clients go away, their queued lookups are dropped without a query', async () => {
    await lab.resetQueryLog();
    for (const s of hostile) s.destroy();
    await waitUntil('the queue to empty', () => proxy.gate?.stats().queued === 0);
    expect(proxy.gate?.stats().cancelled).toBe(2);
    await waitUntil('the handshake budget to be free', () => proxy.admission.handshakesInProgress === 0);
    // The two queued names were never asked.
    const asked = (await lab.clientQueries()).map((q) => q.name);
    expect(asked.filter((n) => /^h(2|3)\.slow\.test$/.test(n))).toEqual([]);
    // Every hostile connection, and the five idle ones of the budget test, ended as client-closed.
    expect(proxy.counters.total('refused', 'client-closed')).toBe(HOSTILE_CONNECTIONS + 5);
  });
});
