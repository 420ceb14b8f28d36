/**
 * Prometheus metrics (prom-client, default registry so that node:cluster
 * workers can be aggregated by the primary). Label values are bounded:
 * listener names come from the configuration, reasons and outcomes from
 * closed sets; never a client name or address. One set per process.
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics, register } from 'prom-client';
import type { DecisionRecord } from '../connection/decision-log.js';
import type { ForwardingObserver } from '../connection/listener.js';
import type { LookupOutcome } from '../lookup/tlsa-answer.js';
import type { TlsaResolver } from '../dns/resolver.js';

/** What the gauges read when scraped: the current generation's state. */
export interface LiveState {
  gateStats(): { inFlight: number; queued: number; zonesInFlight: number; zonesSaturated: number } | undefined;
  handshakesInProgress(): number;
  openConnections(): number;
  generation(): number;
}

const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class ProxyMetrics implements ForwardingObserver {
  readonly connections = new Counter({
    name: 'dancegate_connections_total',
    help: 'Connection decisions by listener, outcome (forwarded/refused) and reason code (the decision log codes)',
    labelNames: ['listener', 'outcome', 'reason'] as const,
  });
  readonly handshakes = new Counter({
    name: 'dancegate_tls_handshakes_total',
    help: 'TLS handshakes by listener and result (completed = the client finished its handshake)',
    labelNames: ['listener', 'result', 'tls_version'] as const,
  });
  readonly lookups = new Counter({
    name: 'dancegate_dane_lookups_total',
    help: 'TLSA lookups that reached the resolver chain, by outcome (secure, no-tlsa, insecure, bogus, timeout, malformed, server-error, over-capacity)',
    labelNames: ['outcome'] as const,
  });
  readonly cache = new Counter({
    name: 'dancegate_tlsa_cache_total',
    help: 'TLSA cache results of connection verifications (hit, miss, coalesced)',
    labelNames: ['result'] as const,
  });
  readonly handshakeSeconds = new Histogram({
    name: 'dancegate_handshake_seconds',
    help: 'TLS handshake time after the ClientHello was read',
    labelNames: ['listener'] as const,
    buckets: SECONDS_BUCKETS,
  });
  readonly decisionSeconds = new Histogram({
    name: 'dancegate_dane_decision_seconds',
    help: 'Time from the start of the TLSA lookup to the DANE decision (overlaps the handshake when the name came from dane_clientid)',
    labelNames: ['listener'] as const,
    buckets: SECONDS_BUCKETS,
  });
  readonly upstreamConnectSeconds = new Histogram({
    name: 'dancegate_upstream_connect_seconds',
    help: 'Time to connect to the upstream (and finish its TLS handshake) for new upstream connections',
    labelNames: ['listener'] as const,
    buckets: SECONDS_BUCKETS,
  });
  readonly upstreamErrors = new Counter({
    name: 'dancegate_upstream_errors_total',
    help: 'Upstream connection or request failures',
    labelNames: ['listener'] as const,
  });
  readonly bytes = new Counter({
    name: 'dancegate_bytes_total',
    help: 'Bytes on client connections after the decision (direction from_client / to_client), counted when they close',
    labelNames: ['listener', 'direction'] as const,
  });
  readonly reloads = new Counter({
    name: 'dancegate_config_reloads_total',
    help: 'Configuration reloads by result (success, failure)',
    labelNames: ['result'] as const,
  });
  readonly lastReloadSuccess = new Gauge({
    name: 'dancegate_config_last_reload_successful',
    help: '1 if the last reload succeeded (or none was tried), 0 if it was rejected',
    // Across workers: 0 if any worker's last reload failed.
    aggregator: 'min',
  });
  readonly buildInfo = new Gauge({
    name: 'dancegate_build_info',
    help: 'Always 1; labels say which dancegate and Node.js run',
    labelNames: ['version', 'node'] as const,
    aggregator: 'first',
  });

  constructor(version: string, state: () => LiveState | undefined) {
    this.buildInfo.set({ version, node: process.version }, 1);
    this.lastReloadSuccess.set(1);
    new Gauge({
      name: 'dancegate_config_generation',
      help: 'Configuration generation in force (1 at start, +1 per successful reload)',
      // Across workers: the oldest generation still in force somewhere.
      aggregator: 'min',
      collect() {
        this.set(state()?.generation() ?? 0);
      },
    });
    new Gauge({
      name: 'dancegate_resolver_in_flight',
      help: 'TLSA queries in flight through the resolver gate',
      collect() {
        this.set(state()?.gateStats()?.inFlight ?? 0);
      },
    });
    new Gauge({
      name: 'dancegate_resolver_queued',
      help: 'TLSA lookups waiting in the resolver gate',
      collect() {
        this.set(state()?.gateStats()?.queued ?? 0);
      },
    });
    new Gauge({
      name: 'dancegate_resolver_zones_saturated',
      help: 'Zones at their per-zone in-flight cap in the resolver gate',
      collect() {
        this.set(state()?.gateStats()?.zonesSaturated ?? 0);
      },
    });
    new Gauge({
      name: 'dancegate_handshakes_in_progress',
      help: 'Connections between accept and decision (the handshake budget in use)',
      collect() {
        this.set(state()?.handshakesInProgress() ?? 0);
      },
    });
    new Gauge({
      name: 'dancegate_open_connections',
      help: 'Client connections open now, all listeners',
      collect() {
        this.set(state()?.openConnections() ?? 0);
      },
    });
    collectDefaultMetrics({ prefix: 'dancegate_process_' });
  }

  /** Count one connection decision (wired into the decision sink). */
  decision(d: DecisionRecord): void {
    this.connections.inc({ listener: d.listener, outcome: d.outcome, reason: d.reason });
    if (d.tlsVersion !== undefined) this.handshakes.inc({ listener: d.listener, result: 'completed', tls_version: d.tlsVersion });
    else if (d.reason === 'handshake-failed' || d.reason === 'handshake-timeout') this.handshakes.inc({ listener: d.listener, result: 'failed', tls_version: 'none' });
    if (d.durationsMs.handshake !== undefined) this.handshakeSeconds.observe({ listener: d.listener }, d.durationsMs.handshake / 1000);
    if (d.durationsMs.dns !== undefined) this.decisionSeconds.observe({ listener: d.listener }, d.durationsMs.dns / 1000);
    if (d.cache !== undefined) this.cache.inc({ result: d.cache });
  }

  upstreamConnected(listener: string, seconds: number): void {
    this.upstreamConnectSeconds.observe({ listener }, seconds);
  }

  upstreamFailed(listener: string): void {
    this.upstreamErrors.inc({ listener });
  }

  bytesRelayed(listener: string, fromClient: number, toClient: number): void {
    this.bytes.inc({ listener, direction: 'from_client' }, fromClient);
    this.bytes.inc({ listener, direction: 'to_client' }, toClient);
  }

  /** A resolver that counts every outcome of the one it wraps. */
  countingResolver(inner: TlsaResolver): TlsaResolver {
    return {
      lookup: async (name: string, signal?: AbortSignal): Promise<LookupOutcome> => {
        const result = await inner.lookup(name, signal);
        this.lookups.inc({ outcome: result.kind });
        return result;
      },
    };
  }

  static text(): Promise<string> {
    return register.metrics();
  }

  static readonly contentType = register.contentType;
}

let instance: ProxyMetrics | undefined;
let live: LiveState | undefined;

/** The process's metrics, created on first use; the gauges read whichever proxy state was bound last. */
export function processMetrics(version: string, state: LiveState): ProxyMetrics {
  live = state;
  instance ??= new ProxyMetrics(version, () => live);
  return instance;
}
