/**
 * Http2UpstreamDispatcher against real node:http2 servers (h2c and TLS with
 * ALPN h2): what its handler hears for an answer with trailers, a refused
 * connection (ECONNREFUSED, so the forwarder may try another upstream), a
 * certificate it must not trust, a stream the upstream resets, and a slow
 * upstream (the headers timeout).
 */
import { once } from 'node:events';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { Http2UpstreamDispatcher, UNSENDABLE_REQUEST } from '../../src/forward/http2-upstream.js';
import { neverReached } from '../../src/forward/upstream-exchange.js';
import { closedPort } from './forward-fixtures.js';

interface Heard {
  status?: number;
  headers?: Record<string, unknown>;
  body: Buffer[];
  trailers?: Record<string, unknown>;
  error?: Error;
}

/** Dispatch one request; resolves with what the handler heard once it ended or failed. */
function send(d: Http2UpstreamDispatcher, options: Partial<Dispatcher.DispatchOptions> = {}): Promise<Heard> {
  return new Promise((resolve) => {
    const heard: Heard = { body: [] };
    d.dispatch({ path: '/x', method: 'GET', headers: ['host', 'api.example.test', 'te', 'trailers', 'connection', 'keep-alive', 'x-a', '1'], body: null, ...options } as Dispatcher.DispatchOptions, {
      onResponseStart: (_c, status, headers) => {
        heard.status = status;
        heard.headers = headers;
      },
      onResponseData: (_c, chunk) => void heard.body.push(chunk),
      onResponseEnd: (_c, trailers) => {
        heard.trailers = trailers;
        resolve(heard);
      },
      onResponseError: (_c, error) => {
        heard.error = error;
        resolve(heard);
      },
    });
  });
}

const servers: http2.Http2Server[] = [];
const dispatchers: Http2UpstreamDispatcher[] = [];
afterAll(async () => {
  for (const d of dispatchers) await d.destroy();
  for (const s of servers) s.close();
});

/** What each server saw of a request's headers. */
const seen: http2.IncomingHttpHeaders[] = [];

/** Every session the servers accepted. */
const sessions: http2.ServerHttp2Session[] = [];

function serve(server: http2.Http2Server | http2.Http2SecureServer): Promise<number> {
  server.on('session', (session: http2.ServerHttp2Session) => void sessions.push(session));
  server.on('stream', (stream, headers) => {
    seen.push(headers);
    stream.on('error', () => undefined);
    if (headers[':path'] === '/reset') return void stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    if (headers[':path'] === '/slow') return;
    stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end('hello');
  });
  servers.push(server as http2.Http2Server);
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => (server.address() as AddressInfo).port);
}

function dispatcher(origin: string, tls: { ca?: string; servername?: string } = {}, requestTimeoutMs = 5000): Http2UpstreamDispatcher {
  const d = new Http2UpstreamDispatcher({ origin: new URL(origin), tls: { ca: tls.ca, servername: tls.servername }, connectTimeoutMs: 2000, requestTimeoutMs });
  dispatchers.push(d);
  return d;
}

describe('Http2UpstreamDispatcher', () => {
  let h2cPort: number;
  let tlsPort: number;
  let ca: IssuedCertificate;
  let otherCa: IssuedCertificate;

  beforeAll(async () => {
    h2cPort = await serve(http2.createServer());
    ca = await createCertificate({ commonName: 'up CA', isCA: true });
    otherCa = await createCertificate({ commonName: 'other CA', isCA: true });
    const cert = await createCertificate({ commonName: 'up.example.test', dnsNames: ['up.example.test'], issuer: ca, extendedKeyUsage: 'server' });
    tlsPort = await serve(http2.createSecureServer({ key: cert.keyPem, cert: cert.certPem, allowHTTP1: false }));
  });

  it('h2c: status, headers, body and trailers; Host becomes :authority, connection-specific headers are not sent, TE: trailers is', async () => {
    const heard = await send(dispatcher(`http://127.0.0.1:${h2cPort}`));
    expect([heard.status, heard.headers?.['content-type'], Buffer.concat(heard.body).toString(), heard.trailers]).toEqual([200, 'text/plain', 'hello', { 'grpc-status': '0' }]);
    const got = seen.at(-1);
    expect([got?.[':authority'], got?.[':scheme'], got?.te, got?.connection, got?.['x-a']]).toEqual(['api.example.test', 'http', 'trailers', undefined, '1']);
  });

  it('repeated fields go as one (cookies joined with "; "): a client\'s second Content-Type never makes node:http2 throw', async () => {
    const heard = await send(dispatcher(`http://127.0.0.1:${h2cPort}`), {
      method: 'POST',
      headers: ['host', 'api.example.test', 'content-type', 'a/b', 'content-type', 'c/d', 'cookie', 'a=1', 'cookie', 'b=2', 'x-list', '1', 'x-list', '2'],
      body: null,
    });
    expect(heard.status).toBe(200);
    const got = seen.at(-1);
    expect([got?.['content-type'], got?.cookie, got?.['x-list']]).toEqual(['a/b, c/d', 'a=1; b=2', '1, 2']);
  });

  it("a request node:http2 refuses to send is the client's fault (its own code, never an upstream failure)", async () => {
    const heard = await send(dispatcher(`http://127.0.0.1:${h2cPort}`), { headers: ['host', 'api.example.test', 'bad name', 'x'] });
    expect((heard.error as Error & { code?: string }).code).toBe(UNSENDABLE_REQUEST);
    expect(neverReached(heard.error as Error)).toBe(false);
  });

  it('TLS with ALPN h2, the upstream CA trusted and the configured name checked', async () => {
    const heard = await send(dispatcher(`https://127.0.0.1:${tlsPort}`, { ca: ca.certPem, servername: 'up.example.test' }));
    expect([heard.status, Buffer.concat(heard.body).toString(), heard.error]).toEqual([200, 'hello', undefined]);
    expect(seen.at(-1)?.[':scheme']).toBe('https');
  });

  it('a certificate from another CA is refused before any request: an error that says the upstream was never reached', async () => {
    const heard = await send(dispatcher(`https://127.0.0.1:${tlsPort}`, { ca: otherCa.certPem, servername: 'up.example.test' }));
    expect(heard.status).toBeUndefined();
    expect(heard.error !== undefined && neverReached(heard.error)).toBe(true);
  });

  it('a refused connection is ECONNREFUSED (never reached: the request may go to another upstream)', async () => {
    const heard = await send(dispatcher(`http://127.0.0.1:${await closedPort()}`));
    expect((heard.error as Error & { code?: string }).code).toBe('ECONNREFUSED');
    expect(neverReached(heard.error as Error)).toBe(true);
  });

  it('a stream the upstream resets is a failure that reached it', async () => {
    const heard = await send(dispatcher(`http://127.0.0.1:${h2cPort}`), { path: '/reset' });
    expect(heard.status).toBeUndefined();
    expect(heard.error !== undefined && neverReached(heard.error)).toBe(false);
  });

  it('no response within requestTimeoutMs: the headers timeout (never retried)', async () => {
    const heard = await send(dispatcher(`http://127.0.0.1:${h2cPort}`, {}, 300), { path: '/slow' });
    expect((heard.error as Error & { code?: string }).code).toBe('UND_ERR_HEADERS_TIMEOUT');
  });

  it('a session the upstream closed is opened again for the next request', async () => {
    const d = dispatcher(`http://127.0.0.1:${h2cPort}`);
    expect((await send(d)).status).toBe(200);
    const before = sessions.length;
    for (const session of sessions) session.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await send(d)).status).toBe(200);
    expect(sessions.length).toBe(before + 1);
  });
});
