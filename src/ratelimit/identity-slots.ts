/**
 * Connections per verified name, capped: when a name already holds its
 * maximum, either the new connection is refused (refuse-new) or the oldest
 * one of that name is told to close and the new one takes its place
 * (newest-wins: a device that reconnects while its old, half-open socket
 * lingers is not locked out until that socket times out). Bounded by the
 * connections that hold a slot; a name with none is forgotten.
 */
export type IdentityOverflow = 'refuse-new' | 'newest-wins';

/** Told once, when a newer connection of the same name takes this one's slot. */
export type OnReplaced = (detail: string) => void;

export type IdentitySlot = { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly limit: number };

interface Holder {
  readonly onReplaced: OnReplaced | undefined;
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
    if (holders.size >= this.maxPerName) {
      if (this.overflow === 'refuse-new') return { ok: false, limit: this.maxPerName };
      // The oldest gives up its slot now (so the count never exceeds the cap), then is told to close.
      const oldest = holders.values().next().value;
      if (oldest !== undefined) {
        holders.delete(oldest);
        oldest.onReplaced?.(`a newer connection of ${name} took its place (maxConnectionsPerIdentity ${this.maxPerName}, newest-wins)`);
      }
    }
    const holder: Holder = { onReplaced };
    holders.add(holder);
    const set = holders;
    return {
      ok: true,
      release: () => {
        set.delete(holder);
        if (set.size === 0 && this.byName.get(name) === set) this.byName.delete(name);
      },
    };
  }

  heldBy(name: string): number {
    return this.byName.get(name)?.size ?? 0;
  }

  /** Names holding at least one slot (0 when idle: nothing leaks). */
  get names(): number {
    return this.byName.size;
  }
}
