import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { CACHE_RESULTS, LOOKUP_OUTCOMES, ProxyMetrics, connectionSeries, handshakeSeries, type LiveState } from '../../src/metrics/metrics.js';
import { REFUSAL_REASONS } from '../../src/reasons.js';
import { decisionChannel } from '../../src/connection/channels.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { lookupChannel, resolveChannel } from '../../src/lookup/channels.js';
import { upstreamBytesChannel, upstreamConnectChannel, upstreamErrorChannel } from '../../src/forward/channels.js';

const open: ProxyMetrics[] = [];
afterEach(() => {
  for (const m of open.splice(0)) m.close();
});

const STATE: LiveState = {
  gateStats: () => ({ inFlight: 2, queued: 1, zonesInFlight: 1, zonesSaturated: 0 }),
  handshakesInProgress: () => 3,
  openConnections: () => 4,
  generation: () => 7,
};

/** Metrics on a registry of their own (channels are process-wide: close() in afterEach). */
function fresh(state: () => LiveState | undefined = () => STATE): { metrics: ProxyMetrics; registry: Registry } {
  const registry = new Registry();
  const metrics = new ProxyMetrics('1.2.3', state, { registry });
  open.push(metrics);
  return { metrics, registry };
}

/** Every sample line of the exposition text, `series → value` (as Prometheus scrapes it). */
async function samples(registry: Registry): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return out;
}

const decision = (over: Partial<DecisionRecord>): DecisionRecord => ({
  time: '2024-01-01T00:00:00.000Z',
  connectionId: 'ab12cd-1',
  listener: 'api',
  route: 'default',
  source: '192.0.2.1:4000',
  sni: 'api.example',
  tlsVersion: undefined,
  claimedName: undefined,
  nameSource: undefined,
  outcome: 'refused',
  reason: 'no-certificate',
  detail: 'x',
  tlsa: undefined,
  cache: undefined,
  durationsMs: { total: 1 },
  ...over,
});

describe('ProxyMetrics fed by the diagnostics channels', () => {
  it('decisions: connections, handshakes and their histograms', async () => {
    const { registry } = fresh();
    decisionChannel.publish(decision({ outcome: 'forwarded', reason: 'authenticated', tlsVersion: 'TLSv1.3', cache: 'hit', durationsMs: { handshake: 12, dns: 30, total: 50 } }));
    decisionChannel.publish(decision({ outcome: 'forwarded', reason: 'authenticated', tlsVersion: 'TLSv1.2', durationsMs: { handshake: 2000, total: 2100 } }));
    decisionChannel.publish(decision({ outcome: 'refused', reason: 'no-certificate', tlsVersion: 'TLSv1.3', durationsMs: { handshake: 5, total: 6 } }));
    decisionChannel.publish(decision({ outcome: 'refused', reason: 'handshake-failed' }));
    decisionChannel.publish(decision({ listener: 'mqtt', outcome: 'refused', reason: 'rate-limited' }));
    const s = await samples(registry);
    expect(s.get('dancegate_connections_total{listener="api",outcome="forwarded",reason="authenticated"}')).toBe(2);
    expect(s.get('dancegate_connections_total{listener="api",outcome="refused",reason="no-certificate"}')).toBe(1);
    expect(s.get('dancegate_connections_total{listener="api",outcome="refused",reason="handshake-failed"}')).toBe(1);
    expect(s.get('dancegate_connections_total{listener="mqtt",outcome="refused",reason="rate-limited"}')).toBe(1);
    expect(s.get('dancegate_tls_handshakes_total{listener="api",result="completed",tls_version="TLSv1.3"}')).toBe(2);
    expect(s.get('dancegate_tls_handshakes_total{listener="api",result="completed",tls_version="TLSv1.2"}')).toBe(1);
    expect(s.get('dancegate_tls_handshakes_total{listener="api",result="failed",tls_version="none"}')).toBe(1);
    expect(s.get('dancegate_tls_handshakes_total{listener="mqtt",result="failed",tls_version="none"}')).toBe(0);
    expect(s.get('dancegate_handshake_seconds_count{listener="api"}')).toBe(3);
    expect(s.get('dancegate_handshake_seconds_sum{listener="api"}')).toBeCloseTo(2.017, 9);
    expect(s.get('dancegate_handshake_seconds_bucket{le="0.005",listener="api"}')).toBe(1);
    expect(s.get('dancegate_handshake_seconds_bucket{le="0.025",listener="api"}')).toBe(2);
    expect(s.get('dancegate_dane_decision_seconds_count{listener="api"}')).toBe(1);
    expect(s.get('dancegate_dane_decision_seconds_sum{listener="api"}')).toBe(0.03);
    // The record's cache field is not what the cache metric counts (lookupChannel is).
    expect(s.get('dancegate_tlsa_cache_total{result="hit"}')).toBe(0);
  });

  it('lookups: the cache from lookupChannel, the lookups past it from resolveChannel', async () => {
    const { registry } = fresh();
    lookupChannel.publish({ name: 'a.example', cache: 'miss', outcome: 'secure' });
    lookupChannel.publish({ name: 'a.example', cache: 'hit', outcome: 'secure' });
    lookupChannel.publish({ name: 'a.example', cache: 'hit', outcome: 'secure' });
    lookupChannel.publish({ name: 'b.example', cache: 'coalesced', outcome: 'timeout' });
    resolveChannel.publish({ outcome: 'secure', seconds: 0.02 });
    resolveChannel.publish({ outcome: 'timeout', seconds: 1.5 });
    resolveChannel.publish({ outcome: 'timeout', seconds: 1.5 });
    const s = await samples(registry);
    expect(s.get('dancegate_tlsa_cache_total{result="miss"}')).toBe(1);
    expect(s.get('dancegate_tlsa_cache_total{result="hit"}')).toBe(2);
    expect(s.get('dancegate_tlsa_cache_total{result="coalesced"}')).toBe(1);
    expect(s.get('dancegate_dane_lookups_total{outcome="secure"}')).toBe(1);
    expect(s.get('dancegate_dane_lookups_total{outcome="timeout"}')).toBe(2);
    expect(s.get('dancegate_dane_lookups_total{outcome="bogus"}')).toBe(0);
    expect(s.get('dancegate_dane_lookup_seconds_count')).toBe(3);
    expect(s.get('dancegate_dane_lookup_seconds_sum')).toBe(3.02);
    expect(s.get('dancegate_dane_lookup_seconds_bucket{le="0.025"}')).toBe(1);
    expect(s.get('dancegate_dane_lookup_seconds_bucket{le="2.5"}')).toBe(3);
  });

  it('upstream: connect time, errors, and bytes that advance while a connection lives', async () => {
    const { registry } = fresh();
    upstreamConnectChannel.publish({ listener: 'api', seconds: 0.004 });
    upstreamErrorChannel.publish({ listener: 'api', upstream: 'http://127.0.0.1:1', identity: 'a.example', source: '192.0.2.1:4000', error: 'ECONNREFUSED' });
    upstreamErrorChannel.publish({ listener: 'api', upstream: 'http://127.0.0.1:1', identity: undefined, source: '192.0.2.1:4001', error: 'ECONNREFUSED' });
    upstreamBytesChannel.publish({ listener: 'mqtt', fromClient: 100, toClient: 200 });
    let s = await samples(registry);
    expect(s.get('dancegate_upstream_connect_seconds_count{listener="api"}')).toBe(1);
    expect(s.get('dancegate_upstream_connect_seconds_bucket{le="0.005",listener="api"}')).toBe(1);
    expect(s.get('dancegate_upstream_connect_seconds_bucket{le="0.0025",listener="api"}')).toBe(0);
    expect(s.get('dancegate_upstream_errors_total{listener="api"}')).toBe(2);
    expect(s.get('dancegate_bytes_total{listener="mqtt",direction="from_client"}')).toBe(100);
    expect(s.get('dancegate_bytes_total{listener="mqtt",direction="to_client"}')).toBe(200);
    // Later deltas of the same connection, then its close.
    upstreamBytesChannel.publish({ listener: 'mqtt', fromClient: 50, toClient: 0 });
    upstreamBytesChannel.publish({ listener: 'mqtt', fromClient: 1, toClient: 7 });
    s = await samples(registry);
    expect(s.get('dancegate_bytes_total{listener="mqtt",direction="from_client"}')).toBe(151);
    expect(s.get('dancegate_bytes_total{listener="mqtt",direction="to_client"}')).toBe(207);
    // Never a client name, address or upstream as a label value.
    const text = await registry.metrics();
    expect(text).not.toContain('a.example');
    expect(text).not.toContain('192.0.2.1');
    expect(text).not.toContain('127.0.0.1');
  });

  it("a producer's nonsense (negative, NaN, infinite) is not counted and does not throw", async () => {
    const { registry } = fresh();
    expect(() => {
      upstreamBytesChannel.publish({ listener: 'api', fromClient: -5, toClient: Number.NaN });
      upstreamBytesChannel.publish({ listener: 'api', fromClient: Number.POSITIVE_INFINITY, toClient: 3 });
      upstreamConnectChannel.publish({ listener: 'api', seconds: -1 });
      resolveChannel.publish({ outcome: 'secure', seconds: Number.NaN });
      decisionChannel.publish(decision({ durationsMs: { handshake: Number.NaN, dns: -3, total: 0 } }));
    }).not.toThrow();
    const s = await samples(registry);
    expect(s.get('dancegate_bytes_total{listener="api",direction="from_client"}')).toBe(0);
    expect(s.get('dancegate_bytes_total{listener="api",direction="to_client"}')).toBe(3);
    expect(s.get('dancegate_upstream_connect_seconds_count{listener="api"}')).toBe(0);
    expect(s.get('dancegate_dane_lookups_total{outcome="secure"}')).toBe(1);
    expect(s.get('dancegate_dane_lookup_seconds_count')).toBe(0);
    expect(s.get('dancegate_handshake_seconds_count{listener="api"}')).toBe(0);
    expect(s.get('dancegate_dane_decision_seconds_count{listener="api"}')).toBe(0);
  });

  it('close() stops counting', async () => {
    const { metrics, registry } = fresh();
    decisionChannel.publish(decision({}));
    metrics.close();
    decisionChannel.publish(decision({}));
    lookupChannel.publish({ name: 'a.example', cache: 'miss', outcome: 'secure' });
    resolveChannel.publish({ outcome: 'secure', seconds: 0.1 });
    upstreamErrorChannel.publish({ listener: 'api', upstream: 'u', identity: undefined, source: 's', error: 'e' });
    const s = await samples(registry);
    expect(s.get('dancegate_connections_total{listener="api",outcome="refused",reason="no-certificate"}')).toBe(1);
    expect(s.get('dancegate_tlsa_cache_total{result="miss"}')).toBe(0);
    expect(s.get('dancegate_dane_lookups_total{outcome="secure"}')).toBe(0);
    expect(s.get('dancegate_upstream_errors_total{listener="api"}')).toBe(0);
    expect(decisionChannel.hasSubscribers).toBe(false);
  });

  it('gauges read the live state when scraped; build info and reload state', async () => {
    const { metrics, registry } = fresh();
    metrics.reloads.inc({ result: 'failure' });
    metrics.lastReloadSuccess.set(0);
    const s = await samples(registry);
    expect(s.get('dancegate_config_generation')).toBe(7);
    expect(s.get('dancegate_resolver_in_flight')).toBe(2);
    expect(s.get('dancegate_resolver_queued')).toBe(1);
    expect(s.get('dancegate_resolver_zones_saturated')).toBe(0);
    expect(s.get('dancegate_handshakes_in_progress')).toBe(3);
    expect(s.get('dancegate_open_connections')).toBe(4);
    expect(s.get(`dancegate_build_info{version="1.2.3",node="${process.version}"}`)).toBe(1);
    expect(s.get('dancegate_config_reloads_total{result="failure"}')).toBe(1);
    expect(s.get('dancegate_config_reloads_total{result="success"}')).toBe(0);
    expect(s.get('dancegate_config_last_reload_successful')).toBe(0);
  });

  it('without a proxy yet the gauges read 0', async () => {
    const { registry } = fresh(() => undefined);
    const s = await samples(registry);
    expect(s.get('dancegate_config_generation')).toBe(0);
    expect(s.get('dancegate_open_connections')).toBe(0);
  });
});

describe('metric names', () => {
  it("Node's process metrics under prom-client's standard names, no dancegate_process_ prefix", async () => {
    const { registry } = fresh();
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names.filter((n) => n.startsWith('dancegate_process_'))).toEqual([]);
    expect(names.filter((n) => n.includes('process_process_'))).toEqual([]);
    for (const standard of [
      'process_cpu_seconds_total',
      'process_cpu_user_seconds_total',
      'process_start_time_seconds',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_active_handles',
      'nodejs_version_info',
      'nodejs_gc_duration_seconds',
    ]) {
      expect(names).toContain(standard);
    }
    // Every name either is ours or is prom-client's standard process/Node.js set.
    expect(names.filter((n) => !/^(dancegate|process|nodejs)_/.test(n))).toEqual([]);
  });

  it('no gauge name ends in _total; every counter name does', async () => {
    const { metrics, registry } = fresh();
    metrics.knownListeners(['api']);
    const json = await registry.getMetricsAsJSON();
    const byType = (t: string): string[] => json.filter((m) => String(m.type) === t).map((m) => m.name);
    expect(byType('gauge').filter((n) => n.endsWith('_total'))).toEqual([]);
    expect(byType('counter').filter((n) => !n.endsWith('_total'))).toEqual([]);
    expect(byType('gauge')).toContain('dancegate_open_connections');
    // prom-client's duplicate `_total` gauges are gone, the unsuffixed ones stay.
    expect(byType('gauge')).not.toContain('nodejs_active_handles_total');
    expect(byType('gauge')).toContain('nodejs_active_requests');
    expect((await registry.metrics()).split('\n').filter((l) => /^nodejs_active_\w+_total[ {]/.test(l))).toEqual([]);
  });
});

describe('series start at 0', () => {
  it('before any traffic: every reason, outcome and result of a configured listener', async () => {
    const { metrics, registry } = fresh();
    metrics.knownListeners(['api', { name: 'web', policy: 'optional' }, { name: 'mqtt', policy: 'required' }]);
    const s = await samples(registry);
    const connections = (listener: string): string[] => [...s.keys()].filter((k) => k.startsWith(`dancegate_connections_total{listener="${listener}",`));
    expect(connections('api')).toHaveLength(1 + REFUSAL_REASONS.length);
    expect(connections('mqtt')).toHaveLength(1 + REFUSAL_REASONS.length);
    expect(connections('web')).toHaveLength(1 + 2 * REFUSAL_REASONS.length);
    expect(s.get('dancegate_connections_total{listener="api",outcome="forwarded",reason="authenticated"}')).toBe(0);
    for (const reason of REFUSAL_REASONS) {
      expect(s.get(`dancegate_connections_total{listener="api",outcome="refused",reason="${reason}"}`)).toBe(0);
      expect(s.get(`dancegate_connections_total{listener="api",outcome="forwarded",reason="${reason}"}`)).toBeUndefined();
      expect(s.get(`dancegate_connections_total{listener="web",outcome="forwarded",reason="${reason}"}`)).toBe(0);
    }
    for (const listener of ['api', 'web', 'mqtt']) {
      expect(s.get(`dancegate_tls_handshakes_total{listener="${listener}",result="completed",tls_version="TLSv1.2"}`)).toBe(0);
      expect(s.get(`dancegate_tls_handshakes_total{listener="${listener}",result="completed",tls_version="TLSv1.3"}`)).toBe(0);
      expect(s.get(`dancegate_tls_handshakes_total{listener="${listener}",result="failed",tls_version="none"}`)).toBe(0);
      expect(s.get(`dancegate_bytes_total{listener="${listener}",direction="from_client"}`)).toBe(0);
      expect(s.get(`dancegate_bytes_total{listener="${listener}",direction="to_client"}`)).toBe(0);
      expect(s.get(`dancegate_upstream_errors_total{listener="${listener}"}`)).toBe(0);
      expect(s.get(`dancegate_handshake_seconds_count{listener="${listener}"}`)).toBe(0);
      expect(s.get(`dancegate_dane_decision_seconds_count{listener="${listener}"}`)).toBe(0);
      expect(s.get(`dancegate_upstream_connect_seconds_count{listener="${listener}"}`)).toBe(0);
    }
    for (const outcome of LOOKUP_OUTCOMES) expect(s.get(`dancegate_dane_lookups_total{outcome="${outcome}"}`)).toBe(0);
    for (const result of CACHE_RESULTS) expect(s.get(`dancegate_tlsa_cache_total{result="${result}"}`)).toBe(0);
    expect(s.get('dancegate_config_reloads_total{result="success"}')).toBe(0);
    expect(s.get('dancegate_config_reloads_total{result="failure"}')).toBe(0);
    // Bounded: nothing per listener beyond these sets.
    expect([...s.keys()].filter((k) => k.startsWith('dancegate_tls_handshakes_total'))).toHaveLength(9);
  });

  it('a reload adds the new listeners and keeps counts; re-announcing a listener does not reset it', async () => {
    const { metrics, registry } = fresh();
    metrics.knownListeners(['api']);
    decisionChannel.publish(decision({ outcome: 'refused', reason: 'not-allowed' }));
    metrics.knownListeners(['api', 'new']);
    metrics.knownListeners([{ name: 'api', policy: 'optional' }]);
    const s = await samples(registry);
    expect(s.get('dancegate_connections_total{listener="api",outcome="refused",reason="not-allowed"}')).toBe(1);
    expect(s.get('dancegate_connections_total{listener="new",outcome="refused",reason="not-allowed"}')).toBe(0);
    // The policy became optional: the unauthenticated series appear.
    expect(s.get('dancegate_connections_total{listener="api",outcome="forwarded",reason="not-allowed"}')).toBe(0);
  });

  it('a listener first seen on a channel gets its series at 0 too', async () => {
    const { registry } = fresh();
    upstreamBytesChannel.publish({ listener: 'late', fromClient: 10, toClient: 0 });
    const s = await samples(registry);
    expect(s.get('dancegate_bytes_total{listener="late",direction="from_client"}')).toBe(10);
    expect(s.get('dancegate_connections_total{listener="late",outcome="refused",reason="no-route"}')).toBe(0);
    expect(s.get('dancegate_upstream_errors_total{listener="late"}')).toBe(0);
  });
});

describe('label sets (pure)', () => {
  it.each<[string, boolean, number, number]>([
    ['policy required', false, 1 + REFUSAL_REASONS.length, 0],
    ['policy optional', true, 1 + 2 * REFUSAL_REASONS.length, REFUSAL_REASONS.length],
  ])('connectionSeries: %s', (_label, optional, total, forwardedUnauthenticated) => {
    const series = connectionSeries(optional);
    expect(series).toHaveLength(total);
    expect(series.filter((s) => s.outcome === 'forwarded' && s.reason !== 'authenticated')).toHaveLength(forwardedUnauthenticated);
    expect(series.filter((s) => s.outcome === 'refused').map((s) => s.reason)).toEqual(REFUSAL_REASONS);
    expect(series.filter((s) => s.reason === 'authenticated')).toEqual([{ outcome: 'forwarded', reason: 'authenticated' }]);
  });

  it('handshakeSeries', () => {
    expect(handshakeSeries()).toEqual([
      { result: 'completed', tls_version: 'TLSv1.2' },
      { result: 'completed', tls_version: 'TLSv1.3' },
      { result: 'failed', tls_version: 'none' },
    ]);
  });
});
