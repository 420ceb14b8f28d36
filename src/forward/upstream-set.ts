/**
 * A route's upstreams and which one the next request (HTTP) or connection
 * (TCP) goes to: round-robin or least-requests over the healthy ones, with
 * passive health (consecutive failures of real traffic eject an upstream
 * for a back-off that doubles per ejection in a row) and active health
 * checks (a probe per upstream on an unref'd timer). When no untried
 * upstream is healthy, the one whose ejection ends soonest is still tried:
 * availability over nothing.
 *
 * Ejection ends are judged lazily against the clock on every pick, so the
 * choice needs no timer; the timers only announce readmissions on time (the
 * health event, the gauge) and run the active checks. Every attempt's end is
 * published on upstreamAttemptChannel, every change of an upstream between
 * healthy and not on upstreamHealthChannel. Bounded: at most MAX_UPSTREAMS
 * targets, two timers and one probe in flight each.
 */
import { performance } from 'node:perf_hooks';
import type { ActiveHealthConfig, PassiveHealthConfig, Upstream, UpstreamPoolConfig } from '../config/types.js';
import { upstreamAttemptChannel, upstreamHealthChannel } from './channels.js';
import { probeUpstream, type HealthProbe } from './health-check.js';
import { errorText } from './upstream-failure.js';

/** The most upstreams one route may have (the configuration loader enforces the same). */
export const MAX_UPSTREAMS = 32;
/** Each check's interval is drawn from intervalMs ± this fraction, so that upstreams (and workers) do not probe in step. */
export const CHECK_JITTER = 0.1;
/** Longest health event detail. */
export const MAX_HEALTH_DETAIL = 200;
/** Ejections in a row past which the back-off stops doubling (it is capped by maxEjectMs long before). */
const MAX_DOUBLINGS = 30;

export type AttemptOutcome = 'ok' | 'connect-failed' | 'failed';

export interface UpstreamChoice {
  readonly upstream: Upstream;
  /** The attempt is over (call exactly once; later calls are ignored): published, judged by passive health, no longer in flight. */
  end(outcome: AttemptOutcome): void;
}

/** A choice whose outcome can be known before it stops being in flight (a TCP session: connected, then open until it closes). */
export interface HeldChoice extends UpstreamChoice {
  /** Publish and judge the outcome now; the upstream counts this attempt in flight until `release` is called (once; idempotent). */
  settle(outcome: AttemptOutcome): () => void;
}

export interface UpstreamState {
  readonly name: string;
  readonly url: string;
  readonly healthy: boolean;
  readonly inFlight: number;
  /** While passively ejected: when the ejection ends, on the set's clock (ms). */
  readonly ejectedUntilMs?: number;
}

/** The timers the set uses (tests pass fake ones that a fake clock drives). */
export interface SetTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface UpstreamSetOptions {
  /** Milliseconds, monotonic; default performance.now. */
  readonly now?: () => number;
  /** The active check; default probeUpstream. */
  readonly probe?: HealthProbe;
  readonly timers?: SetTimers;
  /** [0, 1); default Math.random (the check interval's jitter). */
  readonly random?: () => number;
}

/** Real timers that never keep the process alive. */
export const REAL_TIMERS: SetTimers = {
  set(fn, ms) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return timer;
  },
  clear(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/** One line, at most MAX_HEALTH_DETAIL characters, no controls (it ends up in a log line). */
export function boundDetail(text: string): string {
  // eslint-disable-next-line no-control-regex -- the point is to remove control characters
  return text.replaceAll(/[\u0000-\u001f\u007f]+/g, ' ').slice(0, MAX_HEALTH_DETAIL);
}

/** The ejection time after `ejectionsInARow` earlier ejections with no success between: doubling, capped. Pure. */
export function ejectionMs(passive: PassiveHealthConfig, ejectionsInARow: number): number {
  return Math.min(passive.maxEjectMs, passive.ejectMs * 2 ** Math.min(ejectionsInARow, MAX_DOUBLINGS));
}

/** The delay before the next check: intervalMs ± CHECK_JITTER. Pure. */
export function jittered(intervalMs: number, random: number): number {
  return Math.max(1, Math.round(intervalMs * (1 - CHECK_JITTER + 2 * CHECK_JITTER * random)));
}

/** '1 failure', '3 failures'. */
const plural = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? '' : 's'}`;

interface Target {
  readonly upstream: Upstream;
  readonly index: number;
  inFlight: number;
  /** Passive: failures in a row (since the last success or ejection). */
  failures: number;
  /** Ejections in a row with no success between (0: not on probation). */
  streak: number;
  ejectedUntil: number | undefined;
  /** The length of the current (or last) ejection, for the readmission's detail. */
  ejectedMs: number;
  /** Bumped at each ejection: an attempt picked before it does not count after it (that burst was judged). */
  epoch: number;
  ejectionTimer: unknown;
  /** Active: the checks' verdict (true until checks say otherwise). */
  activeHealthy: boolean;
  activeFails: number;
  activePasses: number;
  probeTimer: unknown;
  /** The timeoutMs timer of the probe in flight. */
  probeDeadline: unknown;
  /** A probe whose promise has not settled (even after its abort). */
  probing: AbortController | undefined;
  /** The state last published (every upstream starts healthy). */
  announced: boolean;
}

export class UpstreamSet {
  private readonly targets: readonly Target[];
  private readonly passive: PassiveHealthConfig | undefined;
  private readonly check: ActiveHealthConfig | undefined;
  private readonly now: () => number;
  private readonly probe: HealthProbe;
  private readonly timers: SetTimers;
  private readonly random: () => number;
  /** Where the round-robin order starts next (the target after the last one picked). */
  private cursor = 0;
  private started = false;
  private closed = false;

  constructor(
    private readonly listener: string,
    private readonly pool: UpstreamPoolConfig,
    options: UpstreamSetOptions = {},
  ) {
    const count = pool.targets.length;
    if (count < 1 || count > MAX_UPSTREAMS) throw new RangeError(`a route has 1 to ${MAX_UPSTREAMS} upstreams, not ${count}`);
    if (new Set(pool.targets.map((u) => u.name)).size !== count) throw new RangeError('upstream names must be unique within a route');
    this.passive = pool.passiveHealth;
    this.check = pool.healthCheck;
    this.now = options.now ?? (() => performance.now());
    this.probe = options.probe ?? probeUpstream;
    this.timers = options.timers ?? REAL_TIMERS;
    this.random = options.random ?? Math.random;
    this.targets = pool.targets.map((upstream, index) => ({
      upstream,
      index,
      inFlight: 0,
      failures: 0,
      streak: 0,
      ejectedUntil: undefined,
      ejectedMs: 0,
      epoch: 0,
      ejectionTimer: undefined,
      activeHealthy: true,
      activeFails: 0,
      activePasses: 0,
      probeTimer: undefined,
      probeDeadline: undefined,
      probing: undefined,
      announced: true,
    }));
  }

  /**
   * The upstream for the next attempt, not one of `tried` (names): the
   * balance policy over the healthy ones; when none is healthy, the one whose
   * ejection ends soonest (an upstream only the active check took out counts
   * as ending now); undefined when every upstream was tried.
   */
  pick(tried?: ReadonlySet<string>): HeldChoice | undefined {
    const now = this.now();
    const n = this.targets.length;
    const untried = (t: Target): boolean => tried === undefined || !tried.has(t.upstream.name);
    let best: Target | undefined;
    for (let i = 0; i < n; i++) {
      const t = this.at(this.cursor + i);
      this.refresh(t, now);
      if (!untried(t) || !this.healthy(t)) continue;
      if (best === undefined) best = t;
      else if (this.pool.balance === 'least-requests' && t.inFlight < best.inFlight) best = t;
      // Round-robin takes the first healthy one in order from the cursor; least-requests keeps the first of a tie.
      if (this.pool.balance === 'round-robin') break;
    }
    if (best === undefined) {
      let soonest = Number.POSITIVE_INFINITY;
      for (let i = 0; i < n; i++) {
        const t = this.at(this.cursor + i);
        const ends = t.ejectedUntil ?? now;
        if (untried(t) && ends < soonest) {
          best = t;
          soonest = ends;
        }
      }
    }
    if (best === undefined) return undefined;
    this.cursor = (best.index + 1) % n;
    return this.choice(best, now);
  }

  /** Start the active checks (if configured): one unref'd timer per upstream, until close(). */
  start(): void {
    if (this.started || this.closed || this.check === undefined) return;
    this.started = true;
    for (const t of this.targets) this.scheduleCheck(t, this.check);
  }

  /** Stop every timer and abort the checks in flight. Picking still works (ejections then end lazily, without an event). */
  close(): void {
    this.closed = true;
    for (const t of this.targets) {
      this.timers.clear(t.probeTimer);
      this.timers.clear(t.ejectionTimer);
      this.timers.clear(t.probeDeadline);
      t.probeTimer = undefined;
      t.ejectionTimer = undefined;
      t.probeDeadline = undefined;
      t.probing?.abort();
    }
  }

  snapshot(): readonly UpstreamState[] {
    const now = this.now();
    return this.targets.map((t) => {
      this.refresh(t, now);
      const state = { name: t.upstream.name, url: t.upstream.url, healthy: this.healthy(t), inFlight: t.inFlight };
      return t.ejectedUntil === undefined ? state : { ...state, ejectedUntilMs: t.ejectedUntil };
    });
  }

  private at(i: number): Target {
    // The modulo keeps the index in range and targets is never empty (checked in the constructor).
    return this.targets[i % this.targets.length] as Target;
  }

  private healthy(t: Target): boolean {
    return t.activeHealthy && t.ejectedUntil === undefined;
  }

  private choice(t: Target, pickedAt: number): HeldChoice {
    t.inFlight++;
    const epoch = t.epoch;
    let settled = false;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      t.inFlight--;
    };
    const settle = (outcome: AttemptOutcome): (() => void) => {
      if (settled) return () => undefined;
      settled = true;
      const now = this.now();
      upstreamAttemptChannel.publish({ listener: this.listener, upstream: t.upstream.name, outcome, seconds: Math.max(0, (now - pickedAt) / 1000) });
      this.judge(t, outcome, epoch, now);
      return release;
    };
    return { upstream: t.upstream, settle, end: (outcome) => settle(outcome)() };
  }

  /** Passive health: what one attempt's outcome says about its upstream. */
  private judge(t: Target, outcome: AttemptOutcome, epoch: number, now: number): void {
    const passive = this.passive;
    if (passive === undefined) return;
    this.refresh(t, now);
    // Picked before the latest ejection: the burst it belonged to was judged already.
    if (epoch !== t.epoch) return;
    if (t.ejectedUntil !== undefined) {
      // Picked while ejected (no healthy upstream was left): a success proves it is back; a failure changes nothing.
      if (outcome === 'ok') {
        t.failures = 0;
        t.streak = 0;
        this.endEjection(t);
        this.announce(t, 'passive', 'an attempt succeeded while it was ejected; readmitted');
      }
      return;
    }
    if (outcome === 'ok') {
      t.failures = 0;
      t.streak = 0;
      return;
    }
    t.failures++;
    if (t.streak > 0) this.eject(t, passive, now, `${outcome} on probation after an ejection`);
    else if (t.failures >= passive.failures) this.eject(t, passive, now, `${plural(t.failures, 'failure')} in a row`);
  }

  private eject(t: Target, passive: PassiveHealthConfig, now: number, why: string): void {
    const ms = ejectionMs(passive, t.streak);
    t.streak++;
    t.epoch++;
    t.failures = 0;
    t.activePasses = 0;
    t.ejectedUntil = now + ms;
    t.ejectedMs = ms;
    this.timeEjection(t, ms);
    this.announce(t, 'passive', `${why}; ejected for ${ms} ms`);
  }

  /** Announce the ejection's end on time (the choice does not need it: refresh() judges lazily). */
  private timeEjection(t: Target, ms: number): void {
    this.timers.clear(t.ejectionTimer);
    t.ejectionTimer = undefined;
    if (this.closed) return;
    t.ejectionTimer = this.timers.set(() => {
      t.ejectionTimer = undefined;
      const now = this.now();
      this.refresh(t, now);
      // A timer may fire a little before the clock says the time is up: wait for the rest.
      if (t.ejectedUntil !== undefined) this.timeEjection(t, Math.max(1, Math.ceil(t.ejectedUntil - now)));
    }, ms);
  }

  private endEjection(t: Target): void {
    t.ejectedUntil = undefined;
    t.failures = 0;
    this.timers.clear(t.ejectionTimer);
    t.ejectionTimer = undefined;
  }

  /** An ejection whose time is up ends: the upstream is on probation (its next failure ejects it again, for longer). */
  private refresh(t: Target, now: number): void {
    if (t.ejectedUntil === undefined || now < t.ejectedUntil) return;
    this.endEjection(t);
    this.announce(t, 'passive', `ejection of ${t.ejectedMs} ms over; on probation`);
  }

  /** Publish the upstream's state if it changed (healthy = not ejected and not failed by the checks). */
  private announce(t: Target, cause: 'passive' | 'active', detail: string): void {
    const healthy = this.healthy(t);
    // A closed set belongs to a configuration generation that is gone: its upstreams' states are the new one's to say.
    if (healthy === t.announced || this.closed) return;
    t.announced = healthy;
    upstreamHealthChannel.publish({ listener: this.listener, upstream: t.upstream.name, healthy, cause, detail: boundDetail(detail) });
  }

  private scheduleCheck(t: Target, check: ActiveHealthConfig): void {
    if (this.closed) return;
    t.probeTimer = this.timers.set(
      () => {
        t.probeTimer = undefined;
        this.runCheck(t, check);
      },
      jittered(check.intervalMs, this.random()),
    );
  }

  /** One check: never two at once for one upstream; a probe that outlives timeoutMs is aborted and counts as failed. */
  private runCheck(t: Target, check: ActiveHealthConfig): void {
    if (this.closed) return;
    if (t.probing !== undefined) {
      // The last probe ignored its abort: it is not run again beside itself, and the upstream is not vouched for.
      this.checked(t, check, false, 'the previous check has not ended');
      this.scheduleCheck(t, check);
      return;
    }
    const controller = new AbortController();
    t.probing = controller;
    let done = false;
    const finish = (ok: boolean, detail: string): void => {
      if (done) return;
      done = true;
      this.timers.clear(t.probeDeadline);
      t.probeDeadline = undefined;
      controller.abort();
      if (this.closed) return;
      this.checked(t, check, ok, detail);
      this.scheduleCheck(t, check);
    };
    t.probeDeadline = this.timers.set(() => finish(false, `no answer within ${check.timeoutMs} ms`), check.timeoutMs);
    let probing: Promise<{ ok: boolean; detail: string }>;
    try {
      probing = this.probe(t.upstream, check, controller.signal);
    } catch (err) {
      probing = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    probing
      .then(
        (r) => finish(r.ok === true, String(r.detail)),
        (err: unknown) => finish(false, errorText(err)),
      )
      .finally(() => {
        if (t.probing === controller) t.probing = undefined;
      })
      .catch(() => undefined);
  }

  /** Active health: thresholds of checks in a row take the upstream out and readmit it (ending a passive ejection too). */
  private checked(t: Target, check: ActiveHealthConfig, ok: boolean, detail: string): void {
    if (ok) {
      t.activeFails = 0;
      t.activePasses = Math.min(t.activePasses + 1, check.healthyThreshold);
      if (t.activePasses < check.healthyThreshold || this.healthy(t)) return;
      t.activeHealthy = true;
      // The checks vouch for it again: a passive ejection ends early, on probation (its streak stays).
      if (t.ejectedUntil !== undefined) this.endEjection(t);
      this.announce(t, 'active', `${detail}; ${plural(check.healthyThreshold, 'check')} passed in a row`);
      return;
    }
    t.activePasses = 0;
    if (!t.activeHealthy) return;
    t.activeFails++;
    if (t.activeFails < check.unhealthyThreshold) return;
    t.activeFails = 0;
    t.activeHealthy = false;
    this.announce(t, 'active', `${detail}; ${plural(check.unhealthyThreshold, 'check')} failed in a row`);
  }
}
