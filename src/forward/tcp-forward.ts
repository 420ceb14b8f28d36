/**
 * TCP mode: a full-duplex pipe from the verified TLS connection to the
 * upstream (plain TCP or re-originated TLS), with backpressure and
 * half-close, preceded by an optional PROXY v1/v2 header written in one
 * write before any payload. The connect time, a failure to reach the
 * upstream (with the connection's identity) and the bytes relayed are
 * published on the upstream channels (see channels.ts).
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { ProxyHeaderConfig, RouteConfig, TcpListenerConfig } from '../config/types.js';
import type { ConnectionContext, Forwarder } from '../connection/forwarder.js';
import type { SecureSocket } from '../tls/secure-socket.js';
import { ByteMeter, type MeterOptions } from './byte-meter.js';
import { upstreamConnectChannel } from './channels.js';
import { publishUpstreamError } from './upstream-failure.js';
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

/** The forwarder of a TCP-mode listener: each decided connection is piped to its route's upstream. */
export class TcpForwarder implements Forwarder {
  readonly alpn = undefined;
  readonly forwardsUnauthenticated = false;
  /** A TCP client learns of a refusal from the TLS alert (native engine) or the closed connection. */
  readonly answersRefusals = false;
  /** The PROXY header settings of each route of this listener (the pipeline's context names the route). */
  private readonly proxyHeaders: ReadonlyMap<RouteConfig, ProxyHeaderConfig>;
  private readonly meter: ByteMeter;

  constructor(
    private readonly listener: TcpListenerConfig,
    options: MeterOptions = {},
  ) {
    this.proxyHeaders = new Map(listener.routes.map((route) => [route, route.proxyHeader]));
    this.meter = new ByteMeter(listener.name, options.bytesIntervalMs);
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
    relay(client, context, proxyHeader);
  }

  /** A TCP client learns nothing more than the closed connection. */
  refuse(socket: SecureSocket): void {
    socket.destroy();
  }

  /** A byte stream has no request boundary to stop at: sessions run until they end (or the listener's drain deadline). */
  drain(): void {}

  close(): void {
    this.meter.close();
  }
}

/** Pipe one decided connection to its upstream. */
function relay(client: SecureSocket, context: ConnectionContext, proxyHeader: ProxyHeaderConfig): void {
  const listener = context.listener.name;
  const started = performance.now();
  const up = context.route.upstream;
  let header: Buffer | undefined;
  try {
    header = buildProxyHeader(client, context, proxyHeader);
  } catch (err) {
    publishUpstreamError(context, new Error(`cannot build the PROXY header: ${(err as Error).message}`));
    client.destroy();
    return;
  }
  // The PROXY header goes first on the TCP connection, before any TLS (as HAProxy's send-proxy
  // does and FreeRADIUS's RadSec listener expects); then the upstream TLS handshake, if any.
  const tcp = net.connect({ host: up.host, port: up.port, allowHalfOpen: true });
  let upstream: net.Socket = tcp;
  let connected = false;
  // Connect (and upstream TLS handshake) deadline; afterwards the client side's idle timeout governs.
  const deadline = setTimeout(() => {
    if (!connected) upstream.destroy(new Error(`no connection within ${UPSTREAM_CONNECT_TIMEOUT_MS} ms`));
  }, UPSTREAM_CONNECT_TIMEOUT_MS);
  deadline.unref();
  const ready = (): void => {
    connected = true;
    clearTimeout(deadline);
    upstreamConnectChannel.publish({ listener, seconds: (performance.now() - started) / 1000 });
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  };
  tcp.once('connect', () => {
    if (header) tcp.write(header);
    if (up.protocol !== 'tls') return ready();
    const secured = tls.connect({
      socket: tcp,
      servername: up.tls?.serverName ?? (net.isIP(up.host) ? undefined : up.host),
      ca: up.tls?.caPem,
      cert: up.tls?.certPem,
      key: up.tls?.keyPem,
    });
    upstream = secured;
    wire(secured);
    secured.once('secureConnect', ready);
  });
  const wire = (socket: net.Socket): void => {
    socket.on('error', (err) => {
      // Before the pipe is up, the upstream failed the connection (once: the client is destroyed right after,
      // so the other socket of a TLS upstream does not report it again). After, a reset is the session's end.
      if (!connected && !client.destroyed) publishUpstreamError(context, err);
      client.destroy();
    });
    client.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (!client.destroyed && client.writableEnded !== true) client.end();
      setTimeout(() => client.destroy(), 5000).unref();
    });
    client.on('close', () => socket.destroy());
    socket.setNoDelay(true);
  };
  wire(tcp);
}
