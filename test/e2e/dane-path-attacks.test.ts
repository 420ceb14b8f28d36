/**
 * Issue 10, findings 4 and 7, against the real proxy and the real DNSSEC
 * lab (NSD + Unbound):
 * - a hostile allowlisted zone publishing 60 `2 1 0` records whose RSA-3072
 *   keys have ~3,070-bit public exponents (each signature check with one
 *   costs ~9 ms): the proxy refuses the keys without using them;
 * - a DANE-TA nameConstraints forgery: an intermediate constrained to
 *   sub._device.example.test issues a certificate for
 *   victim._device.example.test, whose TLSA record designates the same
 *   root; the proxy must not authenticate it as victim;
 * while legitimate clients (DANE-EE in a normal zone, DANE-TA inside and
 * outside the constrained subtree) are served.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { CA_EXTENSIONS, issue, LEAF_EXTENSIONS, type OpensslCert } from '../lab/openssl-chains.js';

const VICTIM = 'victim._device.example.test';
const SUB = 'dev1.sub._device.example.test';
const HOSTILE = 'hostile._device.example.test';
const GOOD = 'good._device.clients.test';
const HOSTILE_RECORDS = 60;

/** An RSA public key (SPKI DER) with a 3072-bit modulus and a 3070-bit exponent: nobody needs its private key to make us verify with it. */
function hugeExponentSpki(): Buffer {
  const n = randomBytes(384);
  n[0] = (n[0] as number) | 0x80;
  n[383] = (n[383] as number) | 1;
  const e = randomBytes(384);
  e[0] = ((e[0] as number) & 0x3f) | 0x20;
  e[383] = (e[383] as number) | 1;
  const key = createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') }, format: 'jwk' });
  return key.export({ format: 'der', type: 'spki' });
}

describe('TLSA matching cost and path validation through dancegate', () => {
  let dir: string;
  let lab: DnsLab;
  let proxy: RunningProxy;
  let backend: http.Server;
  let port: number;
  let serverCa: IssuedCertificate;
  const c: Record<string, OpensslCert> = {};
  const decisions: DecisionRecord[] = [];
  const seenByBackend: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-pathattack-'));
    serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: 'api.proxy.test', dnsNames: ['api.proxy.test'], issuer: serverCa, extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'server.pem'), server.certPem + serverCa.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);

    const root = (c.root = await issue(dir, { name: 'root', subject: '/CN=Example Device Root', extensions: CA_EXTENSIONS }));
    const inter = (c.inter = await issue(dir, { name: 'inter', subject: '/CN=Example Device CA', issuer: root, extensions: CA_EXTENSIONS }));
    const subCa = (c.subCa = await issue(dir, {
      name: 'subCa',
      subject: '/CN=Sub Department CA',
      issuer: root,
      extensions: [...CA_EXTENSIONS, 'nameConstraints=critical,permitted;DNS:sub._device.example.test'],
    }));
    c.victim = await issue(dir, { name: 'victim', subject: `/CN=${VICTIM}`, issuer: inter, extensions: LEAF_EXTENSIONS(VICTIM) });
    c.forged = await issue(dir, { name: 'forged', subject: `/CN=${VICTIM}`, issuer: subCa, extensions: LEAF_EXTENSIONS(VICTIM) });
    c.sub = await issue(dir, { name: 'sub', subject: `/CN=${SUB}`, issuer: subCa, extensions: LEAF_EXTENSIONS(SUB) });
    // Signed with RSA-3072 (a 384-byte signature, as long as the hostile moduli), so that checking it with each hostile key costs the full exponentiation.
    c.rsaInter = await issue(dir, { name: 'rsaInter', subject: '/CN=Example RSA Device CA', issuer: root, rsaBits: 3072, extensions: CA_EXTENSIONS });
    c.hostile = await issue(dir, { name: 'hostile', subject: `/CN=${HOSTILE}`, issuer: c.rsaInter, extensions: LEAF_EXTENSIONS(HOSTILE) });
    const good = await createCertificate({ commonName: GOOD, dnsNames: [GOOD] });
    await writeFile(join(dir, 'good.pem'), good.certPem);
    await writeFile(join(dir, 'good.key'), good.keyPem);

    const rootTa = formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(root.der), 2, 0, 1));
    const hostile = Array.from({ length: HOSTILE_RECORDS }, () => `hostile._device 300 IN TLSA 2 1 0 ${hugeExponentSpki().toString('hex')}`);
    lab = await startDnssecLab([
      {
        origin: 'example.test',
        signing: { algorithm: 13 },
        records: [`victim._device 300 IN TLSA ${rootTa}`, `dev1.sub._device 300 IN TLSA ${rootTa}`, ...hostile],
      },
      { origin: 'clients.test', signing: { algorithm: 13 }, records: [`good._device 300 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(good.der), 3, 1, 1))}`] },
    ]);

    backend = http.createServer((req, res) => {
      seenByBackend.push(String(req.headers['x-dane-client-id']));
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${String(req.headers['x-dane-client-id'])}\n`);
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', () => resolve()));
    const backendPort = (backend.address() as net.AddressInfo).port;
    port = await freePort();
    await writeFile(
      join(dir, 'dancegate.yaml'),
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
      - upstream: http://127.0.0.1:${backendPort}
        allow: ['*._device.example.test', '*.sub._device.example.test', '*._device.clients.test']
`,
    );
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
  }, 180_000);

  afterAll(async () => {
    await proxy?.close();
    await new Promise<void>((resolve) => (backend ? backend.close(() => resolve()) : resolve()));
    await lab?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    decisions.length = 0;
    seenByBackend.length = 0;
  });

  /** One HTTPS request presenting `certPem` (leaf first, then its chain) and `keyPem`; the status and body, or 'closed'. */
  function request(certPem: string, keyPem: string): Promise<{ status: number | 'closed'; body: string }> {
    return new Promise((resolve) => {
      const req = https.request({ host: '127.0.0.1', port, servername: 'api.proxy.test', path: '/', ca: serverCa.certPem, cert: certPem, key: keyPem, agent: false, timeout: 15_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', () => resolve({ status: 'closed', body }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve({ status: 'closed', body: '' }));
      req.end();
    });
  }
  const chainOf = (...names: string[]): string => names.map((n) => (c[n] as OpensslCert).certPem).join('');

  it('finding 7: a certificate for victim from an intermediate constrained to sub._device.example.test is refused', async () => {
    const forged = await request(chainOf('forged', 'subCa', 'root'), (c.forged as OpensslCert).keyPem);
    expect(seenByBackend).not.toContain(VICTIM);
    expect(forged.status).toBe(403);
    const decision = decisions.find((d) => d.claimedName === VICTIM);
    expect(decision?.outcome).toBe('refused');
    expect(decision?.detail).toContain('name-constraints-violated');
  });

  it('finding 7: the constrained intermediate still serves its own subtree, and the real victim gets in', async () => {
    const sub = await request(chainOf('sub', 'subCa', 'root'), (c.sub as OpensslCert).keyPem);
    expect(sub).toEqual({ status: 200, body: `hello ${SUB}\n` });
    const victim = await request(chainOf('victim', 'inter', 'root'), (c.victim as OpensslCert).keyPem);
    expect(victim).toEqual({ status: 200, body: `hello ${VICTIM}\n` });
  });

  it('finding 4: 60 huge-exponent RSA keys in an allowlisted zone are refused without being used', async () => {
    const hostile = await request(chainOf('hostile', 'rsaInter'), (c.hostile as OpensslCert).keyPem);
    expect(hostile.status).toBe(403);
    const decision = decisions.find((d) => d.claimedName === HOSTILE);
    expect(decision?.outcome).toBe('refused');
    expect(decision?.reason).toBe('no-usable-records');
    expect(decision?.detail).toContain('record 1 unusable-anchor (RSA public exponent of 3070 bits exceeds the limit of 32)');
    // 16 records considered (the default cap), all refused; the other 44 never looked at.
    expect(decision?.detail).toContain('52 more (8 unusable-anchor, 44 over-record-limit)');
  });

  it('finding 4: a legitimate client in a normal zone is served, and again after the hostile zone was tried', async () => {
    const pem = await import('node:fs/promises').then((fs) => Promise.all([fs.readFile(join(dir, 'good.pem'), 'utf8'), fs.readFile(join(dir, 'good.key'), 'utf8')]));
    const results = await Promise.all([
      request(chainOf('hostile', 'rsaInter'), (c.hostile as OpensslCert).keyPem),
      request(pem[0], pem[1]),
      request(chainOf('hostile', 'rsaInter'), (c.hostile as OpensslCert).keyPem),
    ]);
    expect(results.map((r) => r.status)).toEqual([403, 200, 403]);
    expect(results[1]?.body).toBe(`hello ${GOOD}\n`);
  });
});
