/**
 * Fixtures for driving the forwarders directly over real loopback sockets:
 * listener configs of each mode, a connection context, and a plain TCP
 * server that hands each accepted socket to a forwarder (the forwarders
 * read nothing TLS-specific from it unless a PROXY v2 header is asked for).
 */
import { once } from 'node:events';
import * as net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Allowlist } from '../../src/allowlist/allowlist.js';
import {
  IDENTITY_SOURCE_NAMES,
  type HttpListenerConfig,
  type HttpModeConfig,
  type ListenerBase,
  type ProxyHeaderConfig,
  type TcpListenerConfig,
  type Upstream,
  type UpstreamPoolConfig,
} from '../../src/config/types.js';
import type { ConnectionContext } from '../../src/connection/forwarder.js';
import type { ParsedCertificate } from '../../src/dane/certificate.js';

export const HTTP_DEFAULTS: HttpModeConfig = {
  identityHeader: 'X-Dane-Client-Id',
  statusHeader: 'X-Dane-Status',
  forwardClientCert: false,
  forwardXfcc: false,
  tlsaHeader: undefined,
  refuseWith403: true,
  headersTimeoutMs: 5000,
  requestTimeoutMs: 10000,
  upstreamConnections: 16,
  upstreamMaxPerClient: 8,
  upstreamQueueTimeoutMs: 5000,
  alpn: ['h2', 'http/1.1'],
  http2: { maxConcurrentStreams: 100, maxResetsPerSecond: 100, maxHeaderListBytes: 16384 },
  requestRatePerIdentity: undefined,
  accessLog: { enabled: true, sampleRate: 1, includeQuery: false },
};

export const NO_PROXY_HEADER: ProxyHeaderConfig = { version: 'none', tlvTypes: { name: 0xe4, certHash: 0xe5, tlsa: 0xe6 }, crc32c: false, maxHeaderBytes: 500 };

export function upstreamOf(url: string): Upstream {
  const u = new URL(url);
  const protocol = u.protocol.slice(0, -1);
  if (protocol !== 'http' && protocol !== 'https' && protocol !== 'h2c' && protocol !== 'tcp' && protocol !== 'tls') throw new Error(`not an upstream URL: ${url}`);
  return { protocol, host: u.hostname, port: Number(u.port), url, name: u.host, http2: protocol === 'h2c', tls: undefined };
}

/** A route's upstream pool of `urls` (round-robin, no health checks, no retries unless given). */
export function poolOf(urls: readonly string[], options: Partial<UpstreamPoolConfig> = {}): UpstreamPoolConfig {
  return { targets: urls.map(upstreamOf), balance: 'round-robin', passiveHealth: undefined, healthCheck: undefined, retries: 0, ...options };
}

function base(name: string): Omit<ListenerBase, 'mode' | 'routes' | 'policy'> {
  return {
    name,
    host: '127.0.0.1',
    port: 0,
    certificates: [],
    minVersion: 'TLSv1.2',
    engine: 'node',
    daneClientIdType: 65500,
    maxClientHelloBytes: 16384,
    clientHelloTimeoutMs: 5000,
    handshakeTimeoutMs: 10000,
    idleTimeoutMs: 5000,
    maxLifetimeMs: undefined,
    pkixRoots: [],
    inboundProxyProtocol: undefined,
    tcpKeepAlive: undefined,
    revalidate: { mode: 'off', floorMs: 30_000, ceilingMs: 3_600_000, jitterMs: 30_000, graceMs: 300_000 },
  };
}

const route = (upstream: string) => ({
  serverNames: [],
  upstreams: poolOf([upstream]),
  allowlist: Allowlist.fromList(['*._device.forward.test'], 'test'),
  allowlistSource: 'test',
  identity: { sources: [...IDENTITY_SOURCE_NAMES], strict: false },
  alpn: undefined,
});

export function httpListener(name: string, upstream: string, options: { http?: Partial<HttpModeConfig>; policy?: 'required' | 'optional' } = {}): HttpListenerConfig {
  return { ...base(name), mode: 'http', policy: options.policy ?? 'required', http: { ...HTTP_DEFAULTS, ...options.http }, routes: [{ ...route(upstream), rules: [] }] };
}

export function tcpListener(name: string, upstream: string, proxyHeader: ProxyHeaderConfig = NO_PROXY_HEADER): TcpListenerConfig {
  return { ...base(name), mode: 'tcp', protocol: 'tcp', alpn: undefined, policy: 'required', routes: [{ ...route(upstream), proxyHeader, binding: { kind: 'none' } }] };
}

/** The context of a connection on `listener`'s first route; `identity` undefined = unauthenticated. */
export function contextFor(listener: HttpListenerConfig | TcpListenerConfig, socket: net.Socket, identity: string | undefined): ConnectionContext {
  const first = listener.routes[0];
  if (first === undefined) throw new Error('no route');
  // Only what the forwarders read of a certificate (the XFCC/Client-Cert fields are off in these listeners).
  const leaf = { der: Buffer.from([1, 2, 3]), sha256Hex: 'ab'.repeat(32), subject: `CN=${identity ?? ''}` } as unknown as ParsedCertificate;
  return {
    listener,
    route: first,
    clientAddress: socket.remoteAddress ?? '127.0.0.1',
    clientPort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '127.0.0.1',
    localPort: socket.localPort ?? 0,
    connectionId: `test-${socket.remotePort ?? 0}`,
    hello: { serverName: 'api.forward.test' } as ConnectionContext['hello'],
    identity: identity === undefined ? undefined : { name: identity, leaf, tlsa: [3, 1, 1] },
    status: identity === undefined ? 'no-certificate' : 'authenticated',
  };
}

export interface Front {
  readonly port: number;
  /** The server side of every accepted connection, in order. */
  readonly accepted: net.Socket[];
  close(): Promise<void>;
}

/** A plain TCP server handing each connection (paused, as the listener does) to `onSocket`. */
export async function startFront(onSocket: (socket: TLSSocket) => void): Promise<Front> {
  const accepted: net.Socket[] = [];
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
    accepted.push(socket);
    socket.on('error', () => undefined);
    // The forwarders read nothing TLS-specific here (no PROXY v2 header is configured).
    onSocket(socket as TLSSocket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted,
    close: async () => {
      for (const s of accepted) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
