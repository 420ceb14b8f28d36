/**
 * TCP mode: a full-duplex pipe from the verified TLS connection to one of
 * its route's upstreams (plain TCP or re-originated TLS, offering the ALPN
 * protocol the client negotiated), chosen by the route's UpstreamSet with
 * connect failover, with backpressure and half-close, preceded by an
 * optional PROXY v1/v2 header written in one write before any payload. A
 * route's protocol binding (tcp-binding.ts) reads the MQTT CONNECT before
 * any upstream is chosen, or runs the RADSEC packets through its filter.
 * The connect time, each attempt, a failure to reach any upstream (with the
 * connection's identity) and the bytes relayed are published on the
 * upstream channels (see channels.ts).
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { ProxyHeaderConfig, RouteConfig, TcpListenerConfig, TcpRouteConfig, Upstream } from '../config/types.js';
import type { ConnectionContext, Forwarder } from '../connection/forwarder.js';
import type { SecureSocket } from '../tls/secure-socket.js';
import { ByteMeter, type MeterOptions } from './byte-meter.js';
import { upstreamConnectChannel } from './channels.js';
import { readOpening, type SessionFilters } from './tcp-binding.js';
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

/**
 * PROXY v2 parts left out, in this order, while a header is over the route's proxyV2.maxHeaderBytes
 * (500 by default, Mosquitto's limit): AUTHORITY (the client's SNI: text the client chose goes
 * first), the SSL cipher and version, the name TLV (the SSL CN carries the same name), the
 * certificate hash, the TLSA parameters. The addresses, ALPN, the SSL TLV's client, verify and CN,
 * and CRC32C are never left out (the configuration checks they always fit: proxyV2FloorBytes).
 */
export const PROXY_V2_DROP_ORDER = ['authority', 'cipher', 'version', 'name', 'certHash', 'tlsa'] as const;
type DroppablePart = (typeof PROXY_V2_DROP_ORDER)[number];

/** The PROXY header for this connection per its route's PROXY header settings, or undefined for none. */
export function buildProxyHeader(socket: SecureSocket, context: ConnectionContext, config: ProxyHeaderConfig): Buffer | undefined {
  if (config.version === 'none') return undefined;
  const addresses = proxyAddresses(context);
  if (config.version === 'v1') return encodeProxyV1(addresses);
  const identity = context.identity;
  const alpn = socket.alpnProtocol;
  const full: Record<'name' | 'certHash' | 'tlsa', ProxyTlv | undefined> & Record<'authority' | 'cipher' | 'version', string | undefined> = {
    name: identity === undefined ? undefined : { type: config.tlvTypes.name, value: Buffer.from(identity.name, 'ascii') },
    certHash: identity === undefined ? undefined : { type: config.tlvTypes.certHash, value: createHash('sha256').update(identity.leaf.der).digest() },
    tlsa: identity === undefined ? undefined : { type: config.tlvTypes.tlsa, value: Buffer.from(identity.tlsa) },
    authority: context.hello.serverName,
    cipher: socket.getCipher()?.name,
    version: socket.getProtocol() ?? undefined,
  };
  const encode = (left: ReadonlySet<DroppablePart>): Buffer => {
    const has = <K extends DroppablePart>(part: K): (typeof full)[K] | undefined => (left.has(part) ? full[part] : undefined);
    const customTlvs = [has('name'), has('certHash'), has('tlsa')].filter((t): t is ProxyTlv => t !== undefined);
    return encodeProxyV2({
      command: addresses ? 'PROXY' : 'LOCAL',
      addresses,
      authority: has('authority'),
      alpn: typeof alpn === 'string' ? alpn : undefined,
      ssl: {
        client: PP2_CLIENT.SSL | (identity ? PP2_CLIENT.CERT_CONN | PP2_CLIENT.CERT_SESS : 0),
        // 0 (X509_V_OK) only when our own DANE verification authenticated the client on this connection.
        verify: identity ? 0 : PP2_VERIFY_NOT_AUTHENTICATED,
        version: has('version'),
        // The CN sub-TLV is what brokers and nginx ($proxy_protocol_tlv_ssl_cn) authorise on: it carries
        // the verified DANE client name, never certificate text (DANE-EE does not vouch for the subject,
        // and a subject can hide "CN=" inside another attribute). Absent when unauthenticated.
        cn: identity ? identity.name : undefined,
        cipher: has('cipher'),
      },
      customTlvs,
      crc32c: config.crc32c,
    });
  };
  const left = new Set<DroppablePart>(PROXY_V2_DROP_ORDER);
  let header = encode(left);
  for (const part of PROXY_V2_DROP_ORDER) {
    if (header.length <= config.maxHeaderBytes) return header;
    left.delete(part);
    header = encode(left);
  }
  if (header.length <= config.maxHeaderBytes) return header;
  throw new RangeError(`the PROXY v2 header needs ${header.length} bytes even without its optional TLVs, over proxyV2.maxHeaderBytes (${config.maxHeaderBytes})`);
}

/** What a TCP forwarder can be given beyond its listener (tests shorten the connect deadline). */
export interface TcpForwarderOptions extends MeterOptions {
  /** How long one upstream may take to accept (and finish its TLS handshake); default UPSTREAM_CONNECT_TIMEOUT_MS. */
  readonly connectTimeoutMs?: number;
}

/** The forwarder of a TCP-mode listener: each decided connection is piped to one of its route's upstreams. */
export class TcpForwarder implements Forwarder {
  readonly alpn: readonly string[] | undefined;
  readonly forwardsUnauthenticated = false;
  /** A TCP client learns of a refusal from the TLS alert (native engine) or the closed connection. */
  readonly answersRefusals = false;
  /** The TCP settings of each route of this listener (the pipeline's context names the route). */
  private readonly routes: ReadonlyMap<RouteConfig, TcpRouteConfig>;
  /** Each route's upstreams, made on the route's first connection (its active checks start then). */
  private readonly sets = new Map<RouteConfig, UpstreamSet>();
  private readonly meter: ByteMeter;
  private readonly connectTimeoutMs: number;
  private closed = false;

  constructor(
    private readonly listener: TcpListenerConfig,
    options: TcpForwarderOptions = {},
  ) {
    this.alpn = listener.alpn;
    this.routes = new Map(listener.routes.map((route) => [route, route]));
    this.meter = new ByteMeter(listener.name, options.bytesIntervalMs);
    this.connectTimeoutMs = options.connectTimeoutMs ?? UPSTREAM_CONNECT_TIMEOUT_MS;
  }

  accept(client: SecureSocket, context: ConnectionContext): void {
    const route = this.routes.get(context.route);
    if (route === undefined) {
      // A pipeline bug, not the upstream's: the context must name a route of the config this forwarder was built from.
      publishUpstreamError(context, new Error(`the connection's route is not a route of listener ${this.listener.name}`));
      client.destroy();
      return;
    }
    const alpn = typeof client.alpnProtocol === 'string' ? client.alpnProtocol : undefined;
    if (route.alpn !== undefined && (alpn === undefined || !route.alpn.includes(alpn))) {
      // The route was chosen for the protocol the ClientHello promised; a handshake that chose otherwise is refused.
      publishUpstreamError(context, new Error(`the connection negotiated ALPN ${alpn ?? '(none)'}, not one of its route's (${route.alpn.join(', ')})`));
      client.destroy();
      return;
    }
    this.meter.track(client);
    // Until a pipe is up the client is paused; its error only means it is gone (checked before each step).
    client.on('error', () => client.destroy());
    const set = this.setFor(context.route);
    readOpening(client, context, route.binding).then(
      (opening) => {
        if (!opening.ok || client.destroyed) return;
        relay(client, context, route, set, this.connectTimeoutMs, opening);
      },
      (err: unknown) => {
        publishUpstreamError(context, err instanceof Error ? err : new Error(String(err)));
        client.destroy();
      },
    );
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
function connectUpstream(up: Upstream, header: Buffer | undefined, alpn: string | undefined, timeoutMs: number, done: (result: Connected | Error) => void): void {
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
      // The protocol the client negotiated with us, offered on (the upstream may choose none).
      ...(alpn !== undefined && { ALPNProtocols: [alpn] }),
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
function relay(
  client: SecureSocket,
  context: ConnectionContext,
  route: TcpRouteConfig,
  set: UpstreamSet,
  connectTimeoutMs: number,
  opening: { readonly first: Buffer | undefined; readonly filters: SessionFilters | undefined },
): void {
  const listener = context.listener.name;
  const alpn = typeof client.alpnProtocol === 'string' ? client.alpnProtocol : undefined;
  let header: Buffer | undefined;
  try {
    header = buildProxyHeader(client, context, route.proxyHeader);
  } catch (err) {
    publishUpstreamError(context, new Error(`cannot build the PROXY header: ${(err as Error).message}`));
    client.destroy();
    return;
  }
  const retries = route.upstreams.retries;
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
    connectUpstream(choice.upstream, header, alpn, connectTimeoutMs, (result) => {
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
      if (opening.first !== undefined) result.stream.write(opening.first);
      pipe(client, result, release, opening.filters);
    });
  };
  next(undefined);
}

/** The session: both directions with backpressure and half-close, through the binding's filters when it has them; `release` when either side closes. */
function pipe(client: SecureSocket, { tcp, stream }: Connected, release: () => void, filters: SessionFilters | undefined): void {
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
  if (filters === undefined) {
    client.pipe(stream);
    stream.pipe(client);
  } else {
    // A fatal packet (bad framing, over the size limit) ends the whole session.
    for (const filter of [filters.fromClient, filters.fromServer]) filter.on('error', () => client.destroy());
    client.pipe(filters.fromClient).pipe(stream);
    stream.pipe(filters.fromServer).pipe(client);
  }
  client.resume();
}
