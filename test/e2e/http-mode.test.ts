/**
 * HTTP mode end to end: real curl clients, the real DNSSEC lab (NSD +
 * Unbound), a real Node HTTP backend, dancegate configured from a YAML file.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { runDaneClientIdClient } from '../lab/c-client.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';

const run = promisify(execFile);
const GOOD = 'good._device.clients.test';

interface Captured {
  headers: http.IncomingHttpHeaders;
  url: string | undefined;
}

describe('HTTP mode with curl through dancegate', () => {
  let dir: string;
  let lab: DnsLab;
  let proxy: RunningProxy;
  let backend: http.Server;
  let port: number;
  let deadUpstreamPort: number;
  const received: Captured[] = [];
  const decisions: DecisionRecord[] = [];
  const certs: Record<string, IssuedCertificate> = {};

  const file = (name: string): string => join(dir, name);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-http-'));
    const serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: 'api.proxy.test', dnsNames: ['api.proxy.test', 'down.proxy.test'], issuer: serverCa, extendedKeyUsage: 'server' });
    certs.good = await createCertificate({ commonName: GOOD, dnsNames: [GOOD] });
    certs.impostor = await createCertificate({ commonName: GOOD, dnsNames: [GOOD] });
    certs.outsider = await createCertificate({ commonName: 'outsider.example.test', dnsNames: ['outsider.example.test'] });
    certs.stale = await createCertificate({ commonName: 'client.expiredsig.test', dnsNames: ['client.expiredsig.test'] });
    certs.twoNames = await createCertificate({ commonName: 'two', dnsNames: ['a._device.clients.test', 'b._device.clients.test'] });
    for (const [name, c] of Object.entries(certs)) {
      await writeFile(file(`${name}.pem`), c.certPem);
      await writeFile(file(`${name}.key`), c.keyPem);
    }
    await writeFile(file('server.pem'), server.certPem + serverCa.certPem);
    await writeFile(file('server.key'), server.keyPem);
    await writeFile(file('server-ca.pem'), serverCa.certPem);

    const rdata = (c: IssuedCertificate): string => formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(c.der), 3, 1, 1));
    lab = await startDnssecLab([
      {
        origin: 'clients.test',
        signing: { algorithm: 13 },
        records: [`good._device 300 IN TLSA ${rdata(certs.good as IssuedCertificate)}`, `a._device 300 IN TLSA ${rdata(certs.twoNames as IssuedCertificate)}`],
      },
      { origin: 'expiredsig.test', signing: { algorithm: 13 }, expiredSignatures: true, records: [`client 300 IN TLSA ${rdata(certs.stale as IssuedCertificate)}`] },
    ]);

    backend = http.createServer((req, res) => {
      received.push({ headers: req.headers, url: req.url });
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${req.headers['x-dane-client-id'] ?? 'nobody'}\n`);
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', () => resolve()));
    const backendPort = (backend.address() as net.AddressInfo).port;
    deadUpstreamPort = await freePort();
    port = await freePort();
    await writeFile(
      file('dancegate.yaml'),
      `resolver:
  servers:
    - address: 127.0.0.1:${lab.resolver.port}
listeners:
  - name: api
    listen: 127.0.0.1:${port}
    mode: http
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - serverNames: [down.proxy.test]
        upstream: http://127.0.0.1:${deadUpstreamPort}
        allow: ['*._device.clients.test']
      - upstream: http://127.0.0.1:${backendPort}
        allow: ['*._device.clients.test', '*.expiredsig.test']
`,
    );
    proxy = await startProxy(await loadConfig(file('dancegate.yaml')), { log: (d) => decisions.push(d) });
  }, 120_000);

  afterAll(async () => {
    await proxy?.close();
    await new Promise<void>((resolve) => (backend ? backend.close(() => resolve()) : resolve()));
    await lab?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    received.length = 0;
    decisions.length = 0;
  });

  async function curl(client: string | undefined, ...extra: string[]): Promise<{ code: number; status: string; body: string }> {
    const args = ['-sS', '--max-time', '10', '--cacert', file('server-ca.pem'), '--resolve', `api.proxy.test:${port}:127.0.0.1`, '--resolve', `down.proxy.test:${port}:127.0.0.1`];
    if (client) args.push('--cert', file(`${client}.pem`), '--key', file(`${client}.key`));
    args.push('-w', '\n%{http_code}', ...extra);
    if (!extra.some((a) => a.startsWith('https://'))) args.push(`https://api.proxy.test:${port}/resource`);
    try {
      const { stdout } = await run('curl', args);
      const cut = stdout.lastIndexOf('\n');
      return { code: 0, body: stdout.slice(0, cut).replace(/\n$/, ''), status: stdout.slice(cut + 1) };
    } catch (err) {
      const e = err as { code: number; stdout: string };
      const cut = e.stdout.lastIndexOf('\n');
      return { code: e.code, body: e.stdout.slice(0, cut).replace(/\n$/, ''), status: e.stdout.slice(cut + 1) };
    }
  }

  const forged = [
    '-H',
    'X-Dane-Client-Id: admin.example.test',
    '-H',
    'x-dane-client-id: second-copy.example.test',
    '-H',
    'Client-Cert: :Zm9yZ2Vk:',
    '-H',
    'X-Forwarded-Client-Cert: Hash=00;DNS=admin.example.test',
    '-H',
    'X-Forwarded-Tls-Client-Cert: forged',
    '-H',
    'X-Dane-Status: authenticated',
    '-H',
    'X-Forwarded-For: 203.0.113.9',
  ];

  it.each([
    ['TLS 1.3 (name from the SAN)', ['--tlsv1.3'], 'TLSv1.3'],
    ['TLS 1.2', ['--tlsv1.2', '--tls-max', '1.2'], 'TLSv1.2'],
  ])('%s: the backend receives the verified identity and none of the forged headers', async (_label, versionArgs, tlsVersion) => {
    const result = await curl('good', ...versionArgs, ...forged);
    expect(result).toEqual({ code: 0, status: '200', body: `hello ${GOOD}` });
    expect(received).toHaveLength(1);
    const headers = received[0]?.headers ?? {};
    expect(headers['x-dane-client-id']).toBe(GOOD);
    expect(headers['x-dane-status']).toBe('authenticated');
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-forwarded-proto']).toBe('https');
    expect(headers['client-cert']).toBeUndefined();
    expect(headers['x-forwarded-client-cert']).toBeUndefined();
    expect(headers['x-forwarded-tls-client-cert']).toBeUndefined();
    expect(decisions).toHaveLength(1);
    expect(decisions[0]).toMatchObject({
      listener: 'api',
      outcome: 'forwarded',
      reason: 'authenticated',
      claimedName: GOOD,
      nameSource: 'san',
      sni: 'api.proxy.test',
      tlsVersion,
      tlsa: '3 1 1',
    });
  });

  it.each([
    ['a certificate whose key is not published', 'impostor', 'no-matching-record'],
    ['no client certificate', undefined, 'no-certificate'],
    ['a name not on the allowlist', 'outsider', 'not-allowed'],
    ['two allowlisted SAN names (ambiguous)', 'twoNames', 'ambiguous-name'],
  ])('refuses %s with 403 and never reaches the backend', async (_label, client, reason) => {
    await lab.resetQueryLog();
    const result = await curl(client);
    expect(result.status).toBe('403');
    expect(result.body).toBe(`Forbidden: DANE client authentication failed (${reason})`);
    expect(received).toEqual([]);
    expect(decisions.map((d) => [d.outcome, d.reason])).toEqual([['refused', reason]]);
    if (reason === 'not-allowed' || reason === 'ambiguous-name' || reason === 'no-certificate') {
      // Refused before any DNS query.
      expect((await lab.clientQueries()).filter((q) => q.type === 'TLSA')).toEqual([]);
    }
  });

  it('answers a temporary DNS failure (expired DNSSEC signatures: SERVFAIL) with 503 and Retry-After', async () => {
    const result = await curl('stale', '-D', '-');
    expect(result.status).toBe('503');
    expect(result.body).toMatch(/\r\nretry-after: 5\r\n/i);
    expect(result.body.endsWith('Service Unavailable: DANE client authentication temporarily impossible (dns-bogus)')).toBe(true);
    expect(received).toEqual([]);
    expect(decisions.map((d) => [d.outcome, d.reason])).toEqual([['refused', 'dns-bogus']]);
  });

  describe('dane_clientid sent in a TLS 1.2 ClientHello by a C client (OpenSSL custom extension)', () => {
    const cClient = (name: string, cert: string) =>
      runDaneClientIdClient({
        port,
        sni: 'api.proxy.test',
        extensionType: 65500,
        name,
        certFile: file(`${cert}.pem`),
        keyFile: file(`${cert}.key`),
        request: 'GET /c HTTP/1.0\r\nHost: api.proxy.test\r\n\r\n',
      });

    it('an allowed name from the extension is verified and forwarded', async () => {
      const r = await cClient(GOOD, 'good');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(r.stdout.endsWith(`hello ${GOOD}\n`)).toBe(true);
      expect(decisions[0]).toMatchObject({ outcome: 'forwarded', reason: 'authenticated', claimedName: GOOD, nameSource: 'clienthello-extension', tlsVersion: 'TLSv1.2' });
    });

    it('the extension picks one of several SAN names', async () => {
      const r = await cClient('a._device.clients.test', 'twoNames');
      expect(r.code).toBe(0);
      expect(r.stdout.endsWith('hello a._device.clients.test\n')).toBe(true);
      expect(decisions[0]).toMatchObject({ reason: 'authenticated', claimedName: 'a._device.clients.test', nameSource: 'clienthello-extension' });
    });

    it('an empty extension means the name is in the certificate', async () => {
      const r = await cClient('', 'good');
      expect(r.code).toBe(0);
      expect(decisions[0]).toMatchObject({ reason: 'authenticated', claimedName: GOOD, nameSource: 'san' });
    });

    it('a name not on the allowlist gets a handshake_failure alert before the handshake, and no DNS query', async () => {
      await lab.resetQueryLog();
      const r = await cClient('outsider.example.test', 'outsider');
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('sslv3 alert handshake failure');
      expect(received).toEqual([]);
      expect(decisions.map((d) => [d.outcome, d.reason, d.nameSource, d.claimedName])).toEqual([['refused', 'not-allowed', 'clienthello-extension', 'outsider.example.test']]);
      expect(await lab.clientQueries()).toEqual([]);
    });

    it('a name claimed by the extension must still match the certificate (name in SAN for DANE-TA, key for DANE-EE)', async () => {
      const r = await cClient(GOOD, 'impostor');
      expect(r.stdout).toMatch(/^HTTP\/1\.1 403 Forbidden/);
      expect(decisions[0]).toMatchObject({ outcome: 'refused', reason: 'no-matching-record', nameSource: 'clienthello-extension' });
    });
  });

  it('answers 502 without internals when the upstream is unreachable', async () => {
    const result = await curl('good', `https://down.proxy.test:${port}/x`);
    expect(result.status).toBe('502');
    expect(result.body).toBe('Bad Gateway: the upstream is unavailable');
    expect(decisions[0]).toMatchObject({ outcome: 'forwarded', reason: 'authenticated', route: 'down.proxy.test' });
  });

  async function rawExchange(send: (socket: net.Socket) => Promise<void>): Promise<{ received: Buffer; closed: boolean }> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
    socket.on('error', () => undefined);
    await send(socket);
    const result = await Promise.race([closed, new Promise<boolean>((r) => setTimeout(() => r(false), 8000))]);
    socket.destroy();
    return { received: Buffer.concat(chunks), closed: result };
  }

  it('closes a connection that sends an HTTP request instead of a ClientHello', async () => {
    const r = await rawExchange(async (s) => {
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    expect(r.closed).toBe(true);
    expect(r.received.length).toBe(0);
    expect(decisions.map((d) => d.reason)).toEqual(['client-hello-invalid']);
  });

  it('closes a connection that announces an oversize ClientHello', async () => {
    const r = await rawExchange(async (s) => {
      // Handshake record of 16384 bytes holding a ClientHello that claims 0x010000 bytes.
      s.write(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x00, 0x00]));
    });
    expect(r.closed).toBe(true);
    expect(decisions.map((d) => d.reason)).toEqual(['client-hello-invalid']);
  });

  it('completes a handshake when the ClientHello is trickled one byte at a time', async () => {
    // A real ClientHello, captured from node:tls.
    const hello = await new Promise<Buffer>((resolve) => {
      const capture = net.createServer((s) =>
        s.once('data', (d: Buffer) => {
          resolve(d);
          s.destroy();
          capture.close();
        }),
      );
      capture.listen(0, '127.0.0.1', () => {
        const c = tls.connect({ port: (capture.address() as net.AddressInfo).port, host: '127.0.0.1', servername: 'api.proxy.test' });
        c.on('error', () => undefined);
      });
    });
    const r = await rawExchange(async (s) => {
      for (const byte of hello) {
        s.write(Buffer.from([byte]));
        await new Promise((resolve) => setImmediate(resolve));
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      s.destroy();
    });
    // The proxy answered with a TLS handshake record (ServerHello), so every trickled byte reached node:tls.
    expect(r.received[0]).toBe(0x16);
    expect(r.received.length).toBeGreaterThan(100);
  });
});
