/**
 * The resolver gate, between the TLSA cache and the resolver: a global cap
 * on queries in flight, a per-zone cap (keyed on the parent of the queried
 * name) so one slow zone cannot take the capacity others need, and a
 * bounded FIFO with a maximum wait behind them. Queued lookups of a zone
 * at its cap do not block those of other zones (the first eligible entry
 * runs, not just the head). Over capacity is an immediate 'over-capacity'
 * outcome: nothing queues without bound, nothing waits without a deadline.
 * A caller that aborts while queued is dropped without a query.
 */
import { outcome, type LookupOutcome } from './tlsa-answer.js';
import type { TlsaResolver } from './tlsa-resolver.js';

export interface ResolverGateOptions {
  /** Queries in flight to the resolver, all zones together. Keep well below Unbound's wait-limit (1000). */
  readonly maxInFlight: number;
  /** Queries in flight for one zone. */
  readonly maxInFlightPerZone: number;
  /** Lookups waiting for a slot, all zones together. */
  readonly maxQueued: number;
  /** Lookups waiting for a slot, one zone. */
  readonly maxQueuedPerZone: number;
  /** Longest wait for a slot before the lookup is refused as over capacity. */
  readonly maxQueueWaitMs: number;
}

export const RESOLVER_GATE_DEFAULTS: ResolverGateOptions = {
  maxInFlight: 128,
  maxInFlightPerZone: 8,
  maxQueued: 1024,
  maxQueuedPerZone: 32,
  maxQueueWaitMs: 2000,
};

/** The zone key of a name: its parent ("a._device.example.com" → "_device.example.com"); a single label is its own key. Pure. */
export function zoneKeyOf(name: string): string {
  const dot = name.indexOf('.');
  return dot === -1 ? name : name.slice(dot + 1);
}

export interface ResolverGateStats {
  readonly inFlight: number;
  readonly queued: number;
  /** Zones with at least one query in flight. */
  readonly zonesInFlight: number;
  /** Zones at their in-flight cap. */
  readonly zonesSaturated: number;
  /** Lookups refused as over capacity since start, by cause. */
  readonly refused: { readonly queueFull: number; readonly zoneQueueFull: number; readonly waitExpired: number };
  /** Queued lookups dropped because their caller went away. */
  readonly cancelled: number;
}

interface Waiting {
  readonly name: string;
  readonly zone: string;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (o: LookupOutcome) => void;
  readonly reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  onAbort: (() => void) | undefined;
}

/** Queue sizes may be 0 (no waiting at all); caps and the wait must be at least 1. */
const MAY_BE_ZERO = new Set(['maxQueued', 'maxQueuedPerZone']);

function checkOptions(o: ResolverGateOptions): void {
  for (const [key, value] of Object.entries(o)) {
    const min = MAY_BE_ZERO.has(key) ? 0 : 1;
    if (!Number.isInteger(value) || (value as number) < min) throw new RangeError(`resolver gate ${key} must be an integer >= ${min}, got ${String(value)}`);
  }
  if (o.maxInFlightPerZone > o.maxInFlight) throw new RangeError('resolver gate maxInFlightPerZone must not exceed maxInFlight');
  if (o.maxQueuedPerZone > o.maxQueued) throw new RangeError('resolver gate maxQueuedPerZone must not exceed maxQueued');
}

export class ResolverGate implements TlsaResolver {
  private readonly options: ResolverGateOptions;
  private inFlight = 0;
  private readonly inFlightByZone = new Map<string, number>();
  private readonly queuedByZone = new Map<string, number>();
  /** FIFO; bounded by maxQueued, so the linear scans below are bounded too. */
  private readonly queue: Waiting[] = [];
  private readonly counts = { queueFull: 0, zoneQueueFull: 0, waitExpired: 0, cancelled: 0 };

  constructor(
    private readonly inner: TlsaResolver,
    options: Partial<ResolverGateOptions> = {},
  ) {
    this.options = { ...RESOLVER_GATE_DEFAULTS, ...options };
    checkOptions(this.options);
  }

  lookup(name: string, signal?: AbortSignal): Promise<LookupOutcome> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const zone = zoneKeyOf(name);
    if (this.hasSlot(zone)) return this.run(name, zone, signal);
    const o = this.options;
    if (this.queue.length >= o.maxQueued) {
      this.counts.queueFull++;
      return Promise.resolve(outcome('over-capacity', `resolver gate full: ${this.inFlight} queries in flight, ${this.queue.length} waiting (limit ${o.maxQueued})`));
    }
    const zoneQueued = this.queuedByZone.get(zone) ?? 0;
    if (zoneQueued >= o.maxQueuedPerZone) {
      this.counts.zoneQueueFull++;
      return Promise.resolve(
        outcome('over-capacity', `zone ${zone} has ${this.inFlightByZone.get(zone) ?? 0} queries in flight and ${zoneQueued} waiting (limits ${o.maxInFlightPerZone}/${o.maxQueuedPerZone})`),
      );
    }
    return new Promise<LookupOutcome>((resolve, reject) => {
      const waiting: Waiting = { name, zone, signal, resolve, reject, timer: undefined, onAbort: undefined };
      waiting.timer = setTimeout(() => {
        this.remove(waiting);
        this.counts.waitExpired++;
        resolve(outcome('over-capacity', `no resolver slot within ${o.maxQueueWaitMs} ms (zone ${zone})`));
      }, o.maxQueueWaitMs);
      if (signal) {
        waiting.onAbort = () => {
          this.remove(waiting);
          this.counts.cancelled++;
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiting.onAbort, { once: true });
      }
      this.queue.push(waiting);
      this.queuedByZone.set(zone, zoneQueued + 1);
    });
  }

  stats(): ResolverGateStats {
    let saturated = 0;
    for (const n of this.inFlightByZone.values()) if (n >= this.options.maxInFlightPerZone) saturated++;
    return {
      inFlight: this.inFlight,
      queued: this.queue.length,
      zonesInFlight: this.inFlightByZone.size,
      zonesSaturated: saturated,
      refused: { queueFull: this.counts.queueFull, zoneQueueFull: this.counts.zoneQueueFull, waitExpired: this.counts.waitExpired },
      cancelled: this.counts.cancelled,
    };
  }

  private hasSlot(zone: string): boolean {
    return this.inFlight < this.options.maxInFlight && (this.inFlightByZone.get(zone) ?? 0) < this.options.maxInFlightPerZone;
  }

  private async run(name: string, zone: string, signal: AbortSignal | undefined): Promise<LookupOutcome> {
    this.inFlight++;
    this.inFlightByZone.set(zone, (this.inFlightByZone.get(zone) ?? 0) + 1);
    try {
      return await this.inner.lookup(name, signal);
    } finally {
      this.inFlight--;
      const left = (this.inFlightByZone.get(zone) ?? 1) - 1;
      if (left === 0) this.inFlightByZone.delete(zone);
      else this.inFlightByZone.set(zone, left);
      // On the next turn of the event loop, not now: a slot freed because its client went away is often
      // one of a burst of closes, and the queued lookups of the other clients of that burst must be
      // cancelled (no query) before they could be started.
      this.schedulePump();
    }
  }

  private pumpScheduled = false;

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Start every queued lookup that has a slot now, oldest first. */
  private pump(): void {
    for (let i = 0; i < this.queue.length && this.inFlight < this.options.maxInFlight;) {
      const waiting = this.queue[i] as Waiting;
      if (!this.hasSlot(waiting.zone)) {
        i++;
        continue;
      }
      this.remove(waiting);
      this.run(waiting.name, waiting.zone, waiting.signal).then(waiting.resolve, waiting.reject);
    }
  }

  private remove(waiting: Waiting): void {
    const index = this.queue.indexOf(waiting);
    if (index === -1) return;
    this.queue.splice(index, 1);
    clearTimeout(waiting.timer);
    if (waiting.onAbort) waiting.signal?.removeEventListener('abort', waiting.onAbort);
    const left = (this.queuedByZone.get(waiting.zone) ?? 1) - 1;
    if (left === 0) this.queuedByZone.delete(waiting.zone);
    else this.queuedByZone.set(waiting.zone, left);
  }
}
