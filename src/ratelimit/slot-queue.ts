/**
 * Slots per key with a FIFO queue: at most `maxPerKey` tickets of a key
 * hold a slot at once; the others wait, in arrival order, until a holder
 * releases. Used for the TLS handshakes of one client address (see
 * Admission.enterTlsPhase). Pure: no timers, no I/O.
 *
 * Every ticket ends exactly once: `release()` gives back the slot it holds
 * or its place in the queue, and does nothing the second time. Memory is
 * bounded by the tickets alive (a key with none is forgotten); the caller
 * bounds those (the handshake budget per address).
 *
 * `onGranted` runs when the ticket gets its slot: synchronously inside
 * `enter` when one is free, otherwise inside the `release` that frees it.
 * It may release tickets (its own included) or enter new ones; grants
 * triggered meanwhile are handed out by the outermost loop, in order.
 */
export type SlotState = 'waiting' | 'held' | 'released';

export interface SlotTicket {
  readonly key: string;
  readonly state: SlotState;
  /** Give back the slot or the place in the queue. Idempotent; may be called unbound. */
  readonly release: () => void;
}

interface Entry {
  held: number;
  /** Insertion-ordered: the first one is the next to be granted; removal of any is O(1). */
  readonly waiting: Set<Ticket>;
  granting: boolean;
}

class Ticket implements SlotTicket {
  state: SlotState = 'waiting';
  constructor(
    readonly key: string,
    readonly onGranted: (ticket: SlotTicket) => void,
    private readonly owner: PerKeySlots,
  ) {}

  /** Bound: may be passed around on its own. */
  readonly release = (): void => this.owner.release(this);
}

export class PerKeySlots {
  private readonly entries = new Map<string, Entry>();

  constructor(readonly maxPerKey: number) {
    if (!Number.isInteger(maxPerKey) || maxPerKey < 1) throw new RangeError(`slots per key must be an integer >= 1, got ${maxPerKey}`);
  }

  /** A new ticket for `key`, granted at once (FIFO: only if nobody of `key` is waiting) or queued. */
  enter(key: string, onGranted: (ticket: SlotTicket) => void): SlotTicket {
    let entry = this.entries.get(key);
    if (entry === undefined) this.entries.set(key, (entry = { held: 0, waiting: new Set(), granting: false }));
    const ticket = new Ticket(key, onGranted, this);
    entry.waiting.add(ticket);
    this.grant(key, entry);
    return ticket;
  }

  /** @internal Called by SlotTicket.release. */
  release(ticket: Ticket): void {
    const entry = this.entries.get(ticket.key);
    const was = ticket.state;
    if (was === 'released' || entry === undefined) return;
    ticket.state = 'released';
    if (was === 'waiting') entry.waiting.delete(ticket);
    else entry.held--;
    this.grant(ticket.key, entry);
  }

  /** Hand free slots to the first waiters; forget the key when nothing is left. */
  private grant(key: string, entry: Entry): void {
    if (entry.granting) return;
    entry.granting = true;
    try {
      while (entry.held < this.maxPerKey) {
        const next = entry.waiting.values().next();
        if (next.done === true) break;
        const ticket = next.value;
        entry.waiting.delete(ticket);
        entry.held++;
        ticket.state = 'held';
        ticket.onGranted(ticket);
      }
    } finally {
      entry.granting = false;
      if (entry.held === 0 && entry.waiting.size === 0 && this.entries.get(key) === entry) this.entries.delete(key);
    }
  }

  /** Tickets of `key` holding a slot. */
  heldBy(key: string): number {
    return this.entries.get(key)?.held ?? 0;
  }

  /** Tickets of `key` waiting for one. */
  waitingFor(key: string): number {
    return this.entries.get(key)?.waiting.size ?? 0;
  }

  /** Keys with at least one live ticket (0 when every ticket has been released). */
  get keys(): number {
    return this.entries.size;
  }
}
