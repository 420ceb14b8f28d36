/**
 * Prometheus metrics (prom-client, default registry so that node:cluster
 * workers can be aggregated by the primary). They are fed by the typed
 * diagnostics channels (src/observe.ts): decisions, TLSA lookups and
 * upstream events are published by the pipeline and counted here; nothing
 * calls into this class per connection. Label values are bounded: listener
 * names come from the configuration, reasons and outcomes from closed sets;
 * never a client name or address. One set per process.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, register } from 'prom-client';
import { SessionMetrics } from './session-metrics.js';
import { REFUSAL_REASONS, REQUEST_REFUSALS, type RefusalReason, type RequestRefusal } from '../reasons.js';
import type { DecisionRecord } from '../connection/decision-log.js';
import { decisionChannel } from '../connection/channels.js';
import type { CacheStatus } from '../lookup/cache.js';
import type { LookupOutcomeKind } from '../lookup/tlsa-answer.js';
import { lookupChannel, resolveChannel, type LookupEvent, type ResolveEvent } from '../lookup/channels.js';
import {
  http2AbuseChannel,
  httpRequestChannel,
  upstreamAttemptChannel,
  upstreamBytesChannel,
  upstreamConnectChannel,
  upstreamErrorChannel,
  upstreamHealthChannel,
  type Http2AbuseEvent,
  type HttpRequestEvent,
  type UpstreamAttemptEvent,
  type UpstreamBytesEvent,
  type UpstreamConnectEvent,
  type UpstreamErrorEvent,
  type UpstreamHealthEvent,
} from '../forward/channels.js';

/** What the gauges read when scraped: the current generation's state. */
export interface LiveState {
  gateStats(): { inFlight: number; queued: number; zonesInFlight: number; zonesSaturated: number } | undefined;
  handshakesInProgress(): number;
  openConnections(): number;
  generation(): number;
}

/**
 * A configured listener: its name, and when known its policy (optional listeners also forward refused
 * clients), its mode (HTTP listeners get the request series) and its routes' upstream names (a ListenerConfig is one).
 */
export type KnownListener =
  | string
  | {
      readonly name: string;
      readonly policy?: string;
      readonly mode?: string;
      readonly routes?: readonly { readonly upstreams?: { readonly targets: readonly { readonly name: string }[] } }[];
    };

export interface ProxyMetricsOptions {
  /** Where the metrics live; default prom-client's global registry (what the cluster primary aggregates). */
  readonly registry?: Registry;
}

const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Every outcome of a TLSA lookup (the compile-time check below keeps it whole). */
export const LOOKUP_OUTCOMES = ['secure', 'no-tlsa', 'insecure', 'bogus', 'timeout', 'malformed', 'server-error', 'over-capacity'] as const satisfies readonly LookupOutcomeKind[];
/** Every result of the TLSA cache. */
export const CACHE_RESULTS = ['hit', 'miss', 'coalesced'] as const satisfies readonly CacheStatus[];
export const RELOAD_RESULTS = ['success', 'failure'] as const;
export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
export const DIRECTIONS = ['from_client', 'to_client'] as const;
export const ATTEMPT_OUTCOMES = ['ok', 'connect-failed', 'failed'] as const satisfies readonly UpstreamAttemptEvent['outcome'][];
export const HEALTH_CAUSES = ['passive', 'active'] as const satisfies readonly UpstreamHealthEvent['cause'][];
export const HTTP_PROTOCOLS = ['h1', 'h2'] as const satisfies readonly HttpRequestEvent['protocol'][];
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export type StatusClass = (typeof STATUS_CLASSES)[number];
/** The request refusal label values: the catalog's reasons, and 'other' for anything a producer got wrong. */
export const REFUSAL_LABELS = [...(Object.keys(REQUEST_REFUSALS) as RequestRefusal[]), 'other'] as const;
/** The HTTP/2 abuse kinds counted apart (src/forward/http2-inbound.ts publishes them); any other kind counts as 'other'. */
export const HTTP2_ABUSE_KINDS = ['reset-rate', 'invalid-frames', 'continuation-flood', 'flood', 'protocol-error', 'header-list-size', 'rejected-streams', 'other'] as const;
/** (listener, upstream) label pairs beyond the configured ones that a channel may add before the rest count as OTHER_UPSTREAM (a producer's bug). */
export const MAX_UNCONFIGURED_UPSTREAMS = 256;
export const OTHER_UPSTREAM = '(other)';

type Exhaustive<Missing> = [Missing] extends [never] ? true : false;
const lookupOutcomesComplete: Exhaustive<Exclude<LookupOutcomeKind, (typeof LOOKUP_OUTCOMES)[number]>> = true;
const cacheResultsComplete: Exhaustive<Exclude<CacheStatus, (typeof CACHE_RESULTS)[number]>> = true;
void lookupOutcomesComplete;
void cacheResultsComplete;

export interface ConnectionSeries {
  readonly outcome: 'forwarded' | 'refused';
  readonly reason: 'authenticated' | RefusalReason;
}

/**
 * The `dancegate_connections_total` series a listener can have, for starting
 * them at 0: authenticated and forwarded, every refusal reason refused, and
 * (policy optional) every refusal reason forwarded unauthenticated. Pure.
 */
export function connectionSeries(optional: boolean): ConnectionSeries[] {
  const series: ConnectionSeries[] = [{ outcome: 'forwarded', reason: 'authenticated' }];
  for (const reason of REFUSAL_REASONS) series.push({ outcome: 'refused', reason });
  if (optional) for (const reason of REFUSAL_REASONS) series.push({ outcome: 'forwarded', reason });
  return series;
}

/** The handshake series a listener can have: completed per TLS version, failed without one. Pure. */
export function handshakeSeries(): Array<{ readonly result: 'completed' | 'failed'; readonly tls_version: string }> {
  return [...TLS_VERSIONS.map((v) => ({ result: 'completed' as const, tls_version: v })), { result: 'failed', tls_version: 'none' }];
}

/** A byte count, a duration: finite and not negative (anything else is a producer's bug, never counted). */
const measurable = (n: number): boolean => typeof n === 'number' && Number.isFinite(n) && n >= 0;

/** '2xx' for 200..299; undefined for anything that is not a status (100..599). Pure. */
export function statusClass(status: number): StatusClass | undefined {
  if (!Number.isInteger(status) || status < 100 || status > 599) return undefined;
  return STATUS_CLASSES[Math.floor(status / 100) - 1];
}

const isOneOf = <T extends string>(values: readonly T[], value: unknown): value is T => (values as readonly unknown[]).includes(value);

/** A request refusal's label: a catalog reason, else 'other'. Pure. */
export function refusalLabel(refusal: string): (typeof REFUSAL_LABELS)[number] {
  return Object.hasOwn(REQUEST_REFUSALS, refusal) ? (refusal as RequestRefusal) : 'other';
}

/** An HTTP/2 abuse kind's label: one of HTTP2_ABUSE_KINDS, else 'other'. Pure. */
export function abuseLabel(kind: string): (typeof HTTP2_ABUSE_KINDS)[number] {
  return isOneOf(HTTP2_ABUSE_KINDS, kind) ? kind : 'other';
}

export class ProxyMetrics {
  readonly registry: Registry;
  readonly connections: Counter<'listener' | 'outcome' | 'reason'>;
  readonly handshakes: Counter<'listener' | 'result' | 'tls_version'>;
  readonly lookups: Counter<'outcome'>;
  readonly lookupSeconds: Histogram;
  readonly cache: Counter<'result'>;
  readonly handshakeSeconds: Histogram<'listener'>;
  readonly decisionSeconds: Histogram<'listener'>;
  readonly upstreamConnectSeconds: Histogram<'listener'>;
  readonly upstreamErrors: Counter<'listener'>;
  readonly bytes: Counter<'listener' | 'direction'>;
  readonly upstreamAttempts: Counter<'listener' | 'upstream' | 'outcome'>;
  readonly upstreamHealthy: Gauge<'listener' | 'upstream'>;
  readonly upstreamEjections: Counter<'listener' | 'upstream' | 'cause'>;
  readonly httpRequests: Counter<'listener' | 'protocol' | 'status_class'>;
  readonly httpRequestSeconds: Histogram<'listener' | 'protocol'>;
  readonly httpRefusals: Counter<'listener' | 'reason'>;
  readonly http2Abuse: Counter<'listener' | 'kind'>;
  readonly reloads: Counter<'result'>;
  readonly lastReloadSuccess: Gauge;
  readonly buildInfo: Gauge<'version' | 'node'>;
  readonly tlsEngine: Gauge<'listener' | 'engine'>;
  /** Listeners whose series were started at 0 (by name; true when policy optional was seen). */
  private readonly known = new Map<string, boolean>();
  /** Listeners whose HTTP request series were started at 0. */
  private readonly knownHttp = new Set<string>();
  /** Upstream label values by listener: the configured ones (started at 0), then what channels brought, bounded. */
  private readonly knownUpstreams = new Map<string, Set<string>>();
  private unconfiguredUpstreams = 0;
  private readonly unsubscribe: Array<() => void> = [];
  /** Revalidation, MQTT and RADIUS bindings, newest-wins (session-metrics.ts). */
  private readonly sessions: SessionMetrics;

  constructor(version: string, state: () => LiveState | undefined, options: ProxyMetricsOptions = {}) {
    const registry = options.registry ?? register;
    const registers = [registry];
    this.registry = registry;
    this.connections = new Counter({
      name: 'dancegate_connections_total',
      help: 'Connection decisions by listener, outcome (forwarded/refused) and reason code (the decision log codes)',
      labelNames: ['listener', 'outcome', 'reason'] as const,
      registers,
    });
    this.handshakes = new Counter({
      name: 'dancegate_tls_handshakes_total',
      help: 'TLS handshakes by listener and result (completed = the client finished its handshake)',
      labelNames: ['listener', 'result', 'tls_version'] as const,
      registers,
    });
    this.lookups = new Counter({
      name: 'dancegate_dane_lookups_total',
      help: 'TLSA lookups past the cache (local TLSA file, resolver gate, DNS), by outcome (secure, no-tlsa, insecure, bogus, timeout, malformed, server-error, over-capacity)',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.lookupSeconds = new Histogram({
      name: 'dancegate_dane_lookup_seconds',
      help: 'Time of TLSA lookups past the cache (local TLSA file, resolver gate, DNS)',
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.cache = new Counter({
      name: 'dancegate_tlsa_cache_total',
      help: 'TLSA cache results, one per lookup a connection makes (hit, miss, coalesced)',
      labelNames: ['result'] as const,
      registers,
    });
    const listenerSeconds = (name: string, help: string): Histogram<'listener'> => new Histogram({ name, help, labelNames: ['listener'] as const, buckets: SECONDS_BUCKETS, registers });
    this.handshakeSeconds = listenerSeconds('dancegate_handshake_seconds', 'TLS handshake time after the ClientHello was read');
    this.decisionSeconds = listenerSeconds(
      'dancegate_dane_decision_seconds',
      'Time from the start of the TLSA lookup to the DANE decision (overlaps the handshake when the name came from dane_clientid)',
    );
    this.upstreamConnectSeconds = listenerSeconds('dancegate_upstream_connect_seconds', 'Time to connect to the upstream (and finish its TLS handshake) for new upstream connections');
    this.upstreamErrors = new Counter({
      name: 'dancegate_upstream_errors_total',
      help: 'Upstream connection or request failures',
      labelNames: ['listener'] as const,
      registers,
    });
    this.bytes = new Counter({
      name: 'dancegate_bytes_total',
      help: 'Bytes on client connections after the decision (direction from_client / to_client), counted while they are open and when they close',
      labelNames: ['listener', 'direction'] as const,
      registers,
    });
    this.upstreamAttempts = new Counter({
      name: 'dancegate_upstream_attempts_total',
      help: 'Attempts to reach an upstream (a request, a retry, a TCP connect) by listener, upstream name and outcome (ok, connect-failed, failed)',
      labelNames: ['listener', 'upstream', 'outcome'] as const,
      registers,
    });
    this.upstreamHealthy = new Gauge({
      name: 'dancegate_upstream_healthy',
      help: '1 if the upstream is in rotation (not ejected by passive health, not failed by the active check), else 0; across workers 0 if any worker took it out',
      labelNames: ['listener', 'upstream'] as const,
      aggregator: 'min',
      registers,
    });
    this.upstreamEjections = new Counter({
      name: 'dancegate_upstream_ejections_total',
      help: 'Times an upstream was taken out of rotation, by cause (passive: failures of real traffic; active: the health check)',
      labelNames: ['listener', 'upstream', 'cause'] as const,
      registers,
    });
    this.httpRequests = new Counter({
      name: 'dancegate_http_requests_total',
      help: 'HTTP requests answered (by the upstream or by us), by protocol (h1, h2) and status class',
      labelNames: ['listener', 'protocol', 'status_class'] as const,
      registers,
    });
    this.httpRequestSeconds = new Histogram({
      name: 'dancegate_http_request_duration_seconds',
      help: 'HTTP request time, from the request headers to the end of the response',
      labelNames: ['listener', 'protocol'] as const,
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.httpRefusals = new Counter({
      name: 'dancegate_http_request_refusals_total',
      help: 'HTTP requests answered by us instead of forwarded, by reason (the request refusal catalog)',
      labelNames: ['listener', 'reason'] as const,
      registers,
    });
    this.http2Abuse = new Counter({
      name: 'dancegate_http2_abuse_total',
      help: 'Inbound HTTP/2 sessions ended for abuse, by kind (reset-rate: rapid reset; invalid-frames, continuation-flood, flood, protocol-error: found by nghttp2)',
      labelNames: ['listener', 'kind'] as const,
      registers,
    });
    this.reloads = new Counter({
      name: 'dancegate_config_reloads_total',
      help: 'Configuration reloads by result (success, failure)',
      labelNames: ['result'] as const,
      registers,
    });
    this.lastReloadSuccess = new Gauge({
      name: 'dancegate_config_last_reload_successful',
      help: '1 if the last reload succeeded (or none was tried), 0 if it was rejected',
      // Across workers: 0 if any worker's last reload failed.
      aggregator: 'min',
      registers,
    });
    this.buildInfo = new Gauge({
      name: 'dancegate_build_info',
      help: 'Always 1; labels say which dancegate and Node.js run',
      labelNames: ['version', 'node'] as const,
      aggregator: 'first',
      registers,
    });
    this.buildInfo.set({ version, node: process.version }, 1);
    this.tlsEngine = new Gauge({
      name: 'dancegate_tls_engine',
      help: 'Always 1 per listener; engine="native" (draft -13 dane_clientid in the TLS 1.3 Certificate) or "node" (node:tls, also when tls.engine auto fell back)',
      labelNames: ['listener', 'engine'] as const,
      registers,
    });
    this.sessions = new SessionMetrics(registers);
    this.lastReloadSuccess.set(1);
    for (const result of RELOAD_RESULTS) this.reloads.inc({ result }, 0);
    for (const outcome of LOOKUP_OUTCOMES) this.lookups.inc({ outcome }, 0);
    for (const result of CACHE_RESULTS) this.cache.inc({ result }, 0);
    this.liveGauges(state, registers);
    collectDefaultMetrics({ register: registry });
    // prom-client also exports `nodejs_active_{handles,requests,resources}_total` as gauges, duplicates
    // of the unsuffixed ones: `_total` is for counters, so they go.
    for (const metric of registry.getMetricsAsArray()) {
      // At run time `type` is the exposition word ('gauge'), whatever prom-client's declared enum says.
      if (String(metric.type) === 'gauge' && metric.name.endsWith('_total')) registry.removeSingleMetric(metric.name);
    }
    this.unsubscribe.push(
      decisionChannel.subscribe((d) => this.onDecision(d)),
      lookupChannel.subscribe((e) => this.onLookup(e)),
      resolveChannel.subscribe((e) => this.onResolve(e)),
      upstreamConnectChannel.subscribe((e) => this.onUpstreamConnect(e)),
      upstreamErrorChannel.subscribe((e) => this.onUpstreamError(e)),
      upstreamBytesChannel.subscribe((e) => this.onUpstreamBytes(e)),
      upstreamAttemptChannel.subscribe((e) => this.onUpstreamAttempt(e)),
      upstreamHealthChannel.subscribe((e) => this.onUpstreamHealth(e)),
      httpRequestChannel.subscribe((e) => this.onHttpRequest(e)),
      http2AbuseChannel.subscribe((e) => this.onHttp2Abuse(e)),
    );
  }

  /**
   * Start every series of these listeners at 0 (call with the configuration's
   * listeners at start and after each reload); a listener first seen on a
   * channel gets the same. Series of listeners a reload removed stay.
   */
  knownListeners(listeners: readonly KnownListener[]): void {
    for (const l of listeners) {
      if (typeof l === 'string') {
        this.zeroListener(l, false);
        continue;
      }
      this.zeroListener(l.name, l.policy === 'optional');
      this.sessions.zero(l.name);
      if (l.mode === 'http') this.zeroHttp(l.name);
      if (l.routes !== undefined)
        this.configuredUpstreams(
          l.name,
          l.routes.flatMap((r) => r.upstreams?.targets.map((t) => t.name) ?? []),
        );
    }
  }

  /** The TLS engine each listener runs (call at start and after each reload). */
  tlsEngines(listeners: readonly { readonly name: string; readonly tlsEngine?: 'native' | 'node' }[]): void {
    this.tlsEngine.reset();
    for (const l of listeners) if (l.tlsEngine !== undefined) this.tlsEngine.set({ listener: l.name, engine: l.tlsEngine }, 1);
  }

  /** Stop counting what the channels carry (the registered metrics stay). */
  close(): void {
    for (const unsubscribe of this.unsubscribe.splice(0)) unsubscribe();
    this.sessions.close();
  }

  /** The exposition text of prom-client's global registry (the one processMetrics uses). */
  static text(): Promise<string> {
    return register.metrics();
  }

  static readonly contentType = register.contentType;

  private zeroListener(listener: string, optional: boolean): void {
    const seen = this.known.get(listener);
    if (seen === true || (seen === false && !optional)) return;
    this.known.set(listener, optional);
    for (const s of connectionSeries(optional)) this.connections.inc({ listener, outcome: s.outcome, reason: s.reason }, 0);
    if (seen !== undefined) return;
    for (const s of handshakeSeries()) this.handshakes.inc({ listener, ...s }, 0);
    for (const direction of DIRECTIONS) this.bytes.inc({ listener, direction }, 0);
    this.upstreamErrors.inc({ listener }, 0);
    this.handshakeSeconds.zero({ listener });
    this.decisionSeconds.zero({ listener });
    this.upstreamConnectSeconds.zero({ listener });
  }

  private seen(listener: string): void {
    if (!this.known.has(listener)) this.zeroListener(listener, false);
  }

  private zeroHttp(listener: string): void {
    if (this.knownHttp.has(listener)) return;
    this.knownHttp.add(listener);
    for (const protocol of HTTP_PROTOCOLS) {
      for (const status_class of STATUS_CLASSES) this.httpRequests.inc({ listener, protocol, status_class }, 0);
      this.httpRequestSeconds.zero({ listener, protocol });
    }
    for (const reason of REFUSAL_LABELS) this.httpRefusals.inc({ listener, reason }, 0);
    for (const kind of HTTP2_ABUSE_KINDS) this.http2Abuse.inc({ listener, kind }, 0);
  }

  /**
   * A (re)configured listener's upstreams: their series start at 0, each is
   * healthy (a new generation's upstream sets start so), and the healthy
   * gauge of upstreams no longer configured goes (their counters stay).
   */
  private configuredUpstreams(listener: string, names: readonly string[]): void {
    const configured = new Set(names);
    const known = this.knownUpstreams.get(listener) ?? new Set<string>();
    this.knownUpstreams.set(listener, known);
    for (const upstream of known) if (!configured.has(upstream)) this.upstreamHealthy.remove({ listener, upstream });
    for (const upstream of configured) {
      if (!known.has(upstream)) {
        known.add(upstream);
        this.zeroUpstream(listener, upstream);
      }
      this.upstreamHealthy.set({ listener, upstream }, 1);
    }
  }

  private zeroUpstream(listener: string, upstream: string): void {
    for (const outcome of ATTEMPT_OUTCOMES) this.upstreamAttempts.inc({ listener, upstream, outcome }, 0);
    for (const cause of HEALTH_CAUSES) this.upstreamEjections.inc({ listener, upstream, cause }, 0);
  }

  /** The upstream label of a channel event: a known name, a new one while the bound allows (its series at 0), else OTHER_UPSTREAM. */
  private upstreamLabel(listener: string, upstream: string): string {
    this.seen(listener);
    let known = this.knownUpstreams.get(listener);
    if (known?.has(upstream)) return upstream;
    if (typeof upstream !== 'string' || this.unconfiguredUpstreams >= MAX_UNCONFIGURED_UPSTREAMS) return OTHER_UPSTREAM;
    this.unconfiguredUpstreams++;
    if (known === undefined) this.knownUpstreams.set(listener, (known = new Set()));
    known.add(upstream);
    this.zeroUpstream(listener, upstream);
    this.upstreamHealthy.set({ listener, upstream }, 1);
    return upstream;
  }

  private onDecision(d: DecisionRecord): void {
    const listener = d.listener;
    this.seen(listener);
    this.connections.inc({ listener, outcome: d.outcome, reason: d.reason });
    if (d.tlsVersion !== undefined) this.handshakes.inc({ listener, result: 'completed', tls_version: d.tlsVersion });
    else if (d.reason === 'handshake-failed' || d.reason === 'handshake-timeout') this.handshakes.inc({ listener, result: 'failed', tls_version: 'none' });
    const { handshake, dns } = d.durationsMs;
    if (handshake !== undefined && measurable(handshake)) this.handshakeSeconds.observe({ listener }, handshake / 1000);
    if (dns !== undefined && measurable(dns)) this.decisionSeconds.observe({ listener }, dns / 1000);
  }

  private onLookup(e: LookupEvent): void {
    this.cache.inc({ result: e.cache });
  }

  private onResolve(e: ResolveEvent): void {
    this.lookups.inc({ outcome: e.outcome });
    if (measurable(e.seconds)) this.lookupSeconds.observe(e.seconds);
  }

  private onUpstreamConnect(e: UpstreamConnectEvent): void {
    this.seen(e.listener);
    if (measurable(e.seconds)) this.upstreamConnectSeconds.observe({ listener: e.listener }, e.seconds);
  }

  private onUpstreamError(e: UpstreamErrorEvent): void {
    // Only the listener: the upstream, identity and source would be unbounded label values.
    this.seen(e.listener);
    this.upstreamErrors.inc({ listener: e.listener });
  }

  private onUpstreamBytes(e: UpstreamBytesEvent): void {
    this.seen(e.listener);
    if (measurable(e.fromClient) && e.fromClient > 0) this.bytes.inc({ listener: e.listener, direction: 'from_client' }, e.fromClient);
    if (measurable(e.toClient) && e.toClient > 0) this.bytes.inc({ listener: e.listener, direction: 'to_client' }, e.toClient);
  }

  private onUpstreamAttempt(e: UpstreamAttemptEvent): void {
    if (!isOneOf(ATTEMPT_OUTCOMES, e.outcome)) return;
    this.upstreamAttempts.inc({ listener: e.listener, upstream: this.upstreamLabel(e.listener, e.upstream), outcome: e.outcome });
  }

  private onUpstreamHealth(e: UpstreamHealthEvent): void {
    if (!isOneOf(HEALTH_CAUSES, e.cause) || typeof e.healthy !== 'boolean') return;
    const upstream = this.upstreamLabel(e.listener, e.upstream);
    this.upstreamHealthy.set({ listener: e.listener, upstream }, e.healthy ? 1 : 0);
    if (!e.healthy) this.upstreamEjections.inc({ listener: e.listener, upstream, cause: e.cause });
  }

  private onHttpRequest(e: HttpRequestEvent): void {
    const listener = e.listener;
    this.seen(listener);
    this.zeroHttp(listener);
    if (!isOneOf(HTTP_PROTOCOLS, e.protocol)) return;
    const status_class = statusClass(e.status);
    if (status_class !== undefined) this.httpRequests.inc({ listener, protocol: e.protocol, status_class });
    if (measurable(e.totalMs)) this.httpRequestSeconds.observe({ listener, protocol: e.protocol }, e.totalMs / 1000);
    if (e.refusal !== undefined) this.httpRefusals.inc({ listener, reason: refusalLabel(e.refusal) });
  }

  private onHttp2Abuse(e: Http2AbuseEvent): void {
    this.seen(e.listener);
    this.zeroHttp(e.listener);
    this.http2Abuse.inc({ listener: e.listener, kind: abuseLabel(e.kind) });
  }

  /** The gauges that read the live proxy state when scraped. */
  private liveGauges(state: () => LiveState | undefined, registers: Registry[]): void {
    const live = (name: string, help: string, read: (s: LiveState | undefined) => number, aggregator?: 'min'): void => {
      new Gauge({
        name,
        help,
        registers,
        ...(aggregator ? { aggregator } : {}),
        collect() {
          this.set(read(state()));
        },
      });
    };
    // Across workers: the oldest generation still in force somewhere.
    live('dancegate_config_generation', 'Configuration generation in force (1 at start, +1 per successful reload)', (s) => s?.generation() ?? 0, 'min');
    live('dancegate_resolver_in_flight', 'TLSA queries in flight through the resolver gate', (s) => s?.gateStats()?.inFlight ?? 0);
    live('dancegate_resolver_queued', 'TLSA lookups waiting in the resolver gate', (s) => s?.gateStats()?.queued ?? 0);
    live('dancegate_resolver_zones_saturated', 'Zones at their per-zone in-flight cap in the resolver gate', (s) => s?.gateStats()?.zonesSaturated ?? 0);
    live('dancegate_handshakes_in_progress', 'Connections between accept and decision (the handshake budget in use)', (s) => s?.handshakesInProgress() ?? 0);
    live('dancegate_open_connections', 'Client connections open now, all listeners', (s) => s?.openConnections() ?? 0);
  }
}

let instance: ProxyMetrics | undefined;
let live: LiveState | undefined;

/** The process's metrics, created on first use; the gauges read whichever proxy state was bound last. */
export function processMetrics(version: string, state: LiveState): ProxyMetrics {
  live = state;
  instance ??= new ProxyMetrics(version, () => live);
  return instance;
}
