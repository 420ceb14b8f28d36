/**
 * Counts of connection decisions by listener, outcome and reason code (the
 * same codes as the decision log), for one running proxy. The proxy feeds it
 * from its own decision sink, so it counts that proxy's connections only
 * (decisionChannel is process-wide: it would mix every proxy in the process).
 * Keys are bounded: listener names come from the configuration and reasons
 * from the catalog (src/reasons.ts). Prometheus gets its counts elsewhere
 * (ProxyMetrics, from decisionChannel).
 */
import type { DecisionRecord } from '../connection/decision-log.js';

export class DecisionCounters {
  private readonly counts = new Map<string, number>();

  count(record: Pick<DecisionRecord, 'listener' | 'outcome' | 'reason'>): void {
    const key = `${record.listener}\u0000${record.outcome}\u0000${record.reason}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Every counter, e.g. { listener: 'api', outcome: 'refused', reason: 'not-allowed', count: 3 }. */
  snapshot(): Array<{ listener: string; outcome: string; reason: string; count: number }> {
    return [...this.counts].map(([key, count]) => {
      const [listener, outcome, reason] = key.split('\u0000') as [string, string, string];
      return { listener, outcome, reason, count };
    });
  }

  /** Sum over listeners for one outcome and reason. */
  total(outcome: string, reason: string): number {
    let sum = 0;
    for (const c of this.snapshot()) if (c.outcome === outcome && c.reason === reason) sum += c.count;
    return sum;
  }
}
