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
  /** http/https/h2c for HTTP mode (h2c: cleartext HTTP/2 with prior knowledge); tcp/tls for TCP mode. */
  readonly protocol: 'http' | 'https' | 'h2c' | 'tcp' | 'tls';
  readonly host: string;
  readonly port: number;
  /** The original URL text, for logs. */
  readonly url: string;
  /** Unique within its route: the metric label and the access log's `upstream` (default: host:port, [v6]:port). */
  readonly name: string;
  /** https:// only: the upstream speaks HTTP/2 (ALPN h2; routes[].upstreamHttp2); h2c:// is always HTTP/2. */
  readonly http2: boolean;
  readonly tls: UpstreamTls | undefined;
}

/** How a route spreads requests (HTTP) or connections (TCP) over its upstreams. */
export const BALANCE_POLICIES = ['round-robin', 'least-requests'] as const;
export type BalancePolicy = (typeof BALANCE_POLICIES)[number];

/** Passive health: an upstream that fails `failures` times in a row is ejected for ejectMs, doubling on each ejection in a row up to maxEjectMs. */
export interface PassiveHealthConfig {
  readonly failures: number;
  readonly ejectMs: number;
  readonly maxEjectMs: number;
}

/** Active health checks: every intervalMs, an HTTP GET of `path` (healthy: 2xx/3xx within timeoutMs) or a TCP (TLS for https/tls upstreams) connect. */
export interface ActiveHealthConfig {
  readonly type: 'http' | 'tcp';
  /** http only; origin-form ('/healthz'). */
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Checks passed in a row to readmit an unhealthy upstream. */
  readonly healthyThreshold: number;
  /** Checks failed in a row to take it out. */
  readonly unhealthyThreshold: number;
}

/** A route's upstreams (one or more) and how they are chosen. */
export interface UpstreamPoolConfig {
  /** At least one; names unique. */
  readonly targets: readonly Upstream[];
  readonly balance: BalancePolicy;
  /** undefined: passive health off. */
  readonly passiveHealth: PassiveHealthConfig | undefined;
  /** undefined: no active checks. */
  readonly healthCheck: ActiveHealthConfig | undefined;
  /** Other upstreams tried after a failure that never reached one (HTTP: see README; TCP: connect failover). 0 = none. */
  readonly retries: number;
}

/** One per-path authorisation rule (HTTP mode), evaluated after DANE; the first rule whose path and method match decides. */
export interface PathRuleConfig {
  /** '/exact', '/prefix/*' (the prefix itself and anything below it) or '*' (every path). */
  readonly path: string;
  /** Upper-case methods; undefined = every method. */
  readonly methods: readonly string[] | undefined;
  /** Verified names allowed (exact names or '*.suffix' / 'label-*.suffix' single-label patterns, canonical lower case). */
  readonly allow: readonly string[];
  /** Whether an unauthenticated request (policy optional) matches this rule's allow. */
  readonly allowUnauthenticated: boolean;
}

/** A token bucket: ratePerSecond tokens per second, at most burst saved. */
export interface RateConfig {
  readonly ratePerSecond: number;
  readonly burst: number;
}

/** MQTT identity binding of a TCP route (mode: mqtt): what the CONNECT may claim and what the broker is told. */
export interface MqttBindingConfig {
  /** require-identity: the client id must be the verified name; prefix-identity: the name, or the name + '/' or ':' + anything; any: unchecked. An empty client id becomes the name (not under any). */
  readonly clientId: 'require-identity' | 'prefix-identity' | 'any';
  /** identity: the broker sees the verified name as the username; keep: the client's own. */
  readonly username: 'identity' | 'keep';
  readonly password: 'keep' | 'drop';
  /** Largest CONNECT packet read (bytes, fixed header included). */
  readonly maxConnectBytes: number;
  /** How long a client has after the handshake to send its whole CONNECT. */
  readonly connectTimeoutMs: number;
}

/** Where a RADSEC route puts the verified name: a Vendor-Specific sub-attribute or a plain attribute. */
export type RadiusIdentityAttribute = { readonly kind: 'vsa'; readonly vendorId: number; readonly vendorType: number } | { readonly kind: 'attribute'; readonly type: number };

/** RADSEC identity binding of a TCP route (mode: radsec). */
export interface RadiusBindingConfig {
  /** The RADSEC shared secret (RFC 6614: "radsec"), used to check the peer's packets and to sign ours. Secret: never logged. */
  readonly secret: string;
  readonly identityAttribute: RadiusIdentityAttribute;
  /** Largest RADIUS packet accepted either way (4096, RFC 2865; up to 65535 with RFC 7930). */
  readonly maxPacketBytes: number;
}

/** What a TCP route understands of the bytes it relays: nothing, MQTT's CONNECT, or RADIUS packets. */
export type ProtocolBinding = { readonly kind: 'none' } | { readonly kind: 'mqtt'; readonly mqtt: MqttBindingConfig } | { readonly kind: 'radius'; readonly radius: RadiusBindingConfig };

export interface ProxyHeaderConfig {
  readonly version: 'none' | 'v1' | 'v2';
  /** PROXY v2 custom TLV types (0xE0–0xEF / 0xF0–0xF7). */
  readonly tlvTypes: { readonly name: number; readonly certHash: number; readonly tlsa: number };
  readonly crc32c: boolean;
  /** Largest v2 header sent (Mosquitto 2.1 reads at most 500 bytes): optional TLVs are left out, in a fixed order, to stay within it. */
  readonly maxHeaderBytes: number;
}

/** A route of either mode (what the connection pipeline needs); an HTTP-mode route is exactly this. */
export interface RouteConfig {
  /** SNI names this route serves (canonical; may start with '*.'); empty = the default route. */
  readonly serverNames: readonly string[];
  readonly upstreams: UpstreamPoolConfig;
  readonly allowlist: Allowlist;
  /** Where the allowlist came from: 'listeners[0].routes[1].allow' or the file path. */
  readonly allowlistSource: string;
  readonly identity: RouteIdentity;
  /** TCP mode: the route serves only connections that negotiated one of these ALPN protocols; undefined: any (or none). */
  readonly alpn: readonly string[] | undefined;
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

/** An HTTP-mode route: a RouteConfig plus per-path rules. */
export interface HttpRouteConfig extends RouteConfig {
  /** Empty: every path is open to every client the route admitted. Otherwise a request no rule matches is refused (path-not-allowed). */
  readonly rules: readonly PathRuleConfig[];
}

/** A TCP-mode route: the identity travels to the upstream in a PROXY header (or not at all). */
export interface TcpRouteConfig extends RouteConfig {
  readonly proxyHeader: ProxyHeaderConfig;
  readonly binding: ProtocolBinding;
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
  /** ALPN protocols offered to clients, most preferred first: a non-empty subset of ['h2', 'http/1.1']. */
  readonly alpn: readonly ('h2' | 'http/1.1')[];
  readonly http2: Http2InboundConfig;
  /** Per verified identity (per client address when unauthenticated), per listener; undefined = off. Past it: 429 + Retry-After. */
  readonly requestRatePerIdentity: RateConfig | undefined;
  readonly accessLog: AccessLogConfig;
}

/** Limits of inbound HTTP/2 sessions. */
export interface Http2InboundConfig {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we announce (and enforce). */
  readonly maxConcurrentStreams: number;
  /** Streams a client may reset (RST_STREAM, or streams we had to refuse) per second before the session gets GOAWAY ENHANCE_YOUR_CALM (CVE-2023-44487). */
  readonly maxResetsPerSecond: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: bytes of one header block (HEADERS + CONTINUATION), decoded. */
  readonly maxHeaderListBytes: number;
}

/** One JSON line per request through the process logger. */
export interface AccessLogConfig {
  readonly enabled: boolean;
  /** Fraction of requests logged, 0–1 (1 = every one). */
  readonly sampleRate: number;
  /** Log the query string with the path (off by default: queries often carry secrets). */
  readonly includeQuery: boolean;
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
  /** TCP keepalive on client sockets (probes after this long idle); undefined: off. */
  readonly tcpKeepAlive: { readonly initialDelayMs: number } | undefined;
  /** Re-checking established connections when their TLSA answer expires. */
  readonly revalidate: RevalidateConfig;
}

/**
 * Revalidation of established connections: when a connection's TLSA answer expires (clamped to
 * [floorMs, ceilingMs], plus up to jitterMs), its name is looked up again and the certificate
 * matched again; a revoked record or an expired certificate closes it, a lookup that fails for
 * graceMs in a row too.
 */
export interface RevalidateConfig {
  readonly mode: 'ttl' | 'off';
  readonly floorMs: number;
  readonly ceilingMs: number;
  readonly jitterMs: number;
  readonly graceMs: number;
}

/** HTTP mode: requests are forwarded with the identity in headers. */
export interface HttpListenerConfig extends ListenerBase {
  readonly mode: 'http';
  readonly http: HttpModeConfig;
  readonly routes: readonly HttpRouteConfig[];
}

/** TCP mode: a byte pipe, the identity in an optional PROXY header. */
export interface TcpListenerConfig extends ListenerBase {
  readonly mode: 'tcp';
  /** What the operator wrote: tcp, or mqtt/radsec (TCP mode with that binding on every route). */
  readonly protocol: 'tcp' | 'mqtt' | 'radsec';
  /** ALPN protocols offered, most preferred first; undefined: no ALPN. */
  readonly alpn: readonly string[] | undefined;
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
