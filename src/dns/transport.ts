/**
 * One DNS query to one server over one transport (UDP, TCP or DNS over
 * TLS), with a deadline and an abort signal. Failover and retries across
 * servers are exchange.ts's job.
 */
import { randomInt } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { checkResponse, encodeQuery, MAX_DNS_MESSAGE, type DnsAnswer, type DnsQuestion } from './message.js';
import { describeServer, sameIpAddress, type ResolverServer } from './resolver.js';

export type TransportFailureKind =
  /** No usable answer within the deadline. */
  | 'timeout'
  /** Could not reach the server (connection refused, reset, TLS failure). */
  | 'server-error'
  /** The server broke the protocol. */
  | 'malformed';

export type AttemptResult =
  | ({ readonly kind: 'answer' } & DnsAnswer)
  /** UDP only: the answer was truncated (TC=1). */
  | { readonly kind: 'truncated' }
  | { readonly kind: TransportFailureKind; readonly detail: string };

const failure = (kind: TransportFailureKind, detail: string): AttemptResult => ({ kind, detail });
const answer = (a: DnsAnswer): AttemptResult => ({ kind: 'answer', packet: a.packet, rcode: a.rcode, rcodeName: a.rcodeName, authenticData: a.authenticData });

/** Run `body` with a deadline; its cleanup always runs once. Resolves with the body's result or a timeout; rejects when `signal` aborts. */
function withDeadline(timeoutMs: number, signal: AbortSignal | undefined, label: string, body: (finish: (r: AttemptResult) => void) => () => void): Promise<AttemptResult> {
  return new Promise((resolve, reject) => {
    let done = false;
    let cleanup: () => void = () => {};
    const onAbort = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cleanup();
      reject(signal?.reason ?? new Error('aborted'));
    };
    const finish = (r: AttemptResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      cleanup();
      resolve(r);
    };
    const timer = setTimeout(() => finish(failure('timeout', `no answer from ${label} within ${timeoutMs} ms`)), timeoutMs);
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    cleanup = body(finish);
    if (done) cleanup();
  });
}

/** Ask over UDP; datagrams from anyone but the server, or that do not answer the query, are ignored. */
export function queryUdp(server: ResolverServer, question: DnsQuestion, timeoutMs: number, signal?: AbortSignal): Promise<AttemptResult> {
  const id = randomInt(0, 65536);
  const query = encodeQuery(id, question);
  const label = describeServer(server);
  return withDeadline(timeoutMs, signal, label, (finish) => {
    const socket = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
    socket.on('error', (err) => finish(failure('server-error', `${label}: ${err.message}`)));
    socket.on('message', (msg, rinfo) => {
      // Only the server's own address and port may answer; anything else is ignored. Addresses are
      // compared in canonical form: a server written '0:0:0:0:0:0:0:1' answers from '::1'.
      if (rinfo.port !== server.port || !sameIpAddress(rinfo.address, server.host)) return;
      const check = checkResponse({ id, question }, msg, true);
      if (check.action === 'ignore') return;
      if (check.action === 'retry-tcp') finish({ kind: 'truncated' });
      else if (check.action === 'malformed') finish(failure('malformed', check.detail));
      else finish(answer(check));
    });
    socket.send(query, server.port, server.host);
    return () => socket.close();
  });
}

/** Ask over TCP or DNS over TLS (RFC 7766, RFC 7858): one length-prefixed query, one response. */
export function queryStream(server: ResolverServer, question: DnsQuestion, timeoutMs: number, signal?: AbortSignal): Promise<AttemptResult> {
  const id = randomInt(0, 65536);
  const query = encodeQuery(id, question);
  const framed = Buffer.alloc(query.length + 2);
  framed.writeUInt16BE(query.length, 0);
  query.copy(framed, 2);
  const label = describeServer(server);
  return withDeadline(timeoutMs, signal, label, (finish) => {
    const socket: net.Socket =
      server.transport === 'tls'
        ? tls.connect({
            host: server.host,
            port: server.port,
            servername: server.tlsServerName ?? (net.isIP(server.host) ? undefined : server.host),
            ca: server.tlsCa,
            minVersion: 'TLSv1.2',
            // Verify against the configured name (or the IP literal), whatever SNI was sent.
            checkServerIdentity: (_host, cert) => tls.checkServerIdentity(server.tlsServerName ?? server.host, cert),
          })
        : net.connect({ host: server.host, port: server.port });
    const chunks: Buffer[] = [];
    let received = 0;
    socket.on(server.transport === 'tls' ? 'secureConnect' : 'connect', () => socket.write(framed));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > MAX_DNS_MESSAGE + 2) {
        finish(failure('malformed', `${label}: response longer than a DNS message can be`));
        return;
      }
      chunks.push(chunk);
      // Joined only once the 2-byte length says the whole message is here (not once per chunk: a reply in
      // tiny pieces would cost quadratic copying).
      if (received < 2) return;
      if (chunks.length > 1 && chunks[0] !== undefined && chunks[0].length < 2) chunks.splice(0, chunks.length, Buffer.concat(chunks));
      const length = (chunks[0] as Buffer).readUInt16BE(0);
      if (received < length + 2) return;
      const buf = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received);
      if (buf.length > length + 2) {
        finish(failure('malformed', `${label}: unexpected bytes after the response`));
        return;
      }
      const check = checkResponse({ id, question }, buf.subarray(2), false);
      if (check.action === 'answer') finish(answer(check));
      else finish(failure('malformed', check.action === 'retry-tcp' ? `${label}: unexpected response` : check.detail));
    });
    socket.on('error', (err) => finish(failure('server-error', `${label}: ${err.message}`)));
    socket.on('close', () => finish(failure('server-error', `${label}: connection closed before a complete response`)));
    return () => socket.destroy();
  });
}
