/**
 * Cluster counters that never go backwards. The primary's /metrics sums
 * what the live workers report; when a worker dies its counts would vanish
 * from the sum (connections_total 13 → 7). So the primary keeps each
 * worker's last reported counters (and histograms, which are counters
 * too), adds a dead worker's last values to a `retired` total, and stands
 * in a live worker's last values when it does not answer a scrape. Gauges
 * of a dead worker are dropped (they described a process that is gone).
 * Bounded: one snapshot per live worker, and one retired total whose size
 * is bounded by the label values (which are bounded, see metrics.ts).
 */
import type { MetricFamily } from './ipc.js';

/** Families whose values only grow. */
const isCumulative = (f: MetricFamily): boolean => f.type === 'counter' || f.type === 'histogram';

/** Only the cumulative families of a worker's metrics. Pure. */
export function cumulativeOnly(families: readonly MetricFamily[]): MetricFamily[] {
  return families.filter(isCumulative);
}

const sampleKey = (v: MetricFamily['values'][number]): string =>
  `${v.metricName ?? ''}\u0000${Object.entries(v.labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, x]) => `${k}=${String(x)}`)
    .join('\u0000')}`;

/** The sample-by-sample sum of cumulative families (same name, metricName and labels add up). Pure. */
export function sumFamilies(sets: ReadonlyArray<readonly MetricFamily[]>): MetricFamily[] {
  const families = new Map<string, { family: MetricFamily; samples: Map<string, MetricFamily['values'][number]> }>();
  for (const set of sets) {
    for (const f of set) {
      if (!isCumulative(f)) continue;
      let entry = families.get(f.name);
      if (entry === undefined) families.set(f.name, (entry = { family: f, samples: new Map() }));
      for (const v of f.values) {
        const key = sampleKey(v);
        const had = entry.samples.get(key);
        entry.samples.set(key, had === undefined ? { ...v } : { ...had, value: had.value + v.value });
      }
    }
  }
  return [...families.values()].map(({ family, samples }) => ({ name: family.name, type: family.type, help: family.help, aggregator: family.aggregator, values: [...samples.values()] }));
}

export class WorkerCounters {
  /** Each live worker's last reported cumulative families, by worker id (empty until it answers a scrape). */
  private readonly last = new Map<number, MetricFamily[]>();
  /** The sum of every dead worker's last counters. */
  private retired: MetricFamily[] = [];

  /** A worker started. */
  add(workerId: number): void {
    if (!this.last.has(workerId)) this.last.set(workerId, []);
  }

  /** The worker is gone: its last counters move into the retired total (an answer that arrives later is ignored). */
  retire(workerId: number): void {
    const last = this.last.get(workerId);
    this.last.delete(workerId);
    if (last !== undefined && last.length > 0) this.retired = sumFamilies([this.retired, last]);
  }

  /**
   * The metric sets to aggregate for a scrape that `answers` answered (by
   * worker id, their full metrics): each answer of a live worker as it is,
   * the last counters of every live worker that did not answer, and the
   * retired total.
   */
  scrape(answers: ReadonlyMap<number, readonly MetricFamily[]>): MetricFamily[][] {
    const sets: MetricFamily[][] = [];
    for (const [id, last] of this.last) {
      const answer = answers.get(id);
      if (answer !== undefined) {
        this.last.set(id, cumulativeOnly(answer));
        sets.push([...answer]);
      } else if (last.length > 0) sets.push(last);
    }
    if (this.retired.length > 0) sets.push(this.retired);
    return sets;
  }
}
