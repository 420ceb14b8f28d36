/**
 * Issue 10, finding 2 (the forwarder's side): an exception while building
 * the identity headers (here: reading the certificate subject for XFCC,
 * which @peculiar/x509 can throw on a malformed extension) fails that one
 * request with 502 and a log line; it never escapes the request handler,
 * and the forwarder goes on serving. The HttpForwarder is driven directly
 * over real sockets so that the failing certificate can be simulated
 * whatever the certificate parser does about it.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { HttpListenerConfig, HttpModeConfig, RouteConfig } from '../../src/config/types.js';
import type { ParsedCertificate } from '../../src/dane/certificate.js';
import { HttpForwarder } from '../../src/forward/http-forward.js';
import type { ConnectionContext } from '../../src/connection/forwarder.js';
import { parseResponses, startRecordingBackend, type Backend } from '../lab/http-raw-kit.js';
import { poolOf } from '../unit/forward-fixtures.js';

const NAME = 'broken._device.crash.test';

describe('an exception from header building fails one request, never the process (issue 10, finding 2)', () => {
  let backend: Backend;
  let server: net.Server;
  let forwarder: HttpForwarder;
  let leafFor: (socket: number) => ParsedCertificate;
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => {
    uncaught.push(err);
  };

  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    backend = await startRecordingBackend();
    const config: HttpModeConfig = {
      identityHeader: 'X-Dane-Client-Id',
      statusHeader: 'X-Dane-Status',
      forwardClientCert: false,
      forwardXfcc: true,
      tlsaHeader: undefined,
      refuseWith403: true,
      headersTimeoutMs: 5000,
      requestTimeoutMs: 10000,
      upstreamConnections: 256,
      upstreamMaxPerClient: 64,
      upstreamQueueTimeoutMs: 5000,
      alpn: ['http/1.1'],
      http2: { maxConcurrentStreams: 100, maxResetsPerSecond: 100, maxHeaderListBytes: 16384 },
      requestRatePerIdentity: undefined,
      accessLog: { enabled: false, sampleRate: 1, includeQuery: false },
    };
    const route = {
      serverNames: [],
      upstreams: poolOf([`http://127.0.0.1:${backend.port}`]),
      rules: [],
    } as unknown as RouteConfig;
    const listener = { name: 'crash', mode: 'http', policy: 'required', idleTimeoutMs: 5000, http: config, routes: [route] } as unknown as HttpListenerConfig;
    forwarder = new HttpForwarder(listener);
    const good = { der: Buffer.from([1, 2, 3]), sha256Hex: 'ab'.repeat(32), subject: `CN=${NAME}` } as unknown as ParsedCertificate;
    const broken = {
      der: Buffer.from([1, 2, 3]),
      sha256Hex: 'cd'.repeat(32),
      get subject(): string {
        throw new Error('AsnSchemaValidationError: Data does not match to CertificatePolicies ASN1 schema');
      },
    } as unknown as ParsedCertificate;
    let n = 0;
    leafFor = (i) => (i === 1 ? broken : good);
    server = net.createServer((socket) => {
      const context = {
        listener,
        route,
        clientAddress: '127.0.0.1',
        clientPort: socket.remotePort ?? 0,
        localAddress: '127.0.0.1',
        localPort: 0,
        connectionId: 'crash-1',
        hello: {},
        identity: { name: NAME, leaf: leafFor(++n), tlsa: [3, 1, 1] },
        status: 'authenticated',
      } as unknown as ConnectionContext;
      forwarder.accept(socket as unknown as TLSSocket, context);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    forwarder?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await backend?.close();
  });

  async function get(path: string): Promise<{ status: number; body: string }> {
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    let data = '';
    socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: api.crash.test\r\nConnection: close\r\n\r\n`);
    await Promise.race([once(socket, 'close'), new Promise((resolve) => setTimeout(resolve, 5000))]);
    socket.destroy();
    const first = parseResponses(data, []).responses[0];
    return { status: first?.status ?? 0, body: first?.body ?? '' };
  }

  it('the request whose certificate cannot be described gets 502 and a log line; the next one is served', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let failed: { status: number; body: string };
    let logged: string[];
    try {
      failed = await get('/first');
      logged = stderr.mock.calls.map((c) => String(c[0]));
    } finally {
      stderr.mockRestore();
    }
    expect(uncaught).toEqual([]);
    expect(failed).toEqual({ status: 502, body: 'Bad Gateway: the request could not be forwarded\n' });
    expect(logged.map((l) => JSON.parse(l) as Record<string, unknown>)).toMatchObject([
      { level: 'error', msg: 'http forwarding failed', listener: 'crash', stage: 'headers', error: 'Error: AsnSchemaValidationError: Data does not match to CertificatePolicies ASN1 schema' },
    ]);
    expect(backend.requests).toEqual([]);

    const served = await get('/second');
    expect(served.status).toBe(200);
    expect(backend.requests.map((r) => [r.url, r.headers['x-forwarded-client-cert']])).toEqual([['/second', `Hash=${'ab'.repeat(32)};Subject="CN=${NAME}";DNS=${NAME}`]]);
  });
});
