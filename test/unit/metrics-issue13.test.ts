/**
 * The issue 13 metrics, fed by their channels: per-upstream attempts,
 * health and ejections; HTTP requests by protocol and status class, their
 * duration, refusals by catalog reason; HTTP/2 abuse by kind. Exact
 * exposition lines, series started at 0 for configured listeners and
 * upstreams, and bounded label values whatever a producer sends.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { http2AbuseChannel, httpRequestChannel, upstreamAttemptChannel, upstreamHealthChannel, type HttpRequestEvent } from '../../src/forward/channels.js';
import {
  HTTP2_ABUSE_KINDS,
  MAX_UNCONFIGURED_UPSTREAMS,
  OTHER_UPSTREAM,
  ProxyMetrics,
  REFUSAL_LABELS,
  abuseLabel,
  refusalLabel,
  statusClass,
  type KnownListener,
  type LiveState,
} from '../../src/metrics/metrics.js';
import { REQUEST_REFUSALS } from '../../src/reasons.js';

const open: ProxyMetrics[] = [];
afterEach(() => {
  for (const m of open.splice(0)) m.close();
});

const STATE: LiveState = { gateStats: () => undefined, handshakesInProgress: () => 0, openConnections: () => 0, generation: () => 1 };

function fresh(): { metrics: ProxyMetrics; registry: Registry } {
  const registry = new Registry();
  const metrics = new ProxyMetrics('1.2.3', () => STATE, { registry });
  open.push(metrics);
  return { metrics, registry };
}

/** The exposition lines of the metric families whose names start with one of `prefixes`, in the registry's order. */
async function lines(registry: Registry, ...prefixes: string[]): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((l) => !l.startsWith('#') && prefixes.some((p) => l.startsWith(p)));
}

const httpListener = (name: string, upstreams: readonly string[][]): KnownListener => ({
  name,
  policy: 'required',
  mode: 'http',
  routes: upstreams.map((names) => ({ upstreams: { targets: names.map((n) => ({ name: n })) } })),
});

const request = (over: Partial<HttpRequestEvent>): HttpRequestEvent => ({
  listener: 'api',
  connectionId: 'c-1',
  identity: 'a.example',
  protocol: 'h1',
  method: 'GET',
  path: '/',
  status: 200,
  bytesIn: 0,
  bytesOut: 10,
  upstream: 'b1',
  upstreamMs: 2,
  totalMs: 3,
  refusal: undefined,
  log: true,
  ...over,
});

describe('per-upstream metrics', () => {
  it('configured upstreams start at 0 and healthy; attempts and ejections count by their labels', async () => {
    const { metrics, registry } = fresh();
    metrics.knownListeners([httpListener('api', [['b1', 'b2']])]);
    expect(await lines(registry, 'dancegate_upstream_attempts_total', 'dancegate_upstream_healthy', 'dancegate_upstream_ejections_total')).toEqual([
      'dancegate_upstream_attempts_total{listener="api",upstream="b1",outcome="ok"} 0',
      'dancegate_upstream_attempts_total{listener="api",upstream="b1",outcome="connect-failed"} 0',
      'dancegate_upstream_attempts_total{listener="api",upstream="b1",outcome="failed"} 0',
      'dancegate_upstream_attempts_total{listener="api",upstream="b2",outcome="ok"} 0',
      'dancegate_upstream_attempts_total{listener="api",upstream="b2",outcome="connect-failed"} 0',
      'dancegate_upstream_attempts_total{listener="api",upstream="b2",outcome="failed"} 0',
      'dancegate_upstream_healthy{listener="api",upstream="b1"} 1',
      'dancegate_upstream_healthy{listener="api",upstream="b2"} 1',
      'dancegate_upstream_ejections_total{listener="api",upstream="b1",cause="passive"} 0',
      'dancegate_upstream_ejections_total{listener="api",upstream="b1",cause="active"} 0',
      'dancegate_upstream_ejections_total{listener="api",upstream="b2",cause="passive"} 0',
      'dancegate_upstream_ejections_total{listener="api",upstream="b2",cause="active"} 0',
    ]);
    for (const outcome of ['ok', 'ok', 'connect-failed', 'failed', 'ok'] as const) upstreamAttemptChannel.publish({ listener: 'api', upstream: 'b1', outcome, seconds: 0.01 });
    upstreamHealthChannel.publish({ listener: 'api', upstream: 'b2', healthy: false, cause: 'passive', detail: '5 failures in a row; ejected for 10000 ms' });
    upstreamHealthChannel.publish({ listener: 'api', upstream: 'b2', healthy: true, cause: 'passive', detail: 'ejection of 10000 ms over; on probation' });
    upstreamHealthChannel.publish({ listener: 'api', upstream: 'b2', healthy: false, cause: 'active', detail: 'GET /healthz: 503; 3 checks failed in a row' });
    expect(
      await lines(registry, 'dancegate_upstream_attempts_total{listener="api",upstream="b1"', 'dancegate_upstream_healthy', 'dancegate_upstream_ejections_total{listener="api",upstream="b2"'),
    ).toEqual([
      'dancegate_upstream_attempts_total{listener="api",upstream="b1",outcome="ok"} 3',
      'dancegate_upstream_attempts_total{listener="api",upstream="b1",outcome="connect-failed"} 1',
      'dancegate_upstream_attempts_total{listener="api",upstream="b1",outcome="failed"} 1',
      'dancegate_upstream_healthy{listener="api",upstream="b1"} 1',
      'dancegate_upstream_healthy{listener="api",upstream="b2"} 0',
      'dancegate_upstream_ejections_total{listener="api",upstream="b2",cause="passive"} 1',
      'dancegate_upstream_ejections_total{listener="api",upstream="b2",cause="active"} 1',
    ]);
  });

  it('a reload: new upstreams start at 0, every configured one healthy again, a removed one loses its gauge but keeps its counts', async () => {
    const { metrics, registry } = fresh();
    metrics.knownListeners([httpListener('api', [['b1', 'b2']])]);
    upstreamAttemptChannel.publish({ listener: 'api', upstream: 'b2', outcome: 'ok', seconds: 0.01 });
    upstreamHealthChannel.publish({ listener: 'api', upstream: 'b1', healthy: false, cause: 'active', detail: 'x' });
    metrics.knownListeners([httpListener('api', [['b1'], ['b3']])]);
    expect(
      await lines(
        registry,
        'dancegate_upstream_healthy',
        'dancegate_upstream_attempts_total{listener="api",upstream="b2",outcome="ok"}',
        'dancegate_upstream_attempts_total{listener="api",upstream="b3"',
      ),
    ).toEqual([
      'dancegate_upstream_attempts_total{listener="api",upstream="b2",outcome="ok"} 1',
      'dancegate_upstream_attempts_total{listener="api",upstream="b3",outcome="ok"} 0',
      'dancegate_upstream_attempts_total{listener="api",upstream="b3",outcome="connect-failed"} 0',
      'dancegate_upstream_attempts_total{listener="api",upstream="b3",outcome="failed"} 0',
      'dancegate_upstream_healthy{listener="api",upstream="b1"} 1',
      'dancegate_upstream_healthy{listener="api",upstream="b3"} 1',
    ]);
  });

  it('TCP listeners get upstream series (from their routes) but no HTTP series', async () => {
    const { metrics, registry } = fresh();
    metrics.knownListeners([{ name: 'mqtt', policy: 'required', mode: 'tcp', routes: [{ upstreams: { targets: [{ name: 'broker:1883' }] } }] }]);
    expect(await lines(registry, 'dancegate_upstream_healthy', 'dancegate_http_requests_total')).toEqual(['dancegate_upstream_healthy{listener="mqtt",upstream="broker:1883"} 1']);
  });

  it(`upstream names no configuration announced: at most ${MAX_UNCONFIGURED_UPSTREAMS}, then ${OTHER_UPSTREAM}`, async () => {
    const { registry } = fresh();
    for (let i = 0; i < MAX_UNCONFIGURED_UPSTREAMS + 50; i++) upstreamAttemptChannel.publish({ listener: 'api', upstream: `u${i}`, outcome: 'ok', seconds: 0 });
    const attempts = await lines(registry, 'dancegate_upstream_attempts_total{');
    expect(attempts).toHaveLength(MAX_UNCONFIGURED_UPSTREAMS * 3 + 1);
    expect(attempts.at(-1)).toBe(`dancegate_upstream_attempts_total{listener="api",upstream="${OTHER_UPSTREAM}",outcome="ok"} 50`);
    expect(attempts).toContain('dancegate_upstream_attempts_total{listener="api",upstream="u0",outcome="ok"} 1');
  });

  it("a producer's nonsense outcome or cause is not counted and does not throw", async () => {
    const { metrics, registry } = fresh();
    metrics.knownListeners([httpListener('api', [['b1']])]);
    expect(() => {
      upstreamAttemptChannel.publish({ listener: 'api', upstream: 'b1', outcome: 'exploded' as 'ok', seconds: 1 });
      upstreamHealthChannel.publish({ listener: 'api', upstream: 'b1', healthy: false, cause: 'gossip' as 'active', detail: '' });
    }).not.toThrow();
    expect(await lines(registry, 'dancegate_upstream_attempts_total', 'dancegate_upstream_healthy', 'dancegate_upstream_ejections_total')).toEqual([
      'dancegate_upstream_attempts_total{listener="api",upstream="b1",outcome="ok"} 0',
      'dancegate_upstream_attempts_total{listener="api",upstream="b1",outcome="connect-failed"} 0',
      'dancegate_upstream_attempts_total{listener="api",upstream="b1",outcome="failed"} 0',
      'dancegate_upstream_healthy{listener="api",upstream="b1"} 1',
      'dancegate_upstream_ejections_total{listener="api",upstream="b1",cause="passive"} 0',
      'dancegate_upstream_ejections_total{listener="api",upstream="b1",cause="active"} 0',
    ]);
  });
});

describe('HTTP request metrics', () => {
  it('an HTTP listener starts every protocol × status class, refusal reason and abuse kind at 0', async () => {
    const { metrics, registry } = fresh();
    metrics.knownListeners([httpListener('api', [['b1']])]);
    expect(await lines(registry, 'dancegate_http_requests_total')).toEqual([
      'dancegate_http_requests_total{listener="api",protocol="h1",status_class="1xx"} 0',
      'dancegate_http_requests_total{listener="api",protocol="h1",status_class="2xx"} 0',
      'dancegate_http_requests_total{listener="api",protocol="h1",status_class="3xx"} 0',
      'dancegate_http_requests_total{listener="api",protocol="h1",status_class="4xx"} 0',
      'dancegate_http_requests_total{listener="api",protocol="h1",status_class="5xx"} 0',
      'dancegate_http_requests_total{listener="api",protocol="h2",status_class="1xx"} 0',
      'dancegate_http_requests_total{listener="api",protocol="h2",status_class="2xx"} 0',
      'dancegate_http_requests_total{listener="api",protocol="h2",status_class="3xx"} 0',
      'dancegate_http_requests_total{listener="api",protocol="h2",status_class="4xx"} 0',
      'dancegate_http_requests_total{listener="api",protocol="h2",status_class="5xx"} 0',
    ]);
    expect(await lines(registry, 'dancegate_http_request_refusals_total')).toEqual(REFUSAL_LABELS.map((r) => `dancegate_http_request_refusals_total{listener="api",reason="${r}"} 0`));
    expect(await lines(registry, 'dancegate_http2_abuse_total')).toEqual(HTTP2_ABUSE_KINDS.map((k) => `dancegate_http2_abuse_total{listener="api",kind="${k}"} 0`));
    expect(await lines(registry, 'dancegate_http_request_duration_seconds_count')).toEqual([
      'dancegate_http_request_duration_seconds_count{listener="api",protocol="h1"} 0',
      'dancegate_http_request_duration_seconds_count{listener="api",protocol="h2"} 0',
    ]);
  });

  it('requests by protocol and status class, the duration histogram, refusals by reason', async () => {
    const { registry } = fresh();
    httpRequestChannel.publish(request({ status: 200, totalMs: 3 }));
    httpRequestChannel.publish(request({ status: 204, totalMs: 30 }));
    httpRequestChannel.publish(request({ protocol: 'h2', status: 302, totalMs: 1 }));
    httpRequestChannel.publish(request({ protocol: 'h2', status: 403, totalMs: 0.5, refusal: 'path-not-allowed', upstream: undefined }));
    httpRequestChannel.publish(request({ status: 429, totalMs: 0.2, refusal: 'request-rate-limited', upstream: undefined }));
    httpRequestChannel.publish(request({ status: 502, totalMs: 2000, refusal: 'upstream-unavailable' }));
    httpRequestChannel.publish(request({ status: 500, totalMs: 4 }));
    httpRequestChannel.publish(request({ status: 101, totalMs: 4 }));
    expect((await lines(registry, 'dancegate_http_requests_total')).filter((l) => !l.endsWith(' 0'))).toEqual([
      'dancegate_http_requests_total{listener="api",protocol="h1",status_class="1xx"} 1',
      'dancegate_http_requests_total{listener="api",protocol="h1",status_class="2xx"} 2',
      'dancegate_http_requests_total{listener="api",protocol="h1",status_class="4xx"} 1',
      'dancegate_http_requests_total{listener="api",protocol="h1",status_class="5xx"} 2',
      'dancegate_http_requests_total{listener="api",protocol="h2",status_class="3xx"} 1',
      'dancegate_http_requests_total{listener="api",protocol="h2",status_class="4xx"} 1',
    ]);
    expect((await lines(registry, 'dancegate_http_request_refusals_total')).filter((l) => !l.endsWith(' 0'))).toEqual([
      'dancegate_http_request_refusals_total{listener="api",reason="path-not-allowed"} 1',
      'dancegate_http_request_refusals_total{listener="api",reason="request-rate-limited"} 1',
      'dancegate_http_request_refusals_total{listener="api",reason="upstream-unavailable"} 1',
    ]);
    const h1 = await lines(
      registry,
      'dancegate_http_request_duration_seconds_bucket{le="0.001",listener="api",protocol="h1"}',
      'dancegate_http_request_duration_seconds_bucket{le="0.005",listener="api",protocol="h1"}',
      'dancegate_http_request_duration_seconds_bucket{le="0.001",listener="api",protocol="h2"}',
      'dancegate_http_request_duration_seconds_count',
      'dancegate_http_request_duration_seconds_sum',
    );
    expect(h1).toEqual([
      'dancegate_http_request_duration_seconds_bucket{le="0.001",listener="api",protocol="h1"} 1',
      'dancegate_http_request_duration_seconds_bucket{le="0.005",listener="api",protocol="h1"} 4',
      'dancegate_http_request_duration_seconds_sum{listener="api",protocol="h1"} 2.0412',
      'dancegate_http_request_duration_seconds_count{listener="api",protocol="h1"} 6',
      'dancegate_http_request_duration_seconds_bucket{le="0.001",listener="api",protocol="h2"} 2',
      'dancegate_http_request_duration_seconds_sum{listener="api",protocol="h2"} 0.0015',
      'dancegate_http_request_duration_seconds_count{listener="api",protocol="h2"} 2',
    ]);
  });

  it("a producer's nonsense: no status class, no protocol, an unknown refusal ('other'), a bad duration", async () => {
    const { registry } = fresh();
    expect(() => {
      httpRequestChannel.publish(request({ status: 0 }));
      httpRequestChannel.publish(request({ status: 600 }));
      httpRequestChannel.publish(request({ status: 200.5 }));
      httpRequestChannel.publish(request({ protocol: 'h3' as 'h2' }));
      httpRequestChannel.publish(request({ status: 400, refusal: 'made-up <script>', totalMs: Number.NaN }));
      httpRequestChannel.publish(request({ status: 400, refusal: 'toString', totalMs: -1 }));
    }).not.toThrow();
    expect((await lines(registry, 'dancegate_http_requests_total')).filter((l) => !l.endsWith(' 0'))).toEqual(['dancegate_http_requests_total{listener="api",protocol="h1",status_class="4xx"} 2']);
    expect((await lines(registry, 'dancegate_http_request_refusals_total')).filter((l) => !l.endsWith(' 0'))).toEqual(['dancegate_http_request_refusals_total{listener="api",reason="other"} 2']);
    expect(await lines(registry, 'dancegate_http_request_duration_seconds_count')).toEqual([
      'dancegate_http_request_duration_seconds_count{listener="api",protocol="h1"} 3',
      'dancegate_http_request_duration_seconds_count{listener="api",protocol="h2"} 0',
    ]);
    const text = await registry.metrics();
    expect(text).not.toContain('made-up');
    expect(text).not.toContain('a.example');
    expect(text).not.toContain('h3');
  });

  it('HTTP/2 abuse by kind; an unknown kind is other', async () => {
    const { registry } = fresh();
    for (const kind of ['reset-rate', 'reset-rate', 'continuation-flood', 'invalid-frames', 'a kind nobody listed']) {
      http2AbuseChannel.publish({ listener: 'api', connectionId: 'c-1', identity: undefined, kind, detail: 'x' });
    }
    expect((await lines(registry, 'dancegate_http2_abuse_total')).filter((l) => !l.endsWith(' 0'))).toEqual([
      'dancegate_http2_abuse_total{listener="api",kind="reset-rate"} 2',
      'dancegate_http2_abuse_total{listener="api",kind="invalid-frames"} 1',
      'dancegate_http2_abuse_total{listener="api",kind="continuation-flood"} 1',
      'dancegate_http2_abuse_total{listener="api",kind="other"} 1',
    ]);
  });

  it('close() stops counting the new channels too', async () => {
    const { metrics, registry } = fresh();
    metrics.close();
    httpRequestChannel.publish(request({}));
    upstreamAttemptChannel.publish({ listener: 'api', upstream: 'b1', outcome: 'ok', seconds: 0 });
    http2AbuseChannel.publish({ listener: 'api', connectionId: 'c', identity: undefined, kind: 'reset-rate', detail: '' });
    expect(await lines(registry, 'dancegate_http_requests_total', 'dancegate_upstream_attempts_total', 'dancegate_http2_abuse_total')).toEqual([]);
  });
});

describe('label helpers (pure)', () => {
  it.each<[number, string | undefined]>([
    [100, '1xx'],
    [199, '1xx'],
    [200, '2xx'],
    [308, '3xx'],
    [421, '4xx'],
    [599, '5xx'],
    [99, undefined],
    [600, undefined],
    [Number.NaN, undefined],
    [200.5, undefined],
  ])('statusClass(%s)', (status, expected) => {
    expect(statusClass(status)).toBe(expected);
  });

  it('refusalLabel: the catalog reasons, else other (no prototype keys)', () => {
    for (const reason of Object.keys(REQUEST_REFUSALS)) expect(refusalLabel(reason)).toBe(reason);
    expect(['constructor', '__proto__', 'hasOwnProperty', '', 'not-allowed'].map(refusalLabel)).toEqual(['other', 'other', 'other', 'other', 'other']);
  });

  it('abuseLabel', () => {
    expect(['reset-rate', 'flood', 'RESET-RATE', 'x'].map(abuseLabel)).toEqual(['reset-rate', 'flood', 'other', 'other']);
  });
});
