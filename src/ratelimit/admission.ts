/**
 * Admission control for new connections, shared by every listener: the
 * penalty box, a token bucket of new connections per source address, and
 * the handshake budget (concurrent connections not yet decided, globally
 * and per source address), plus the optional cap on concurrent
 * connections per verified identity. Each refusal has its own reason code.
 *
 * An address that sends a client chain over the limits (see
 * src/connection/client-chain.ts) is put in the penalty box at once and every
 * connection it still has between accept and decision is ended: the
 * expensive part (OpenSSL checking each signature of the chain) has been
 * paid once, it is not paid again for the same address. And since that
 * verification happens before the handshake can end, at most
 * `maxTlsHandshakesPerIp` connections of one address are in the TLS
 * handshake at once (enterTlsPhase); the others wait their turn with their
 * ClientHello unread by OpenSSL, so an address that stalls its hostile
 * flights has at most that many verified before the ban.
 *
 * "Address" here is a source key (source-key.ts): an IPv4 address, or the
 * /64 prefix of an IPv6 address, so that one IPv6 network cannot pass every
 * per-address limit by spreading over its addresses.
 */
import type { RefusalReason } from '../reasons.js';
import { monotonicClock, type Clock } from './clock.js';
import { ConcurrencyLimiter } from './concurrency.js';
import { PenaltyBox, type PenaltyBoxOptions } from './penalty-box.js';
import { IdentitySlots, type IdentityOverflow, type OnReplaced } from './identity-slots.js';
import { PerKeySlots, type SlotTicket } from './slot-queue.js';
import { sourceKey } from './source-key.js';
import { PerKeyTokenBuckets, type TokenBucketOptions } from './token-bucket.js';

export interface HandshakeLimits {
  readonly maxConcurrent: number;
  readonly maxConcurrentPerIp: number;
  /** Most certificates a client may present (leaf included); more is a chain over limits. Default 10. */
  readonly maxClientCertificates?: number;
  /** Most bytes a client may send between its ClientHello and the end of its handshake; more is a chain over limits. Default 16384. */
  readonly maxClientFlightBytes?: number;
  /**
   * Most connections of one address in the TLS handshake at once (from the
   * ClientHello handed to node:tls to the end of the handshake, where
   * OpenSSL verifies client chains); the others wait in turn. 1..maxConcurrentPerIp;
   * default 4 (or maxConcurrentPerIp when lower).
   */
  readonly maxTlsHandshakesPerIp?: number;
}

export interface AdmissionLimits {
  readonly handshakes: HandshakeLimits;
  /** undefined: no per-address rate limit. */
  readonly newConnectionsPerIp: TokenBucketOptions | undefined;
  /** undefined: no penalty box. */
  readonly penaltyBox: Omit<PenaltyBoxOptions, 'maxKeys'> | undefined;
  /** undefined: no cap per identity. */
  readonly maxConnectionsPerIdentity: number | undefined;
  /** Past the cap: refuse the new connection (default) or close the oldest of that name (newest-wins). */
  readonly identityOverflow?: IdentityOverflow;
  /** Most source addresses remembered by the rate limiter and the penalty box (each an LRU). */
  readonly trackedAddresses: number;
}

export const ADMISSION_DEFAULTS: AdmissionLimits & { readonly handshakes: Required<HandshakeLimits> } = {
  handshakes: { maxConcurrent: 4096, maxConcurrentPerIp: 256, maxClientCertificates: 10, maxClientFlightBytes: 16_384, maxTlsHandshakesPerIp: 4 },
  newConnectionsPerIp: { ratePerSecond: 50, burst: 200 },
  penaltyBox: { failures: 20, windowMs: 60_000, banMs: 60_000 },
  maxConnectionsPerIdentity: undefined,
  trackedAddresses: 100_000,
};

/** The refusals admission control makes (catalog reasons, src/reasons.ts). */
export type AdmissionReason = Extract<RefusalReason, 'penalty-box' | 'rate-limited' | 'handshake-budget' | 'handshake-budget-ip' | 'identity-limit' | 'chain-over-limits'>;

/** An identity's connection slot: `confirm` once the handshake is complete (newest-wins replaces older ones only then). */
export type IdentityAdmitted = { readonly ok: true; readonly release: () => void; readonly confirm: () => void } | { readonly ok: false; readonly reason: 'identity-limit'; readonly detail: string };

/** Called when the connection's address is banned while the connection is still between accept and decision. */
export type OnBanned = (detail: string) => void;

export type Admitted = { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly reason: AdmissionReason; readonly detail: string };

export class Admission {
  private readonly handshakes: ConcurrencyLimiter;
  private readonly rate: PerKeyTokenBuckets | undefined;
  private readonly penalty: PenaltyBox | undefined;
  private readonly identities: IdentitySlots | undefined;
  /** Connections between accept and decision that asked to hear of a ban, by address (bounded by the handshake budget). */
  private readonly undecided = new Map<string, Set<OnBanned>>();
  /** TLS handshakes per address (bounded by the handshake budget: a connection enters only while it holds its budget). */
  private readonly tlsPhase: PerKeySlots;

  constructor(
    readonly limits: AdmissionLimits,
    clock: Clock = monotonicClock,
  ) {
    this.handshakes = new ConcurrencyLimiter({ maxTotal: limits.handshakes.maxConcurrent, maxPerKey: limits.handshakes.maxConcurrentPerIp });
    this.tlsPhase = new PerKeySlots(this.maxTlsHandshakesPerIp);
    this.rate = limits.newConnectionsPerIp ? new PerKeyTokenBuckets({ ...limits.newConnectionsPerIp, maxKeys: limits.trackedAddresses }, clock) : undefined;
    this.penalty = limits.penaltyBox ? new PenaltyBox({ ...limits.penaltyBox, maxKeys: limits.trackedAddresses }, clock) : undefined;
    this.identities = limits.maxConnectionsPerIdentity ? new IdentitySlots(limits.maxConnectionsPerIdentity, limits.identityOverflow ?? 'refuse-new') : undefined;
  }

  /**
   * A new connection from `address`: on success, `release` ends its
   * handshake budget (call it once decided). Until then, `onBanned` is
   * called if the address is banned (banAddress) by another connection.
   */
  admitConnection(source: string, onBanned?: OnBanned): Admitted {
    const address = sourceKey(source);
    const banned = this.penalty?.bannedFor(address) ?? 0;
    if (banned > 0) return { ok: false, reason: 'penalty-box', detail: `${address} failed authentication too often; refused for ${Math.ceil(banned / 1000)} s more` };
    if (this.rate && !this.rate.take(address)) {
      const r = this.limits.newConnectionsPerIp;
      return { ok: false, reason: 'rate-limited', detail: `more than ${r?.ratePerSecond}/s new connections (burst ${r?.burst}) from ${address}` };
    }
    const held = this.handshakes.tryAcquire(address);
    if (!held.ok) {
      return held.cap === 'total'
        ? { ok: false, reason: 'handshake-budget', detail: `${held.limit} connections are already between accept and decision` }
        : { ok: false, reason: 'handshake-budget-ip', detail: `${held.limit} connections from ${address} are already between accept and decision` };
    }
    if (onBanned === undefined) return { ok: true, release: held.release };
    let waiting = this.undecided.get(address);
    if (waiting === undefined) this.undecided.set(address, (waiting = new Set()));
    waiting.add(onBanned);
    const set = waiting;
    return {
      ok: true,
      release: () => {
        held.release();
        set.delete(onBanned);
        if (set.size === 0 && this.undecided.get(address) === set) this.undecided.delete(address);
      },
    };
  }

  /**
   * `address` did something no legitimate client does (a chain over limits):
   * into the penalty box now (when there is one), and every connection of
   * it still between accept and decision is told (and ends itself).
   * Returns how many such connections were told.
   */
  banAddress(source: string, detail: string): number {
    const address = sourceKey(source);
    this.penalty?.ban(address);
    const waiting = [...(this.undecided.get(address) ?? [])];
    this.undecided.delete(address);
    for (const onBanned of waiting) onBanned(detail);
    return waiting.length;
  }

  /**
   * Lift the ban of `source`'s address (its /64 for IPv6) and forget its
   * failures: the operator's way out of a ban (the admin endpoint
   * POST /penalty-box/unban). Says what was lifted.
   */
  unban(source: string): { readonly key: string; readonly penaltyBox: boolean; readonly bannedForMs: number; readonly failures: number } {
    const key = sourceKey(source);
    if (this.penalty === undefined) return { key, penaltyBox: false, bannedForMs: 0, failures: 0 };
    const lifted = this.penalty.unban(key);
    return { key, penaltyBox: true, bannedForMs: lifted?.bannedForMs ?? 0, failures: lifted?.failures ?? 0 };
  }

  /** Connections of one address in the TLS handshake at once, default applied (4, or maxConcurrentPerIp when lower). */
  get maxTlsHandshakesPerIp(): number {
    const h = this.limits.handshakes;
    return h.maxTlsHandshakesPerIp ?? Math.min(ADMISSION_DEFAULTS.handshakes.maxTlsHandshakesPerIp, h.maxConcurrentPerIp);
  }

  /**
   * A connection of `address` that has its ClientHello and holds its
   * handshake budget asks to start its TLS handshake: `onGranted` runs when
   * one of the address's `maxTlsHandshakesPerIp` slots is its (synchronously
   * when one is free, else when a connection ahead of it releases, in
   * arrival order). If the address is in the penalty box by then, the slot
   * is given back and `onBanned` runs instead: a banned address never
   * reaches TLS again. The caller releases the ticket exactly when its TLS
   * handshake ends (secure, decision, error or close) or it stops waiting;
   * release is idempotent. A waiting connection still counts in the
   * handshake budget and is told of a ban like any other (admitConnection).
   */
  enterTlsPhase(source: string, onGranted: () => void, onBanned: OnBanned): SlotTicket {
    const address = sourceKey(source);
    return this.tlsPhase.enter(address, (ticket) => {
      const banned = this.penalty?.bannedFor(address) ?? 0;
      if (banned === 0) return onGranted();
      ticket.release();
      onBanned(`${address} was put in the penalty box before this connection could start its TLS handshake; refused for ${Math.ceil(banned / 1000)} s more`);
    });
  }

  /** Connections of `address` in the TLS handshake, and waiting for a slot. */
  tlsHandshakesOf(source: string): { readonly held: number; readonly waiting: number } {
    const address = sourceKey(source);
    return { held: this.tlsPhase.heldBy(address), waiting: this.tlsPhase.waitingFor(address) };
  }

  /** Addresses with a connection in the TLS handshake or waiting for one (0 when idle: nothing leaks). */
  get tlsHandshakeAddresses(): number {
    return this.tlsPhase.keys;
  }

  /** The client chain limits, defaults applied. */
  get clientChain(): { readonly maxCertificates: number; readonly maxFlightBytes: number } {
    const h = this.limits.handshakes;
    const d = ADMISSION_DEFAULTS.handshakes;
    return { maxCertificates: h.maxClientCertificates ?? d.maxClientCertificates, maxFlightBytes: h.maxClientFlightBytes ?? d.maxClientFlightBytes };
  }

  /**
   * An authenticated connection of `name`: `release` when it closes, `confirm` once its handshake is complete
   * (under newest-wins only a confirmed connection replaces older ones); `onReplaced` when a newer one takes its slot.
   */
  admitIdentity(name: string, onReplaced?: OnReplaced): IdentityAdmitted {
    if (!this.identities) return { ok: true, release: () => undefined, confirm: () => undefined };
    const held = this.identities.acquire(name, onReplaced);
    if (!held.ok) return { ok: false, reason: 'identity-limit', detail: `${name} already has ${held.limit} connections` };
    return held;
  }

  /** A refusal that is the client's doing (a catalog reason marked penalized, src/reasons.ts). */
  recordFailure(source: string, weight = 1): void {
    const address = sourceKey(source);
    this.penalty?.recordFailure(address, weight);
  }

  get handshakesInProgress(): number {
    return this.handshakes.current;
  }
}
