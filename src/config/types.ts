/**
 * The validated, resolved configuration the proxy runs on. The YAML file
 * (src/config/load.ts) is parsed, checked and turned into these types: file
 * contents are read, defaults applied, names canonicalised. Nothing here is
 * raw user input any more.
 */
import type { Allowlist } from '../allowlist/allowlist.js';
import type { TlsaCacheOptions } from '../lookup/cache.js';
import type { ParsedCertificate } from '../dane/certificate.js';
import type { ResolverServer } from '../dns/resolver.js';
import type { TlsaRecord } from '../dane/tlsa.js';
import type { AdmissionLimits } from '../ratelimit/admission.js';
import type { ResolverGateOptions } from '../lookup/resolver-gate.js';

export type ListenerMode = 'http' | 'tcp';
export type AuthPolicy = 'required' | 'optional';
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

export interface ResolverConfig {
  /** May be empty only when localTlsa is set. */
  readonly servers: readonly ResolverServer[];
  readonly attemptTimeoutMs: number;
  readonly totalTimeoutMs: number;
  readonly allowRemotePlainResolver: boolean;
  /** Records the operator trusts directly (pinning, air-gapped sites, the demo), by canonical owner name; `*.suffix` owners are wildcards. */
  readonly localTlsa: ReadonlyMap<string, readonly TlsaRecord[]> | undefined;
  readonly localTlsaFile: string | undefined;
  readonly cache: Required<TlsaCacheOptions>;
  /** Does the resolver validate DNSSEC? Checked at start and by /readyz (src/lookup/validation-probe.ts). */
  readonly validationProbe: {
    /** Canonical name to probe; undefined: one per allowlisted zone, up to 8 (probeNames). */
    readonly name: string | undefined;
    /** When the resolver does not validate at start: refuse to start (default) or warn and serve. */
    readonly atStart: 'refuse' | 'warn';
  };
}

export interface ServerCertificate {
  readonly certPem: string;
  /** Secret: never logged. */
  readonly keyPem: string;
  /** SNI names this certificate serves (canonical, may start with '*.'); empty = default certificate. */
  readonly serverNames: readonly string[];
  readonly certFile: string;
}

export interface UpstreamTls {
  readonly caPem: string | undefined;
  readonly certPem: string | undefined;
  readonly keyPem: string | undefined;
  readonly serverName: string | undefined;
}

export interface Upstream {
  /** http/https for HTTP mode; tcp/tls for TCP mode. */
  readonly protocol: 'http' | 'https' | 'tcp' | 'tls';
  readonly host: string;
  readonly port: number;
  /** The original URL text, for logs. */
  readonly url: string;
  readonly tls: UpstreamTls | undefined;
}

export interface ProxyHeaderConfig {
  readonly version: 'none' | 'v1' | 'v2';
  /** PROXY v2 custom TLV types (0xE0–0xEF / 0xF0–0xF7). */
  readonly tlvTypes: { readonly name: number; readonly certHash: number; readonly tlsa: number };
  readonly crc32c: boolean;
}

/** A route of either mode (what the connection pipeline needs); an HTTP-mode route is exactly this. */
export interface RouteConfig {
  /** SNI names this route serves (canonical; may start with '*.'); empty = the default route. */
  readonly serverNames: readonly string[];
  readonly upstream: Upstream;
  readonly allowlist: Allowlist;
  /** Where the allowlist came from: 'listeners[0].routes[1].allow' or the file path. */
  readonly allowlistSource: string;
  readonly identity: RouteIdentity;
}

/**
 * Where a client's name may come from, in this order of precedence:
 * - certificate-extension: dane_clientid in the end-entity entry of the TLS 1.3 Certificate message (draft-ietf-dance-client-auth-13; native engine only);
 * - clienthello-extension: dane_clientid in the ClientHello (draft-ietf-dance-tls-clientid-07);
 * - san: the one allowlisted SAN dNSName of the certificate (compatibility; -11 and later dropped it).
 */
export const IDENTITY_SOURCE_NAMES = ['certificate-extension', 'clienthello-extension', 'san'] as const;
export type IdentitySourceName = (typeof IDENTITY_SOURCE_NAMES)[number];

export interface RouteIdentity {
  /** The sources this route accepts, in precedence order (a subset of IDENTITY_SOURCE_NAMES). */
  readonly sources: readonly IdentitySourceName[];
  /** Draft -13 strict: TLS 1.3 only, the Certificate extension only, every DANE failure handshake_failure (native engine only). */
  readonly strict: boolean;
}

/** Which TLS implementation a listener runs: the native engine when it loads (auto), node:tls, or the native engine or no start. */
export const TLS_ENGINES = ['auto', 'node', 'native'] as const;
export type TlsEngineChoice = (typeof TLS_ENGINES)[number];

/** A TCP-mode route: the identity travels to the upstream in a PROXY header (or not at all). */
export interface TcpRouteConfig extends RouteConfig {
  readonly proxyHeader: ProxyHeaderConfig;
}

export interface HttpModeConfig {
  /** Header carrying the verified name. */
  readonly identityHeader: string;
  /** Header carrying the authentication status under policy 'optional' ("authenticated" or the refusal reason). */
  readonly statusHeader: string;
  /** RFC 9440 Client-Cert. */
  readonly forwardClientCert: boolean;
  /** Envoy-style X-Forwarded-Client-Cert element. */
  readonly forwardXfcc: boolean;
  /** Header with the matched TLSA parameters ("3 1 1"); undefined = off. */
  readonly tlsaHeader: string | undefined;
  /** Answer a refused client with 403 and a short reason (true) or just close (false). */
  readonly refuseWith403: boolean;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Upstream connections (= requests in flight) per route. */
  readonly upstreamConnections: number;
  /** Upstream requests in flight or waiting per verified identity (or client address when unauthenticated), per route. */
  readonly upstreamMaxPerClient: number;
  /** Longest wait for a free upstream connection before 503 + Retry-After. */
  readonly upstreamQueueTimeoutMs: number;
}

export interface InboundProxyProtocol {
  readonly versions: 'v1' | 'v2' | 'any';
  /** Only connections from these networks may (and must) send a PROXY header. */
  readonly trustedCidrs: readonly string[];
}

/** What listeners of every mode have. */
export interface ListenerBase {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly mode: ListenerMode;
  readonly certificates: readonly ServerCertificate[];
  readonly minVersion: TlsVersion;
  readonly engine: TlsEngineChoice;
  readonly policy: AuthPolicy;
  readonly daneClientIdType: number;
  readonly maxClientHelloBytes: number;
  readonly clientHelloTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Longest life of an established connection; undefined = unlimited. */
  readonly maxLifetimeMs: number | undefined;
  /** CA bundle for PKIX-TA/PKIX-EE records. */
  readonly pkixRoots: readonly ParsedCertificate[];
  readonly inboundProxyProtocol: InboundProxyProtocol | undefined;
  readonly routes: readonly RouteConfig[];
}

/** HTTP mode: requests are forwarded with the identity in headers. */
export interface HttpListenerConfig extends ListenerBase {
  readonly mode: 'http';
  readonly http: HttpModeConfig;
}

/** TCP mode: a byte pipe, the identity in an optional PROXY header. */
export interface TcpListenerConfig extends ListenerBase {
  readonly mode: 'tcp';
  /** A TCP backend has nowhere to learn that a client is unauthenticated. */
  readonly policy: 'required';
  readonly routes: readonly TcpRouteConfig[];
}

/** A listener, by mode: only the forwarder factory and the config loader look at `mode`. */
export type ListenerConfig = HttpListenerConfig | TcpListenerConfig;

export interface LimitsConfig extends AdmissionLimits {
  /** undefined: the resolver gate is off (only for comparison benchmarks). */
  readonly resolverGate: ResolverGateOptions | undefined;
}

export interface LogConfig {
  readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'silent';
  /** 'stdout', 'stderr' or an absolute file path. */
  readonly destination: string;
}

export interface AdminConfig {
  readonly host: string;
  readonly port: number;
}

export interface DancegateConfig {
  /** Absolute path of the file it came from. */
  readonly source: string;
  /** Number of worker processes (1 = no cluster). */
  readonly workers: number;
  /** undefined = no admin listener. */
  readonly admin: AdminConfig | undefined;
  readonly log: LogConfig;
  readonly shutdown: { readonly drainTimeoutMs: number };
  /** Reload when the configuration file changes (besides SIGHUP). */
  readonly watchConfig: boolean;
  readonly resolver: ResolverConfig;
  readonly limits: LimitsConfig;
  readonly listeners: readonly ListenerConfig[];
}
