/**
 * TCP mode over several upstreams, with real sockets: connect failover
 * (refused ports, TLS upstreams whose handshake fails or never ends), the
 * retries bound, one upstream error when every upstream failed, the PROXY
 * header on the connection that succeeded only, passive ejection across
 * connections, and least-requests counting open sessions.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import type { ProxyHeaderConfig, TcpListenerConfig, UpstreamPoolConfig, UpstreamTls } from '../../src/config/types.js';
import { upstreamAttemptChannel, upstreamErrorChannel, upstreamHealthChannel, type UpstreamAttemptEvent, type UpstreamErrorEvent, type UpstreamHealthEvent } from '../../src/forward/channels.js';
import { TcpForwarder } from '../../src/forward/tcp-forward.js';
import { parseProxyHeader } from '../../src/protocol/proxy-protocol.js';
import { closedPort, contextFor, NO_PROXY_HEADER, poolOf, startFront, tcpListener, type Front } from '../unit/forward-fixtures.js';

const NAME = 'sensor7._device.forward.test';

interface Backend {
  readonly port: number;
  /** Every connection accepted, with what it received so far. */
  readonly received: Buffer[];
  readonly sockets: net.Socket[];
  close(): Promise<void>;
}

/**
 * An echo backend (upper-cased), plain or TLS. `proxy`: it first reads a
 * PROXY header (v1/v2) and records it apart from the payload.
 */
async function startBackend(options: { tls?: tls.TlsOptions; proxy?: boolean; closeAtOnce?: boolean; silent?: boolean } = {}): Promise<Backend & { headers: string[] }> {
  const received: Buffer[] = [];
  const sockets: net.Socket[] = [];
  const headers: string[] = [];
  const serve = (stream: net.Socket, index: number): void => {
    stream.on('data', (chunk: Buffer) => {
      received[index] = Buffer.concat([received[index] ?? Buffer.alloc(0), chunk]);
      stream.write(chunk.toString('latin1').toUpperCase());
    });
    stream.on('end', () => stream.end());
    stream.on('error', () => undefined);
  };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const index = sockets.length;
    sockets.push(socket);
    received[index] = Buffer.alloc(0);
    socket.on('error', () => undefined);
    if (options.closeAtOnce) return void socket.destroy();
    if (options.silent) return void socket.resume();
    const afterHeader = (rest: Buffer): void => {
      if (rest.length > 0) socket.unshift(rest);
      if (options.tls) {
        const secure = new tls.TLSSocket(socket, { isServer: true, ...options.tls });
        serve(secure, index);
      } else serve(socket, index);
    };
    if (!options.proxy) return afterHeader(Buffer.alloc(0));
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const parsed = parseProxyHeader(buffered);
      if (parsed.status === 'incomplete') return;
      socket.off('data', onData);
      socket.pause();
      if (parsed.status !== 'complete') return void socket.destroy();
      headers.push(buffered.subarray(0, parsed.headerBytes).toString('latin1'));
      afterHeader(buffered.subarray(parsed.headerBytes));
      socket.resume();
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    received,
    sockets,
    headers,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let ca: IssuedCertificate;
let otherCa: IssuedCertificate;
let good: tls.TlsOptions;
let wrongCa: tls.TlsOptions;
let upstreamTls: UpstreamTls;

beforeAll(async () => {
  ca = await createCertificate({ commonName: 'failover CA', isCA: true });
  otherCa = await createCertificate({ commonName: 'another CA', isCA: true });
  const cert = await createCertificate({ commonName: 'backend.test', dnsNames: ['backend.test'], issuer: ca, extendedKeyUsage: 'server' });
  const foreign = await createCertificate({ commonName: 'backend.test', dnsNames: ['backend.test'], issuer: otherCa, extendedKeyUsage: 'server' });
  good = { cert: cert.certPem, key: cert.keyPem };
  wrongCa = { cert: foreign.certPem, key: foreign.keyPem };
  upstreamTls = { caPem: ca.certPem, certPem: undefined, keyPem: undefined, serverName: 'backend.test' };
});

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A TCP listener whose one route has these upstreams (tls:// ones verified against the test CA). */
function listenerOf(name: string, urls: readonly string[], pool: Partial<UpstreamPoolConfig> = {}, proxyHeader: ProxyHeaderConfig = NO_PROXY_HEADER): TcpListenerConfig {
  const base = tcpListener(name, urls[0] ?? '', proxyHeader);
  const upstreams = poolOf(urls, pool);
  const targets = upstreams.targets.map((t) => (t.protocol === 'tls' ? { ...t, tls: upstreamTls } : t));
  const route = { ...(base.routes[0] as TcpListenerConfig['routes'][number]), upstreams: { ...upstreams, targets } };
  return { ...base, routes: [route] };
}

interface Running {
  readonly front: Front;
  readonly attempts: UpstreamAttemptEvent[];
  readonly errors: UpstreamErrorEvent[];
  readonly health: UpstreamHealthEvent[];
}

async function run(listener: TcpListenerConfig, connectTimeoutMs?: number): Promise<Running> {
  const forwarder = new TcpForwarder(listener, connectTimeoutMs === undefined ? {} : { connectTimeoutMs });
  cleanups.push(() => forwarder.close());
  const attempts: UpstreamAttemptEvent[] = [];
  const errors: UpstreamErrorEvent[] = [];
  const health: UpstreamHealthEvent[] = [];
  const mine =
    <T extends { listener: string }>(into: T[]) =>
    (e: T) => {
      if (e.listener === listener.name) into.push(e);
    };
  cleanups.push(upstreamAttemptChannel.subscribe(mine(attempts)), upstreamErrorChannel.subscribe(mine(errors)), upstreamHealthChannel.subscribe(mine(health)));
  const front = await startFront((socket) => forwarder.accept(socket, contextFor(listener, socket, NAME)));
  cleanups.push(() => front.close());
  return { front, attempts, errors, health };
}

/** A client that sends `line` and collects what comes back until `expected` bytes arrived or the connection closed. */
async function exchange(port: number, line: string, expected: number): Promise<{ text: string; socket: net.Socket; closed: boolean }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  let text = '';
  let closed = false;
  socket.write(line);
  await new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.length >= expected) resolve();
    });
    socket.on('close', () => {
      closed = true;
      resolve();
    });
  });
  return { text, socket, closed };
}

const outcomes = (r: Running): string[] => r.attempts.map((a) => `${a.upstream} ${a.outcome}`);

describe('TCP connect failover', () => {
  it("first upstream refuses, the second echoes: the client's bytes go through, two attempts, no error", async () => {
    const dead = await closedPort();
    const echo = await startBackend();
    cleanups.push(() => echo.close());
    const r = await run(listenerOf('fo-basic', [`tcp://127.0.0.1:${dead}`, `tcp://127.0.0.1:${echo.port}`], { retries: 1 }));
    const { text, socket } = await exchange(r.front.port, 'hello over failover\n', 20);
    expect(text).toBe('HELLO OVER FAILOVER\n');
    socket.destroy();
    expect(outcomes(r)).toEqual([`127.0.0.1:${dead} connect-failed`, `127.0.0.1:${echo.port} ok`]);
    expect(r.errors).toEqual([]);
    expect(echo.sockets).toHaveLength(1);
    expect(echo.received[0]?.toString()).toBe('hello over failover\n');
  });

  it('every upstream refuses: the client is closed and exactly one error (the last upstream tried)', async () => {
    const [a, b, c] = [await closedPort(), await closedPort(), await closedPort()];
    const r = await run(listenerOf('fo-dead', [`tcp://127.0.0.1:${a}`, `tcp://127.0.0.1:${b}`, `tcp://127.0.0.1:${c}`], { retries: 5 }));
    const { text, closed } = await exchange(r.front.port, 'anyone?\n', 1);
    expect([text, closed]).toEqual(['', true]);
    expect(outcomes(r)).toEqual([`127.0.0.1:${a} connect-failed`, `127.0.0.1:${b} connect-failed`, `127.0.0.1:${c} connect-failed`]);
    expect(r.errors).toEqual([
      { listener: 'fo-dead', upstream: `tcp://127.0.0.1:${c}`, identity: NAME, source: '127.0.0.1', error: expect.stringMatching(/^Error: connect ECONNREFUSED 127\.0\.0\.1:\d+$/) },
    ]);
  });

  it.each<[string, number, number]>([
    ['retries 0: no failover', 0, 1],
    ['retries 1 of 3 dead: two attempts', 1, 2],
    ['retries 2 of 3 dead: three attempts', 2, 3],
  ])('%s', async (_label, retries, attempts) => {
    const ports = [await closedPort(), await closedPort(), await closedPort()];
    const r = await run(listenerOf(`fo-retries-${retries}`, [...ports.map((p) => `tcp://127.0.0.1:${p}`)], { retries }));
    const { closed } = await exchange(r.front.port, 'x', 1);
    expect(closed).toBe(true);
    expect(r.attempts.map((a) => a.outcome)).toEqual(Array.from({ length: attempts }, () => 'connect-failed'));
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]?.upstream).toBe(`tcp://127.0.0.1:${ports[attempts - 1]}`);
  });

  it('retries 0 with a live second upstream: the dead first one closes the client', async () => {
    const dead = await closedPort();
    const echo = await startBackend();
    cleanups.push(() => echo.close());
    const r = await run(listenerOf('fo-noretry', [`tcp://127.0.0.1:${dead}`, `tcp://127.0.0.1:${echo.port}`], { retries: 0 }));
    const { closed } = await exchange(r.front.port, 'x', 1);
    expect(closed).toBe(true);
    expect(echo.sockets).toHaveLength(0);
    expect(r.errors).toHaveLength(1);
  });

  it('tls:// upstream with a certificate of another CA, then a good one: failover, and the bytes go through TLS', async () => {
    const bad = await startBackend({ tls: wrongCa });
    const goodBackend = await startBackend({ tls: good });
    cleanups.push(
      () => bad.close(),
      () => goodBackend.close(),
    );
    const r = await run(listenerOf('fo-tls', [`tls://127.0.0.1:${bad.port}`, `tls://127.0.0.1:${goodBackend.port}`], { retries: 1 }));
    const { text, socket } = await exchange(r.front.port, 'secret\n', 7);
    expect(text).toBe('SECRET\n');
    socket.destroy();
    expect(outcomes(r)).toEqual([`127.0.0.1:${bad.port} connect-failed`, `127.0.0.1:${goodBackend.port} ok`]);
    expect(r.errors).toEqual([]);
  });

  it('a TLS handshake that never ends is cut at the connect deadline and the next upstream serves', async () => {
    const silent = await startBackend({ silent: true });
    const echo = await startBackend();
    cleanups.push(
      () => silent.close(),
      () => echo.close(),
    );
    const r = await run(listenerOf('fo-deadline', [`tls://127.0.0.1:${silent.port}`, `tcp://127.0.0.1:${echo.port}`], { retries: 1 }), 300);
    const started = Date.now();
    const { text, socket } = await exchange(r.front.port, 'late\n', 5);
    socket.destroy();
    expect(text).toBe('LATE\n');
    expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    expect(outcomes(r)).toEqual([`127.0.0.1:${silent.port} connect-failed`, `127.0.0.1:${echo.port} ok`]);
    expect(r.attempts[0]?.seconds).toBeGreaterThanOrEqual(0.28);
  });

  it('PROXY v1: written on the connection that succeeded only, once, before the payload', async () => {
    const refusing = await startBackend({ closeAtOnce: true, proxy: true });
    const dead = await closedPort();
    const aware = await startBackend({ proxy: true });
    cleanups.push(
      () => refusing.close(),
      () => aware.close(),
    );
    const v1: ProxyHeaderConfig = { ...NO_PROXY_HEADER, version: 'v1' };
    const r = await run(listenerOf('fo-proxy', [`tcp://127.0.0.1:${dead}`, `tcp://127.0.0.1:${aware.port}`], { retries: 1 }, v1));
    const { text, socket } = await exchange(r.front.port, 'payload\n', 8);
    expect(text).toBe('PAYLOAD\n');
    expect(aware.headers).toHaveLength(1);
    expect(aware.headers[0]).toMatch(/^PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ \d+\r\n$/);
    expect(aware.received[0]?.toString()).toBe('payload\n');
    const clientPort = socket.localPort;
    socket.destroy();
    expect(aware.headers[0]).toContain(` ${clientPort} `);
  });

  it('an upstream that accepts and then closes is not a connect failure: no failover, attempt ok', async () => {
    const closer = await startBackend({ closeAtOnce: true });
    const echo = await startBackend();
    cleanups.push(
      () => closer.close(),
      () => echo.close(),
    );
    const r = await run(listenerOf('fo-break', [`tcp://127.0.0.1:${closer.port}`, `tcp://127.0.0.1:${echo.port}`], { retries: 1 }));
    const { closed } = await exchange(r.front.port, 'x', 1);
    expect(closed).toBe(true);
    expect(outcomes(r)).toEqual([`127.0.0.1:${closer.port} ok`]);
    expect(echo.sockets).toHaveLength(0);
    expect(r.errors).toEqual([]);
  });

  it('passive health: once ejected, later connections go straight to the live upstream', async () => {
    const dead = await closedPort();
    const echo = await startBackend();
    cleanups.push(() => echo.close());
    const r = await run(listenerOf('fo-eject', [`tcp://127.0.0.1:${dead}`, `tcp://127.0.0.1:${echo.port}`], { retries: 1, passiveHealth: { failures: 1, ejectMs: 60_000, maxEjectMs: 60_000 } }));
    for (const line of ['one\n', 'two\n', 'six\n']) {
      const { text, socket } = await exchange(r.front.port, line, 4);
      expect(text).toBe(line.toUpperCase());
      socket.destroy();
    }
    expect(outcomes(r)).toEqual([`127.0.0.1:${dead} connect-failed`, `127.0.0.1:${echo.port} ok`, `127.0.0.1:${echo.port} ok`, `127.0.0.1:${echo.port} ok`]);
    expect(r.health).toEqual([{ listener: 'fo-eject', upstream: `127.0.0.1:${dead}`, healthy: false, cause: 'passive', detail: '1 failure in a row; ejected for 60000 ms' }]);
  });

  it('least-requests counts open sessions: a closed session frees its upstream', async () => {
    const a = await startBackend();
    const b = await startBackend();
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const r = await run(listenerOf('fo-least', [`tcp://127.0.0.1:${a.port}`, `tcp://127.0.0.1:${b.port}`], { balance: 'least-requests' }));
    const first = await exchange(r.front.port, 'x', 1);
    const second = await exchange(r.front.port, 'y', 1);
    expect([a.sockets.length, b.sockets.length]).toEqual([1, 1]);
    second.socket.destroy();
    await once(b.sockets[0] as net.Socket, 'close');
    // The forwarder sees its upstream socket close right after the backend does.
    await new Promise((resolve) => setTimeout(resolve, 50));
    // a has one open session, b none: b, although round-robin would say a.
    const third = await exchange(r.front.port, 'z', 1);
    expect([a.sockets.length, b.sockets.length]).toEqual([1, 2]);
    first.socket.destroy();
    third.socket.destroy();
  });

  it('a connection closed (by the listener) while the upstream is connecting: no failover, no error', async () => {
    const silent = await startBackend({ silent: true });
    const echo = await startBackend();
    cleanups.push(
      () => silent.close(),
      () => echo.close(),
    );
    const r = await run(listenerOf('fo-leave', [`tls://127.0.0.1:${silent.port}`, `tcp://127.0.0.1:${echo.port}`], { retries: 1 }), 300);
    const socket = net.connect(r.front.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    await new Promise((resolve) => setTimeout(resolve, 50));
    // A paused client socket does not see its peer leave: the listener's deadlines are what close it.
    r.front.accepted[0]?.destroy();
    await once(socket, 'close');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(outcomes(r)).toEqual([`127.0.0.1:${silent.port} connect-failed`]);
    expect(echo.sockets).toHaveLength(0);
    expect(r.errors).toEqual([]);
  });
});
