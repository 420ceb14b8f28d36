/**
 * Loading dancegate.yaml: YAML → schema check (zod; unknown keys are errors,
 * so a typo never silently falls back to a default) → cross-field checks →
 * the files it names are read and checked (certificates against their keys,
 * CA bundles, allowlist files, the local TLSA file) → the resolved
 * DancegateConfig. Every problem is reported with its key path and what was
 * expected; all schema problems are reported at once.
 *
 * Relative paths in the file are relative to the directory of the file.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import * as net from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import * as tls from 'node:tls';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { Allowlist, AllowlistError, canonicalizePattern } from '../allowlist/allowlist.js';
import { CACHE_DEFAULTS } from '../lookup/cache.js';
import { parseCertificates, type ParsedCertificate } from '../dane/certificate.js';
import { canonicalizeClientName } from '../dane/name.js';
import { canonicalIpAddress, DEFAULT_ATTEMPT_TIMEOUT_MS, DEFAULT_TOTAL_TIMEOUT_MS, RESOLVER_LIMITS, ResolverConfigError, validateResolverOptions, type ResolverServer } from '../dns/resolver.js';
import { DEFAULT_DANE_CLIENTID_TYPE, DEFAULT_MAX_CLIENT_HELLO_BYTES } from '../protocol/client-hello.js';
import { ADMISSION_DEFAULTS } from '../ratelimit/admission.js';
import { RESOLVER_GATE_DEFAULTS } from '../lookup/resolver-gate.js';
import { LocalTlsaError, loadLocalTlsa } from '../lookup/local-tlsa.js';
import { SERVER_SECURE_OPTIONS, SERVER_SIGALGS } from './tls-server-options.js';
import { headerKey, identityHeaderCollisions } from './header-name.js';
import { describeIssues } from './key-suggestion.js';
import { bindOverlap, type BindAddress } from './bind-overlap.js';
import { logFileProblem } from './log-destination.js';
import { readBoundedFile } from './bounded-file.js';
import { proxyV2FloorBytes } from '../protocol/proxy-protocol.js';
import {
  alpnOverlap,
  AlpnListSchema,
  checkAlpn,
  IdentityCapSchema,
  LISTENER_MODES,
  MqttSchema,
  RadiusSchema,
  resolveBinding,
  resolveRevalidate,
  RevalidateSchema,
  runningMode,
  TcpKeepAliveSchema,
} from './tcp-bindings.js';
import {
  BALANCE_POLICIES,
  IDENTITY_SOURCE_NAMES,
  TLS_ENGINES,
  type ActiveHealthConfig,
  type DancegateConfig,
  type HttpModeConfig,
  type HttpRouteConfig,
  type LimitsConfig,
  type ListenerConfig,
  type PathRuleConfig,
  type ProtocolBinding,
  type ProxyHeaderConfig,
  type ResolverConfig,
  type RouteConfig,
  type ServerCertificate,
  type TcpRouteConfig,
  type Upstream,
  type UpstreamPoolConfig,
  type UpstreamTls,
} from './types.js';

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Largest configuration file read. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;
/** Most bytes of a certificate, chain or key file (a full public CA bundle is about 220 KB). */
export const MAX_PKI_FILE_BYTES = 1024 * 1024;

export const LISTENER_DEFAULTS = {
  minVersion: 'TLSv1.2',
  policy: 'required',
  daneClientIdType: DEFAULT_DANE_CLIENTID_TYPE,
  maxClientHelloBytes: DEFAULT_MAX_CLIENT_HELLO_BYTES,
  clientHelloTimeoutMs: 5_000,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: { http: 120_000, tcp: 900_000 },
} as const;

export const HTTP_DEFAULTS = {
  identityHeader: 'X-Dane-Client-Id',
  statusHeader: 'X-Dane-Status',
  forwardClientCert: false,
  forwardXfcc: false,
  refuseWith403: true,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  upstreamConnections: 256,
  upstreamMaxPerClient: 64,
  upstreamQueueTimeoutMs: 5_000,
  alpn: ['h2', 'http/1.1'],
  http2: { maxConcurrentStreams: 64, maxResetsPerSecond: 100, maxHeaderListBytes: 16_384 },
  requestRatePerIdentity: undefined,
  accessLog: { enabled: true, sampleRate: 1, includeQuery: false },
} as const satisfies Omit<HttpModeConfig, 'tlsaHeader'>;

/** A route's upstream pool; passiveHealth is what `passiveHealth` omitted (or `{}`) gives, `false` switches it off. */
export const UPSTREAM_POOL_DEFAULTS = {
  balance: 'round-robin',
  passiveHealth: { failures: 5, ejectMs: 10_000, maxEjectMs: 300_000 },
  healthCheck: { path: '/', intervalMs: 5_000, timeoutMs: 2_000, healthyThreshold: 2, unhealthyThreshold: 3 },
  retries: 1,
} as const;

/** Bounds of a route's upstreams and rules. */
export const ROUTE_LIMITS = { upstreams: 32, upstreamName: 64, rules: 256, ruleMethods: 16, ruleAllow: 1024, path: 1024 } as const;

export const PROXY_V2_TLV_DEFAULTS = { nameTlv: 0xe4, certHashTlv: 0xe5, tlsaTlv: 0xe6 } as const;
/** Mosquitto 2.1's limit on a PROXY v2 header (the strictest consumer we know). */
export const PROXY_V2_MAX_HEADER_DEFAULT = 500;

// ---------------------------------------------------------------------------
// Schema (shape and ranges only; meaning is checked in resolve*()).

const positiveMs = (max: number) => z.number().int().min(1).max(max);
const count = (min: number, max: number) => z.number().int().min(min).max(max);
/** A token bucket of the HTTP request rate. */
const RateSchema = z.strictObject({
  ratePerSecond: z.number().positive().max(1_000_000),
  burst: count(1, 1_000_000),
});
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Names an identity header may not take: framing, routing, hop-by-hop and credentials (taking one would open request smuggling). */
const RESERVED_HEADERS = new Set([
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'cookie',
  'authorization',
  'proxy-authorization',
  'x-forwarded-for',
  'x-forwarded-proto',
  'forwarded',
]);
const headerName = z
  .string()
  .regex(HEADER_NAME, 'expected an HTTP header name (token characters only)')
  .refine((n) => !RESERVED_HEADERS.has(headerKey(n)), 'is a header dancegate or HTTP itself needs (framing, routing or credentials); choose another name');
const nonEmpty = z.string().min(1);
/** PROXY v2 TLV types reserved for custom use (0xE0–0xEF) or experiments (0xF0–0xF7). */
const customTlv = z
  .number()
  .int()
  .refine((n) => (n >= 0xe0 && n <= 0xef) || (n >= 0xf0 && n <= 0xf7), 'expected a custom TLV type 0xE0–0xEF or 0xF0–0xF7');

const ServerSchema = z.strictObject({
  address: nonEmpty,
  transport: z.enum(['udp', 'tcp', 'tls']).default('udp'),
  tlsServerName: nonEmpty.optional(),
  tlsCaFile: nonEmpty.optional(),
});

const CacheSchema = z.strictObject({
  maxEntries: z.number().int().min(1).max(10_000_000).optional(),
  maxPositiveTtlSeconds: z.number().int().min(0).max(86_400).optional(),
  minNegativeTtlSeconds: z.number().int().min(0).max(86_400).optional(),
  maxNegativeTtlSeconds: z.number().int().min(0).max(86_400).optional(),
  defaultNegativeTtlSeconds: z.number().int().min(0).max(86_400).optional(),
  failureTtlSeconds: z.number().int().min(0).max(3_600).optional(),
  maxTlsaRecords: z.number().int().min(1).max(256).optional(),
});

/** A resolver deadline within the resolver's own limits (RESOLVER_LIMITS): `config check` refuses exactly what `serve` would. */
const resolverMs = (limit: { readonly min: number; readonly max: number }) => {
  const message = `expected a whole number of milliseconds from ${limit.min} to ${limit.max}`;
  return z.number(message).int(message).min(limit.min, message).max(limit.max, message);
};

const ResolverSchema = z.strictObject({
  servers: z.array(ServerSchema).max(RESOLVER_LIMITS.servers.max, `expected at most ${RESOLVER_LIMITS.servers.max} servers`).default([]),
  attemptTimeoutMs: resolverMs(RESOLVER_LIMITS.attemptTimeoutMs).default(DEFAULT_ATTEMPT_TIMEOUT_MS),
  totalTimeoutMs: resolverMs(RESOLVER_LIMITS.totalTimeoutMs).default(DEFAULT_TOTAL_TIMEOUT_MS),
  allowRemotePlainResolver: z.boolean().default(false),
  localTlsaFile: nonEmpty.optional(),
  cache: CacheSchema.default({}),
  validationProbe: z
    .strictObject({
      name: nonEmpty.optional(),
      atStart: z.enum(['refuse', 'warn']).default('refuse'),
    })
    .default({ atStart: 'refuse' }),
});

const CertificateSchema = z.strictObject({
  certFile: nonEmpty,
  keyFile: nonEmpty,
  serverNames: z.array(nonEmpty).default([]),
});

const TlsSchema = z.strictObject({
  certificates: z.array(CertificateSchema).min(1, 'expected at least one certificate'),
  minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default(LISTENER_DEFAULTS.minVersion),
  pkixCaFile: nonEmpty.optional(),
  engine: z.enum(TLS_ENGINES).default('auto'),
});

const HttpSchema = z.strictObject({
  identityHeader: headerName.default(HTTP_DEFAULTS.identityHeader),
  statusHeader: headerName.default(HTTP_DEFAULTS.statusHeader),
  forwardClientCert: z.boolean().default(HTTP_DEFAULTS.forwardClientCert),
  forwardXfcc: z.boolean().default(HTTP_DEFAULTS.forwardXfcc),
  tlsaHeader: headerName.optional(),
  refuseWith403: z.boolean().default(HTTP_DEFAULTS.refuseWith403),
  headersTimeoutMs: positiveMs(600_000).default(HTTP_DEFAULTS.headersTimeoutMs),
  requestTimeoutMs: positiveMs(3_600_000).default(HTTP_DEFAULTS.requestTimeoutMs),
  upstreamConnections: z.number().int().min(1).max(65_536).default(HTTP_DEFAULTS.upstreamConnections),
  upstreamMaxPerClient: z.number().int().min(1).max(65_536).default(HTTP_DEFAULTS.upstreamMaxPerClient),
  upstreamQueueTimeoutMs: positiveMs(600_000).default(HTTP_DEFAULTS.upstreamQueueTimeoutMs),
  alpn: z
    .array(z.enum(['h2', 'http/1.1']))
    .min(1, 'expected at least one of h2, http/1.1')
    .max(2, 'expected h2, http/1.1 or both')
    .default([...HTTP_DEFAULTS.alpn]),
  http2: z
    .strictObject({
      maxConcurrentStreams: count(1, 1_000).default(HTTP_DEFAULTS.http2.maxConcurrentStreams),
      maxResetsPerSecond: count(1, 10_000).default(HTTP_DEFAULTS.http2.maxResetsPerSecond),
      maxHeaderListBytes: count(1_024, 1_048_576).default(HTTP_DEFAULTS.http2.maxHeaderListBytes),
    })
    .prefault({}),
  requestRatePerIdentity: z.union([z.literal(false), RateSchema]).default(false),
  accessLog: z
    .union([
      z.literal(false),
      z.strictObject({
        enabled: z.boolean().default(HTTP_DEFAULTS.accessLog.enabled),
        sampleRate: z.number().min(0).max(1).default(HTTP_DEFAULTS.accessLog.sampleRate),
        includeQuery: z.boolean().default(HTTP_DEFAULTS.accessLog.includeQuery),
      }),
    ])
    .default({ ...HTTP_DEFAULTS.accessLog }),
});

const UpstreamTlsSchema = z.strictObject({
  caFile: nonEmpty.optional(),
  certFile: nonEmpty.optional(),
  keyFile: nonEmpty.optional(),
  serverName: nonEmpty.optional(),
});

/** An upstream's name: the metric label and the access log's `upstream`. */
const UPSTREAM_NAME = /^[A-Za-z0-9_.:[\]-]{1,64}$/;
const UPSTREAM_NAME_MESSAGE = 'expected a name of letters, digits, "_", ".", ":", "[", "]" or "-" (at most 64)';

const UpstreamEntrySchema = z.union([nonEmpty, z.strictObject({ url: nonEmpty, name: z.string().regex(UPSTREAM_NAME, UPSTREAM_NAME_MESSAGE).optional() })]);

const P = UPSTREAM_POOL_DEFAULTS;
const HealthMs = count(100, 3_600_000);

const PathRuleSchema = z.strictObject({
  path: nonEmpty,
  methods: z
    .array(nonEmpty)
    .min(1, 'expected at least one method (leave methods out for every method)')
    .max(ROUTE_LIMITS.ruleMethods, `expected at most ${ROUTE_LIMITS.ruleMethods} methods`)
    .optional(),
  allow: z.array(nonEmpty).max(ROUTE_LIMITS.ruleAllow, `expected at most ${ROUTE_LIMITS.ruleAllow} names`),
  allowUnauthenticated: z.boolean().default(false),
});

const RouteSchema = z.strictObject({
  serverNames: z.array(nonEmpty).default([]),
  upstream: nonEmpty.optional(),
  upstreams: z.array(UpstreamEntrySchema).min(1, 'expected at least one upstream').max(ROUTE_LIMITS.upstreams, `expected at most ${ROUTE_LIMITS.upstreams} upstreams`).optional(),
  upstreamHttp2: z.boolean().optional(),
  upstreamTls: UpstreamTlsSchema.optional(),
  balance: z.enum(BALANCE_POLICIES).default(P.balance),
  passiveHealth: z
    .union([
      z.literal(false),
      z.strictObject({
        failures: count(1, 1_000).default(P.passiveHealth.failures),
        ejectMs: HealthMs.default(P.passiveHealth.ejectMs),
        maxEjectMs: HealthMs.default(P.passiveHealth.maxEjectMs),
      }),
    ])
    .default({ ...P.passiveHealth }),
  healthCheck: z
    .strictObject({
      // Default by mode (http in http mode, tcp in tcp mode), applied in resolveHealthCheck.
      type: z.enum(['http', 'tcp']).optional(),
      path: z.string().optional(),
      intervalMs: HealthMs.default(P.healthCheck.intervalMs),
      timeoutMs: count(1, 3_600_000).default(P.healthCheck.timeoutMs),
      healthyThreshold: count(1, 100).default(P.healthCheck.healthyThreshold),
      unhealthyThreshold: count(1, 100).default(P.healthCheck.unhealthyThreshold),
    })
    .optional(),
  retries: count(0, 10).default(P.retries),
  rules: z.array(PathRuleSchema).max(ROUTE_LIMITS.rules, `expected at most ${ROUTE_LIMITS.rules} rules`).optional(),
  allow: z.array(nonEmpty).optional(),
  allowFile: nonEmpty.optional(),
  identitySources: z.array(z.enum(IDENTITY_SOURCE_NAMES)).min(1, 'expected at least one of certificate-extension, clienthello-extension, san').optional(),
  strict: z.boolean().default(false),
  proxyHeader: z.enum(['none', 'v1', 'v2']).default('none'),
  alpn: AlpnListSchema.optional(),
  mqtt: MqttSchema.optional(),
  radius: RadiusSchema.optional(),
  proxyV2: z
    .strictObject({
      nameTlv: customTlv.default(PROXY_V2_TLV_DEFAULTS.nameTlv),
      certHashTlv: customTlv.default(PROXY_V2_TLV_DEFAULTS.certHashTlv),
      tlsaTlv: customTlv.default(PROXY_V2_TLV_DEFAULTS.tlsaTlv),
      crc32c: z.boolean().default(false),
      maxHeaderBytes: z.number().int().min(64).max(4096).default(PROXY_V2_MAX_HEADER_DEFAULT),
    })
    .default({ ...PROXY_V2_TLV_DEFAULTS, crc32c: false, maxHeaderBytes: PROXY_V2_MAX_HEADER_DEFAULT }),
});

const ListenerSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'expected a name of letters, digits, "_", "." or "-" (at most 63)'),
  listen: nonEmpty,
  mode: z.enum(LISTENER_MODES),
  tls: TlsSchema,
  alpn: AlpnListSchema.optional(),
  tcpKeepAlive: TcpKeepAliveSchema,
  revalidate: RevalidateSchema,
  policy: z.enum(['required', 'optional']).default(LISTENER_DEFAULTS.policy),
  daneClientIdType: z
    .number()
    .int()
    .min(1)
    .max(65535)
    .refine(
      (n) => n >= 60 && n !== 0xfe0d && n !== 0xff01,
      'is a registered TLS extension type (0–59, 65037 encrypted_client_hello, 65281 renegotiation_info); the default 65500 is from the Private Use range',
    )
    .default(LISTENER_DEFAULTS.daneClientIdType),
  maxClientHelloBytes: z.number().int().min(512).max(65_536).default(LISTENER_DEFAULTS.maxClientHelloBytes),
  clientHelloTimeoutMs: positiveMs(60_000).default(LISTENER_DEFAULTS.clientHelloTimeoutMs),
  handshakeTimeoutMs: positiveMs(120_000).default(LISTENER_DEFAULTS.handshakeTimeoutMs),
  idleTimeoutMs: positiveMs(7 * 86_400_000).optional(),
  maxLifetimeMs: positiveMs(365 * 86_400_000).optional(),
  proxyProtocol: z
    .strictObject({
      versions: z.enum(['v1', 'v2', 'any']).default('any'),
      trustedCidrs: z.array(nonEmpty).min(1, 'expected at least one CIDR: PROXY headers are accepted only from trusted load balancers'),
    })
    .optional(),
  http: HttpSchema.optional(),
  routes: z.array(RouteSchema).min(1, 'expected at least one route'),
});

const G = RESOLVER_GATE_DEFAULTS;
const A = ADMISSION_DEFAULTS;

const LimitsSchema = z.strictObject({
  resolverGate: z
    .strictObject({
      enabled: z.boolean().default(true),
      maxInFlight: count(1, 100_000).default(G.maxInFlight),
      maxInFlightPerZone: count(1, 100_000).default(G.maxInFlightPerZone),
      maxQueued: count(0, 1_000_000).default(G.maxQueued),
      maxQueuedPerZone: count(0, 1_000_000).default(G.maxQueuedPerZone),
      maxQueueWaitMs: positiveMs(60_000).default(G.maxQueueWaitMs),
    })
    .default({ enabled: true, ...G }),
  handshakes: z
    .strictObject({
      maxConcurrent: count(1, 10_000_000).default(A.handshakes.maxConcurrent),
      maxConcurrentPerIp: count(1, 10_000_000).default(A.handshakes.maxConcurrentPerIp),
      maxClientCertificates: count(1, 100).default(A.handshakes.maxClientCertificates),
      maxClientFlightBytes: count(4096, 1_048_576).default(A.handshakes.maxClientFlightBytes),
      // Default min(4, maxConcurrentPerIp), applied in resolveLimits.
      maxTlsHandshakesPerIp: count(1, 10_000_000).optional(),
    })
    .default({ ...A.handshakes }),
  newConnectionsPerIp: z
    .union([
      z.literal(false),
      z.strictObject({
        ratePerSecond: z.number().positive().max(1_000_000),
        burst: count(1, 10_000_000),
      }),
    ])
    .default({ ratePerSecond: 50, burst: 200 }),
  penaltyBox: z
    .union([
      z.literal(false),
      z.strictObject({
        failures: count(1, 1_000_000),
        windowMs: positiveMs(86_400_000),
        banMs: positiveMs(7 * 86_400_000),
      }),
    ])
    .default({ failures: 20, windowMs: 60_000, banMs: 60_000 }),
  maxConnectionsPerIdentity: IdentityCapSchema.optional(),
  trackedAddresses: count(1, 10_000_000).default(A.trackedAddresses),
});

const ConfigSchema = z.strictObject({
  workers: z.union([z.literal('auto'), count(1, 256)]).default(1),
  admin: z.union([z.literal(false), z.strictObject({ listen: nonEmpty.default('127.0.0.1:9901') })]).default({ listen: '127.0.0.1:9901' }),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('info'),
      destination: nonEmpty.default('stdout'),
    })
    .prefault({}),
  shutdown: z.strictObject({ drainTimeoutMs: positiveMs(3_600_000).default(30_000) }).prefault({}),
  reload: z.strictObject({ watch: z.boolean().default(false) }).prefault({}),
  resolver: ResolverSchema,
  limits: LimitsSchema.prefault({}),
  listeners: z.array(ListenerSchema).min(1, 'expected at least one listener'),
});

type RawConfig = z.infer<typeof ConfigSchema>;
type RawListener = z.infer<typeof ListenerSchema>;
type RawRoute = z.infer<typeof RouteSchema>;

// ---------------------------------------------------------------------------
// Helpers

/** `listeners[0].routes[1].allow` from a zod path. */
export function formatKeyPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out.length === 0 ? String(part) : `.${String(part)}`;
  }
  return out.length === 0 ? '(top level)' : out;
}

/** Collects problems; checks continue after one so the operator sees them all. */
class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
}

/** "host:port", "[v6]:port"; host must be an IP literal unless `allowNames`. */
export function parseHostPort(text: string, defaultPort?: number): { host: string; port: number } | string {
  let host: string;
  let portText: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracket) {
    host = bracket[1] as string;
    portText = bracket[2];
    if (!net.isIPv6(host)) return `expected an IPv6 address inside [ ], got '${host}'`;
  } else if (net.isIPv6(text)) {
    return `write an IPv6 address with a port as [${text}]:PORT`;
  } else {
    const colon = text.lastIndexOf(':');
    host = colon === -1 ? text : text.slice(0, colon);
    portText = colon === -1 ? undefined : text.slice(colon + 1);
  }
  if (host.length === 0) return 'expected HOST:PORT, the host is empty';
  if (portText === undefined) {
    if (defaultPort === undefined) return `expected HOST:PORT, got '${text}' (no port)`;
    return { host, port: defaultPort };
  }
  if (!/^\d{1,5}$/.test(portText)) return `expected a port number, got '${portText}'`;
  const port = Number(portText);
  if (port > 65535) return `port ${port} is above 65535`;
  return { host, port };
}

function isHostName(host: string): boolean {
  return host.length <= 253 && /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(host);
}

function checkCidr(text: string): string | undefined {
  const [ip, bits, extra] = text.split('/');
  if (extra !== undefined || ip === undefined) return `'${text}' is not ADDRESS/BITS`;
  const family = net.isIP(ip);
  if (family === 0) return `'${ip}' is not an IP address`;
  const max = family === 6 ? 128 : 32;
  if (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > max)) return `prefix length '${bits}' is not 0..${max}`;
  return undefined;
}

class FileReader {
  constructor(
    private readonly baseDir: string,
    private readonly problems: Problems,
  ) {}

  path(file: string): string {
    return isAbsolute(file) ? file : resolve(this.baseDir, file);
  }

  async bytes(keyPath: string, file: string): Promise<Buffer | undefined> {
    const path = this.path(file);
    try {
      return await readBoundedFile(path, MAX_PKI_FILE_BYTES);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.problems.add(keyPath, code !== undefined ? `cannot read ${path}: ${code}` : (err as Error).message);
      return undefined;
    }
  }

  /** A certificate file, PEM (one or more certificates) or DER (one); `pem` is them re-encoded as PEM, what OpenSSL is given. */
  async certificates(keyPath: string, file: string): Promise<{ pem: string; certs: ParsedCertificate[] } | undefined> {
    const data = await this.bytes(keyPath, file);
    if (data === undefined) return undefined;
    try {
      const certs = parseCertificates(data, this.path(file));
      return { pem: certs.map((c) => c.node.toString()).join(''), certs };
    } catch (err) {
      this.problems.add(keyPath, (err as Error).message);
      return undefined;
    }
  }

  /** A private key file, PEM or DER (unencrypted PKCS#8, PKCS#1 or SEC1), as PEM; the message never contains key material. */
  async privateKey(keyPath: string, file: string): Promise<string | undefined> {
    const data = await this.bytes(keyPath, file);
    if (data === undefined) return undefined;
    const pem = privateKeyPem(data);
    if (pem === undefined) this.problems.add(keyPath, `${this.path(file)} does not hold a private key (PEM or DER: unencrypted PKCS#8, PKCS#1 or SEC1)`);
    return pem;
  }
}

/** A private key given as PEM text or DER bytes, as PKCS#8 PEM; undefined when it is neither. */
function privateKeyPem(data: Buffer): string | undefined {
  const attempts: Array<() => KeyObject> = [
    () => createPrivateKey(data.toString('latin1')),
    ...(['pkcs8', 'pkcs1', 'sec1'] as const).map((type) => () => createPrivateKey({ key: data, format: 'der', type })),
  ];
  for (const attempt of attempts) {
    try {
      return attempt().export({ format: 'pem', type: 'pkcs8' }).toString();
    } catch {
      // not this encoding; try the next
    }
  }
  return undefined;
}

/** Does the private key belong to the (first) certificate? */
function keyMatchesCertificate(certPem: string, keyPem: string): boolean {
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

function canonicalServerNames(names: readonly string[], keyPath: string, problems: Problems): string[] {
  const out: string[] = [];
  names.forEach((name, i) => {
    const c = canonicalizePattern(name);
    if (!c.ok) problems.add(`${keyPath}[${i}]`, `'${name}' is not a server name: ${c.reason}`);
    else if (out.includes(c.pattern)) problems.add(`${keyPath}[${i}]`, `'${name}' is listed twice`);
    else out.push(c.pattern);
  });
  return out;
}

// ---------------------------------------------------------------------------
// Resolution

async function resolveResolver(raw: RawConfig['resolver'], files: FileReader, problems: Problems): Promise<ResolverConfig | undefined> {
  const servers: ResolverServer[] = [];
  for (const [i, s] of raw.servers.entries()) {
    const keyPath = `resolver.servers[${i}]`;
    const hp = parseHostPort(s.address, s.transport === 'tls' ? 853 : 53);
    if (typeof hp === 'string') {
      problems.add(`${keyPath}.address`, hp);
      continue;
    }
    if (net.isIP(hp.host) === 0) {
      problems.add(`${keyPath}.address`, `expected an IP address literal (the resolver must not itself need DNS), got '${hp.host}'`);
      continue;
    }
    if (s.transport !== 'tls' && (s.tlsServerName !== undefined || s.tlsCaFile !== undefined)) {
      problems.add(keyPath, `tlsServerName and tlsCaFile apply only to transport: tls (this server uses ${s.transport})`);
    }
    let tlsCa: string | undefined;
    if (s.tlsCaFile !== undefined) {
      const ca = await files.certificates(`${keyPath}.tlsCaFile`, s.tlsCaFile);
      tlsCa = ca?.pem;
    }
    // Canonical form ('0:0:0:0:0:0:0:1' -> '::1'): the address replies are compared against.
    servers.push({ host: canonicalIpAddress(hp.host) ?? hp.host, port: hp.port, transport: s.transport, tlsServerName: s.tlsServerName, tlsCa });
  }
  if (servers.length > 0) {
    try {
      validateResolverOptions({ servers, allowRemotePlainResolver: raw.allowRemotePlainResolver });
    } catch (err) {
      if (!(err instanceof ResolverConfigError)) throw err;
      problems.add('resolver.servers', `${err.message} (set resolver.allowRemotePlainResolver: true only if the path to it is protected)`);
    }
  }
  if (raw.totalTimeoutMs < raw.attemptTimeoutMs) {
    problems.add('resolver.totalTimeoutMs', `must be at least attemptTimeoutMs (${raw.attemptTimeoutMs})`);
  }
  const cache = { ...CACHE_DEFAULTS, ...raw.cache };
  if (cache.minNegativeTtlSeconds > cache.maxNegativeTtlSeconds) {
    problems.add('resolver.cache.minNegativeTtlSeconds', `must not exceed maxNegativeTtlSeconds (${cache.maxNegativeTtlSeconds})`);
  }
  let localTlsa: ResolverConfig['localTlsa'];
  let localTlsaFile: string | undefined;
  if (raw.localTlsaFile !== undefined) {
    localTlsaFile = files.path(raw.localTlsaFile);
    try {
      localTlsa = await loadLocalTlsa(localTlsaFile);
    } catch (err) {
      if (!(err instanceof LocalTlsaError)) throw err;
      // One bad line per line of the message.
      for (const problem of err.message.split('\n')) problems.add('resolver.localTlsaFile', problem);
    }
  }
  if (raw.servers.length === 0 && raw.localTlsaFile === undefined) {
    problems.add('resolver', 'expected servers (a validating resolver) or localTlsaFile, or both');
  }
  let probeName: string | undefined;
  if (raw.validationProbe.name !== undefined) {
    const probe = canonicalizeClientName(raw.validationProbe.name);
    if (probe.ok) probeName = probe.name;
    else problems.add('resolver.validationProbe.name', `${JSON.stringify(raw.validationProbe.name)} is not a DNS name: ${probe.reason}`);
  }
  return {
    servers,
    attemptTimeoutMs: raw.attemptTimeoutMs,
    totalTimeoutMs: raw.totalTimeoutMs,
    allowRemotePlainResolver: raw.allowRemotePlainResolver,
    localTlsa,
    localTlsaFile,
    cache,
    validationProbe: { name: probeName, atStart: raw.validationProbe.atStart },
  };
}

/** 'a', 'a or b', 'a, b or c'. */
function orList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1] ?? ''}`;
}

/** Upstream URL schemes by listener mode (h2c: cleartext HTTP/2 with prior knowledge). */
const UPSTREAM_SCHEMES = { http: ['http', 'https', 'h2c'], tcp: ['tcp', 'tls'] } as const;
const DEFAULT_UPSTREAM_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443, h2c: 80 };
const HOST_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** Why `host` (from a URL, IPv6 without brackets) is not an IP address or DNS host name, or undefined. */
function upstreamHostProblem(host: string): string | undefined {
  if (net.isIP(host) !== 0) return undefined;
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  const labels = name.split('.');
  if (name.length === 0 || name.length > 253 || !labels.every((l) => HOST_LABEL.test(l))) return `'${host}' is not an IP address or host name`;
  // getaddrinfo reads '10.1' or '1.2.3' as IPv4 shorthand: say what was meant instead of connecting somewhere else.
  if (/^\d+$/.test(labels[labels.length - 1] ?? '')) return `'${host}' looks like an IPv4 address but is not one (write all four parts)`;
  return undefined;
}

/** An upstream's default name: host:port, [v6]:port, the host in lower case. */
export function defaultUpstreamName(host: string, port: number): string {
  return `${net.isIPv6(host) ? `[${host}]` : host.toLowerCase()}:${port}`;
}

function resolveUpstream(text: string, mode: 'http' | 'tcp', keyPath: string, problems: Problems): Omit<Upstream, 'tls' | 'name' | 'http2'> | undefined {
  const allowed: readonly string[] = UPSTREAM_SCHEMES[mode];
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    problems.add(keyPath, `expected a URL such as ${orList(allowed.map((p) => `${p}://127.0.0.1:8080`))}, got '${text}'`);
    return undefined;
  }
  const protocol = url.protocol.replace(/:$/, '');
  if (!allowed.includes(protocol)) {
    problems.add(keyPath, `a ${mode}-mode listener forwards to ${orList(allowed.map((p) => `${p}://`))} upstreams, not ${protocol}://`);
    return undefined;
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.username || url.password) {
    problems.add(keyPath, 'expected scheme://host:port only (no path, query or credentials)');
    return undefined;
  }
  const port = url.port === '' ? DEFAULT_UPSTREAM_PORTS[protocol] : Number(url.port);
  if (port === undefined) {
    problems.add(keyPath, `a ${protocol}:// upstream needs a port`);
    return undefined;
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const badHost = upstreamHostProblem(host);
  if (badHost !== undefined) {
    problems.add(keyPath, badHost);
    return undefined;
  }
  return { protocol: protocol as Upstream['protocol'], host, port, url: text };
}

/** The TLS settings every https:// and tls:// upstream of a route uses (read once). */
async function resolveUpstreamTls(raw: RawRoute['upstreamTls'], protocols: ReadonlySet<string>, keyPath: string, files: FileReader, problems: Problems): Promise<UpstreamTls | undefined> {
  const encrypted = protocols.has('https') || protocols.has('tls');
  if (raw === undefined) return encrypted ? { caPem: undefined, certPem: undefined, keyPem: undefined, serverName: undefined } : undefined;
  if (!encrypted) {
    problems.add(keyPath, `upstreamTls applies to https:// and tls:// upstreams, not ${orList([...protocols].map((p) => `${p}://`))}`);
    return undefined;
  }
  if ((raw.certFile === undefined) !== (raw.keyFile === undefined)) {
    problems.add(keyPath, 'certFile and keyFile go together (the client certificate dancegate presents upstream)');
  }
  const ca = raw.caFile === undefined ? undefined : await files.certificates(`${keyPath}.caFile`, raw.caFile);
  const cert = raw.certFile === undefined ? undefined : await files.certificates(`${keyPath}.certFile`, raw.certFile);
  const key = raw.keyFile === undefined ? undefined : await files.privateKey(`${keyPath}.keyFile`, raw.keyFile);
  if (cert && key && !keyMatchesCertificate(cert.pem, key)) {
    problems.add(`${keyPath}.keyFile`, `the key in ${files.path(raw.keyFile ?? '')} does not belong to the certificate in ${files.path(raw.certFile ?? '')}`);
  }
  if (raw.serverName !== undefined && !isHostName(raw.serverName)) problems.add(`${keyPath}.serverName`, `'${raw.serverName}' is not a host name`);
  return { caPem: ca?.pem, certPem: cert?.pem, keyPem: key, serverName: raw.serverName };
}

/** One configured upstream before resolution, with the key paths its problems are reported at. */
interface UpstreamEntry {
  readonly url: string;
  readonly name: string | undefined;
  readonly urlPath: string;
  readonly namePath: string;
}

function upstreamEntries(raw: RawRoute, keyPath: string, problems: Problems): UpstreamEntry[] | undefined {
  if (raw.upstream !== undefined && raw.upstreams !== undefined) {
    problems.add(keyPath, 'give upstream or upstreams, not both');
    return undefined;
  }
  if (raw.upstream !== undefined) return [{ url: raw.upstream, name: undefined, urlPath: `${keyPath}.upstream`, namePath: `${keyPath}.upstream` }];
  if (raw.upstreams === undefined) {
    problems.add(keyPath, `expected upstream (one URL) or upstreams (a list of 1 to ${ROUTE_LIMITS.upstreams})`);
    return undefined;
  }
  return raw.upstreams.map((e, i) => {
    const where = `${keyPath}.upstreams[${i}]`;
    return typeof e === 'string' ? { url: e, name: undefined, urlPath: where, namePath: where } : { url: e.url, name: e.name, urlPath: `${where}.url`, namePath: `${where}.name` };
  });
}

/** A route's upstream pool: URLs, names, HTTP/2 and TLS per upstream, balance, passive and active health, retries. */
async function resolveUpstreams(raw: RawRoute, mode: 'http' | 'tcp', keyPath: string, files: FileReader, problems: Problems): Promise<UpstreamPoolConfig | undefined> {
  const entries = upstreamEntries(raw, keyPath, problems);
  let ok = entries !== undefined;
  const resolved: Array<Omit<Upstream, 'tls'>> = [];
  const names = new Map<string, number>();
  for (const [i, entry] of (entries ?? []).entries()) {
    const upstream = resolveUpstream(entry.url, mode, entry.urlPath, problems);
    if (upstream === undefined) {
      ok = false;
      continue;
    }
    const name = entry.name ?? defaultUpstreamName(upstream.host, upstream.port);
    if (!UPSTREAM_NAME.test(name)) {
      problems.add(entry.namePath, `the default name '${name}' (host:port) is longer than ${ROUTE_LIMITS.upstreamName} characters; give this upstream a name`);
      ok = false;
    }
    const other = names.get(name);
    if (other !== undefined) {
      const hint = entry.name === undefined ? ' (a name defaults to host:port; give each upstream its own name)' : '';
      problems.add(entry.namePath, `'${name}' is already the name of upstreams[${other}]${hint}`);
      ok = false;
    } else names.set(name, i);
    const http2 = upstream.protocol === 'h2c' || (upstream.protocol === 'https' && raw.upstreamHttp2 === true);
    resolved.push({ ...upstream, name, http2 });
  }
  const protocols = new Set(resolved.map((u) => u.protocol));
  if (raw.upstreamHttp2 !== undefined && mode === 'tcp') {
    problems.add(`${keyPath}.upstreamHttp2`, 'applies to http mode only (a tcp-mode route forwards bytes)');
  } else if (raw.upstreamHttp2 === true && ok && !protocols.has('https')) {
    problems.add(`${keyPath}.upstreamHttp2`, 'applies to https:// upstreams and this route has none (an h2c:// upstream always speaks HTTP/2)');
  }
  const tls = ok ? await resolveUpstreamTls(raw.upstreamTls, protocols, `${keyPath}.upstreamTls`, files, problems) : undefined;
  let passiveHealth: UpstreamPoolConfig['passiveHealth'];
  if (raw.passiveHealth !== false) {
    passiveHealth = raw.passiveHealth;
    if (passiveHealth.maxEjectMs < passiveHealth.ejectMs) problems.add(`${keyPath}.passiveHealth.maxEjectMs`, `must be at least ejectMs (${passiveHealth.ejectMs})`);
  }
  const healthCheck = resolveHealthCheck(raw.healthCheck, mode, `${keyPath}.healthCheck`, problems);
  if (!ok) return undefined;
  const encrypted = (u: Omit<Upstream, 'tls'>): boolean => u.protocol === 'https' || u.protocol === 'tls';
  return {
    targets: resolved.map((u) => ({ ...u, tls: encrypted(u) ? tls : undefined })),
    balance: raw.balance,
    passiveHealth,
    healthCheck,
    retries: raw.retries,
  };
}

/** Why `path` cannot be an active check's request target, or undefined. */
export function healthPathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return "expected a path starting with '/', such as /healthz";
  if (path.length > ROUTE_LIMITS.path) return `is longer than ${ROUTE_LIMITS.path} characters`;
  const bad = firstUnsafeCharacter(path);
  if (bad !== undefined) return `contains a space, control or non-ASCII character at position ${bad}; percent-encode it`;
  if (path.includes('#')) return "contains '#': a fragment is never sent to a server";
  return undefined;
}

/** The index of the first character outside printable ASCII (space, controls, DEL, non-ASCII), or undefined. */
function firstUnsafeCharacter(text: string): number | undefined {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) return i;
  }
  return undefined;
}

function resolveHealthCheck(raw: RawRoute['healthCheck'], mode: 'http' | 'tcp', keyPath: string, problems: Problems): ActiveHealthConfig | undefined {
  if (raw === undefined) return undefined;
  const type = raw.type ?? mode;
  if (type === 'http' && mode === 'tcp') problems.add(`${keyPath}.type`, 'a tcp-mode route has no HTTP to check: use type: tcp (a connect, with the TLS handshake for tls:// upstreams)');
  if (type === 'tcp' && raw.path !== undefined) problems.add(`${keyPath}.path`, 'applies to type: http only');
  const path = raw.path ?? UPSTREAM_POOL_DEFAULTS.healthCheck.path;
  const badPath = type === 'http' ? healthPathProblem(path) : undefined;
  if (badPath !== undefined) problems.add(`${keyPath}.path`, `${JSON.stringify(path)} ${badPath}`);
  if (raw.timeoutMs >= raw.intervalMs) problems.add(`${keyPath}.timeoutMs`, `must be less than intervalMs (${raw.intervalMs})`);
  return {
    type,
    path,
    intervalMs: raw.intervalMs,
    timeoutMs: raw.timeoutMs,
    healthyThreshold: raw.healthyThreshold,
    unhealthyThreshold: raw.unhealthyThreshold,
  };
}

const NEVER_MATCHES = 'requests with it are refused as bad-request, so this rule could never match';

/**
 * Why `path` is not a rule path ('*', '/exact' or '/prefix/*'), or
 * undefined. Rules match the percent-decoded path without its query, and
 * requests whose path is ambiguous (dot segments, '//', ';', '\', encoded
 * slashes) are refused before any rule: a rule path is written decoded, and
 * one a request could never have is refused here rather than silently never
 * matching (a deny rule that never matches would leave its path open).
 */
export function rulePathProblem(path: string): string | undefined {
  if (path === '*') return undefined;
  if (path.length > ROUTE_LIMITS.path) return `is longer than ${ROUTE_LIMITS.path} characters`;
  const bad = firstUnsafeCharacter(path);
  if (bad !== undefined) return `contains a space, control or non-ASCII character at position ${bad}`;
  if (!path.startsWith('/')) return "expected '*', '/exact' or '/prefix/*'";
  if (path.includes('?')) return "contains '?': rules match the path without its query";
  if (path.includes('#')) return "contains '#': a fragment is never sent to a server";
  if (path.includes('%')) return "contains '%': rules match the percent-decoded path, so write it decoded";
  const body = path.endsWith('/*') ? path.slice(0, -1) : path;
  if (body.includes('*')) return "'*' may only be the whole path ('*') or the last segment ('/prefix/*')";
  if (body.includes('\\')) return `contains '\\': ${NEVER_MATCHES}`;
  if (body.includes(';')) return `contains ';': ${NEVER_MATCHES}`;
  if (body.includes('//')) return `contains an empty segment ('//'): ${NEVER_MATCHES}`;
  if (body.split('/').some((s) => s === '.' || s === '..')) return `contains a dot segment ('.' or '..'): ${NEVER_MATCHES}`;
  return undefined;
}

/** RFC 9110 token characters. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A rule's identity pattern in canonical form (lower case, no trailing
 * dot): an exact name, '*.suffix' (any name strictly below, as in the
 * allowlist) or a first label with exactly one '*' ('ops-*.example.com').
 */
export function canonicalizeRuleName(pattern: string): { ok: true; pattern: string } | { ok: false; reason: string } {
  const star = pattern.indexOf('*');
  if (star === -1 || pattern === '*' || pattern.startsWith('*.')) return canonicalizePattern(pattern);
  const dot = pattern.indexOf('.');
  if (pattern.indexOf('*', star + 1) !== -1 || (dot !== -1 && star > dot)) {
    return { ok: false, reason: "'*' may appear once, in the first label only ('*.example.com', 'ops-*.example.com')" };
  }
  // Canonicalised with a letter in the star's place: lower-casing ASCII keeps every index, so the star goes back where it was.
  const name = canonicalizeClientName(`${pattern.slice(0, star)}x${pattern.slice(star + 1)}`);
  if (!name.ok) return name;
  return { ok: true, pattern: `${name.name.slice(0, star)}*${name.name.slice(star + 1)}` };
}

function resolveRules(raw: RawRoute['rules'], mode: 'http' | 'tcp', keyPath: string, problems: Problems): PathRuleConfig[] {
  if (raw === undefined) return [];
  if (mode === 'tcp') {
    problems.add(`${keyPath}.rules`, 'per-path rules are for http-mode listeners (a tcp-mode route has no paths)');
    return [];
  }
  return raw.map((rule, i) => {
    const where = `${keyPath}.rules[${i}]`;
    const badPath = rulePathProblem(rule.path);
    if (badPath !== undefined) problems.add(`${where}.path`, `${JSON.stringify(rule.path)} ${badPath}`);
    const methods = rule.methods?.filter((m, j) => {
      let bad: string | undefined;
      if (m.length > 32 || !TOKEN.test(m)) bad = 'is not an HTTP method (RFC 9110 token characters, at most 32)';
      else if (m !== m.toUpperCase()) bad = `must be upper case (methods are case-sensitive: ${m.toUpperCase()})`;
      else if (rule.methods?.indexOf(m) !== j) bad = 'is listed twice';
      if (bad !== undefined) problems.add(`${where}.methods[${j}]`, `${JSON.stringify(m)} ${bad}`);
      return bad === undefined;
    });
    const allow: string[] = [];
    rule.allow.forEach((p, j) => {
      const c = canonicalizeRuleName(p);
      if (!c.ok) problems.add(`${where}.allow[${j}]`, `${JSON.stringify(p)} is not a name pattern: ${c.reason}`);
      else if (!allow.includes(c.pattern)) allow.push(c.pattern);
    });
    return { path: rule.path, methods, allow, allowUnauthenticated: rule.allowUnauthenticated };
  });
}

/** A route as both modes need it, its per-path rules (HTTP) and PROXY header settings (TCP). */
interface ResolvedRoute {
  readonly route: RouteConfig;
  readonly rules: readonly PathRuleConfig[];
  readonly proxyHeader: ProxyHeaderConfig;
  readonly binding: ProtocolBinding;
}

async function resolveRoute(raw: RawRoute, listener: RawListener, keyPath: string, files: FileReader, problems: Problems): Promise<ResolvedRoute | undefined> {
  const serverNames = canonicalServerNames(raw.serverNames, `${keyPath}.serverNames`, problems);
  const mode = runningMode(listener.mode);
  const upstreams = await resolveUpstreams(raw, mode, keyPath, files, problems);
  const rules = resolveRules(raw.rules, mode, keyPath, problems);
  const binding = resolveBinding(raw, listener.mode, keyPath, (at, message) => problems.add(at, message));
  let allowlist: Allowlist | undefined;
  let allowlistSource = `${keyPath}.allow`;
  if ((raw.allow === undefined) === (raw.allowFile === undefined)) {
    problems.add(keyPath, 'expected exactly one of allow (a list of names and *.suffix patterns) or allowFile');
  } else {
    try {
      if (raw.allow !== undefined) {
        allowlist = Allowlist.fromList(raw.allow, `${keyPath}.allow`);
        if (raw.allow.length === 0) problems.add(`${keyPath}.allow`, 'is empty: no client could ever be authenticated on this route');
      } else if (raw.allowFile !== undefined) {
        allowlistSource = files.path(raw.allowFile);
        allowlist = await Allowlist.fromFile(allowlistSource);
      }
    } catch (err) {
      if (!(err instanceof AllowlistError)) throw err;
      for (const problem of err.problems) problems.add(raw.allow !== undefined ? `${keyPath}.allow` : `${keyPath}.allowFile`, problem);
    }
  }
  if (mode === 'http' && raw.proxyHeader !== 'none') {
    problems.add(`${keyPath}.proxyHeader`, 'PROXY headers are for tcp-mode listeners; HTTP mode forwards the identity in headers');
  }
  const v2 = raw.proxyV2;
  if (new Set([v2.nameTlv, v2.certHashTlv, v2.tlsaTlv]).size !== 3) {
    problems.add(`${keyPath}.proxyV2`, 'nameTlv, certHashTlv and tlsaTlv must be three different types');
  }
  // Default: every source; a strict route's only source is the Certificate message.
  const listed = raw.identitySources ?? (raw.strict ? ['certificate-extension'] : IDENTITY_SOURCE_NAMES);
  const identitySources = IDENTITY_SOURCE_NAMES.filter((name) => listed.includes(name));
  if (new Set(listed).size !== listed.length) problems.add(`${keyPath}.identitySources`, 'names a source twice');
  if (raw.strict && (identitySources.length !== 1 || identitySources[0] !== 'certificate-extension')) {
    problems.add(`${keyPath}.identitySources`, 'a strict route (draft -13) takes the name from the TLS 1.3 Certificate message only: [certificate-extension]');
  }
  if (raw.strict && listener.tls.engine === 'node') {
    problems.add(`${keyPath}.strict`, 'needs the native TLS engine (tls.engine: native or auto): node:tls cannot ask for dane_clientid in its CertificateRequest');
  }
  if (listener.tls.engine === 'node' && identitySources.length === 1 && identitySources[0] === 'certificate-extension') {
    problems.add(`${keyPath}.identitySources`, 'certificate-extension alone needs the native TLS engine (tls.engine: native or auto): node:tls never asks for the name');
  }
  if (upstreams === undefined || allowlist === undefined) return undefined;
  const proxyHeader: ProxyHeaderConfig = {
    version: raw.proxyHeader,
    tlvTypes: { name: v2.nameTlv, certHash: v2.certHashTlv, tlsa: v2.tlsaTlv },
    crc32c: v2.crc32c,
    maxHeaderBytes: v2.maxHeaderBytes,
  };
  if (raw.proxyHeader === 'v2') {
    // What is never left out must fit whatever the client: the addresses, ALPN, the SSL TLV with a 253-byte name, the checksum.
    const longestAlpn = Math.max(0, ...(listener.alpn ?? []).map((p) => Buffer.byteLength(p)));
    const floor = proxyV2FloorBytes(longestAlpn, v2.crc32c);
    if (floor > v2.maxHeaderBytes) {
      problems.add(
        `${keyPath}.proxyV2.maxHeaderBytes`,
        `must be at least ${floor}: the addresses, ALPN (up to ${longestAlpn} bytes), the SSL TLV with the longest name (253) and ${v2.crc32c ? 'the checksum' : 'nothing else'} are never left out`,
      );
    }
  }
  // A strict route (draft -13) with an empty allowlist or unknown sources was reported above; its order is the fixed precedence.
  const identity = { sources: raw.strict ? (['certificate-extension'] as const) : identitySources, strict: raw.strict };
  const alpn = mode === 'tcp' ? raw.alpn : undefined;
  return { route: { serverNames, upstreams, allowlist, allowlistSource, identity, alpn }, rules, proxyHeader, binding };
}

async function resolveCertificates(raw: RawListener['tls']['certificates'], keyPath: string, files: FileReader, problems: Problems, minVersion: string): Promise<ServerCertificate[]> {
  const out: ServerCertificate[] = [];
  for (const [i, c] of raw.entries()) {
    const where = `${keyPath}[${i}]`;
    const serverNames = canonicalServerNames(c.serverNames, `${where}.serverNames`, problems);
    const cert = await files.certificates(`${where}.certFile`, c.certFile);
    const key = await files.privateKey(`${where}.keyFile`, c.keyFile);
    if (cert === undefined || key === undefined) continue;
    if (!keyMatchesCertificate(cert.pem, key)) {
      problems.add(`${where}.keyFile`, `the key in ${files.path(c.keyFile)} does not belong to the first certificate in ${files.path(c.certFile)}`);
      continue;
    }
    try {
      tls.createSecureContext({ cert: cert.pem, key, minVersion: minVersion as tls.SecureVersion, secureOptions: SERVER_SECURE_OPTIONS, sigalgs: SERVER_SIGALGS });
    } catch (err) {
      problems.add(where, `OpenSSL refuses this certificate/key: ${(err as Error).message}`);
      continue;
    }
    out.push({ certPem: cert.pem, keyPem: key, serverNames, certFile: files.path(c.certFile) });
  }
  const defaults = raw.filter((c) => c.serverNames.length === 0).length;
  if (defaults > 1) problems.add(keyPath, `${defaults} certificates have no serverNames; at most one can be the default`);
  return out;
}

function resolveHttp(raw: RawListener['http']): HttpModeConfig {
  const h = raw ?? HttpSchema.parse({});
  return {
    identityHeader: h.identityHeader,
    statusHeader: h.statusHeader,
    forwardClientCert: h.forwardClientCert,
    forwardXfcc: h.forwardXfcc,
    tlsaHeader: h.tlsaHeader,
    refuseWith403: h.refuseWith403,
    headersTimeoutMs: h.headersTimeoutMs,
    requestTimeoutMs: h.requestTimeoutMs,
    upstreamConnections: h.upstreamConnections,
    upstreamMaxPerClient: h.upstreamMaxPerClient,
    upstreamQueueTimeoutMs: h.upstreamQueueTimeoutMs,
    alpn: h.alpn,
    http2: h.http2,
    requestRatePerIdentity: h.requestRatePerIdentity === false ? undefined : h.requestRatePerIdentity,
    accessLog: h.accessLog === false ? { ...HTTP_DEFAULTS.accessLog, enabled: false } : h.accessLog,
  };
}

async function resolveListener(raw: RawListener, index: number, files: FileReader, problems: Problems): Promise<ListenerConfig | undefined> {
  const keyPath = `listeners[${index}]`;
  const hp = parseHostPort(raw.listen);
  if (typeof hp === 'string') problems.add(`${keyPath}.listen`, hp);
  else if (net.isIP(hp.host) === 0) problems.add(`${keyPath}.listen`, `expected an IP address to bind (127.0.0.1, 0.0.0.0, ::), got '${hp.host}'`);
  const mode = runningMode(raw.mode);
  if (mode === 'tcp' && raw.policy === 'optional') {
    problems.add(`${keyPath}.policy`, "'optional' is for http mode only (a TCP backend has nowhere to learn the client is unauthenticated)");
  }
  if (mode === 'tcp' && raw.http !== undefined) problems.add(`${keyPath}.http`, 'applies to mode: http only');
  const report = (at: string, message: string): void => problems.add(at, message);
  checkAlpn(
    raw.alpn,
    raw.routes.map((r) => r.alpn),
    raw.mode,
    keyPath,
    report,
  );
  const revalidate = resolveRevalidate(raw.revalidate, `${keyPath}.revalidate`, report);
  if (raw.handshakeTimeoutMs < raw.clientHelloTimeoutMs) {
    problems.add(`${keyPath}.handshakeTimeoutMs`, `must be at least clientHelloTimeoutMs (${raw.clientHelloTimeoutMs})`);
  }
  const http = resolveHttp(raw.http);
  if (http.headersTimeoutMs > http.requestTimeoutMs) {
    problems.add(`${keyPath}.http.headersTimeoutMs`, `must not exceed requestTimeoutMs (${http.requestTimeoutMs})`);
  }
  for (const [key, message] of identityHeaderCollisions(http)) problems.add(`${keyPath}.http.${key}`, message);
  http.alpn.forEach((p, i) => {
    if (http.alpn.indexOf(p) !== i) problems.add(`${keyPath}.http.alpn[${i}]`, `'${p}' is listed twice`);
  });
  let inbound: ListenerConfig['inboundProxyProtocol'];
  if (raw.proxyProtocol) {
    raw.proxyProtocol.trustedCidrs.forEach((cidr, i) => {
      const bad = checkCidr(cidr);
      if (bad) problems.add(`${keyPath}.proxyProtocol.trustedCidrs[${i}]`, bad);
    });
    inbound = { versions: raw.proxyProtocol.versions, trustedCidrs: raw.proxyProtocol.trustedCidrs };
  }
  const certificates = await resolveCertificates(raw.tls.certificates, `${keyPath}.tls.certificates`, files, problems, raw.tls.minVersion);
  let pkixRoots: ParsedCertificate[] = [];
  if (raw.tls.pkixCaFile !== undefined) pkixRoots = (await files.certificates(`${keyPath}.tls.pkixCaFile`, raw.tls.pkixCaFile))?.certs ?? [];

  const routes: ResolvedRoute[] = [];
  // Two routes conflict over a server name (or as default routes) only when they can serve the same ALPN protocol.
  const seenNames: Array<{ readonly name: string; readonly alpn: readonly string[] | undefined; readonly index: number }> = [];
  const defaults: Array<{ readonly alpn: readonly string[] | undefined; readonly index: number }> = [];
  let defaultRoutes = 0;
  for (const [i, r] of raw.routes.entries()) {
    const route = await resolveRoute(r, raw, `${keyPath}.routes[${i}]`, files, problems);
    const alpn = mode === 'tcp' ? r.alpn : undefined;
    if (r.serverNames.length === 0 && alpn !== undefined) {
      const other = defaults.find((d) => alpnOverlap(d.alpn, alpn));
      if (other !== undefined) problems.add(`${keyPath}.routes[${i}]`, `has no serverNames, like routes[${other.index}], for the same ALPN: at most one default route per ALPN protocol`);
      defaults.push({ alpn, index: i });
    }
    if (r.serverNames.length === 0 && alpn === undefined) defaultRoutes++;
    for (const name of route?.route.serverNames ?? []) {
      const other = seenNames.find((n) => n.name === name && alpnOverlap(n.alpn, alpn));
      if (other !== undefined) problems.add(`${keyPath}.routes[${i}].serverNames`, `'${name}' is already served by routes[${other.index}]`);
      else seenNames.push({ name, alpn, index: i });
    }
    if (route) routes.push(route);
  }
  // The RADSEC binding speaks RADIUS/1.0: RADIUS/1.1 (RFC 9765) has no MD5 authenticators to check or sign.
  // Read from the raw routes, so that the key path names the right route even when another one failed to resolve.
  const elsewhere = raw.routes.some((other) => other.alpn?.includes('radius/1.1') === true);
  for (const [i, r] of raw.routes.entries()) {
    const radius = r.radius !== undefined || (raw.mode === 'radsec' && r.mqtt === undefined);
    if (!radius || mode !== 'tcp') continue;
    // Without alpn of its own, the route gets radius/1.1 connections only when no route names radius/1.1.
    const served = r.alpn ?? (elsewhere ? undefined : raw.alpn) ?? [];
    if (served.includes('radius/1.1')) {
      problems.add(
        `${keyPath}.routes[${i}]${r.alpn === undefined ? '' : '.alpn'}`,
        "a RADSEC route binds RADIUS/1.0 (it checks and signs the MD5 authenticators RFC 9765's radius/1.1 drops): offer radius/1.0 only, or route radius/1.1 to a plain tcp route",
      );
    }
  }
  if (defaultRoutes > 1) problems.add(`${keyPath}.routes`, `${defaultRoutes} routes have no serverNames; at most one can be the default route`);
  if (typeof hp === 'string' || routes.length !== raw.routes.length || certificates.length !== raw.tls.certificates.length) return undefined;
  const base = {
    name: raw.name,
    host: hp.host,
    port: hp.port,
    certificates,
    minVersion: raw.tls.minVersion,
    engine: raw.tls.engine,
    daneClientIdType: raw.daneClientIdType,
    maxClientHelloBytes: raw.maxClientHelloBytes,
    clientHelloTimeoutMs: raw.clientHelloTimeoutMs,
    handshakeTimeoutMs: raw.handshakeTimeoutMs,
    idleTimeoutMs: raw.idleTimeoutMs ?? LISTENER_DEFAULTS.idleTimeoutMs[mode],
    maxLifetimeMs: raw.maxLifetimeMs,
    pkixRoots,
    inboundProxyProtocol: inbound,
    tcpKeepAlive: raw.tcpKeepAlive === false ? undefined : raw.tcpKeepAlive,
    revalidate,
  };
  // The config typed by mode: `http` only in HTTP mode, PROXY header settings only on TCP routes.
  if (raw.mode === 'http') {
    const httpRoutes: HttpRouteConfig[] = routes.map((r) => ({ ...r.route, rules: r.rules }));
    return { ...base, mode: 'http', policy: raw.policy, http, routes: httpRoutes };
  }
  // A tcp listener with policy 'optional' was reported above.
  const tcpRoutes: TcpRouteConfig[] = routes.map((r) => ({ ...r.route, proxyHeader: r.proxyHeader, binding: r.binding }));
  return { ...base, mode: 'tcp', protocol: raw.mode, alpn: raw.alpn, policy: 'required', routes: tcpRoutes };
}

function resolveLimits(raw: RawConfig['limits'], problems: Problems): LimitsConfig {
  const { enabled, ...gate } = raw.resolverGate;
  if (gate.maxInFlightPerZone > gate.maxInFlight) {
    problems.add('limits.resolverGate.maxInFlightPerZone', `must not exceed maxInFlight (${gate.maxInFlight})`);
  }
  if (gate.maxQueuedPerZone > gate.maxQueued) problems.add('limits.resolverGate.maxQueuedPerZone', `must not exceed maxQueued (${gate.maxQueued})`);
  if (gate.maxInFlight >= 1000) {
    problems.add('limits.resolverGate.maxInFlight', "must stay below Unbound's default wait-limit (1000 queries per client address), or the resolver stops answering dancegate");
  }
  if (raw.handshakes.maxConcurrentPerIp > raw.handshakes.maxConcurrent) {
    problems.add('limits.handshakes.maxConcurrentPerIp', `must not exceed maxConcurrent (${raw.handshakes.maxConcurrent})`);
  }
  const maxTlsHandshakesPerIp = raw.handshakes.maxTlsHandshakesPerIp ?? Math.min(A.handshakes.maxTlsHandshakesPerIp, raw.handshakes.maxConcurrentPerIp);
  if (maxTlsHandshakesPerIp > raw.handshakes.maxConcurrentPerIp) {
    problems.add('limits.handshakes.maxTlsHandshakesPerIp', `must not exceed maxConcurrentPerIp (${raw.handshakes.maxConcurrentPerIp})`);
  }
  return {
    resolverGate: enabled ? gate : undefined,
    handshakes: { ...raw.handshakes, maxTlsHandshakesPerIp },
    newConnectionsPerIp: raw.newConnectionsPerIp === false ? undefined : raw.newConnectionsPerIp,
    penaltyBox: raw.penaltyBox === false ? undefined : raw.penaltyBox,
    maxConnectionsPerIdentity: typeof raw.maxConnectionsPerIdentity === 'object' ? raw.maxConnectionsPerIdentity.max : raw.maxConnectionsPerIdentity,
    identityOverflow: typeof raw.maxConnectionsPerIdentity === 'object' ? raw.maxConnectionsPerIdentity.overflow : 'refuse-new',
    trackedAddresses: raw.trackedAddresses,
  };
}

interface BoundAddress extends BindAddress {
  readonly owner: string;
  readonly text: string;
}

/** A listen address (`owner` is `listeners[i]` or `admin`) must not take a port an earlier one takes (what serve would fail on with EADDRINUSE). */
function checkBindOverlap(owner: string, text: string, bound: BoundAddress[], problems: Problems): void {
  const hp = parseHostPort(text);
  if (typeof hp === 'string' || net.isIP(hp.host) === 0) return; // reported by the owner's own checks
  for (const other of bound) {
    const why = bindOverlap(hp, other);
    if (why === undefined) continue;
    problems.add(`${owner}.listen`, text === other.text ? `${text} is already used by ${other.owner}` : `${text} overlaps ${other.owner} (${other.text}): ${why}`);
    return;
  }
  bound.push({ ...hp, owner, text });
}

/** Parse and resolve configuration text; `source` is the file's absolute path (relative paths are taken from its directory). */
export async function parseConfigText(text: string, source: string): Promise<DancegateConfig> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        return `YAML syntax at line ${line}, column ${col}: ${e.message.split('\n')[0] ?? e.message}`;
      }),
    );
  }
  const data: unknown = doc.toJS({ maxAliasCount: 100 });
  const parsed = ConfigSchema.safeParse(data ?? {});
  if (!parsed.success) {
    throw new ConfigError(
      source,
      describeIssues(ConfigSchema, parsed.error.issues).map((p) => `${formatKeyPath(p.path)}: ${p.message}`),
    );
  }
  const raw = parsed.data;
  const problems = new Problems();
  const files = new FileReader(dirname(source), problems);
  const resolver = await resolveResolver(raw.resolver, files, problems);
  const listeners: ListenerConfig[] = [];
  const names = new Map<string, number>();
  const bound: BoundAddress[] = [];
  for (const [i, l] of raw.listeners.entries()) {
    const other = names.get(l.name);
    if (other !== undefined) problems.add(`listeners[${i}].name`, `'${l.name}' is already the name of listeners[${other}]`);
    names.set(l.name, i);
    checkBindOverlap(`listeners[${i}]`, l.listen, bound, problems);
    const listener = await resolveListener(l, i, files, problems);
    if (listener) listeners.push(listener);
  }
  const limits = resolveLimits(raw.limits, problems);
  let admin: DancegateConfig['admin'];
  const adminRaw = raw.admin;
  if (adminRaw !== false) {
    const hp = parseHostPort(adminRaw.listen);
    if (typeof hp === 'string') problems.add('admin.listen', hp);
    else if (net.isIP(hp.host) === 0) problems.add('admin.listen', `expected an IP address to bind, got '${hp.host}'`);
    else {
      admin = hp;
      checkBindOverlap('admin', adminRaw.listen, bound, problems);
    }
  }
  const destination = ['stdout', 'stderr'].includes(raw.log.destination) ? raw.log.destination : files.path(raw.log.destination);
  if (destination !== 'stdout' && destination !== 'stderr') {
    const bad = await logFileProblem(destination);
    if (bad !== undefined) problems.add('log.destination', bad);
  }
  const workers = raw.workers === 'auto' ? availableParallelism() : raw.workers;
  if (problems.list.length > 0 || resolver === undefined) throw new ConfigError(source, problems.list);
  return {
    source,
    workers,
    admin,
    log: { level: raw.log.level, destination },
    shutdown: raw.shutdown,
    watchConfig: raw.reload.watch,
    resolver,
    limits,
    listeners,
  };
}

/** Read a configuration file's text (bounded); throws ConfigError. `source` is its absolute path. */
export async function readConfigText(path: string): Promise<{ source: string; text: string }> {
  const source = resolve(path);
  let text: string;
  try {
    text = (await readBoundedFile(source, MAX_CONFIG_FILE_BYTES)).toString('utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(source, [code !== undefined ? `cannot read the configuration file: ${code}` : `cannot read the configuration file: ${(err as Error).message}`]);
  }
  return { source, text };
}

/** Read, parse and resolve a configuration file; throws ConfigError listing every problem. */
export async function loadConfig(path: string): Promise<DancegateConfig> {
  const { source, text } = await readConfigText(path);
  return parseConfigText(text, source);
}
