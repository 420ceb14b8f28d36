/**
 * Name-constraint cost (review of issue 10 findings 4 and 7), against the
 * real proxy and the real DNSSEC lab (NSD + Unbound): pkijs compares every
 * name of the leaf with every nameConstraints subtree above it, on the
 * event loop. A hostile allowlisted zone publishes a `2 0 0` record whose
 * anchor carries 1,000 excluded dNSName subtrees (~7 KB) and presents a
 * leaf with 100 SANs (none excluded): ~0.3 s of blocked event loop per
 * connection before the bound, every connection. Its sibling presents an
 * intermediate with 1,500 subtrees under an ordinary root. Both must be
 * refused with the limit named, and quickly; a legitimately constrained
 * anchor still authenticates.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { CA_EXTENSIONS, issue, LEAF_EXTENSIONS, type OpensslCert } from '../lab/openssl-chains.js';

const HOSTILE_ANCHOR = 'hostile-anchor._device.example.test';
const HOSTILE_CA = 'hostile-ca._device.example.test';
const GOOD = 'good._device.example.test';

/** A nameConstraints line with `count` short excluded dNSName subtrees (a.0, b.0, ...), as the reviewer built them; none matches our names. */
function excluded(count: number): string {
  const names = Array.from({ length: count }, (_, i) => `${((i % 26) + 10).toString(36)}.${Math.floor(i / 26).toString(36)}`);
  return `nameConstraints=critical,${names.map((n) => `excluded;DNS:${n}`).join(',')}`;
}
/** Leaf extensions with `name` and 99 more SAN dNSNames outside the allowlist (100 entries, the most a client certificate may carry). */
function hundredSans(name: string): string[] {
  const sans = [name, ...Array.from({ length: 99 }, (_, i) => `n${i}.x.elsewhere.test`)];
  return [...LEAF_EXTENSIONS(name).filter((e) => !e.startsWith('subjectAltName')), `subjectAltName=${sans.map((n) => `DNS:${n}`).join(',')}`];
}

describe('name-constraint cost through dancegate', () => {
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
    dir = await mkdtemp(join(tmpdir(), 'dancegate-nccost-'));
    serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: 'api.proxy.test', dnsNames: ['api.proxy.test'], issuer: serverCa, extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'server.pem'), server.certPem + serverCa.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);

    // The reviewer's anchor: 1,000 excluded subtrees, in the record, never presented.
    const anchor = (c.anchor = await issue(dir, { name: 'anchor', subject: '/CN=Hostile Anchor', extensions: [...CA_EXTENSIONS, excluded(1000)] }));
    c.hostileAnchorLeaf = await issue(dir, { name: 'hostileAnchorLeaf', subject: `/CN=${HOSTILE_ANCHOR}`, issuer: anchor, extensions: hundredSans(HOSTILE_ANCHOR) });
    // An ordinary root; a presented intermediate with 1,500 subtrees (with the leaf, within the 16 KiB client flight).
    const root = (c.root = await issue(dir, { name: 'root', subject: '/CN=Example Device Root', extensions: CA_EXTENSIONS }));
    const wideCa = (c.wideCa = await issue(dir, { name: 'wideCa', subject: '/CN=Wide CA', issuer: root, extensions: [...CA_EXTENSIONS, excluded(1500)] }));
    c.hostileCaLeaf = await issue(dir, { name: 'hostileCaLeaf', subject: `/CN=${HOSTILE_CA}`, issuer: wideCa, extensions: hundredSans(HOSTILE_CA) });
    // Legitimate: an anchor constrained to the zone, a leaf inside it.
    const goodAnchor = (c.goodAnchor = await issue(dir, {
      name: 'goodAnchor',
      subject: '/CN=Constrained Device Root',
      extensions: [...CA_EXTENSIONS, 'nameConstraints=critical,permitted;DNS:_device.example.test,excluded;DNS:admin._device.example.test'],
    }));
    c.good = await issue(dir, { name: 'good', subject: `/CN=${GOOD}`, issuer: goodAnchor, extensions: LEAF_EXTENSIONS(GOOD) });

    const full = (cert: OpensslCert): string => formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(cert.der), 2, 0, 0));
    lab = await startDnssecLab([
      {
        origin: 'example.test',
        signing: { algorithm: 13 },
        records: [`hostile-anchor._device 300 IN TLSA ${full(anchor)}`, `hostile-ca._device 300 IN TLSA ${full(root)}`, `good._device 300 IN TLSA ${full(goodAnchor)}`],
      },
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
        allow: ['*._device.example.test']
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

  /** One HTTPS request presenting `names` (leaf first); the status and body ('closed' when refused in or after the handshake) and the time taken. */
  function request(...names: string[]): Promise<{ status: number | 'closed'; body: string; ms: number }> {
    const t0 = performance.now();
    const cert = names.map((n) => (c[n] as OpensslCert).certPem).join('');
    const key = (c[names[0] as string] as OpensslCert).keyPem;
    return new Promise((resolve) => {
      const done = (status: number | 'closed', body: string): void => resolve({ status, body, ms: performance.now() - t0 });
      const req = https.request({ host: '127.0.0.1', port, servername: 'api.proxy.test', path: '/', ca: serverCa.certPem, cert, key, agent: false, timeout: 15_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => done(res.statusCode ?? 0, body));
        res.on('error', () => done('closed', body));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => done('closed', ''));
      req.end();
    });
  }

  it('a 2 0 0 anchor with 1,000 nameConstraints subtrees over a 100-SAN leaf is refused as unusable, the limit named', async () => {
    const hostile = await request('hostileAnchorLeaf');
    expect(seenByBackend).not.toContain(HOSTILE_ANCHOR);
    expect(hostile.status).toBe(403);
    const decision = decisions.find((d) => d.claimedName === HOSTILE_ANCHOR);
    expect(decision?.outcome).toBe('refused');
    expect(decision?.reason).toBe('no-usable-records');
    expect(decision?.detail).toContain('unusable-anchor (nameConstraints of more than 64 subtrees (the limit per certificate))');
    // Later connections reuse the cached RRset's verdict: no anchor parse, no comparison.
    const again = await Promise.all([request('hostileAnchorLeaf'), request('hostileAnchorLeaf'), request('hostileAnchorLeaf')]);
    expect(again.map((r) => r.status)).toEqual([403, 403, 403]);
    console.log(`hostile anchor: first connection ${hostile.ms.toFixed(0)} ms, then ${again.map((r) => r.ms.toFixed(0)).join(', ')} ms`);
  });

  it('a presented intermediate with 1,500 nameConstraints subtrees is refused as name-constraints-violated, the limit named', async () => {
    const hostile = await request('hostileCaLeaf', 'wideCa');
    expect(seenByBackend).not.toContain(HOSTILE_CA);
    expect(hostile.status).toBe(403);
    const decision = decisions.find((d) => d.claimedName === HOSTILE_CA);
    expect(decision?.outcome).toBe('refused');
    expect(decision?.detail).toContain('name-constraints-violated (untrusted certificate 1: nameConstraints of more than 64 subtrees (the limit per certificate))');
    console.log(`hostile intermediate: ${hostile.ms.toFixed(0)} ms`);
  });

  it('a legitimately constrained anchor still authenticates, alongside the hostile clients', async () => {
    const results = await Promise.all([request('hostileAnchorLeaf'), request('good'), request('hostileCaLeaf', 'wideCa')]);
    expect(results.map((r) => r.status)).toEqual([403, 200, 403]);
    expect(results[1]?.body).toBe(`hello ${GOOD}\n`);
    expect(seenByBackend).toEqual([GOOD]);
  });
});
