/**
 * Issue 11, "drain leaves in-flight keep-alive requests open": a kept-alive
 * request whose response is still on its way from a slow backend when the
 * drain starts is answered with `Connection: close`, its connection closes
 * right after that response, an idle kept-alive connection closes at once,
 * and the drain resolves true long before its deadline.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort } from '../lab/dnssec-lab.js';
import { parseResponses } from '../lab/http-raw-kit.js';
import { waitUntil } from '../lab/wait.js';

const NAME = 'slow._device.drain.test';
const SNI = 'api.drain.test';
/** How long the backend takes to answer /slow. */
const BACKEND_DELAY_MS = 800;
const DRAIN_DEADLINE_MS = 10_000;

interface Client {
  readonly socket: tls.TLSSocket;
  readonly received: () => string;
  readonly closed: () => boolean;
}

describe('drain with a kept-alive request in flight', () => {
  let dir: string;
  let serverCa: IssuedCertificate;
  let device: IssuedCertificate;
  let backend: http.Server;
  /** Requests the backend has received (and is sitting on, for /slow). */
  let arrived: string[] = [];
  let proxy: RunningProxy | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-drain-'));
    serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
    device = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'tlsa.txt'), `${NAME} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(device.der), 3, 1, 1))}\n`);
    backend = http.createServer((req, res) => {
      arrived.push(req.url ?? '');
      const answer = (): void => void res.end(`done ${req.url} for ${req.headers['x-dane-client-id'] ?? 'nobody'}`);
      if (req.url === '/slow') {
        setTimeout(answer, BACKEND_DELAY_MS);
      } else if (req.url === '/stream') {
        // Headers and a first part now (chunked, no Connection: close possible any more), the rest later.
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first part, ');
        setTimeout(() => res.end('second part'), BACKEND_DELAY_MS);
      } else {
        answer();
      }
    });
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:
  localTlsaFile: tlsa.txt
shutdown: { drainTimeoutMs: ${DRAIN_DEADLINE_MS} }
listeners:
  - name: api
    listen: 127.0.0.1:${await freePort()}
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstream: http://127.0.0.1:${(backend.address() as net.AddressInfo).port}
        allow: ['*._device.drain.test']
`,
    );
  });

  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    arrived = [];
  });

  afterAll(async () => {
    backend?.closeAllConnections();
    await new Promise<void>((resolve) => (backend ? backend.close(() => resolve()) : resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  async function connect(port: number): Promise<Client> {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: SNI, ca: serverCa.certPem, cert: device.certPem, key: device.keyPem });
    socket.on('error', () => undefined);
    let received = '';
    let closed = false;
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('close', () => (closed = true));
    await once(socket, 'secureConnect');
    return { socket, received: () => received, closed: () => closed };
  }

  const get = (client: Client, path: string): void => void client.socket.write(`GET ${path} HTTP/1.1\r\nHost: ${SNI}\r\n\r\n`);

  it('answers the in-flight request with Connection: close, closes its connection after it, closes an idle one at once, and drains clean', async () => {
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: () => undefined });
    const port = proxy.listeners[0]?.port ?? 0;

    // An idle kept-alive connection: one request answered, connection left open.
    const idle = await connect(port);
    get(idle, '/fast');
    await waitUntil('the first response on the idle connection', () => idle.received().endsWith(`done /fast for ${NAME}`), 5000);
    expect(parseResponses(idle.received(), [false]).responses[0]?.headers['connection']).toBe('keep-alive');

    // A kept-alive connection whose request sits at the slow backend when the drain starts.
    const busy = await connect(port);
    get(busy, '/slow');
    await waitUntil('the slow request to reach the backend', () => arrived.includes('/slow'), 5000);
    expect(busy.received()).toBe('');

    const started = Date.now();
    const drained = proxy.drain(DRAIN_DEADLINE_MS);
    let drainedAt = 0;
    void drained.then(() => (drainedAt = Date.now()));

    await waitUntil('the idle connection to close', () => idle.closed(), 2000);
    expect(busy.closed()).toBe(false);

    await waitUntil('the busy connection to close', () => busy.closed(), 5000);
    const { responses, rest } = parseResponses(busy.received(), [false]);
    expect(rest).toBe('');
    expect(responses.map((r) => [r.status, r.headers['connection'], r.body])).toEqual([[200, 'close', `done /slow for ${NAME}`]]);

    expect(await drained).toBe(true);
    // The response took BACKEND_DELAY_MS; the drain ends with it, nowhere near the deadline.
    expect(drainedAt - started).toBeLessThan(BACKEND_DELAY_MS + 1500);
    expect(arrived).toEqual(['/fast', '/slow']);
  });

  it('a response already streaming when the drain starts is finished, then its connection closes', async () => {
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: () => undefined });
    const client = await connect(proxy.listeners[0]?.port ?? 0);
    get(client, '/stream');
    await waitUntil('the first part', () => client.received().includes('first part, '), 5000);

    const started = Date.now();
    expect(await proxy.drain(DRAIN_DEADLINE_MS)).toBe(true);
    expect(Date.now() - started).toBeLessThan(BACKEND_DELAY_MS + 1500);
    await waitUntil('the connection to close', () => client.closed(), 2000);
    const { responses, rest } = parseResponses(client.received(), [false]);
    expect(rest).toBe('');
    expect(responses.map((r) => [r.status, r.headers['connection'], r.body])).toEqual([[200, 'keep-alive', 'first part, second part']]);
  });
});
