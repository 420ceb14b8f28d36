/**
 * Connections per verified name (maxConnectionsPerIdentity): refuse-new
 * refuses past the cap; newest-wins takes the oldest holder's slot and tells
 * it once, with the exact detail, never holding more than the cap. Releases
 * are harmless whatever their order, and a name with no holder is forgotten.
 * Also Admission.admitIdentity, which hands onReplaced through.
 */
import { describe, expect, it } from 'vitest';
import { Admission, ADMISSION_DEFAULTS, type AdmissionLimits } from '../../src/ratelimit/admission.js';
import { IdentitySlots, type IdentitySlot } from '../../src/ratelimit/identity-slots.js';

const A = 'meter1._device.example.test';
const B = 'meter2._device.example.test';

/** The slot's release, or a failure naming what was refused. */
function held(slot: IdentitySlot): () => void {
  if (!slot.ok) throw new Error(`expected a slot, refused at limit ${slot.limit}`);
  return slot.release;
}

/** A holder that records every onReplaced call. */
function holder(): { told: string[]; onReplaced: (detail: string) => void } {
  const told: string[] = [];
  return { told, onReplaced: (detail) => told.push(detail) };
}

const replacedDetail = (name: string, max: number): string => `a newer connection of ${name} took its place (maxConnectionsPerIdentity ${max}, newest-wins)`;

describe('IdentitySlots: refuse-new', () => {
  it('refuses past the cap with the limit, per name; a release frees one slot', () => {
    const slots = new IdentitySlots(2, 'refuse-new');
    const first = holder();
    const r1 = held(slots.acquire(A, first.onReplaced));
    held(slots.acquire(A));
    expect(slots.acquire(A)).toEqual({ ok: false, limit: 2 });
    expect(slots.heldBy(A)).toBe(2);
    // Another name has its own slots.
    held(slots.acquire(B));
    expect(slots.heldBy(B)).toBe(1);
    r1();
    expect(slots.heldBy(A)).toBe(1);
    expect(slots.acquire(A).ok).toBe(true);
    expect(slots.acquire(A)).toEqual({ ok: false, limit: 2 });
    // Nobody is ever told to go under refuse-new.
    expect(first.told).toEqual([]);
  });

  it('a release called twice frees one slot only', () => {
    const slots = new IdentitySlots(2, 'refuse-new');
    const r1 = held(slots.acquire(A));
    held(slots.acquire(A));
    r1();
    r1();
    expect(slots.heldBy(A)).toBe(1);
    held(slots.acquire(A));
    expect(slots.acquire(A)).toEqual({ ok: false, limit: 2 });
  });
});

describe('IdentitySlots: newest-wins', () => {
  it('cap 1: each newer connection takes the slot, the one it replaces is told once with the exact detail', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const [h1, h2, h3] = [holder(), holder(), holder()];
    held(slots.acquire(A, h1.onReplaced));
    expect(slots.heldBy(A)).toBe(1);
    held(slots.acquire(A, h2.onReplaced));
    expect(h1.told).toEqual([replacedDetail(A, 1)]);
    expect(h2.told).toEqual([]);
    expect(slots.heldBy(A)).toBe(1);
    held(slots.acquire(A, h3.onReplaced));
    expect([h1.told.length, h2.told, h3.told]).toEqual([1, [replacedDetail(A, 1)], []]);
    expect(slots.heldBy(A)).toBe(1);
  });

  it('cap 3: the oldest goes first, in order; the count never exceeds the cap', () => {
    const slots = new IdentitySlots(3, 'newest-wins');
    const holders = Array.from({ length: 7 }, () => holder());
    const counts: number[] = [];
    for (const h of holders) {
      held(slots.acquire(A, h.onReplaced));
      counts.push(slots.heldBy(A));
    }
    expect(counts).toEqual([1, 2, 3, 3, 3, 3, 3]);
    expect(holders.map((h) => h.told.length)).toEqual([1, 1, 1, 1, 0, 0, 0]);
    expect(holders[0]?.told).toEqual([replacedDetail(A, 3)]);
  });

  it('the count is already at the cap while the replaced holder is told (its slot is given up first)', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    let seen: number | undefined;
    held(slots.acquire(A, () => (seen = slots.heldBy(A))));
    held(slots.acquire(A));
    expect(seen).toBe(0);
    expect(slots.heldBy(A)).toBe(1);
  });

  it('a holder released before the cap is reached is never told', () => {
    const slots = new IdentitySlots(2, 'newest-wins');
    const [h1, h2, h3, h4] = [holder(), holder(), holder(), holder()];
    const r1 = held(slots.acquire(A, h1.onReplaced));
    held(slots.acquire(A, h2.onReplaced));
    r1();
    held(slots.acquire(A, h3.onReplaced));
    expect([h1.told, h2.told, h3.told]).toEqual([[], [], []]);
    held(slots.acquire(A, h4.onReplaced));
    expect([h1.told, h2.told, h3.told, h4.told]).toEqual([[], [replacedDetail(A, 2)], [], []]);
  });

  it("the release of a replaced holder is harmless: it frees nobody else's slot", () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const h2 = holder();
    const r1 = held(slots.acquire(A));
    const r2 = held(slots.acquire(A, h2.onReplaced));
    // The replaced connection closes later and releases: the newest still holds the only slot.
    r1();
    r1();
    expect(slots.heldBy(A)).toBe(1);
    expect(slots.names).toBe(1);
    const h3 = holder();
    held(slots.acquire(A, h3.onReplaced));
    expect(h2.told).toEqual([replacedDetail(A, 1)]);
    expect(slots.heldBy(A)).toBe(1);
    r2();
    expect(slots.heldBy(A)).toBe(1);
  });

  it('a late release of a replaced holder, after the name was forgotten and taken again, frees nothing', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const r1 = held(slots.acquire(A));
    const r2 = held(slots.acquire(A));
    r2();
    expect(slots.names).toBe(0);
    const h3 = holder();
    held(slots.acquire(A, h3.onReplaced));
    r1();
    expect(slots.heldBy(A)).toBe(1);
    expect(slots.names).toBe(1);
    held(slots.acquire(A));
    expect(h3.told).toEqual([replacedDetail(A, 1)]);
  });

  it('a holder without onReplaced is replaced silently', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    held(slots.acquire(A));
    expect(slots.acquire(A).ok).toBe(true);
    expect(slots.heldBy(A)).toBe(1);
  });

  it('names are independent: replacing one never touches another', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const [a, b] = [holder(), holder()];
    held(slots.acquire(A, a.onReplaced));
    held(slots.acquire(B, b.onReplaced));
    held(slots.acquire(B));
    expect([a.told, b.told]).toEqual([[], [replacedDetail(B, 1)]]);
    expect([slots.heldBy(A), slots.heldBy(B), slots.names]).toEqual([1, 1, 2]);
  });
});

describe('IdentitySlots: bounded', () => {
  it.each(['refuse-new', 'newest-wins'] as const)('%s: names with no holder are forgotten (1000 names come and go)', (overflow) => {
    const slots = new IdentitySlots(2, overflow);
    const releases = Array.from({ length: 1000 }, (_, i) => held(slots.acquire(`d${i}._device.example.test`)));
    expect(slots.names).toBe(1000);
    for (const release of releases) release();
    expect(slots.names).toBe(0);
    expect(slots.heldBy('d0._device.example.test')).toBe(0);
  });

  it('newest-wins: 10 000 reconnections of one name hold one entry and one slot', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    let last: (() => void) | undefined;
    for (let i = 0; i < 10_000; i++) last = held(slots.acquire(A, () => undefined));
    expect([slots.names, slots.heldBy(A)]).toEqual([1, 1]);
    last?.();
    expect(slots.names).toBe(0);
  });

  it.each([0, -1, 1.5, Number.NaN])('a cap of %s is a RangeError', (max) => {
    expect(() => new IdentitySlots(max, 'refuse-new')).toThrow(new RangeError(`maxConnectionsPerIdentity must be an integer >= 1, got ${max}`));
  });
});

describe('Admission.admitIdentity', () => {
  const limits = (over: Partial<AdmissionLimits>): AdmissionLimits => ({ ...ADMISSION_DEFAULTS, ...over });

  it('refuse-new (the default overflow): identity-limit with the exact detail', () => {
    const admission = new Admission(limits({ maxConnectionsPerIdentity: 1 }));
    const told: string[] = [];
    const first = admission.admitIdentity(A, (d) => told.push(d));
    expect(first.ok).toBe(true);
    expect(admission.admitIdentity(A, (d) => told.push(d))).toEqual({ ok: false, reason: 'identity-limit', detail: `${A} already has 1 connections` });
    expect(told).toEqual([]);
  });

  it('newest-wins: the second is admitted and the first is told through the onReplaced it passed', () => {
    const admission = new Admission(limits({ maxConnectionsPerIdentity: 1, identityOverflow: 'newest-wins' }));
    const [first, second] = [holder(), holder()];
    const a1 = admission.admitIdentity(A, first.onReplaced);
    const a2 = admission.admitIdentity(A, second.onReplaced);
    expect([a1.ok, a2.ok]).toEqual([true, true]);
    expect(first.told).toEqual([replacedDetail(A, 1)]);
    expect(second.told).toEqual([]);
    // The first one's release (its socket closing) does not free the second's slot.
    if (a1.ok) a1.release();
    const third = holder();
    expect(admission.admitIdentity(A, third.onReplaced).ok).toBe(true);
    expect(second.told).toEqual([replacedDetail(A, 1)]);
  });

  it('no cap: every connection is admitted and nobody is told', () => {
    const admission = new Admission(limits({ maxConnectionsPerIdentity: undefined, identityOverflow: 'newest-wins' }));
    const told: string[] = [];
    const results = Array.from({ length: 20 }, () => admission.admitIdentity(A, (d) => told.push(d)).ok);
    expect(results.every(Boolean)).toBe(true);
    expect(told).toEqual([]);
  });
});
