/**
 * Which resolvers dancegate asks and how: server addresses and transports,
 * deadlines and their limits, and the checks on them. Generic DNS, nothing
 * TLSA-specific (the exchange is in exchange.ts, TLSA in src/lookup/).
 */
import * as net from 'node:net';

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
  /** Deadline for the whole exchange across servers and retries, ms. */
  readonly totalTimeoutMs?: number;
  /** Accept plain UDP/TCP to a resolver that is not on loopback (its AD bit can be forged on the path). */
  readonly allowRemotePlainResolver?: boolean;
}

export const DEFAULT_ATTEMPT_TIMEOUT_MS = 2000;
export const DEFAULT_TOTAL_TIMEOUT_MS = 5000;

/**
 * The one set of bounds on resolver settings: the configuration schema
 * (src/config/load.ts) and validateResolverOptions both use these, so a
 * file `config check` accepts is one `serve` accepts.
 */
export const RESOLVER_LIMITS = {
  attemptTimeoutMs: { min: 1, max: 60_000 },
  totalTimeoutMs: { min: 1, max: 60_000 },
  servers: { min: 1, max: 16 },
} as const;

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

/** "udp://127.0.0.1:53", "tls://[::1]:853": a server as details and errors name it. */
export function describeServer(server: ResolverServer): string {
  const host = server.host.includes(':') ? `[${server.host}]` : server.host;
  return `${server.transport}://${host}:${server.port}`;
}

/** Check a resolver configuration; throws ResolverConfigError naming the offending server or setting. */
export function validateResolverOptions(options: ResolverOptions): void {
  const { min: minServers, max: maxServers } = RESOLVER_LIMITS.servers;
  if (options.servers.length < minServers) throw new ResolverConfigError('resolver: at least one server is required');
  if (options.servers.length > maxServers) {
    throw new ResolverConfigError(`resolver: ${options.servers.length} servers; at most ${maxServers} are allowed`);
  }
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
  for (const key of ['attemptTimeoutMs', 'totalTimeoutMs'] as const) {
    const value = options[key];
    const { min, max } = RESOLVER_LIMITS[key];
    if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) {
      throw new ResolverConfigError(`resolver ${key}: must be a number of milliseconds from ${min} to ${max}`);
    }
  }
  if (options.attemptTimeoutMs !== undefined && options.totalTimeoutMs !== undefined && options.totalTimeoutMs < options.attemptTimeoutMs) {
    throw new ResolverConfigError(`resolver totalTimeoutMs: must be at least attemptTimeoutMs (${options.attemptTimeoutMs})`);
  }
}
