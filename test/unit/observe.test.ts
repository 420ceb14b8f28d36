import { describe, expect, it } from 'vitest';
import { typedChannel } from '../../src/observe.js';

describe('typedChannel', () => {
  it('delivers to subscribers, and nothing after unsubscribe', () => {
    const ch = typedChannel<{ n: number }>('dancegate:test:deliver');
    const seen: number[] = [];
    expect(ch.hasSubscribers).toBe(false);
    const off = ch.subscribe((m) => seen.push(m.n));
    expect(ch.hasSubscribers).toBe(true);
    ch.publish({ n: 1 });
    off();
    ch.publish({ n: 2 });
    expect(seen).toEqual([1]);
    expect(ch.hasSubscribers).toBe(false);
  });

  it('a subscriber that throws costs one warning, not the process, and the others still hear every message', async () => {
    const ch = typedChannel<{ n: number }>('dancegate:test:throwing');
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.message);
    process.on('warning', onWarning);
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => void uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    const seen: number[] = [];
    const offBad = ch.subscribe(() => {
      throw new Error('broken subscriber');
    });
    const offGood = ch.subscribe((m) => seen.push(m.n));
    try {
      ch.publish({ n: 1 });
      ch.publish({ n: 2 });
      await new Promise((r) => setTimeout(r, 20));
      expect(seen).toEqual([1, 2]);
      expect(uncaught).toEqual([]);
      expect(warnings).toEqual(['dancegate: a subscriber of dancegate:test:throwing failed: broken subscriber']);
    } finally {
      offBad();
      offGood();
      process.off('warning', onWarning);
      process.off('uncaughtException', onUncaught);
    }
  });
});
