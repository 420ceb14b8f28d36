/**
 * Admission to one route's upstream pool, so that no client can pin it:
 * at most `maxInFlight` requests hold an upstream connection at once;
 * each client key (verified identity, or address when unauthenticated)
 * may hold or wait for at most `maxPerClient` of them; a request waits at
 * most `maxWaitMs` for a free connection, in FIFO order, in a queue of at
 * most `maxQueued`. Past any limit the request is refused at once (the
 * caller answers 503 + Retry-After). Every waiter has one timer; nothing
 * else grows.
 */

export interface UpstreamGateOptions {
  readonly maxInFlight: number;
  readonly maxPerClient: number;
  readonly maxWaitMs: number;
  readonly maxQueued: number;
}

export type GateRefusal = 'client-limit' | 'queue-full' | 'wait-timeout' | 'aborted';

export type GateResult = { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly reason: GateRefusal; readonly detail: string };

interface Waiter {
  readonly key: string;
  readonly resolve: (result: GateResult) => void;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
  signal: AbortSignal | undefined;
}

export class UpstreamGate {
  private inFlight = 0;
  /** In flight or waiting, per client key (keys with 0 are deleted). */
  private readonly perClient = new Map<string, number>();
  private readonly queue: Waiter[] = [];

  constructor(readonly options: UpstreamGateOptions) {}

  get active(): number {
    return this.inFlight;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Ask for an upstream slot for `key`; resolves once granted or refused. Call `release` exactly once when done. */
  acquire(key: string, signal?: AbortSignal): Promise<GateResult> {
    const held = this.perClient.get(key) ?? 0;
    if (held >= this.options.maxPerClient) {
      return Promise.resolve({ ok: false, reason: 'client-limit', detail: `${key} already has ${held} upstream requests in flight or waiting (limit ${this.options.maxPerClient})` });
    }
    if (signal?.aborted) return Promise.resolve({ ok: false, reason: 'aborted', detail: 'the client went away' });
    if (this.inFlight < this.options.maxInFlight && this.queue.length === 0) {
      this.perClient.set(key, held + 1);
      this.inFlight++;
      return Promise.resolve(this.granted(key));
    }
    if (this.queue.length >= this.options.maxQueued) {
      return Promise.resolve({ ok: false, reason: 'queue-full', detail: `${this.queue.length} requests already wait for an upstream connection` });
    }
    this.perClient.set(key, held + 1);
    return new Promise<GateResult>((resolve) => {
      const waiter: Waiter = { key, resolve, timer: undefined, onAbort: undefined, signal };
      waiter.timer = setTimeout(() => this.drop(waiter, { ok: false, reason: 'wait-timeout', detail: `no upstream connection became free within ${this.options.maxWaitMs} ms` }), this.options.maxWaitMs);
      waiter.timer.unref();
      if (signal) {
        waiter.onAbort = () => this.drop(waiter, { ok: false, reason: 'aborted', detail: 'the client went away' });
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.queue.push(waiter);
    });
  }

  private granted(key: string): GateResult {
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.inFlight--;
        this.decrement(key);
        this.next();
      },
    };
  }

  private decrement(key: string): void {
    const n = (this.perClient.get(key) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(key);
    else this.perClient.set(key, n);
  }

  private settle(waiter: Waiter): void {
    if (waiter.timer) clearTimeout(waiter.timer);
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
  }

  /** A waiter gives up (timeout, client gone): leave the queue, refused. */
  private drop(waiter: Waiter, result: GateResult): void {
    const index = this.queue.indexOf(waiter);
    if (index === -1) return;
    this.queue.splice(index, 1);
    this.settle(waiter);
    this.decrement(waiter.key);
    waiter.resolve(result);
  }

  private next(): void {
    while (this.inFlight < this.options.maxInFlight) {
      const waiter = this.queue.shift();
      if (!waiter) return;
      this.settle(waiter);
      this.inFlight++;
      waiter.resolve(this.granted(waiter.key));
    }
  }
}
