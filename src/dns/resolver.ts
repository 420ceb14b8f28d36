/**
 * A stub resolver for TLSA lookups that trusts the AD bit of a validating
 * resolver reached over a secure channel (loopback, or DNS over TLS).
 * Speaks DNS itself (node:dns cannot show the AD bit).
 */
import { randomInt } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { encodeTlsaQuery, judgeTlsaResponse, outcome, type LookupOutcome } from '../lookup/tlsa-answer.js';

export type ResolverTransport = 'udp' | 'tcp' | 'tls';

export interface ResolverServer {
  /** IP address literal. */
  readonly host: string;
  readonly port: number;
  readonly transport: ResolverTransport;
  /** DNS over TLS: the name the server certificate must carry (default: the IP address). */
  readonly tlsServerName?: string;
  /** DNS over TLS: PEM CA certificate(s) to verify the server against (default: Node's bundled roots). */
  readonly tlsCa?: string;
}

export interface ResolverOptions {
  readonly servers: readonly ResolverServer[];
  /** Deadline for one query to one server, ms. */
  readonly attemptTimeoutMs?: number;
  /** Deadline for the whole lookup across servers and retries, ms. */
  readonly totalTimeoutMs?: number;
  /** Accept plain UDP/TCP to a resolver that is not on loopback (its AD bit can be forged on the path). */
  readonly allowRemotePlainResolver?: boolean;
}

export const DEFAULT_ATTEMPT_TIMEOUT_MS = 2000;
export const DEFAULT_TOTAL_TIMEOUT_MS = 5000;
/** Largest DNS message over a stream transport (2-byte length prefix). */
const MAX_STREAM_MESSAGE = 65535;

export class ResolverConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ResolverConfigError';
  }
}

/**
 * The canonical text of an IP address literal, as Node reports a peer's address (RFC 5952 for IPv6:
 * lower case, zeros compressed, "::ffff:a.b.c.d" for IPv4-mapped; a zone index is kept as written),
 * or undefined when `host` is not an IP address literal. Two spellings of one address give one text,
 * so '0:0:0:0:0:0:0:1' and '::1' compare equal.
 */
export function canonicalIpAddress(host: string): string | undefined {
  const family = net.isIP(host);
  if (family === 0) return undefined;
  const zone = host.indexOf('%');
  const address = zone < 0 ? host : host.slice(0, zone);
  try {
    const canonical = new net.SocketAddress({ address, family: family === 6 ? 'ipv6' : 'ipv4' }).address;
    return zone < 0 ? canonical : `${canonical}${host.slice(zone)}`;
  } catch {
    return undefined;
  }
}

/** Does a datagram from `address` come from `server`'s address? Compares canonical forms. */
export function sameIpAddress(a: string, b: string): boolean {
  const ca = canonicalIpAddress(a);
  return ca !== undefined && ca === canonicalIpAddress(b);
}

export function isLoopbackAddress(host: string): boolean {
  const canonical = canonicalIpAddress(host);
  if (canonical === undefined) return false;
  if (net.isIPv4(canonical)) return canonical.startsWith('127.');
  return canonical === '::1' || /^::ffff:127\./.test(canonical);
}

/** Check a resolver configuration; throws ResolverConfigError naming the offending server. */
export function validateResolverOptions(options: ResolverOptions): void {
  if (options.servers.length === 0) throw new ResolverConfigError('resolver: at least one server is required');
  options.servers.forEach((server, i) => {
    const where = `resolver server ${i + 1} (${server.host.includes(':') ? `[${server.host}]` : server.host}:${server.port})`;
    if (net.isIP(server.host) === 0) throw new ResolverConfigError(`${where}: host must be an IP address literal`);
    if (!Number.isInteger(server.port) || server.port < 1 || server.port > 65535) {
      throw new ResolverConfigError(`${where}: port must be an integer from 1 to 65535`);
    }
    if (!['udp', 'tcp', 'tls'].includes(server.transport)) {
      throw new ResolverConfigError(`${where}: transport must be udp, tcp or tls`);
    }
    if (server.transport !== 'tls' && !isLoopbackAddress(server.host) && !options.allowRemotePlainResolver) {
      throw new ResolverConfigError(
        `${where}: plain ${server.transport.toUpperCase()} to a resolver that is not on loopback cannot protect the AD bit; ` +
          'use transport tls, run a validating resolver on loopback, or set allowRemotePlainResolver if the path is trusted',
      );
    }
  });
  for (const [key, value] of [
    ['attemptTimeoutMs', options.attemptTimeoutMs],
    ['totalTimeoutMs', options.totalTimeoutMs],
  ] as const) {
    if (value !== undefined && (!Number.isFinite(value) || value <= 0 || value > 60_000)) {
      throw new ResolverConfigError(`resolver ${key}: must be a number of milliseconds from 1 to 60000`);
    }
  }
}

function describe(server: ResolverServer): string {
  const host = server.host.includes(':') ? `[${server.host}]` : server.host;
  return `${server.transport}://${host}:${server.port}`;
}

/** Run `body` with a deadline; `cleanup` always runs once. Resolves with the body's outcome or a timeout. */
function withDeadline(
  timeoutMs: number,
  signal: AbortSignal | undefined,
  label: string,
  body: (finish: (o: LookupOutcome) => void) => () => void,
): Promise<LookupOutcome> {
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
    const finish = (o: LookupOutcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      cleanup();
      resolve(o);
    };
    const timer = setTimeout(() => finish(outcome('timeout', `no answer from ${label} within ${timeoutMs} ms`)), timeoutMs);
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    cleanup = body(finish);
    if (done) cleanup();
  });
}

function queryUdp(server: ResolverServer, name: string, timeoutMs: number, signal?: AbortSignal): Promise<LookupOutcome | 'retry-tcp'> {
  const id = randomInt(0, 65536);
  const query = encodeTlsaQuery(id, name);
  let retryTcp = false;
  return withDeadline(timeoutMs, signal, describe(server), (finish) => {
    const socket = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
    socket.on('error', (err) => finish(outcome('server-error', `${describe(server)}: ${err.message}`)));
    socket.on('message', (msg, rinfo) => {
      // Only the server's own address and port may answer; anything else is ignored. Addresses are
      // compared in canonical form: a server written '0:0:0:0:0:0:0:1' answers from '::1'.
      if (rinfo.port !== server.port || !sameIpAddress(rinfo.address, server.host)) return;
      const verdict = judgeTlsaResponse({ id, name }, msg, true);
      if (verdict.action === 'ignore') return;
      if (verdict.action === 'retry-tcp') {
        retryTcp = true;
        finish(outcome('timeout', 'truncated'));
        return;
      }
      finish(verdict.outcome);
    });
    socket.send(query, server.port, server.host);
    return () => socket.close();
  }).then((o) => (retryTcp ? 'retry-tcp' : o));
}

function queryStream(server: ResolverServer, name: string, timeoutMs: number, signal?: AbortSignal): Promise<LookupOutcome> {
  const id = randomInt(0, 65536);
  const query = encodeTlsaQuery(id, name);
  const framed = Buffer.alloc(query.length + 2);
  framed.writeUInt16BE(query.length, 0);
  query.copy(framed, 2);
  const label = describe(server);
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
      if (received > MAX_STREAM_MESSAGE + 2) {
        finish(outcome('malformed', `${label}: response longer than a DNS message can be`));
        return;
      }
      chunks.push(chunk);
      const buf = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      if (buf.length < 2) return;
      const length = buf.readUInt16BE(0);
      if (buf.length < length + 2) return;
      if (buf.length > length + 2) {
        finish(outcome('malformed', `${label}: unexpected bytes after the response`));
        return;
      }
      const verdict = judgeTlsaResponse({ id, name }, buf.subarray(2), false);
      finish(verdict.action === 'final' ? verdict.outcome : outcome('malformed', `${label}: unexpected response`));
    });
    socket.on('error', (err) => finish(outcome('server-error', `${label}: ${err.message}`)));
    socket.on('close', () => finish(outcome('server-error', `${label}: connection closed before a complete response`)));
    return () => socket.destroy();
  });
}

/** Outcomes that answer the question; anything else may be tried elsewhere. */
function isDefinitive(o: LookupOutcome): boolean {
  return o.kind === 'secure' || o.kind === 'no-tlsa' || o.kind === 'insecure';
}

/** When every try failed, report the most telling failure. */
const FAILURE_RANK: Record<string, number> = { bogus: 4, malformed: 3, 'server-error': 2, timeout: 1 };

export interface TlsaResolver {
  lookup(name: string, signal?: AbortSignal): Promise<LookupOutcome>;
}

export class DnsTlsaResolver implements TlsaResolver {
  private readonly attemptTimeoutMs: number;
  private readonly totalTimeoutMs: number;

  constructor(private readonly options: ResolverOptions) {
    validateResolverOptions(options);
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
    this.totalTimeoutMs = options.totalTimeoutMs ?? DEFAULT_TOTAL_TIMEOUT_MS;
  }

  private async attempt(server: ResolverServer, name: string, timeoutMs: number, deadline: number, signal?: AbortSignal): Promise<LookupOutcome> {
    if (server.transport !== 'udp') return queryStream(server, name, timeoutMs, signal);
    const udp = await queryUdp(server, name, timeoutMs, signal);
    if (udp !== 'retry-tcp') return udp;
    const remaining = deadline - Date.now();
    if (remaining <= 0) return outcome('timeout', `${describe(server)}: truncated answer and no time left to retry over TCP`);
    const tcp = await queryStream({ ...server, transport: 'tcp' }, name, Math.min(this.attemptTimeoutMs, remaining), signal);
    return { ...tcp, detail: `${tcp.detail} (UDP answer truncated, retried over TCP)` };
  }

  /**
   * Look up the TLSA RRset of `name` (canonical client name). Tries each
   * server in order; a server that timed out or failed is tried again in a
   * second round while time remains. Rejects only when `signal` aborts.
   */
  async lookup(name: string, signal?: AbortSignal): Promise<LookupOutcome> {
    const deadline = Date.now() + this.totalTimeoutMs;
    let worst: LookupOutcome | undefined;
    const retriable = new Set(this.options.servers);
    for (let round = 0; round < 2 && retriable.size > 0; round++) {
      for (const server of this.options.servers) {
        if (!retriable.has(server)) continue;
        const remaining = deadline - Date.now();
        if (remaining <= 0) return worst ?? outcome('timeout', `no answer within ${this.totalTimeoutMs} ms`);
        const result = await this.attempt(server, name, Math.min(this.attemptTimeoutMs, remaining), deadline, signal);
        if (isDefinitive(result)) return { ...result, detail: `${result.detail} from ${describe(server)}` };
        // A validating resolver's SERVFAIL or a broken reply is not fixed by asking it again.
        if (result.kind !== 'timeout' && result.kind !== 'server-error') retriable.delete(server);
        if (worst === undefined || (FAILURE_RANK[result.kind] ?? 0) > (FAILURE_RANK[worst.kind] ?? 0)) worst = result;
      }
    }
    return worst ?? outcome('timeout', `no answer within ${this.totalTimeoutMs} ms`);
  }
}
