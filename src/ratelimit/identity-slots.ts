/**
 * Connections per verified name, capped: when a name already holds its
 * maximum, either the new connection is refused (refuse-new) or the oldest
 * one of that name is told to close and the new one takes its place
 * (newest-wins: a device that reconnects while its old, half-open socket
 * lingers is not locked out until that socket times out).
 *
 * Under newest-wins a new connection's slot is provisional until `confirm`:
 * the native engine verifies the client while its handshake is paused, before
 * the client has proved it holds the key (CertificateVerify, Finished), and a
 * certificate is public (DANE-EE records can even publish it). Only a
 * confirmed connection (its handshake complete) counts against the cap and
 * can replace an older one; provisional ones are bounded by the handshake
 * budget. Bounded by the connections that hold a slot; a name with none is
 * forgotten.
 */
export type IdentityOverflow = 'refuse-new' | 'newest-wins';

/** Told once, when a newer connection of the same name takes this one's slot. */
export type OnReplaced = (detail: string) => void;

export type IdentitySlot =
  | {
      readonly ok: true;
      /** Give the slot back (idempotent; harmless after being replaced). */
      readonly release: () => void;
      /** The connection is established (its handshake complete): under newest-wins, older connections over the cap are replaced now. */
      readonly confirm: () => void;
    }
  | { readonly ok: false; readonly limit: number };

interface Holder {
  readonly onReplaced: OnReplaced | undefined;
  confirmed: boolean;
}

export class IdentitySlots {
  /** Holders by name, oldest first (a Set keeps insertion order). */
  private readonly byName = new Map<string, Set<Holder>>();

  constructor(
    private readonly maxPerName: number,
    private readonly overflow: IdentityOverflow,
  ) {
    if (!Number.isInteger(maxPerName) || maxPerName < 1) throw new RangeError(`maxConnectionsPerIdentity must be an integer >= 1, got ${maxPerName}`);
  }

  acquire(name: string, onReplaced?: OnReplaced): IdentitySlot {
    let holders = this.byName.get(name);
    if (holders === undefined) this.byName.set(name, (holders = new Set()));
    // refuse-new counts every holder; newest-wins only confirmed ones (and never refuses).
    if (this.overflow === 'refuse-new' && holders.size >= this.maxPerName) return { ok: false, limit: this.maxPerName };
    const holder: Holder = { onReplaced, confirmed: this.overflow === 'refuse-new' };
    holders.add(holder);
    const set = holders;
    return {
      ok: true,
      release: () => {
        set.delete(holder);
        if (set.size === 0 && this.byName.get(name) === set) this.byName.delete(name);
      },
      confirm: () => {
        if (holder.confirmed || !set.has(holder)) return;
        holder.confirmed = true;
        this.replaceOldest(name, set, holder);
      },
    };
  }

  /** Slots of `name`, provisional ones included. */
  heldBy(name: string): number {
    return this.byName.get(name)?.size ?? 0;
  }

  /** Names holding at least one slot (0 when idle: nothing leaks). */
  get names(): number {
    return this.byName.size;
  }

  /** newest-wins: while the name has more confirmed connections than the cap, the oldest confirmed one (never `newest`) gives up its slot, then is told. */
  private replaceOldest(name: string, set: Set<Holder>, newest: Holder): void {
    let confirmed = 0;
    for (const h of set) if (h.confirmed) confirmed++;
    for (const h of [...set]) {
      if (confirmed <= this.maxPerName) return;
      if (!h.confirmed || h === newest) continue;
      set.delete(h);
      confirmed--;
      h.onReplaced?.(`a newer connection of ${name} took its place (maxConnectionsPerIdentity ${this.maxPerName}, newest-wins)`);
    }
  }
}
