/**
 * Revalidation of established connections: a connection verified once stays
 * verified only while DNS keeps saying so. Each watched connection holds one
 * timer; when it fires, the name is looked up again through the cache (and so
 * through the resolver gate) and the same authenticate stage runs with the
 * same leaf and chain. Kept: the next check is due when the new answer
 * expires from our cache (clamped, jittered), or one second after a
 * certificate's notAfter when the matching record checks validity dates.
 * Revoked or expired: the connection is ended (TLS close_notify) and
 * destroyed after a short flush. A check that could not be made (DNS
 * trouble) keeps the connection for a grace period, retried, then closes it
 * as unverifiable. Every outcome is published on revalidationChannel.
 *
 * Cost: an idle watched connection holds one Watch object, one timer and the
 * socket's close listener; a check's AbortController and parsed chain live
 * only while the check runs.
 */
import type { ParsedCertificate } from '../dane/certificate.js';
import type { DecisionReason, RecordVerdict } from '../dane/match.js';
import { Usage } from '../dane/tlsa.js';
import { reasonInfo, type RefusalReason } from '../reasons.js';
import { boundText } from './log-bounds.js';
import { revalidationChannel, type RevalidationOutcome } from './revalidation-channel.js';
import { authenticate, type Authentication } from './stages/authenticate.js';
import { startLookup, type TlsaLookupSource } from './stages/lookup.js';

/**
 * How established connections are checked again. config/types.ts's listener
 * setting has this shape (config ranks below connection, so it matches it
 * structurally rather than importing it).
 */
export interface RevalidationConfig {
  /** ttl: check again when the TLSA answer expires; off: never. */
  readonly mode: 'ttl' | 'off';
  /** Shortest wait between two checks of a connection, and the retry interval after a failed check (at least 1000). */
  readonly floorMs: number;
  /** Longest wait between two checks, however long the answer's TTL. */
  readonly ceilingMs: number;
  /** Up to this much is added at random to each wait, so a fleet verified together does not query together. */
  readonly jitterMs: number;
  /** How long checks may keep failing (DNS trouble) before the connection is closed as unverifiable. */
  readonly graceMs: number;
}

/** The outcome of one check, before the grace period is considered. */
export type RevalidationVerdict = Exclude<RevalidationOutcome, 'unverifiable'>;

/** What a watched connection must offer (a SecureSocket fits). */
export interface WatchedSocket {
  /** Ends the connection gracefully (TLS close_notify, then FIN). */
  end(): void;
  destroy(): void;
  readonly destroyed: boolean;
  once(event: 'close', listener: () => void): unknown;
}

/** The verified connection to keep checking: what verify-shown found. */
export interface RevalidationSubject {
  readonly listener: string;
  readonly connectionId: string;
  /** The verified (canonical) name. */
  readonly name: string;
  readonly leaf: ParsedCertificate;
  /** The chain as presented, leaf first (parsed on each call; may throw CertificateParseError). */
  readonly chain: () => readonly ParsedCertificate[];
  readonly pkixRoots?: readonly ParsedCertificate[] | undefined;
  /**
   * The matching record's usage, selector and matching type at the handshake
   * (Verified.tlsa). A DANE-EE match ignores validity dates, so no check is
   * scheduled at a certificate's notAfter; absent: the dates are assumed to count.
   */
  readonly tlsa?: readonly [number, number, number] | undefined;
  /** How long the handshake's TLSA answer stays fresh in the cache, ms (CachedLookup.expiresInMs); undefined: unknown, first check at the floor. */
  readonly expiresInMs: number | undefined;
}

/** Timers, replaceable in tests. The default: setTimeout, unref'd (a watched connection never keeps the process alive). */
export interface RevalidationTimers {
  set(callback: () => void, ms: number): unknown;
  /** Given only handles that set() returned. */
  clear(handle: unknown): void;
}

export interface RevalidationDeps {
  /** The listener's TLSA cache (lookups go through it, and through the resolver gate behind it). */
  readonly cache: TlsaLookupSource;
  readonly config: RevalidationConfig;
  readonly now: () => Date;
  /** Uniform in [0, 1); default Math.random. */
  readonly random?: () => number;
  readonly timers?: RevalidationTimers;
}

/** Longest delay setTimeout honours (a longer one fires after 1 ms). */
export const MAX_TIMER_MS = 2_147_483_647;
/** How long an ended connection may take to flush its close_notify before it is destroyed. */
export const CLOSE_FLUSH_MS = 1000;
/** A check due at a certificate's expiry comes this long after its notAfter (which X.509 includes, to the second). */
export const AFTER_NOT_AFTER_MS = 1000;
/** A check due at an answer's expiry comes this long after it, so the cache entry is gone and DNS is asked. */
export const AFTER_EXPIRY_MS = 1;
/** Shortest floorMs accepted: failed checks are retried at the floor. */
export const MIN_FLOOR_MS = 1000;
/** Longest detail published. */
export const MAX_DETAIL_BYTES = 512;

/** Why `config` cannot be used (naming the field), or undefined. Pure. */
export function revalidationConfigProblem(config: RevalidationConfig): string | undefined {
  if (config.mode !== 'ttl' && config.mode !== 'off') return `revalidate mode must be 'ttl' or 'off', got ${JSON.stringify(config.mode)}`;
  for (const key of ['floorMs', 'ceilingMs', 'jitterMs', 'graceMs'] as const) {
    const value = config[key];
    if (!Number.isInteger(value) || value < 0) return `revalidate ${key} must be a non-negative integer, got ${value}`;
  }
  if (config.floorMs < MIN_FLOOR_MS) return `revalidate floorMs must be at least ${MIN_FLOOR_MS}, got ${config.floorMs}`;
  if (config.ceilingMs < config.floorMs) return `revalidate ceilingMs (${config.ceilingMs}) must not be below floorMs (${config.floorMs})`;
  if (config.ceilingMs + config.jitterMs > MAX_TIMER_MS) return `revalidate ceilingMs + jitterMs must be at most ${MAX_TIMER_MS} (about 24.8 days), got ${config.ceilingMs + config.jitterMs}`;
  return undefined;
}

/**
 * Milliseconds until the next check: the answer's remaining life in our cache
 * (plus AFTER_EXPIRY_MS; unknown or not a number: the floor) clamped to
 * [floorMs, ceilingMs], plus a jitter uniform over the integers 0..jitterMs.
 * Pure; an integer.
 */
export function nextCheckInMs(expiresInMs: number | undefined, config: Pick<RevalidationConfig, 'floorMs' | 'ceilingMs' | 'jitterMs'>, random: () => number = Math.random): number {
  const life = expiresInMs !== undefined && Number.isFinite(expiresInMs) ? Math.ceil(Math.max(0, expiresInMs)) + AFTER_EXPIRY_MS : expiresInMs === Infinity ? config.ceilingMs : config.floorMs;
  const base = Math.min(Math.max(life, config.floorMs), config.ceilingMs);
  const r = random();
  const unit = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0;
  return base + Math.min(config.jitterMs, Math.floor(unit * (config.jitterMs + 1)));
}

/** Record verdicts that mean: this record still designates the chain, but a certificate's validity dates refuse it. */
const VALIDITY_VERDICTS: ReadonlySet<RecordVerdict> = new Set<RecordVerdict>(['certificate-expired', 'certificate-not-yet-valid']);

/** Every refusal the authenticate stage gives. */
type AuthenticateRefusal =
  'client-closed' | 'dns-no-tlsa' | 'dns-insecure' | 'dns-bogus' | 'dns-timeout' | 'dns-malformed' | 'dns-server-error' | 'dns-over-capacity' | Exclude<DecisionReason, 'authenticated'>;

/**
 * What each of authenticate's refusals means for a connection already
 * established (no-matching-record becomes 'expired' when a record failed only
 * on validity dates, see classifyRevalidation).
 *
 * - The name lost its authorisation: no TLSA records (removed), an insecure
 *   answer (the zone is no longer signed: nothing vouches for the client), an
 *   empty or unusable RRset, no record matching (the key changed). Revoked.
 * - dns-bogus is 'failed', not 'revoked': DNSSEC validation failed, which is an
 *   attack on the path to the authoritative servers or a broken zone (expired
 *   signatures, a botched key rollover). Neither says the client's record
 *   was withdrawn: a bogus answer cannot be forged into a secure one, so the
 *   only harm an attacker can do with it is denial, and treating it as
 *   revocation would let one forged or broken answer cut every connection of
 *   the zone at once. With grace, the connection is closed as unverifiable
 *   only if validation keeps failing for graceMs. dns-malformed likewise
 *   (our resolver answered something unreadable: a fault on our side or the
 *   path's, not a statement about the name).
 * - Timeouts, resolver errors and a full resolver gate are our own trouble: failed.
 * - client-closed: the connection went away during the check; watchConnection
 *   publishes nothing then, and 'failed' (nothing was learnt) is what it means.
 * - no-certificate and chain-too-long cannot happen with the chain that
 *   passed at the handshake; if they did, fail closed: revoked.
 */
const REFUSAL_VERDICT: Readonly<Record<AuthenticateRefusal, RevalidationVerdict>> = {
  'client-closed': 'failed',
  'dns-no-tlsa': 'revoked',
  'dns-insecure': 'revoked',
  'dns-bogus': 'failed',
  'dns-timeout': 'failed',
  'dns-malformed': 'failed',
  'dns-server-error': 'failed',
  'dns-over-capacity': 'failed',
  'no-certificate': 'revoked',
  'chain-too-long': 'revoked',
  'no-records': 'revoked',
  'no-usable-records': 'revoked',
  'no-matching-record': 'revoked',
};

const isAuthenticateRefusal = (reason: RefusalReason): reason is AuthenticateRefusal => Object.hasOwn(REFUSAL_VERDICT, reason);

/**
 * The outcome of one check from the authenticate stage's result. Pure. A
 * reason authenticate does not give is judged by the catalog: temporary
 * reasons fail, the others revoke (fail closed).
 */
export function classifyRevalidation(result: Authentication): RevalidationVerdict {
  if (result.ok) return 'kept';
  const reason = result.reason;
  if (reason === 'no-matching-record' && result.evidence.decision?.records.some((r) => VALIDITY_VERDICTS.has(r.verdict))) return 'expired';
  if (isAuthenticateRefusal(reason)) return REFUSAL_VERDICT[reason];
  return reasonInfo(reason).temporary ? 'failed' : 'revoked';
}

/**
 * Milliseconds from `nowMs` to one second after the earliest notAfter still
 * ahead among the leaf and the chain, when the matching record's usage checks
 * validity dates (not DANE-EE; undefined: assumed to); undefined otherwise.
 * Pure but for `chain`.
 */
export function untilCertificateExpiryMs(usage: number | undefined, leaf: ParsedCertificate, chain: () => readonly ParsedCertificate[], nowMs: number): number | undefined {
  if (usage === Usage.DANE_EE) return undefined;
  let certificates: readonly ParsedCertificate[];
  try {
    certificates = chain();
  } catch {
    // Authenticate will refuse such a chain at the next check; the leaf still bounds the wait.
    certificates = [];
  }
  let earliest = Infinity;
  for (const certificate of [leaf, ...certificates]) {
    const notAfter = certificate.notAfter.getTime();
    if (notAfter >= nowMs && notAfter < earliest) earliest = notAfter;
  }
  return earliest === Infinity ? undefined : earliest - nowMs + AFTER_NOT_AFTER_MS;
}

const NODE_TIMERS: RevalidationTimers = {
  set(callback, ms) {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return timer;
  },
  clear(handle) {
    // Only handles from set() above come back.
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function describe(result: Authentication): string {
  return boundText(result.ok ? result.value.detail : `${result.reason}: ${result.detail}`, MAX_DETAIL_BYTES);
}

/** One watched connection: its state between checks is these fields and one pending timer. */
class Watch {
  /** The pending timer: the next check, or (closing) the flush before destroy. */
  private timer: unknown;
  /** The check under way, aborted when the connection closes. */
  private running: AbortController | undefined;
  private stopped = false;
  /** When the current run of failed checks began (epoch ms); undefined: the last check was not a failure. */
  private failingSince: number | undefined;
  /** The matching record's usage (undefined: not known, validity dates assumed to count). */
  private usage: number | undefined;
  private readonly timers: RevalidationTimers;
  private readonly fire = (): void => {
    this.timer = undefined;
    if (this.stopped) return;
    this.check().catch((err: unknown) => {
      // Not expected (authenticate reports failures as values): a check that could not be made.
      if (!this.stopped && !this.socket.destroyed) this.failed(`revalidation error: ${errorText(err)}`, false);
    });
  };

  constructor(
    private readonly socket: WatchedSocket,
    private readonly subject: RevalidationSubject,
    private readonly deps: RevalidationDeps,
  ) {
    this.timers = deps.timers ?? NODE_TIMERS;
    this.usage = subject.tlsa?.[0];
  }

  start(): void {
    this.socket.once('close', () => this.stop());
    this.schedule(this.nextAfterKept(this.subject.expiresInMs, this.deps.now().getTime()));
  }

  /** The connection closed: no more checks, the one under way aborted. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.timer = undefined;
    this.running?.abort(new Error(`connection ${this.subject.connectionId} closed during its revalidation`));
    this.running = undefined;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = this.timers.set(this.fire, Math.min(ms, MAX_TIMER_MS));
  }

  /** After a kept check (or the handshake): at the answer's expiry, or sooner at a certificate's. */
  private nextAfterKept(expiresInMs: number | undefined, nowMs: number, chain: () => readonly ParsedCertificate[] = this.subject.chain): number {
    const byTtl = nextCheckInMs(expiresInMs, this.deps.config, this.deps.random);
    const byExpiry = untilCertificateExpiryMs(this.usage, this.subject.leaf, chain, nowMs);
    return byExpiry === undefined ? byTtl : Math.min(byTtl, byExpiry);
  }

  private publish(outcome: RevalidationOutcome, detail: string, nextInMs?: number): void {
    const { listener, connectionId, name } = this.subject;
    revalidationChannel.publish(nextInMs === undefined ? { listener, connectionId, name, outcome, detail } : { listener, connectionId, name, outcome, detail, nextInMs });
  }

  private async check(): Promise<void> {
    const controller = new AbortController();
    this.running = controller;
    const { subject } = this;
    const signal = controller.signal;
    // Parsed at most once per check, and dropped with it.
    let parsed: readonly ParsedCertificate[] | undefined;
    const chain = (): readonly ParsedCertificate[] => (parsed ??= subject.chain());
    const lookup = startLookup(this.deps.cache, subject.name, signal);
    const now = this.deps.now();
    const [result, settled] = await Promise.all([authenticate({ name: subject.name, lookup, leaf: [subject.leaf], chain, pkixRoots: subject.pkixRoots, now, signal }), lookup.settled]);
    if (this.running === controller) this.running = undefined;
    if (this.stopped || signal.aborted || this.socket.destroyed) return;
    const verdict = classifyRevalidation(result);
    const detail = describe(result);
    if (verdict === 'failed') return this.failed(detail, !result.ok && result.reason === 'dns-over-capacity');
    if (verdict !== 'kept') return this.close(verdict, detail);
    this.failingSince = undefined;
    if (result.ok) this.usage = result.value.tlsa[0];
    // From now (the check took the lookup's time): a notAfter bound is then exact.
    const next = this.nextAfterKept(settled.ok ? settled.value.expiresInMs : undefined, this.deps.now().getTime(), chain);
    this.publish('kept', detail, next);
    this.schedule(next);
  }

  /**
   * A check that could not be made: retried after the floor plus jitter (failed checks of a fleet must not
   * retry in step) while the grace period lasts, then the connection is closed. Our own resolver gate being
   * full (`ownCapacity`) says nothing about the name and is what anyone can cause by claiming random names
   * under an allowlisted zone: it never starts or advances the grace period, so such a flood cannot close
   * established connections (it can only delay their checks).
   */
  private failed(detail: string, ownCapacity: boolean): void {
    const nowMs = this.deps.now().getTime();
    const { floorMs, graceMs, jitterMs } = this.deps.config;
    const retry = floorMs + Math.floor((this.deps.random ?? Math.random)() * (jitterMs + 1));
    if (ownCapacity) {
      this.publish('failed', detail, retry);
      return this.schedule(retry);
    }
    this.failingSince ??= nowMs;
    const failingFor = nowMs - this.failingSince;
    if (failingFor >= graceMs) {
      return this.close('unverifiable', boundText(`${detail}; no check succeeded for ${failingFor} ms (grace ${graceMs} ms)`, MAX_DETAIL_BYTES));
    }
    const next = Math.min(retry, graceMs - failingFor);
    this.publish('failed', detail, next);
    this.schedule(next);
  }

  /** Published first, then the connection ended (close_notify) and destroyed if it has not closed after CLOSE_FLUSH_MS. */
  private close(outcome: 'revoked' | 'expired' | 'unverifiable', detail: string): void {
    this.publish(outcome, detail);
    this.socket.end();
    this.timer = this.timers.set(() => {
      this.timer = undefined;
      if (!this.socket.destroyed) this.socket.destroy();
    }, CLOSE_FLUSH_MS);
  }
}

/**
 * Keep checking an established, verified connection until it closes (see the
 * module comment). Nothing happens with mode 'off' or a socket already
 * destroyed. Throws RangeError for a configuration revalidationConfigProblem
 * refuses.
 */
export function watchConnection(socket: WatchedSocket, subject: RevalidationSubject, deps: RevalidationDeps): void {
  if (deps.config.mode === 'off' || socket.destroyed) return;
  const problem = revalidationConfigProblem(deps.config);
  if (problem !== undefined) throw new RangeError(problem);
  new Watch(socket, subject, deps).start();
}
