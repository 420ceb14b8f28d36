/**
 * TCP mode: a full-duplex pipe from the verified TLS connection to the
 * upstream (plain TCP or re-originated TLS), with backpressure and
 * half-close, preceded by an optional PROXY v1/v2 header written in one
 * write before any payload.
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { ConnectionContext } from '../connection/forwarder.js';
import type { ForwardingObserver } from '../connection/listener.js';
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

/** The PROXY header for this connection per the route's configuration, or undefined for none. */
export function buildProxyHeader(socket: tls.TLSSocket, context: ConnectionContext): Buffer | undefined {
  const config = context.route.proxyHeader;
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

export function forwardTcp(client: tls.TLSSocket, context: ConnectionContext, observer: ForwardingObserver = {}): void {
  const listener = context.listener.name;
  const onUpstreamError = (_message: string): void => observer.upstreamFailed?.(listener);
  const started = performance.now();
  client.once('close', () => observer.bytesRelayed?.(listener, client.bytesRead, client.bytesWritten));
  const up = context.route.upstream;
  let header: Buffer | undefined;
  try {
    header = buildProxyHeader(client, context);
  } catch (err) {
    onUpstreamError(`cannot build PROXY header: ${(err as Error).message}`);
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
    observer.upstreamConnected?.(listener, (performance.now() - started) / 1000);
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
      if (!connected) onUpstreamError(`${up.url}: ${err.message}`);
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
