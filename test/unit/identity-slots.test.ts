/**
 * Connections per verified name (maxConnectionsPerIdentity): refuse-new
 * refuses past the cap (every holder counts, confirm changes nothing);
 * newest-wins never refuses, and a slot is provisional until `confirm` (the
 * handshake complete, the client proved it holds the key): a provisional
 * holder neither counts against the cap nor replaces anyone, and a confirm
 * replaces the oldest confirmed holder over the cap (never itself, never a
 * provisional one), which is told once with the exact detail. Releases and
 * confirms are harmless whatever their order, and a name with no holder is
 * forgotten. Also Admission.admitIdentity, which hands onReplaced and
 * confirm through.
 */
import { describe, expect, it } from 'vitest';
import { Admission, ADMISSION_DEFAULTS, type AdmissionLimits } from '../../src/ratelimit/admission.js';
import { IdentitySlots, type IdentitySlot } from '../../src/ratelimit/identity-slots.js';

const A = 'meter1._device.example.test';
const B = 'meter2._device.example.test';

interface Held {
  readonly release: () => void;
  readonly confirm: () => void;
}

/** The slot's release and confirm, or a failure naming what was refused. */
function held(slot: IdentitySlot): Held {
  if (!slot.ok) throw new Error(`expected a slot, refused at limit ${slot.limit}`);
  return { release: slot.release, confirm: slot.confirm };
}

/** A holder that records every onReplaced call. */
function holder(): { told: string[]; onReplaced: (detail: string) => void } {
  const told: string[] = [];
  return { told, onReplaced: (detail) => told.push(detail) };
}

/** Acquire, then confirm at once: a connection whose handshake completed. */
function established(slots: IdentitySlots, name: string, onReplaced?: (detail: string) => void): Held {
  const slot = held(slots.acquire(name, onReplaced));
  slot.confirm();
  return slot;
}

const replacedDetail = (name: string, max: number): string => `a newer connection of ${name} took its place (maxConnectionsPerIdentity ${max}, newest-wins)`;

describe('IdentitySlots: refuse-new', () => {
  it('refuses past the cap with the limit, per name; a release frees one slot', () => {
    const slots = new IdentitySlots(2, 'refuse-new');
    const first = holder();
    const s1 = held(slots.acquire(A, first.onReplaced));
    held(slots.acquire(A));
    expect(slots.acquire(A)).toEqual({ ok: false, limit: 2 });
    expect(slots.heldBy(A)).toBe(2);
    // Another name has its own slots.
    held(slots.acquire(B));
    expect(slots.heldBy(B)).toBe(1);
    s1.release();
    expect(slots.heldBy(A)).toBe(1);
    expect(slots.acquire(A).ok).toBe(true);
    expect(slots.acquire(A)).toEqual({ ok: false, limit: 2 });
    // Nobody is ever told to go under refuse-new.
    expect(first.told).toEqual([]);
  });

  it('a release called twice frees one slot only', () => {
    const slots = new IdentitySlots(2, 'refuse-new');
    const s1 = held(slots.acquire(A));
    held(slots.acquire(A));
    s1.release();
    s1.release();
    expect(slots.heldBy(A)).toBe(1);
    held(slots.acquire(A));
    expect(slots.acquire(A)).toEqual({ ok: false, limit: 2 });
  });

  it('an unconfirmed holder counts; confirm changes nothing (no one is told, the cap still refuses)', () => {
    const slots = new IdentitySlots(1, 'refuse-new');
    const first = holder();
    const s1 = held(slots.acquire(A, first.onReplaced));
    expect(slots.acquire(A)).toEqual({ ok: false, limit: 1 });
    s1.confirm();
    s1.confirm();
    expect(slots.acquire(A)).toEqual({ ok: false, limit: 1 });
    expect([slots.heldBy(A), first.told]).toEqual([1, []]);
    s1.release();
    s1.confirm();
    expect([slots.heldBy(A), slots.names]).toEqual([0, 0]);
    expect(slots.acquire(A).ok).toBe(true);
  });
});

describe('IdentitySlots: newest-wins, confirmed connections', () => {
  it('cap 1: each newer confirmed connection takes the slot, the one it replaces is told once with the exact detail', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const [h1, h2, h3] = [holder(), holder(), holder()];
    established(slots, A, h1.onReplaced);
    expect(slots.heldBy(A)).toBe(1);
    established(slots, A, h2.onReplaced);
    expect([h1.told, h2.told]).toEqual([[replacedDetail(A, 1)], []]);
    expect(slots.heldBy(A)).toBe(1);
    established(slots, A, h3.onReplaced);
    expect([h1.told, h2.told, h3.told]).toEqual([[replacedDetail(A, 1)], [replacedDetail(A, 1)], []]);
    expect(slots.heldBy(A)).toBe(1);
  });

  it('cap 3: the oldest goes first, in order; the count never exceeds the cap', () => {
    const slots = new IdentitySlots(3, 'newest-wins');
    const holders = Array.from({ length: 7 }, () => holder());
    const counts: number[] = [];
    for (const h of holders) {
      established(slots, A, h.onReplaced);
      counts.push(slots.heldBy(A));
    }
    expect(counts).toEqual([1, 2, 3, 3, 3, 3, 3]);
    expect(holders.map((h) => h.told.length)).toEqual([1, 1, 1, 1, 0, 0, 0]);
    expect(holders[0]?.told).toEqual([replacedDetail(A, 3)]);
  });

  it('the replaced holder has given up its slot when it is told (the count is back at the cap)', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    let seen: number | undefined;
    established(slots, A, () => (seen = slots.heldBy(A)));
    const second = held(slots.acquire(A));
    expect([seen, slots.heldBy(A)]).toEqual([undefined, 2]);
    second.confirm();
    expect([seen, slots.heldBy(A)]).toEqual([1, 1]);
  });

  it('a holder released before the cap is reached is never told', () => {
    const slots = new IdentitySlots(2, 'newest-wins');
    const [h1, h2, h3, h4] = [holder(), holder(), holder(), holder()];
    const s1 = established(slots, A, h1.onReplaced);
    established(slots, A, h2.onReplaced);
    s1.release();
    established(slots, A, h3.onReplaced);
    expect([h1.told, h2.told, h3.told]).toEqual([[], [], []]);
    established(slots, A, h4.onReplaced);
    expect([h1.told, h2.told, h3.told, h4.told]).toEqual([[], [replacedDetail(A, 2)], [], []]);
  });

  it("the release of a replaced holder is harmless: it frees nobody else's slot", () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const h2 = holder();
    const s1 = established(slots, A);
    const s2 = established(slots, A, h2.onReplaced);
    // The replaced connection closes later and releases: the newest still holds the only slot.
    s1.release();
    s1.release();
    expect([slots.heldBy(A), slots.names]).toEqual([1, 1]);
    const h3 = holder();
    established(slots, A, h3.onReplaced);
    expect([h2.told, h3.told]).toEqual([[replacedDetail(A, 1)], []]);
    expect(slots.heldBy(A)).toBe(1);
    s2.release();
    expect(slots.heldBy(A)).toBe(1);
  });

  it('a late release of a replaced holder, after the name was forgotten and taken again, frees nothing', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const s1 = established(slots, A);
    const s2 = established(slots, A);
    s2.release();
    expect(slots.names).toBe(0);
    const h3 = holder();
    established(slots, A, h3.onReplaced);
    s1.release();
    expect([slots.heldBy(A), slots.names]).toEqual([1, 1]);
    established(slots, A);
    expect(h3.told).toEqual([replacedDetail(A, 1)]);
  });

  it('a holder without onReplaced is replaced silently', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    established(slots, A);
    const second = slots.acquire(A);
    expect(second.ok).toBe(true);
    held(second).confirm();
    expect(slots.heldBy(A)).toBe(1);
  });

  it('names are independent: replacing one never touches another', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const [a, b] = [holder(), holder()];
    established(slots, A, a.onReplaced);
    established(slots, B, b.onReplaced);
    established(slots, B);
    expect([a.told, b.told]).toEqual([[], [replacedDetail(B, 1)]]);
    expect([slots.heldBy(A), slots.heldBy(B), slots.names]).toEqual([1, 1, 2]);
  });
});

describe('IdentitySlots: newest-wins, provisional until confirm', () => {
  it('acquire never refuses and never replaces: 50 provisional holders of a name at cap 1, nobody told', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const victim = holder();
    const provisional = Array.from({ length: 50 }, () => holder());
    established(slots, A, victim.onReplaced);
    const heldSlots = provisional.map((h) => held(slots.acquire(A, h.onReplaced)));
    expect(slots.heldBy(A)).toBe(51);
    expect([victim.told, ...provisional.map((h) => h.told)]).toEqual(Array.from({ length: 51 }, () => []));
    // They go away (their handshakes fail or time out): the victim holds the only slot, untouched.
    for (const s of heldSlots) s.release();
    expect([slots.heldBy(A), slots.names, victim.told]).toEqual([1, 1, []]);
  });

  it('a provisional holder is not counted: cap 2, two confirmed among three provisional ones, nobody told; the third confirm replaces the oldest confirmed, passing over the provisional ones', () => {
    const slots = new IdentitySlots(2, 'newest-wins');
    const [c1, p1, p2, c2, p3, c3] = [holder(), holder(), holder(), holder(), holder(), holder()];
    established(slots, A, c1.onReplaced);
    held(slots.acquire(A, p1.onReplaced));
    held(slots.acquire(A, p2.onReplaced));
    established(slots, A, c2.onReplaced);
    held(slots.acquire(A, p3.onReplaced));
    expect(slots.heldBy(A)).toBe(5);
    expect([c1, p1, p2, c2, p3].map((h) => h.told)).toEqual([[], [], [], [], []]);
    established(slots, A, c3.onReplaced);
    expect([c1, p1, p2, c2, p3, c3].map((h) => h.told)).toEqual([[replacedDetail(A, 2)], [], [], [], [], []]);
    expect(slots.heldBy(A)).toBe(5);
  });

  it('a provisional holder older than every confirmed one is never replaced, however many confirms pass it', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const stalled = holder();
    held(slots.acquire(A, stalled.onReplaced));
    const confirmed = Array.from({ length: 5 }, () => holder());
    for (const h of confirmed) established(slots, A, h.onReplaced);
    expect(stalled.told).toEqual([]);
    expect(confirmed.map((h) => h.told.length)).toEqual([1, 1, 1, 1, 0]);
    expect(slots.heldBy(A)).toBe(2);
  });

  it('confirm replaces the oldest confirmed holders in order, one per confirm over the cap', () => {
    const slots = new IdentitySlots(2, 'newest-wins');
    const hs = Array.from({ length: 6 }, () => holder());
    // Six handshakes in flight at once, then completing in the order they started.
    const slotsHeld = hs.map((h) => held(slots.acquire(A, h.onReplaced)));
    const toldAfterEach: number[][] = [];
    for (const s of slotsHeld) {
      s.confirm();
      toldAfterEach.push(hs.map((h) => h.told.length));
    }
    expect(toldAfterEach).toEqual([
      [0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0],
      [1, 0, 0, 0, 0, 0],
      [1, 1, 0, 0, 0, 0],
      [1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 0, 0],
    ]);
    expect(hs[3]?.told).toEqual([replacedDetail(A, 2)]);
    expect(slots.heldBy(A)).toBe(2);
  });

  it('never itself: the confirming holder, even when it is the oldest holder of the name, replaces the other one', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const [older, newer] = [holder(), holder()];
    const first = held(slots.acquire(A, older.onReplaced));
    established(slots, A, newer.onReplaced);
    expect([older.told, newer.told]).toEqual([[], []]);
    // The first handshake completes last: it is the newest established connection.
    first.confirm();
    expect([older.told, newer.told]).toEqual([[], [replacedDetail(A, 1)]]);
    expect(slots.heldBy(A)).toBe(1);
  });

  it('"oldest" is by acquisition (verification) order, not by confirm order', () => {
    const slots = new IdentitySlots(2, 'newest-wins');
    const [p, q, r] = [holder(), holder(), holder()];
    const sp = held(slots.acquire(A, p.onReplaced));
    established(slots, A, q.onReplaced);
    sp.confirm();
    established(slots, A, r.onReplaced);
    // q was confirmed first, but p was acquired first: p goes.
    expect([p.told, q.told, r.told]).toEqual([[replacedDetail(A, 2)], [], []]);
  });

  it('the only confirmed holder confirming again, or alone at the cap, tells nobody', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const h = holder();
    const s = established(slots, A, h.onReplaced);
    s.confirm();
    s.confirm();
    expect([h.told, slots.heldBy(A)]).toEqual([[], 1]);
  });

  it('confirm after release does nothing: nobody is told and the released holder stays gone', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const victim = holder();
    established(slots, A, victim.onReplaced);
    const gone = held(slots.acquire(A));
    gone.release();
    gone.confirm();
    expect([victim.told, slots.heldBy(A)]).toEqual([[], 1]);
    // A later real one still replaces the victim: the released holder did not come back as confirmed.
    const next = holder();
    established(slots, A, next.onReplaced);
    expect([victim.told, next.told, slots.heldBy(A)]).toEqual([[replacedDetail(A, 1)], [], 1]);
  });

  it('confirm after release, once the name was forgotten and taken again, does nothing', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const late = held(slots.acquire(A));
    late.release();
    expect(slots.names).toBe(0);
    const h = holder();
    established(slots, A, h.onReplaced);
    late.confirm();
    expect([h.told, slots.heldBy(A), slots.names]).toEqual([[], 1, 1]);
  });

  it('confirm after being replaced does nothing: the newer holder is not told', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const [h1, h2] = [holder(), holder()];
    const s1 = established(slots, A, h1.onReplaced);
    established(slots, A, h2.onReplaced);
    expect(h1.told).toEqual([replacedDetail(A, 1)]);
    s1.confirm();
    expect([h1.told, h2.told, slots.heldBy(A)]).toEqual([[replacedDetail(A, 1)], [], 1]);
  });

  it('a replaced holder that releases at once, inside onReplaced, leaves the newer one in place', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const s1: Held = established(slots, A, () => s1.release());
    established(slots, A);
    expect([slots.heldBy(A), slots.names]).toEqual([1, 1]);
  });
});

describe('IdentitySlots: bounded', () => {
  it.each(['refuse-new', 'newest-wins'] as const)('%s: names with no holder are forgotten (1000 names come and go)', (overflow) => {
    const slots = new IdentitySlots(2, overflow);
    const releases = Array.from({ length: 1000 }, (_, i) => held(slots.acquire(`d${i}._device.example.test`)).release);
    expect(slots.names).toBe(1000);
    for (const release of releases) release();
    expect(slots.names).toBe(0);
    expect(slots.heldBy('d0._device.example.test')).toBe(0);
  });

  it('newest-wins: 10 000 reconnections of one name, each confirmed, hold one entry and one slot; each earlier one told once', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    let told = 0;
    let last: Held | undefined;
    for (let i = 0; i < 10_000; i++) last = established(slots, A, () => told++);
    expect([slots.names, slots.heldBy(A), told]).toEqual([1, 1, 9_999]);
    last?.release();
    expect([slots.names, slots.heldBy(A)]).toEqual([0, 0]);
  });

  it('newest-wins: 10 000 provisional holders that go away leave nothing behind', () => {
    const slots = new IdentitySlots(1, 'newest-wins');
    const heldSlots = Array.from({ length: 10_000 }, () => held(slots.acquire(A)));
    expect(slots.heldBy(A)).toBe(10_000);
    for (const s of heldSlots) s.release();
    expect([slots.names, slots.heldBy(A)]).toEqual([0, 0]);
  });

  it.each([0, -1, 1.5, Number.NaN])('a cap of %s is a RangeError', (max) => {
    expect(() => new IdentitySlots(max, 'refuse-new')).toThrow(new RangeError(`maxConnectionsPerIdentity must be an integer >= 1, got ${max}`));
  });
});

describe('Admission.admitIdentity', () => {
  const limits = (over: Partial<AdmissionLimits>): AdmissionLimits => ({ ...ADMISSION_DEFAULTS, ...over });

  it('refuse-new (the default overflow): identity-limit with the exact detail, even after confirm', () => {
    const admission = new Admission(limits({ maxConnectionsPerIdentity: 1 }));
    const told: string[] = [];
    const first = admission.admitIdentity(A, (d) => told.push(d));
    expect(first.ok).toBe(true);
    const refused = { ok: false, reason: 'identity-limit', detail: `${A} already has 1 connections` };
    expect(admission.admitIdentity(A, (d) => told.push(d))).toEqual(refused);
    if (first.ok) first.confirm();
    expect(admission.admitIdentity(A, (d) => told.push(d))).toEqual(refused);
    expect(told).toEqual([]);
  });

  it('newest-wins: the second is admitted; the first is told through the onReplaced it passed only when the second confirms', () => {
    const admission = new Admission(limits({ maxConnectionsPerIdentity: 1, identityOverflow: 'newest-wins' }));
    const [first, second] = [holder(), holder()];
    const a1 = admission.admitIdentity(A, first.onReplaced);
    if (!a1.ok) throw new Error('the first was refused');
    a1.confirm();
    const a2 = admission.admitIdentity(A, second.onReplaced);
    if (!a2.ok) throw new Error('the second was refused');
    expect([first.told, second.told]).toEqual([[], []]);
    a2.confirm();
    expect([first.told, second.told]).toEqual([[replacedDetail(A, 1)], []]);
    // The first one's release (its socket closing) does not free the second's slot.
    a1.release();
    const third = admission.admitIdentity(A, holder().onReplaced);
    if (!third.ok) throw new Error('the third was refused');
    third.confirm();
    expect(second.told).toEqual([replacedDetail(A, 1)]);
  });

  it('newest-wins: a second that never confirms (its handshake fails) is released and the first was never told', () => {
    const admission = new Admission(limits({ maxConnectionsPerIdentity: 1, identityOverflow: 'newest-wins' }));
    const first = holder();
    const a1 = admission.admitIdentity(A, first.onReplaced);
    if (a1.ok) a1.confirm();
    const a2 = admission.admitIdentity(A);
    expect(a2.ok).toBe(true);
    if (a2.ok) a2.release();
    expect(first.told).toEqual([]);
  });

  it('no cap: every connection is admitted, confirm is harmless and nobody is told', () => {
    const admission = new Admission(limits({ maxConnectionsPerIdentity: undefined, identityOverflow: 'newest-wins' }));
    const told: string[] = [];
    const results = Array.from({ length: 20 }, () => {
      const admitted = admission.admitIdentity(A, (d) => told.push(d));
      if (admitted.ok) admitted.confirm();
      return admitted.ok;
    });
    expect(results).toEqual(Array.from({ length: 20 }, () => true));
    expect(told).toEqual([]);
  });
});
