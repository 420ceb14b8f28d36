/**
 * The cluster's counters never go backwards: a dead worker's last counters
 * stay in the sum, a silent worker stands in with its last counters, and a
 * dead worker's gauges are dropped.
 */
import { AggregatorRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { MetricFamily } from '../../src/process/ipc.js';
import { WorkerCounters, cumulativeOnly, sumFamilies } from '../../src/process/worker-counters.js';

const counter = (n: number, reason = 'authenticated'): MetricFamily => ({
  name: 'dancegate_connections_total',
  type: 'counter',
  help: 'h',
  aggregator: 'sum',
  values: [{ value: n, labels: { listener: 'api', reason } }],
});
const gauge = (n: number): MetricFamily => ({ name: 'dancegate_open_connections', type: 'gauge', help: 'h', aggregator: 'sum', values: [{ value: n, labels: {} }] });
const histogram = (count: number): MetricFamily => ({
  name: 'dancegate_handshake_seconds',
  type: 'histogram',
  help: 'h',
  aggregator: 'sum',
  values: [
    { value: count, labels: { le: 0.1, listener: 'api' }, metricName: 'dancegate_handshake_seconds_bucket' },
    { value: count, labels: { listener: 'api' }, metricName: 'dancegate_handshake_seconds_count' },
  ],
});

/** What /metrics would say for `sample`, after prom-client's aggregation. */
async function sampleOf(sets: MetricFamily[][], sample: string): Promise<number | undefined> {
  const text = await AggregatorRegistry.aggregate(sets).metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

const CONNECTIONS = 'dancegate_connections_total{listener="api",reason="authenticated"}';

describe('sumFamilies and cumulativeOnly', () => {
  it('adds samples with the same name, metricName and labels; keeps others apart; drops gauges', () => {
    expect(sumFamilies([[counter(2), gauge(5)], [counter(3), counter(1, 'not-allowed')], [histogram(4)], [histogram(1)]])).toEqual([
      {
        name: 'dancegate_connections_total',
        type: 'counter',
        help: 'h',
        aggregator: 'sum',
        values: [
          { value: 5, labels: { listener: 'api', reason: 'authenticated' } },
          { value: 1, labels: { listener: 'api', reason: 'not-allowed' } },
        ],
      },
      {
        name: 'dancegate_handshake_seconds',
        type: 'histogram',
        help: 'h',
        aggregator: 'sum',
        values: [
          { value: 5, labels: { le: 0.1, listener: 'api' }, metricName: 'dancegate_handshake_seconds_bucket' },
          { value: 5, labels: { listener: 'api' }, metricName: 'dancegate_handshake_seconds_count' },
        ],
      },
    ]);
    expect(cumulativeOnly([gauge(1), counter(1), histogram(1)]).map((f) => f.name)).toEqual(['dancegate_connections_total', 'dancegate_handshake_seconds']);
  });
});

describe('WorkerCounters', () => {
  it('13 connections over two workers stay 13 when one dies, and grow from there', async () => {
    const c = new WorkerCounters();
    c.add(1);
    c.add(2);
    const first = c.scrape(
      new Map([
        [1, [counter(7), gauge(2)]],
        [2, [counter(6), gauge(3)]],
      ]),
    );
    expect(await sampleOf(first, CONNECTIONS)).toBe(13);
    expect(await sampleOf(first, 'dancegate_open_connections')).toBe(5);
    c.retire(1);
    c.add(3);
    const afterDeath = c.scrape(new Map([[2, [counter(6), gauge(3)]]]));
    expect(await sampleOf(afterDeath, CONNECTIONS)).toBe(13);
    // The dead worker's gauge is gone.
    expect(await sampleOf(afterDeath, 'dancegate_open_connections')).toBe(3);
    const later = c.scrape(
      new Map([
        [2, [counter(8)]],
        [3, [counter(1)]],
      ]),
    );
    expect(await sampleOf(later, CONNECTIONS)).toBe(7 + 8 + 1);
  });

  it('a live worker that does not answer stands in with its last counters (not its gauges)', async () => {
    const c = new WorkerCounters();
    c.add(1);
    c.add(2);
    c.scrape(
      new Map([
        [1, [counter(4), gauge(1)]],
        [2, [counter(5), gauge(1)]],
      ]),
    );
    const partial = c.scrape(new Map([[2, [counter(6), gauge(1)]]]));
    expect(await sampleOf(partial, CONNECTIONS)).toBe(10);
    expect(await sampleOf(partial, 'dancegate_open_connections')).toBe(1);
  });

  it('an answer of a worker already retired is not counted twice', async () => {
    const c = new WorkerCounters();
    c.add(1);
    c.scrape(new Map([[1, [counter(4)]]]));
    c.retire(1);
    const sets = c.scrape(new Map([[1, [counter(4)]]]));
    expect(await sampleOf(sets, CONNECTIONS)).toBe(4);
    c.retire(1);
    expect(await sampleOf(c.scrape(new Map()), CONNECTIONS)).toBe(4);
  });

  it('a worker that died before any scrape adds nothing; histograms carry over like counters', async () => {
    const c = new WorkerCounters();
    c.add(1);
    c.add(2);
    c.retire(1);
    c.scrape(new Map([[2, [histogram(3)]]]));
    c.retire(2);
    const sets = c.scrape(new Map());
    expect(await sampleOf(sets, 'dancegate_handshake_seconds_count{listener="api"}')).toBe(3);
    expect(await sampleOf(sets, 'dancegate_handshake_seconds_bucket{le="0.1",listener="api"}')).toBe(3);
  });
});
