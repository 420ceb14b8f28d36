/**
 * probeUpstream against real local servers: node:http, node:https with a
 * test CA (and a client certificate it requires), node:http2 (h2c, and
 * https choosing h2 in ALPN), a closed port, a server that never answers,
 * and hostile answers (garbage, huge headers, an endless body).
 */
import { once } from 'node:events';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import type { ActiveHealthConfig, Upstream, UpstreamTls } from '../../src/config/types.js';
import { MAX_PROBE_BODY, probeAuthority, probeUpstream } from '../../src/forward/health-check.js';
import { closedPort } from './forward-fixtures.js';

const HTTP: ActiveHealthConfig = { type: 'http', path: '/healthz', intervalMs: 5000, timeoutMs: 1000, healthyThreshold: 2, unhealthyThreshold: 3 };
const TCP: ActiveHealthConfig = { ...HTTP, type: 'tcp' };

const target = (protocol: Upstream['protocol'], port: number, over: Partial<Upstream> = {}): Upstream => ({
  protocol,
  host: '127.0.0.1',
  port,
  url: `${protocol}://127.0.0.1:${port}`,
  name: `127.0.0.1:${port}`,
  http2: protocol === 'h2c',
  tls: undefined,
  ...over,
});

const probe = (u: Upstream, check: ActiveHealthConfig = HTTP, signal: AbortSignal = new AbortController().signal): Promise<{ ok: boolean; detail: string }> => probeUpstream(u, check, signal);

const servers: Array<{ close(): unknown }> = [];
async function listen<S extends net.Server>(server: S): Promise<number> {
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** What a server saw: method, path, Host (or :authority) and user-agent of each request. */
const seen: string[] = [];

/** An HTTP/1.1 handler: /status/NNN answers NNN, /big a body far over the bound, /healthz 200. */
function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  seen.push(`${req.method} ${req.url} ${req.headers.host} ${req.headers['user-agent']}`);
  const match = /^\/status\/(\d{3})$/.exec(req.url ?? '');
  if (match) {
    res.writeHead(Number(match[1]), { location: '/elsewhere' });
    res.end('x');
  } else if (req.url === '/big') {
    res.writeHead(200);
    const chunk = Buffer.alloc(16 * 1024, 0x61);
    // Endless unless the client goes away: the probe must stop reading by itself.
    let gone = false;
    req.socket.once('close', () => (gone = true));
    const pump = (): void => {
      let room = true;
      for (let i = 0; i < 64 && room && !gone; i++) room = res.write(chunk);
      if (gone) return;
      if (room) setImmediate(pump);
      else res.once('drain', pump);
    };
    pump();
  } else {
    res.end('ok');
  }
}

let ca: IssuedCertificate;
let serverCert: IssuedCertificate;
let clientCert: IssuedCertificate;
let otherCa: IssuedCertificate;
let httpPort = 0;
let httpsPort = 0;
let mtlsPort = 0;
let h2cPort = 0;
let h2tlsPort = 0;
let silentPort = 0;
let garbagePort = 0;
let hugeHeadersPort = 0;
let deadPort = 0;
const silentSockets: net.Socket[] = [];

beforeAll(async () => {
  ca = await createCertificate({ commonName: 'health test CA', isCA: true });
  otherCa = await createCertificate({ commonName: 'another CA', isCA: true });
  serverCert = await createCertificate({ commonName: 'backend.test', dnsNames: ['backend.test'], issuer: ca, extendedKeyUsage: 'server' });
  clientCert = await createCertificate({ commonName: 'dancegate.test', dnsNames: ['dancegate.test'], issuer: ca, extendedKeyUsage: 'client' });
  httpPort = await listen(http.createServer(handler));
  httpsPort = await listen(https.createServer({ cert: serverCert.certPem, key: serverCert.keyPem }, handler));
  mtlsPort = await listen(https.createServer({ cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, handler));
  const h2handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void => {
    seen.push(`h2 ${req.method} ${req.url} ${req.authority} ${req.headers['user-agent']} ${req.httpVersion}`);
    res.writeHead(req.url === '/healthz' ? 204 : 500);
    res.end();
  };
  h2cPort = await listen(http2.createServer(h2handler));
  h2tlsPort = await listen(http2.createSecureServer({ cert: serverCert.certPem, key: serverCert.keyPem, allowHTTP1: false }, h2handler));
  silentPort = await listen(
    net.createServer((s) => {
      silentSockets.push(s);
      s.on('error', () => undefined);
      // Reads and never answers: the client's FIN closes this side.
      s.resume();
    }),
  );
  const answering = (text: string): net.Server =>
    net.createServer((s) => {
      s.on('error', () => undefined);
      // Read (and drop) what comes, so that the client's FIN ends this side too.
      s.resume();
      s.end(text);
    });
  garbagePort = await listen(answering('this is not HTTP\r\n\r\n'));
  hugeHeadersPort = await listen(answering(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(40_000)}\r\nContent-Length: 0\r\n\r\n`));
  deadPort = await closedPort();
});

afterAll(async () => {
  for (const s of silentSockets) s.destroy();
  for (const s of servers) {
    if (s instanceof http.Server || s instanceof https.Server) s.closeAllConnections();
    await new Promise((resolve) => (s as net.Server).close(resolve));
  }
});

const tlsOf = (over: Partial<UpstreamTls> = {}): UpstreamTls => ({ caPem: ca.certPem, certPem: undefined, keyPem: undefined, serverName: 'backend.test', ...over });

describe('HTTP checks', () => {
  it.each<[string, string, boolean, string]>([
    ['200', '/healthz', true, 'GET /healthz: 200'],
    ['204', '/status/204', true, 'GET /status/204: 204'],
    ['301 (a redirect is not followed; 3xx passes)', '/status/301', true, 'GET /status/301: 301'],
    ['404', '/status/404', false, 'GET /status/404: 404'],
    ['503', '/status/503', false, 'GET /status/503: 503'],
  ])('http:// %s', async (_label, path, ok, detail) => {
    expect(await probe(target('http', httpPort), { ...HTTP, path })).toEqual({ ok, detail });
  });

  it('sends GET of the path with the upstream as Host and its own user-agent', async () => {
    seen.length = 0;
    await probe(target('http', httpPort), { ...HTTP, path: '/healthz?deep=1' });
    expect(seen).toEqual([`GET /healthz?deep=1 127.0.0.1:${httpPort} dancegate-health-check`]);
  });

  it('https:// verified against the route CA, the configured server name as SNI and Host', async () => {
    seen.length = 0;
    expect(await probe(target('https', httpsPort, { tls: tlsOf() }))).toEqual({ ok: true, detail: 'GET /healthz: 200' });
    expect(seen).toEqual([`GET /healthz backend.test:${httpsPort} dancegate-health-check`]);
  });

  it.each<[string, () => Partial<UpstreamTls>, RegExp]>([
    ['another CA', () => ({ caPem: otherCa.certPem }), /^GET \/healthz: Error: (unable to verify the first certificate|unable to get local issuer certificate)/],
    ['no CA (the system roots)', () => ({ caPem: undefined }), /^GET \/healthz: Error: (unable to verify the first certificate|unable to get local issuer certificate)/],
    ['a name the certificate does not carry', () => ({ serverName: 'other.test' }), /^GET \/healthz: Error: Hostname\/IP does not match certificate's altnames/],
  ])('https:// fails closed: %s', async (_label, over, detail) => {
    const result = await probe(target('https', httpsPort, { tls: tlsOf(over()) }));
    expect(result.ok).toBe(false);
    expect(result.detail).toMatch(detail);
  });

  it('https:// to an upstream that requires a client certificate: with the route one it passes, without it fails', async () => {
    expect(await probe(target('https', mtlsPort, { tls: tlsOf({ certPem: clientCert.certPem, keyPem: clientCert.keyPem }) }))).toEqual({ ok: true, detail: 'GET /healthz: 200' });
    expect((await probe(target('https', mtlsPort, { tls: tlsOf() }))).ok).toBe(false);
  });

  it('h2c:// speaks HTTP/2 with prior knowledge', async () => {
    seen.length = 0;
    expect(await probe(target('h2c', h2cPort))).toEqual({ ok: true, detail: 'GET /healthz: 204' });
    expect(await probe(target('h2c', h2cPort), { ...HTTP, path: '/nope' })).toEqual({ ok: false, detail: 'GET /nope: 500' });
    expect(seen[0]).toBe(`h2 GET /healthz 127.0.0.1:${h2cPort} dancegate-health-check 2.0`);
  });

  it('https:// with upstreamHttp2 to an h2-only server: ALPN h2, then HTTP/2', async () => {
    seen.length = 0;
    expect(await probe(target('https', h2tlsPort, { http2: true, tls: tlsOf() }))).toEqual({ ok: true, detail: 'GET /healthz: 204' });
    expect(seen).toEqual([`h2 GET /healthz backend.test:${h2tlsPort} dancegate-health-check 2.0`]);
    // Without upstreamHttp2 the probe offers only http/1.1, which an h2-only server refuses.
    expect((await probe(target('https', h2tlsPort, { tls: tlsOf() }))).ok).toBe(false);
  });

  it('https:// with upstreamHttp2 to an HTTP/1.1-only server: unhealthy, as the traffic (HTTP/2 only, no fallback) would fail there', async () => {
    const got = await probe(target('https', httpsPort, { http2: true, tls: tlsOf() }));
    expect(got.ok).toBe(false);
    expect(got.detail).toMatch(/^GET \/healthz: Error: .*no application protocol/);
  });

  it('an endless body is not read to its end: the status decides, within the deadline', async () => {
    const started = Date.now();
    expect(await probe(target('http', httpPort), { ...HTTP, path: '/big', timeoutMs: 5000 })).toEqual({ ok: true, detail: 'GET /big: 200' });
    expect(Date.now() - started).toBeLessThan(4000);
    expect(MAX_PROBE_BODY).toBe(65536);
  });

  it.each<[string, () => number, RegExp]>([
    ['a closed port', () => deadPort, /^GET \/healthz: Error: connect ECONNREFUSED 127\.0\.0\.1:\d+$/],
    ['a server that never answers', () => silentPort, /^GET \/healthz: no answer within 300 ms$/],
    ['a server that answers garbage', () => garbagePort, /^GET \/healthz: Error: Parse Error/],
    ['headers over the bound', () => hugeHeadersPort, /^GET \/healthz: Error: Parse Error: Header overflow/],
  ])('fails: %s', async (_label, port, detail) => {
    const result = await probe(target('http', port()), { ...HTTP, timeoutMs: 300 });
    expect(result.ok).toBe(false);
    expect(result.detail).toMatch(detail);
  });
});

describe('TCP checks', () => {
  it.each<[string, () => Upstream, boolean, RegExp]>([
    ['tcp:// open', () => target('tcp', silentPort), true, /^TCP connect: connected$/],
    ['tcp:// closed', () => target('tcp', deadPort), false, /^TCP connect: Error: connect ECONNREFUSED/],
    ['http:// upstream, tcp check: connect only (a garbage server passes)', () => target('http', garbagePort), true, /^TCP connect: connected$/],
    ['tls:// handshake done', () => target('tls', httpsPort, { tls: tlsOf() }), true, /^TLS connect: handshake done$/],
    ['tls:// to a server that is not TLS', () => target('tls', garbagePort, { tls: tlsOf() }), false, /^TLS connect: Error: /],
    ['tls:// silent', () => target('tls', silentPort, { tls: tlsOf() }), false, /^TLS connect: no answer within 300 ms$/],
    ['https:// upstream, tcp check: the TLS handshake, verified', () => target('https', httpsPort, { tls: tlsOf({ serverName: 'other.test' }) }), false, /^TLS connect: Error: .*/],
  ])('%s', async (_label, u, ok, detail) => {
    const result = await probe(u(), { ...TCP, timeoutMs: 300 });
    expect(result.ok).toBe(ok);
    expect(result.detail).toMatch(detail);
  });
});

describe('abort and bounds', () => {
  it('an abort ends the check at once, as failed', async () => {
    const controller = new AbortController();
    const pending = probe(target('http', silentPort), { ...HTTP, timeoutMs: 10_000 }, controller.signal);
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    expect(await pending).toEqual({ ok: false, detail: 'GET /healthz: aborted' });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('an already aborted signal: no connection at all', async () => {
    const before = silentSockets.length;
    const controller = new AbortController();
    controller.abort();
    expect(await probe(target('tcp', silentPort), TCP, controller.signal)).toEqual({ ok: false, detail: 'TCP connect: aborted' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(silentSockets.length).toBe(before);
  });

  it.each<[string, () => Upstream, ActiveHealthConfig]>([
    ['a TCP check that passed', () => target('tcp', silentPort), TCP],
    ['an HTTP check that timed out', () => target('http', silentPort), { ...HTTP, timeoutMs: 200 }],
    ['a TLS handshake that timed out', () => target('https', silentPort, { tls: tlsOf() }), { ...HTTP, timeoutMs: 200 }],
  ])('the connection is closed after %s', async (_label, u, check) => {
    const before = silentSockets.length;
    await probe(u(), check);
    const socket = silentSockets[before];
    expect(socket).toBeDefined();
    if (socket && !socket.destroyed) await once(socket, 'close');
    expect(socket?.destroyed).toBe(true);
  });

  it('probeAuthority brackets IPv6 and prefers the configured TLS name', () => {
    expect(probeAuthority(target('http', 80))).toBe('127.0.0.1:80');
    expect(probeAuthority(target('http', 80, { host: '::1' }))).toBe('[::1]:80');
    expect(probeAuthority(target('https', 443, { tls: tlsOf() }))).toBe('backend.test:443');
  });
});
