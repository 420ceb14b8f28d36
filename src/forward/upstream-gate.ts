/**
 * Admission to one route's upstream pool, so that no client can pin it:
 * at most `maxInFlight` requests hold an upstream connection at once;
 * each client key (verified identity, or address when unauthenticated)
 * may hold or wait for at most `maxPerClient` of them; a request waits at
 * most `maxWaitMs` for a free connection, in FIFO order, in a queue of at
 * most `maxQueued`. Past any limit the request is refused at once (the
 * caller answers 503 + Retry-After). Every waiter has one timer; nothing
 * else grows.
 *
 * Built from the rate-limit parts: a ConcurrencyLimiter holds the
 * per-client count (from the request's arrival to its release) and
 * PerKeySlots, with the whole pool as its one key, the FIFO queue for a
 * connection. This file adds only the queue bound, the wait deadline and
 * the client going away.
 */
import { ConcurrencyLimiter } from '../ratelimit/concurrency.js';
import { PerKeySlots, type SlotTicket } from '../ratelimit/slot-queue.js';

export interface UpstreamGateOptions {
  readonly maxInFlight: number;
  readonly maxPerClient: number;
  readonly maxWaitMs: number;
  readonly maxQueued: number;
}

export type GateRefusal = 'client-limit' | 'queue-full' | 'wait-timeout' | 'aborted';

export type GateResult = { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly reason: GateRefusal; readonly detail: string };

/** The one key of the slot queue: every request of this gate waits for the same pool. */
const POOL = 'pool';

const ABORTED: GateResult = { ok: false, reason: 'aborted', detail: 'the client went away' };

export class UpstreamGate {
  /** In flight or waiting, per client key. */
  private readonly perClient: ConcurrencyLimiter;
  /** Upstream connections: held, or waited for in FIFO order. */
  private readonly slots: PerKeySlots;

  constructor(readonly options: UpstreamGateOptions) {
    this.perClient = new ConcurrencyLimiter({ maxTotal: Infinity, maxPerKey: options.maxPerClient });
    this.slots = new PerKeySlots(options.maxInFlight);
  }

  get active(): number {
    return this.slots.heldBy(POOL);
  }

  get waiting(): number {
    return this.slots.waitingFor(POOL);
  }

  /**
   * The slot for `key` at once, when one is free, nobody waits and `key` is under its share; otherwise
   * undefined (then acquire(), which may wait). No promise, no timer: the common case of a request.
   */
  tryAcquire(key: string): GateResult | undefined {
    if (this.active >= this.options.maxInFlight || this.waiting > 0) return undefined;
    const client = this.perClient.tryAcquire(key);
    if (!client.ok) return undefined;
    let held: SlotTicket | undefined;
    const ticket = this.slots.enter(POOL, (granted) => (held = granted));
    if (held === undefined) {
      // Cannot happen (a free slot and no waiter), but never leave a waiter behind.
      ticket.release();
      client.release();
      return undefined;
    }
    return {
      ok: true,
      release: () => {
        client.release();
        ticket.release();
      },
    };
  }

  /** Ask for an upstream slot for `key`; resolves once granted or refused. Call `release` exactly once when done. */
  acquire(key: string, signal?: AbortSignal): Promise<GateResult> {
    const client = this.perClient.tryAcquire(key);
    if (!client.ok) {
      const held = this.perClient.heldBy(key);
      return Promise.resolve({ ok: false, reason: 'client-limit', detail: `${key} already has ${held} upstream requests in flight or waiting (limit ${this.options.maxPerClient})` });
    }
    if (signal?.aborted) {
      client.release();
      return Promise.resolve(ABORTED);
    }
    const free = this.active < this.options.maxInFlight && this.waiting === 0;
    if (!free && this.waiting >= this.options.maxQueued) {
      client.release();
      return Promise.resolve({ ok: false, reason: 'queue-full', detail: `${this.waiting} requests already wait for an upstream connection` });
    }
    return new Promise<GateResult>((resolve) => {
      // Armed only when the request has to wait (a grant can come at once, inside enter()).
      const armed: { timer?: NodeJS.Timeout; onAbort?: () => void } = {};
      const settle = (result: GateResult): void => {
        clearTimeout(armed.timer);
        if (armed.onAbort !== undefined) signal?.removeEventListener('abort', armed.onAbort);
        resolve(result);
      };
      const granted = (slot: SlotTicket): void =>
        settle({
          ok: true,
          release: () => {
            client.release();
            slot.release();
          },
        });
      const ticket = this.slots.enter(POOL, granted);
      if (ticket.state !== 'waiting') return;
      // A waiter that gives up leaves the queue and its client's count.
      const giveUp = (result: GateResult): void => {
        if (ticket.state !== 'waiting') return;
        ticket.release();
        client.release();
        settle(result);
      };
      armed.onAbort = (): void => giveUp(ABORTED);
      armed.timer = setTimeout(() => giveUp({ ok: false, reason: 'wait-timeout', detail: `no upstream connection became free within ${this.options.maxWaitMs} ms` }), this.options.maxWaitMs);
      armed.timer.unref();
      signal?.addEventListener('abort', armed.onAbort, { once: true });
    });
  }
}
