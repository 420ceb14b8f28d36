/**
 * TCP mode: a full-duplex pipe from the verified TLS connection to one of
 * its route's upstreams (plain TCP or re-originated TLS), chosen by the
 * route's UpstreamSet with connect failover, with backpressure and
 * half-close, preceded by an optional PROXY v1/v2 header written in one
 * write before any payload. The connect time, each attempt, a failure to
 * reach any upstream (with the connection's identity) and the bytes relayed
 * are published on the upstream channels (see channels.ts).
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { ProxyHeaderConfig, RouteConfig, TcpListenerConfig, Upstream } from '../config/types.js';
import type { ConnectionContext, Forwarder } from '../connection/forwarder.js';
import type { SecureSocket } from '../tls/secure-socket.js';
import { ByteMeter, type MeterOptions } from './byte-meter.js';
import { upstreamConnectChannel } from './channels.js';
import { publishUpstreamError } from './upstream-failure.js';
import { UpstreamSet } from './upstream-set.js';
import { encodeProxyV1, encodeProxyV2, PP2_CLIENT, type ProxyAddresses, type ProxyTlv } from '../protocol/proxy-protocol.js';

/** How long an upstream may take to accept (and, for tls://, finish its handshake). */
export const UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;

/**
 * The SSL TLV's `verify` value when no client was authenticated: non-zero means "not verified"
 * (OpenSSL's X509_V_ERR_UNSPECIFIED, as HAProxy would report a failed verification).
 */
export const PP2_VERIFY_NOT_AUTHENTICATED = 1;

/** '::ffff:1.2.3.4' → '1.2.3.4', so both ends of a PROXY header share a family. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

export function proxyAddresses(context: ConnectionContext): ProxyAddresses | undefined {
  const source = unmapped(context.clientAddress);
  const destination = unmapped(context.localAddress);
  const family = net.isIPv4(source) && net.isIPv4(destination) ? 'tcp4' : net.isIPv6(source) && net.isIPv6(destination) ? 'tcp6' : undefined;
  if (family === undefined) return undefined;
  return { family, sourceAddress: source, sourcePort: context.clientPort, destinationAddress: destination, destinationPort: context.localPort };
}

/** The PROXY header for this connection per its route's PROXY header settings, or undefined for none. */
export function buildProxyHeader(socket: SecureSocket, context: ConnectionContext, config: ProxyHeaderConfig): Buffer | undefined {
  if (config.version === 'none') return undefined;
  const addresses = proxyAddresses(context);
  if (config.version === 'v1') return encodeProxyV1(addresses);
  const identity = context.identity;
  const customTlvs: ProxyTlv[] = [];
  if (identity) {
    customTlvs.push({ type: config.tlvTypes.name, value: Buffer.from(identity.name, 'ascii') });
    customTlvs.push({ type: config.tlvTypes.certHash, value: createHash('sha256').update(identity.leaf.der).digest() });
    customTlvs.push({ type: config.tlvTypes.tlsa, value: Buffer.from(identity.tlsa) });
  }
  const alpn = socket.alpnProtocol;
  return encodeProxyV2({
    command: addresses ? 'PROXY' : 'LOCAL',
    addresses,
    authority: context.hello.serverName,
    alpn: typeof alpn === 'string' ? alpn : undefined,
    ssl: {
      client: PP2_CLIENT.SSL | (identity ? PP2_CLIENT.CERT_CONN | PP2_CLIENT.CERT_SESS : 0),
      // 0 (X509_V_OK) only when our own DANE verification authenticated the client on this connection.
      verify: identity ? 0 : PP2_VERIFY_NOT_AUTHENTICATED,
      version: socket.getProtocol() ?? undefined,
      // The CN sub-TLV is what brokers and nginx ($proxy_protocol_tlv_ssl_cn) authorise on: it carries
      // the verified DANE client name, never certificate text (DANE-EE does not vouch for the subject,
      // and a subject can hide "CN=" inside another attribute). Absent when unauthenticated.
      cn: identity ? identity.name : undefined,
      cipher: socket.getCipher()?.name,
    },
    customTlvs,
    crc32c: config.crc32c,
  });
}

/** What a TCP forwarder can be given beyond its listener (tests shorten the connect deadline). */
export interface TcpForwarderOptions extends MeterOptions {
  /** How long one upstream may take to accept (and finish its TLS handshake); default UPSTREAM_CONNECT_TIMEOUT_MS. */
  readonly connectTimeoutMs?: number;
}

/** The forwarder of a TCP-mode listener: each decided connection is piped to one of its route's upstreams. */
export class TcpForwarder implements Forwarder {
  readonly alpn = undefined;
  readonly forwardsUnauthenticated = false;
  /** A TCP client learns of a refusal from the TLS alert (native engine) or the closed connection. */
  readonly answersRefusals = false;
  /** The PROXY header settings of each route of this listener (the pipeline's context names the route). */
  private readonly proxyHeaders: ReadonlyMap<RouteConfig, ProxyHeaderConfig>;
  /** Each route's upstreams, made on the route's first connection (its active checks start then). */
  private readonly sets = new Map<RouteConfig, UpstreamSet>();
  private readonly meter: ByteMeter;
  private readonly connectTimeoutMs: number;
  private closed = false;

  constructor(
    private readonly listener: TcpListenerConfig,
    options: TcpForwarderOptions = {},
  ) {
    this.proxyHeaders = new Map(listener.routes.map((route) => [route, route.proxyHeader]));
    this.meter = new ByteMeter(listener.name, options.bytesIntervalMs);
    this.connectTimeoutMs = options.connectTimeoutMs ?? UPSTREAM_CONNECT_TIMEOUT_MS;
  }

  accept(client: SecureSocket, context: ConnectionContext): void {
    const proxyHeader = this.proxyHeaders.get(context.route);
    if (proxyHeader === undefined) {
      // A pipeline bug, not the upstream's: the context must name a route of the config this forwarder was built from.
      publishUpstreamError(context, new Error(`the connection's route is not a route of listener ${this.listener.name}`));
      client.destroy();
      return;
    }
    this.meter.track(client);
    relay(client, context, proxyHeader, this.setFor(context.route), this.connectTimeoutMs);
  }

  /** A TCP client learns nothing more than the closed connection. */
  refuse(socket: SecureSocket): void {
    socket.destroy();
  }

  /** A byte stream has no request boundary to stop at: sessions run until they end (or the listener's drain deadline). */
  drain(): void {}

  close(): void {
    this.closed = true;
    for (const set of this.sets.values()) set.close();
    this.meter.close();
  }

  /** The route's upstream set (a closed forwarder's still picks, but runs no checks). */
  private setFor(route: RouteConfig): UpstreamSet {
    let set = this.sets.get(route);
    if (set === undefined) {
      set = new UpstreamSet(this.listener.name, route.upstreams);
      if (!this.closed) set.start();
      this.sets.set(route, set);
    }
    return set;
  }
}

/** An upstream connection that is ready for bytes: the TCP socket, and the TLS socket over it for tls://. */
interface Connected {
  readonly tcp: net.Socket;
  readonly stream: net.Socket;
}

/**
 * Connect to one upstream: TCP, the PROXY header written as soon as TCP is
 * up (before any TLS, as HAProxy's send-proxy does and FreeRADIUS's RadSec
 * listener expects), then the TLS handshake for tls://. `done` is called
 * once: with the sockets, or with the error and both sockets destroyed.
 */
function connectUpstream(up: Upstream, header: Buffer | undefined, timeoutMs: number, done: (result: Connected | Error) => void): void {
  const tcp = net.connect({ host: up.host, port: up.port, allowHalfOpen: true });
  tcp.setNoDelay(true);
  let stream: net.Socket = tcp;
  let finished = false;
  const finish = (result: Connected | Error): void => {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    if (result instanceof Error) {
      stream.destroy();
      tcp.destroy();
    }
    done(result);
  };
  // Each socket keeps this listener: after the outcome it is a no-op, and a late error of a destroyed socket has a listener.
  const failed = (err: Error): void => finish(err);
  const deadline = setTimeout(() => finish(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
  deadline.unref();
  tcp.on('error', failed);
  tcp.once('connect', () => {
    if (header) tcp.write(header);
    if (up.protocol !== 'tls') return finish({ tcp, stream: tcp });
    const secured = tls.connect({
      socket: tcp,
      servername: up.tls?.serverName ?? (net.isIP(up.host) ? undefined : up.host),
      ca: up.tls?.caPem,
      cert: up.tls?.certPem,
      key: up.tls?.keyPem,
    });
    stream = secured;
    secured.on('error', failed);
    secured.once('secureConnect', () => finish({ tcp, stream: secured }));
  });
}

/**
 * Pipe one decided connection to an upstream of its route, with connect
 * failover: an upstream that cannot be reached (TCP, or its TLS handshake)
 * counts as connect-failed and another one is tried, up to `retries` more;
 * when none is left, one upstream error (the last) and the client is
 * closed. A session counts in flight on its upstream (least-requests)
 * until it closes; its attempt is judged when it connects, so a session
 * that later breaks is not an upstream failure.
 */
function relay(client: SecureSocket, context: ConnectionContext, proxyHeader: ProxyHeaderConfig, set: UpstreamSet, connectTimeoutMs: number): void {
  const listener = context.listener.name;
  let header: Buffer | undefined;
  try {
    header = buildProxyHeader(client, context, proxyHeader);
  } catch (err) {
    publishUpstreamError(context, new Error(`cannot build the PROXY header: ${(err as Error).message}`));
    client.destroy();
    return;
  }
  // Until a pipe is up the client is paused; its error only means it is gone (checked before each attempt).
  client.on('error', () => client.destroy());
  const retries = context.route.upstreams.retries;
  const tried = new Set<string>();
  const next = (last: { readonly err: Error; readonly upstream: Upstream } | undefined): void => {
    // The client left while we were connecting: there is nobody to fail over for.
    if (client.destroyed) return;
    const choice = tried.size <= retries ? set.pick(tried) : undefined;
    if (choice === undefined) {
      publishUpstreamError(context, last?.err ?? new Error('no upstream left to try'), last?.upstream);
      client.destroy();
      return;
    }
    tried.add(choice.upstream.name);
    const started = performance.now();
    connectUpstream(choice.upstream, header, connectTimeoutMs, (result) => {
      if (result instanceof Error) {
        choice.end('connect-failed');
        next({ err: result, upstream: choice.upstream });
        return;
      }
      const release = choice.settle('ok');
      if (client.destroyed) {
        result.stream.destroy();
        result.tcp.destroy();
        release();
        return;
      }
      upstreamConnectChannel.publish({ listener, seconds: (performance.now() - started) / 1000 });
      pipe(client, result, release);
    });
  };
  next(undefined);
}

/** The session: both directions with backpressure and half-close; `release` when either side closes. */
function pipe(client: SecureSocket, { tcp, stream }: Connected, release: () => void): void {
  const sockets = stream === tcp ? [tcp] : [tcp, stream];
  for (const socket of sockets) {
    // After the pipe is up, a reset is the session's end, not an upstream failure.
    socket.on('error', () => client.destroy());
    socket.on('close', () => {
      release();
      if (!client.destroyed && client.writableEnded !== true) client.end();
      setTimeout(() => client.destroy(), 5000).unref();
    });
  }
  client.on('error', () => stream.destroy());
  client.on('close', () => {
    release();
    stream.destroy();
    tcp.destroy();
  });
  client.pipe(stream);
  stream.pipe(client);
  client.resume();
}
