/**
 * Concurrency caps: at most `maxTotal` holders overall and `maxPerKey` per
 * key (a source address, a verified identity). `tryAcquire` returns a
 * release function (idempotent) or which cap was hit. Memory is bounded by
 * the number of current holders.
 */
export type AcquireResult = { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly cap: 'total' | 'per-key'; readonly limit: number };

export class ConcurrencyLimiter {
  private total = 0;
  private readonly byKey = new Map<string, number>();

  constructor(private readonly limits: { readonly maxTotal: number; readonly maxPerKey: number }) {
    for (const [k, v] of Object.entries(limits)) {
      if (!(v === Infinity || (Number.isInteger(v) && v >= 1))) throw new RangeError(`concurrency ${k} must be an integer >= 1, got ${v}`);
    }
  }

  tryAcquire(key: string): AcquireResult {
    if (this.total >= this.limits.maxTotal) return { ok: false, cap: 'total', limit: this.limits.maxTotal };
    const held = this.byKey.get(key) ?? 0;
    if (held >= this.limits.maxPerKey) return { ok: false, cap: 'per-key', limit: this.limits.maxPerKey };
    this.total++;
    this.byKey.set(key, held + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        const left = (this.byKey.get(key) ?? 1) - 1;
        if (left === 0) this.byKey.delete(key);
        else this.byKey.set(key, left);
      },
    };
  }

  get current(): number {
    return this.total;
  }

  heldBy(key: string): number {
    return this.byKey.get(key) ?? 0;
  }
}
