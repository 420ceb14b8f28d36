import { describe, expect, it } from 'vitest';
import { DecisionCounters } from '../../src/metrics/decision-counters.js';

describe("DecisionCounters (the running proxy's own counts, fed by its decision sink)", () => {
  const feed = (): DecisionCounters => {
    const c = new DecisionCounters();
    c.count({ listener: 'api', outcome: 'forwarded', reason: 'authenticated' });
    c.count({ listener: 'api', outcome: 'forwarded', reason: 'authenticated' });
    c.count({ listener: 'api', outcome: 'refused', reason: 'not-allowed' });
    c.count({ listener: 'mqtt', outcome: 'refused', reason: 'not-allowed' });
    c.count({ listener: 'web', outcome: 'forwarded', reason: 'no-certificate' });
    return c;
  };

  it('snapshot: one entry per listener, outcome and reason, with exact counts', () => {
    expect(feed().snapshot()).toEqual([
      { listener: 'api', outcome: 'forwarded', reason: 'authenticated', count: 2 },
      { listener: 'api', outcome: 'refused', reason: 'not-allowed', count: 1 },
      { listener: 'mqtt', outcome: 'refused', reason: 'not-allowed', count: 1 },
      { listener: 'web', outcome: 'forwarded', reason: 'no-certificate', count: 1 },
    ]);
  });

  it.each<[string, string, number]>([
    ['refused', 'not-allowed', 2],
    ['forwarded', 'authenticated', 2],
    ['forwarded', 'no-certificate', 1],
    ['refused', 'no-certificate', 0],
    ['refused', 'client-closed', 0],
  ])('total(%s, %s) sums over listeners: %i', (outcome, reason, expected) => {
    expect(feed().total(outcome, reason)).toBe(expected);
  });

  it('starts empty', () => {
    expect(new DecisionCounters().snapshot()).toEqual([]);
  });
});
