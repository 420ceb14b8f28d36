/**
 * The forwarders behind the Forwarder seam: what the factory builds per
 * mode, how a refused HTTP client is answered (status from the reason
 * catalog), and the HTTP drain (issue 11: in-flight keep-alive requests are
 * answered with `Connection: close` and their connections close after the
 * response; idle ones close at once), driven directly over loopback sockets.
 * test/e2e/drain-in-flight.test.ts does the same through the whole proxy.
 */
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createForwarder } from '../../src/forward/factory.js';
import { HttpForwarder } from '../../src/forward/http-forward.js';
import { TcpForwarder } from '../../src/forward/tcp-forward.js';
import { REASONS, type RefusalReason } from '../../src/reasons.js';
import { parseResponses } from '../lab/http-raw-kit.js';
import { waitUntil } from '../lab/wait.js';
import { contextFor, httpListener, startFront, tcpListener, type Front } from './forward-fixtures.js';

const NAME = 'slow._device.forward.test';

describe('createForwarder', () => {
  it.each([
    ['http, policy required', httpListener('f1', 'http://127.0.0.1:1'), HttpForwarder, ['h2', 'http/1.1'], false],
    ['http, policy optional', httpListener('f2', 'http://127.0.0.1:1', { policy: 'optional' }), HttpForwarder, ['h2', 'http/1.1'], true],
    ['http, alpn http/1.1 only', httpListener('f4', 'http://127.0.0.1:1', { http: { alpn: ['http/1.1'] } }), HttpForwarder, ['http/1.1'], false],
    ['tcp', tcpListener('f3', 'tcp://127.0.0.1:1'), TcpForwarder, undefined, false],
  ] as const)('%s', (_label, listener, kind, alpn, forwardsUnauthenticated) => {
    const forwarder = createForwarder(listener);
    try {
      expect(forwarder).toBeInstanceOf(kind);
      expect([forwarder.alpn, forwarder.forwardsUnauthenticated]).toEqual([alpn, forwardsUnauthenticated]);
    } finally {
      forwarder.close();
    }
  });
});

/** Connect, let `act` run on the server side, return what the client got before the close. */
async function serverSide(act: (socket: net.Socket) => void): Promise<string> {
  const server = net.createServer((s) => act(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    client.on('error', () => undefined);
    let data = '';
    client.on('data', (d: Buffer) => (data += d.toString('latin1')));
    await once(client, 'close');
    return data;
  } finally {
    server.close();
  }
}

describe('refuse', () => {
  it.each([
    ['not-allowed', 403, undefined],
    ['no-matching-record', 403, undefined],
    ['dns-timeout', 503, '5'],
    ['identity-limit', 503, '5'],
    ['rate-limited', 503, '5'],
  ] as const)('HTTP, refuseWith403: %s → %i', async (reason: RefusalReason, status, retryAfter) => {
    expect(REASONS[reason].http).toBe(status);
    const forwarder = new HttpForwarder(httpListener('refuse', 'http://127.0.0.1:1'));
    try {
      const data = await serverSide((s) => forwarder.refuse(s as never, reason));
      const [answer] = parseResponses(data, [false]).responses;
      expect([answer?.status, answer?.headers['retry-after'], answer?.headers['connection']]).toEqual([status, retryAfter, 'close']);
      expect(answer?.body).toContain(`(${reason})`);
    } finally {
      forwarder.close();
    }
  });

  it.each([
    ['HTTP without refuseWith403', () => new HttpForwarder(httpListener('refuse', 'http://127.0.0.1:1', { http: { refuseWith403: false } }))],
    ['TCP', () => new TcpForwarder(tcpListener('refuse', 'tcp://127.0.0.1:1'))],
  ])('%s: closed, nothing sent', async (_label, make) => {
    const forwarder = make();
    try {
      expect(await serverSide((s) => forwarder.refuse(s as never, 'not-allowed'))).toBe('');
    } finally {
      forwarder.close();
    }
  });
});

describe('HttpForwarder.drain', () => {
  const DELAY_MS = 500;
  let backend: http.Server | undefined;
  let front: Front | undefined;
  let forwarder: HttpForwarder | undefined;
  const arrived: string[] = [];

  afterEach(async () => {
    forwarder?.close();
    await front?.close();
    backend?.closeAllConnections();
    backend?.close();
    arrived.length = 0;
  });

  async function start(): Promise<number> {
    backend = http.createServer((req, res) => {
      arrived.push(req.url ?? '');
      if (req.url === '/slow') setTimeout(() => res.end('slow done'), DELAY_MS);
      else if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('one, ');
        setTimeout(() => res.end('two'), DELAY_MS);
      } else res.end('fast done');
    });
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    const listener = httpListener('drain', `http://127.0.0.1:${(backend.address() as net.AddressInfo).port}`);
    const f = new HttpForwarder(listener);
    forwarder = f;
    front = await startFront((socket) => f.accept(socket, contextFor(listener, socket, NAME)));
    return front.port;
  }

  async function client(port: number): Promise<{ socket: net.Socket; data: () => string; closed: () => boolean }> {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    let data = '';
    let closed = false;
    socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
    socket.on('close', () => (closed = true));
    await once(socket, 'connect');
    return { socket, data: () => data, closed: () => closed };
  }

  const get = (socket: net.Socket, path: string): boolean => socket.write(`GET ${path} HTTP/1.1\r\nHost: api.forward.test\r\n\r\n`);

  it('idle: closes at once; waiting for its response: Connection: close, then closed; streaming: finished, then closed', async () => {
    const port = await start();
    const idle = await client(port);
    get(idle.socket, '/fast');
    await waitUntil('the idle connection answered', () => idle.data().endsWith('fast done'), 5000);
    const waiting = await client(port);
    get(waiting.socket, '/slow');
    const streaming = await client(port);
    get(streaming.socket, '/stream');
    await waitUntil('the first part streamed', () => streaming.data().endsWith('one, ') || streaming.data().includes('\r\none, \r\n'), 5000);
    await waitUntil('the slow request at the backend', () => arrived.includes('/slow'), 5000);

    const started = Date.now();
    forwarder?.drain();
    await waitUntil('the idle connection closed', () => idle.closed(), 1000);
    expect([waiting.closed(), streaming.closed()]).toEqual([false, false]);
    await waitUntil('both busy connections closed', () => waiting.closed() && streaming.closed(), 5000);
    expect(Date.now() - started).toBeLessThan(DELAY_MS + 1000);

    const answer = (data: string): unknown[] => parseResponses(data, [false]).responses.map((r) => [r.status, r.headers['connection'], r.body]);
    expect(answer(idle.data())).toEqual([[200, 'keep-alive', 'fast done']]);
    expect(answer(waiting.data())).toEqual([[200, 'close', 'slow done']]);
    // Its headers left before the drain: it could not say close; the connection closes after it instead.
    expect(answer(streaming.data())).toEqual([[200, 'keep-alive', 'one, two']]);
  });

  it('a connection that has sent no request yet closes within the grace (not after headersTimeoutMs with a 408)', async () => {
    const port = await start();
    const silent = await client(port);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = Date.now();
    forwarder?.drain();
    await waitUntil('the silent connection closed', () => silent.closed(), 4000);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(silent.data()).toBe('');
  });

  it('a connection that sends its first request within the grace is served once, with Connection: close', async () => {
    const port = await start();
    const late = await client(port);
    await new Promise((resolve) => setTimeout(resolve, 100));
    forwarder?.drain();
    await new Promise((resolve) => setTimeout(resolve, 300));
    get(late.socket, '/fast');
    await waitUntil('the connection closed', () => late.closed(), 4000);
    expect(parseResponses(late.data(), [false]).responses.map((r) => [r.status, r.headers['connection'], r.body])).toEqual([[200, 'close', 'fast done']]);
  });

  it('a WebSocket upgrade while draining gets 503 with Retry-After and is closed, and never reaches the backend', async () => {
    const port = await start();
    const c = await client(port);
    forwarder?.drain();
    c.socket.write('GET /ws HTTP/1.1\r\nHost: api.forward.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    await waitUntil('the connection closed', () => c.closed(), 4000);
    expect(c.data()).toMatch(/^HTTP\/1\.1 503 [^\r]*\r\n/);
    expect(c.data()).toContain('Retry-After: 1\r\n');
    expect(c.data()).toContain('Service Unavailable: shutting down');
    expect(arrived).toEqual([]);
  });

  it('a request whose headers are still arriving when the drain starts is served, with Connection: close', async () => {
    const port = await start();
    const c = await client(port);
    get(c.socket, '/fast');
    await waitUntil('the first response', () => c.data().endsWith('fast done'), 5000);
    c.socket.write('GET /second HTTP/1.1\r\nHost: api.forward.test\r\n');
    await new Promise((resolve) => setTimeout(resolve, 100));
    forwarder?.drain();
    c.socket.write('Accept: */*\r\n\r\n');
    await waitUntil('the connection closed', () => c.closed(), 5000);
    const responses = parseResponses(c.data(), [false, false]).responses.map((r) => [r.status, r.headers['connection'], r.body]);
    expect(responses).toEqual([
      [200, 'keep-alive', 'fast done'],
      [200, 'close', 'fast done'],
    ]);
  });
});
