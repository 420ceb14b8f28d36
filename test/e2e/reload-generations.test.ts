/**
 * A reload while a connection is still being verified: the connection was
 * accepted under the old generation and is handed to that generation's HTTP
 * forwarder once its (held) TLSA lookup answers. That forwarder must still
 * be alive then (header timeouts enforced) and still be reached by drain().
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { outcome, type LookupOutcome } from '../../src/lookup/tlsa-answer.js';
import type { TlsaResolver } from '../../src/lookup/tlsa-resolver.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort } from '../lab/dnssec-lab.js';
import { waitUntil } from '../lab/wait.js';

const NAME = 'held._device.reload.test';
const SNI = 'reload.proxy.test';

/** A DNS resolver that answers only when the test releases it. */
class HeldResolver implements TlsaResolver {
  private readonly waiting: Array<() => void> = [];
  private released = false;
  constructor(private readonly answer: LookupOutcome) {}
  get held(): number {
    return this.waiting.length;
  }
  lookup(): Promise<LookupOutcome> {
    if (this.released) return Promise.resolve(this.answer);
    return new Promise((resolve) => this.waiting.push(() => resolve(this.answer)));
  }
  release(): void {
    this.released = true;
    for (const answer of this.waiting.splice(0)) answer();
  }
}

describe('reload while a connection is being verified', () => {
  let dir: string;
  let serverCa: IssuedCertificate;
  let device: IssuedCertificate;
  let backend: http.Server;
  let proxy: RunningProxy | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-reload-'));
    serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
    device = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    const other = await createCertificate({ commonName: 'other._device.reload.test', dnsNames: ['other._device.reload.test'] });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    // The local file does not know NAME: its lookup goes to the (held) DNS resolver.
    await writeFile(join(dir, 'tlsa.txt'), `other._device.reload.test IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(other.der), 3, 1, 1))}\n`);
    backend = http.createServer((req, res) => void res.end(`hello ${req.headers['x-dane-client-id'] ?? 'nobody'}`));
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:
  localTlsaFile: tlsa.txt
listeners:
  - name: api
    listen: 127.0.0.1:${await freePort()}
    mode: http
    http: { headersTimeoutMs: 500 }
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstream: http://127.0.0.1:${(backend.address() as net.AddressInfo).port}
        allow: ['*._device.reload.test']
`,
    );
  });

  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  afterAll(async () => {
    backend?.closeAllConnections();
    await new Promise<void>((resolve) => (backend ? backend.close(() => resolve()) : resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Start the proxy, open a connection whose TLSA lookup is held, reload
   * (the same file, as SIGHUP does) while it is held, then release it.
   */
  async function connectAcrossReload(): Promise<{ proxy: RunningProxy; socket: tls.TLSSocket; received: () => string; closed: () => boolean }> {
    const record = tlsaRecordForCertificate(parseCertificateDer(device.der), 3, 1, 1);
    const resolver = new HeldResolver(outcome('secure', 'held test answer', { records: [record], ttl: 300 }));
    const started = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: () => undefined, dnsResolver: resolver });
    proxy = started;
    const port = started.listeners[0]?.port ?? 0;
    const socket = tls.connect({ port, host: '127.0.0.1', servername: SNI, ca: serverCa.certPem, cert: device.certPem, key: device.keyPem });
    socket.on('error', () => undefined);
    let received = '';
    let closed = false;
    socket.on('data', (d: Buffer) => (received += d.toString()));
    socket.on('close', () => (closed = true));
    await once(socket, 'secureConnect');
    await waitUntil('the TLSA lookup to be held', () => resolver.held === 1);
    expect(await started.reload(await loadConfig(join(dir, 'dancegate.yaml')))).toMatchObject({ ok: true, generation: 2 });
    resolver.release();
    return { proxy: started, socket, received: () => received, closed: () => closed };
  }

  it('the connection is served by its generation, and drain closes it once idle', async () => {
    const c = await connectAcrossReload();
    c.socket.write(`GET /r HTTP/1.1\r\nHost: ${SNI}\r\n\r\n`);
    await waitUntil('the response', () => c.received().endsWith(`hello ${NAME}`) || c.closed(), 5000);
    expect(c.received()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(c.received()).not.toMatch(/\r\nconnection: close\r\n/i);
    expect(c.received().endsWith(`\r\n\r\nhello ${NAME}`)).toBe(true);
    expect(c.closed()).toBe(false);

    // The idle keep-alive connection of the old generation is closed by the drain, not waited for.
    const t0 = Date.now();
    expect(await c.proxy.drain(3000)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2000);
    await waitUntil('the client socket to close', c.closed, 1000);
  });

  it('a slow request on that connection still gets 408 after headersTimeoutMs', async () => {
    const c = await connectAcrossReload();
    c.socket.write(`GET /slow HTTP/1.1\r\nHost: ${SNI}\r\n`);
    await waitUntil('the connection to be closed', c.closed, 5000);
    expect(c.received()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
  });
});
