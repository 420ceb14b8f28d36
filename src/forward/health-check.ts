/**
 * The active health check of one upstream: a TCP connect (and the TLS
 * handshake for https:// and tls://), or an HTTP GET of the configured path
 * over it (HTTP/1.1, or HTTP/2 for h2c:// and for an https:// upstream with
 * upstreamHttp2, which must choose h2 in ALPN, as for traffic). Healthy: a 2xx or 3xx status within timeoutMs. The TLS
 * settings are the route's upstreamTls, verified as the forwarders verify
 * (rejectUnauthorized, the configured server name). The upstream is not
 * trusted: the response body is read up to MAX_PROBE_BODY bytes and thrown
 * away, the header block is bounded, and every connection is closed after
 * the check. Never throws; the detail is one bounded line.
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Readable } from 'node:stream';
import type { ActiveHealthConfig, Upstream } from '../config/types.js';
import { errorText } from './upstream-failure.js';

export type HealthProbe = (u: Upstream, check: ActiveHealthConfig, signal: AbortSignal) => Promise<{ ok: boolean; detail: string }>;

/** Response body bytes a check reads before it stops (the status already decided). */
export const MAX_PROBE_BODY = 64 * 1024;
/** Largest response header block a check accepts. */
export const MAX_PROBE_HEADER_BYTES = 16 * 1024;
/** Longest detail. */
export const MAX_PROBE_DETAIL = 200;
const USER_AGENT = 'dancegate-health-check';

/** One line, bounded, no controls (it ends up in a log line). */
function line(text: string): string {
  // eslint-disable-next-line no-control-regex -- the point is to remove control characters
  return text.replaceAll(/[\u0000-\u001f\u007f]+/g, ' ').slice(0, MAX_PROBE_DETAIL);
}

const secured = (u: Upstream): boolean => u.protocol === 'https' || u.protocol === 'tls';

/** The Host / :authority of a check: the configured TLS name, else the upstream's host, with its port. */
export function probeAuthority(u: Upstream): string {
  const host = u.tls?.serverName ?? u.host;
  return `${host.includes(':') ? `[${host}]` : host}:${u.port}`;
}

/** A 2xx or 3xx status. */
const passes = (status: number): boolean => status >= 200 && status < 400;

export const probeUpstream: HealthProbe = (u, check, signal) =>
  new Promise((resolve) => {
    const what = check.type === 'http' ? `GET ${check.path}` : secured(u) ? 'TLS connect' : 'TCP connect';
    const cleanups: Array<() => void> = [];
    let settled = false;
    /** The status once response headers came (an HTTP check ends on it even if the body does not). */
    let status: number | undefined;
    const finish = (ok: boolean, text: string): void => {
      if (settled) return;
      settled = true;
      // Last made, first torn down: a TLS socket goes before the TCP socket under it (Node 20 crashes when the
      // TCP socket is destroyed first in the tick of secureConnect).
      for (const cleanup of cleanups.splice(0).reverse()) {
        try {
          cleanup();
        } catch {
          // Tearing down must not be what fails the check.
        }
      }
      resolve({ ok, detail: line(`${what}: ${text}`) });
    };
    const fail = (err: unknown): void => {
      if (status !== undefined) finish(passes(status), String(status));
      else finish(false, errorText(err));
    };
    const verdict = (): void => {
      if (status !== undefined) finish(passes(status), String(status));
    };
    try {
      if (signal.aborted) return finish(false, 'aborted');
      const onAbort = (): void => finish(false, 'aborted');
      signal.addEventListener('abort', onAbort, { once: true });
      cleanups.push(() => signal.removeEventListener('abort', onAbort));
      const timer = setTimeout(() => (status !== undefined ? verdict() : finish(false, `no answer within ${check.timeoutMs} ms`)), check.timeoutMs);
      timer.unref();
      cleanups.push(() => clearTimeout(timer));

      const tcp = net.connect({ host: u.host, port: u.port });
      cleanups.push(() => tcp.destroy());
      tcp.on('error', fail);
      tcp.once('connect', () => {
        if (!secured(u)) return connected(tcp, false);
        const wantsH2 = check.type === 'http' && u.http2;
        const socket = tls.connect({
          socket: tcp,
          servername: u.tls?.serverName ?? (net.isIP(u.host) ? undefined : u.host),
          ca: u.tls?.caPem,
          cert: u.tls?.certPem,
          key: u.tls?.keyPem,
          rejectUnauthorized: true,
          // As the traffic does: an https:// upstream with upstreamHttp2 must choose h2 (no HTTP/1.1 fallback).
          ALPNProtocols: u.protocol === 'https' ? (u.http2 ? ['h2'] : ['http/1.1']) : undefined,
        });
        cleanups.push(() => socket.destroy());
        socket.on('error', fail);
        socket.once('secureConnect', () => {
          if (u.protocol === 'https' && u.http2 && socket.alpnProtocol !== 'h2') return finish(false, 'the upstream did not choose h2 in ALPN');
          connected(socket, wantsH2);
        });
      });

      const connected = (socket: net.Socket, h2: boolean): void => {
        if (check.type === 'tcp') return finish(true, secured(u) ? 'handshake done' : 'connected');
        if (h2 || u.protocol === 'h2c') getHttp2(socket);
        else getHttp1(socket);
      };

      const readBody = (body: Readable): void => {
        let seen = 0;
        body.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (seen > MAX_PROBE_BODY) verdict();
        });
        body.on('end', verdict);
        body.on('error', fail);
      };

      const getHttp1 = (socket: net.Socket): void => {
        const req = http.request({
          createConnection: () => socket,
          method: 'GET',
          path: check.path,
          setHost: false,
          headers: { host: probeAuthority(u), 'user-agent': USER_AGENT, connection: 'close' },
          maxHeaderSize: MAX_PROBE_HEADER_BYTES,
          insecureHTTPParser: false,
        });
        cleanups.push(() => req.destroy());
        req.on('error', fail);
        req.on('response', (res) => {
          status = res.statusCode ?? 0;
          res.on('aborted', verdict);
          readBody(res);
        });
        req.end();
      };

      const getHttp2 = (socket: net.Socket): void => {
        const scheme = u.protocol === 'h2c' ? 'http' : 'https';
        const session = http2.connect(`${scheme}://${probeAuthority(u)}`, {
          createConnection: () => socket,
          maxHeaderListPairs: 128,
          maxSessionMemory: 1,
          settings: { enablePush: false, maxHeaderListSize: MAX_PROBE_HEADER_BYTES, initialWindowSize: MAX_PROBE_BODY },
        });
        cleanups.push(() => session.destroy());
        session.on('error', fail);
        session.on('goaway', () => fail(new Error('GOAWAY before the answer')));
        const stream = session.request({ ':method': 'GET', ':path': check.path, ':authority': probeAuthority(u), ':scheme': scheme, 'user-agent': USER_AGENT }, { endStream: true });
        stream.on('error', fail);
        stream.on('response', (headers) => {
          const value = Number(headers[':status']);
          status = Number.isInteger(value) ? value : 0;
          readBody(stream);
        });
        stream.on('close', () => (status !== undefined ? verdict() : fail(new Error(`stream closed (code ${stream.rstCode ?? 0})`))));
      };
    } catch (err) {
      finish(false, errorText(err));
    }
  });
