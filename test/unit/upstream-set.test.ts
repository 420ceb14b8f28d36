/**
 * UpstreamSet without sockets: a fake clock that drives fake timers, a fake
 * probe, and the attempt and health events as the metrics and the log see them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ActiveHealthConfig, Upstream, UpstreamPoolConfig } from '../../src/config/types.js';
import { upstreamAttemptChannel, upstreamHealthChannel, type UpstreamAttemptEvent, type UpstreamHealthEvent } from '../../src/forward/channels.js';
import { MAX_UPSTREAMS, UpstreamSet, boundDetail, ejectionMs, jittered, type AttemptOutcome, type HeldChoice, type SetTimers } from '../../src/forward/upstream-set.js';
import type { HealthProbe } from '../../src/forward/health-check.js';

/** A clock and the timers it fires, in order of their time. */
class FakeTime implements SetTimers {
  now = 1000;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
  /** Every delay asked for, in order. */
  readonly delays: number[] = [];

  set(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.delays.push(ms);
    this.pending.set(id, { at: this.now + ms, fn });
    return id;
  }

  clear(handle: unknown): void {
    if (typeof handle === 'number') this.pending.delete(handle);
  }

  get count(): number {
    return this.pending.size;
  }

  /** Move the clock on by `ms`, firing every timer due on the way (timers set by timers included). */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.pending) if (entry[1].at <= end && (next === undefined || entry[1].at < next[1].at)) next = entry;
      if (next === undefined) break;
      this.pending.delete(next[0]);
      this.now = Math.max(this.now, next[1].at);
      next[1].fn();
      // Let probe promises settle before the next timer.
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
    this.now = end;
  }
}

const up = (name: string): Upstream => ({ protocol: 'http', host: '127.0.0.1', port: 1, url: `http://${name}`, name, http2: false, tls: undefined });

const PASSIVE = { failures: 3, ejectMs: 10_000, maxEjectMs: 45_000 };
const CHECK: ActiveHealthConfig = { type: 'http', path: '/healthz', intervalMs: 1000, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 3 };

function pool(names: readonly string[], over: Partial<UpstreamPoolConfig> = {}): UpstreamPoolConfig {
  return { targets: names.map(up), balance: 'round-robin', passiveHealth: undefined, healthCheck: undefined, retries: 1, ...over };
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function events(listener: string): { attempts: UpstreamAttemptEvent[]; health: UpstreamHealthEvent[] } {
  const attempts: UpstreamAttemptEvent[] = [];
  const health: UpstreamHealthEvent[] = [];
  cleanups.push(
    upstreamAttemptChannel.subscribe((e) => {
      if (e.listener === listener) attempts.push(e);
    }),
    upstreamHealthChannel.subscribe((e) => {
      if (e.listener === listener) health.push(e);
    }),
  );
  return { attempts, health };
}

function setOf(listener: string, p: UpstreamPoolConfig, time = new FakeTime(), probe?: HealthProbe): { set: UpstreamSet; time: FakeTime } {
  const set = new UpstreamSet(listener, p, { now: () => time.now, timers: time, random: () => 0.5, ...(probe ? { probe } : {}) });
  cleanups.push(() => set.close());
  return { set, time };
}

/** Pick and end at once; the name picked. */
function attempt(set: UpstreamSet, outcome: AttemptOutcome, tried?: ReadonlySet<string>): string | undefined {
  const choice = set.pick(tried);
  choice?.end(outcome);
  return choice?.upstream.name;
}

describe('choosing', () => {
  it.each<[string, UpstreamPoolConfig['balance'], string[]]>([
    ['round-robin', 'round-robin', ['a', 'b', 'c', 'a', 'b', 'c', 'a']],
    ['least-requests, all idle: round-robin order', 'least-requests', ['a', 'b', 'c', 'a', 'b', 'c', 'a']],
  ])('%s', (_label, balance, expected) => {
    const { set } = setOf('choose', pool(['a', 'b', 'c'], { balance }));
    expect(expected.map(() => attempt(set, 'ok'))).toEqual(expected);
  });

  it('least-requests: fewest in flight, ties in round-robin order after the last pick', () => {
    const { set } = setOf('least', pool(['a', 'b', 'c'], { balance: 'least-requests' }));
    const held: HeldChoice[] = [];
    const pickHold = (): string => {
      const c = set.pick();
      if (c === undefined) throw new Error('none');
      held.push(c);
      return c.upstream.name;
    };
    expect([pickHold(), pickHold(), pickHold()]).toEqual(['a', 'b', 'c']);
    // All at 1: the order goes on from after c.
    expect(pickHold()).toBe('a');
    // a:2 b:1 c:1 → b; then a:2 b:2 c:1 → c.
    expect([pickHold(), pickHold()]).toEqual(['b', 'c']);
    // End both of a's: a is the idle one and is picked until it catches up.
    held.filter((c) => c.upstream.name === 'a').forEach((c) => c.end('ok'));
    expect([pickHold(), pickHold(), pickHold()]).toEqual(['a', 'a', 'b']);
    expect(set.snapshot().map((s) => [s.name, s.inFlight])).toEqual([
      ['a', 2],
      ['b', 3],
      ['c', 2],
    ]);
  });

  it('round-robin ignores load', () => {
    const { set } = setOf('rr-load', pool(['a', 'b']));
    const first = set.pick();
    expect(first?.upstream.name).toBe('a');
    expect([attempt(set, 'ok'), attempt(set, 'ok'), attempt(set, 'ok')]).toEqual(['b', 'a', 'b']);
  });

  it('tried upstreams are skipped; undefined when every one was tried', () => {
    const { set } = setOf('tried', pool(['a', 'b', 'c']));
    expect(attempt(set, 'ok', new Set(['a']))).toBe('b');
    expect(attempt(set, 'ok', new Set(['c', 'a']))).toBe('b');
    expect(attempt(set, 'ok', new Set(['a', 'b', 'c']))).toBeUndefined();
    expect(attempt(set, 'ok', new Set(['x']))).toBe('c');
  });

  it.each<[string, number, string]>([
    ['none', 0, '1 to 32 upstreams, not 0'],
    ['too many', MAX_UPSTREAMS + 1, '1 to 32 upstreams, not 33'],
  ])('refuses %s', (_label, count, message) => {
    expect(() => new UpstreamSet('x', pool(Array.from({ length: count }, (_, i) => `u${i}`)))).toThrow(message);
  });

  it('refuses duplicate names', () => {
    expect(() => new UpstreamSet('x', pool(['a', 'a']))).toThrow('upstream names must be unique within a route');
  });
});

describe('attempt events and in-flight counts', () => {
  it('end() publishes once, with the seconds since the pick, and is idempotent', () => {
    const { attempts } = events('att');
    const { set, time } = setOf('att', pool(['a', 'b']));
    const c = set.pick();
    time.now += 250;
    c?.end('connect-failed');
    c?.end('ok');
    const d = set.pick();
    time.now += 1500;
    d?.end('failed');
    expect(attempts).toEqual([
      { listener: 'att', upstream: 'a', outcome: 'connect-failed', seconds: 0.25 },
      { listener: 'att', upstream: 'b', outcome: 'failed', seconds: 1.5 },
    ]);
    expect(set.snapshot().map((s) => s.inFlight)).toEqual([0, 0]);
  });

  it('settle() publishes now and keeps the attempt in flight until released (once)', () => {
    const { attempts } = events('held');
    const { set } = setOf('held', pool(['a'], { balance: 'least-requests' }));
    const c = set.pick();
    const release = c?.settle('ok');
    expect(attempts).toHaveLength(1);
    expect(set.snapshot()[0]?.inFlight).toBe(1);
    c?.end('failed');
    expect(attempts).toHaveLength(1);
    release?.();
    release?.();
    expect(set.snapshot()[0]?.inFlight).toBe(0);
  });
});

describe('passive health', () => {
  it('ejects after `failures` in a row, doubling per ejection in a row up to maxEjectMs; a success resets', async () => {
    const { health } = events('passive');
    const { set, time } = setOf('passive', pool(['a', 'b'], { passiveHealth: PASSIVE }));
    const failA = (): void => {
      const c = set.pick(new Set(['b']));
      expect(c?.upstream.name).toBe('a');
      c?.end('connect-failed');
    };
    failA();
    failA();
    expect(health).toEqual([]);
    failA();
    expect(health).toEqual([{ listener: 'passive', upstream: 'a', healthy: false, cause: 'passive', detail: '3 failures in a row; ejected for 10000 ms' }]);
    expect(set.snapshot()[0]).toEqual({ name: 'a', url: 'http://a', healthy: false, inFlight: 0, ejectedUntilMs: 11_000 });
    // Ejected: only b is picked.
    expect([attempt(set, 'ok'), attempt(set, 'ok'), attempt(set, 'ok')]).toEqual(['b', 'b', 'b']);
    await time.advance(9_999);
    expect(attempt(set, 'ok')).toBe('b');
    await time.advance(1);
    // The timer announced the end on time.
    expect(health[1]).toEqual({ listener: 'passive', upstream: 'a', healthy: true, cause: 'passive', detail: 'ejection of 10000 ms over; on probation' });
    // On probation: one failure ejects it again, for twice as long.
    failA();
    expect(health[2]?.detail).toBe('connect-failed on probation after an ejection; ejected for 20000 ms');
    await time.advance(20_000);
    failA();
    expect(health[4]?.detail).toBe('connect-failed on probation after an ejection; ejected for 40000 ms');
    await time.advance(40_000);
    set.pick(new Set(['b']))?.end('failed');
    expect(health[6]?.detail).toBe('failed on probation after an ejection; ejected for 45000 ms');
    await time.advance(45_000);
    // A success ends the probation: the next ejection takes `failures` again, at ejectMs.
    expect(attempt(set, 'ok', new Set(['b']))).toBe('a');
    failA();
    failA();
    expect(health).toHaveLength(8);
    failA();
    expect(health[8]?.detail).toBe('3 failures in a row; ejected for 10000 ms');
    expect(health.map((h) => h.healthy)).toEqual([false, true, false, true, false, true, false, true, false]);
  });

  it('a success between failures resets the count', () => {
    const { health } = events('reset');
    const { set } = setOf('reset', pool(['a'], { passiveHealth: PASSIVE }));
    for (const outcome of ['failed', 'failed', 'ok', 'failed', 'connect-failed', 'ok', 'failed', 'failed'] as const) attempt(set, outcome);
    expect(health).toEqual([]);
    expect(set.snapshot()[0]?.healthy).toBe(true);
  });

  it('attempts picked before an ejection do not count after it (one burst, one ejection)', () => {
    const { health } = events('burst');
    const { set, time } = setOf('burst', pool(['a', 'b'], { passiveHealth: PASSIVE }));
    const inFlight = Array.from({ length: 6 }, () => set.pick(new Set(['b'])));
    for (const c of inFlight) c?.end('failed');
    expect(health.map((h) => h.detail)).toEqual(['3 failures in a row; ejected for 10000 ms']);
    expect(set.snapshot()[0]?.ejectedUntilMs).toBe(time.now + 10_000);
  });

  it('none healthy: the untried one whose ejection ends soonest; a success then readmits it', async () => {
    const { health } = events('fallback');
    const { set, time } = setOf('fallback', pool(['a', 'b', 'c'], { passiveHealth: { failures: 1, ejectMs: 10_000, maxEjectMs: 300_000 } }));
    expect(attempt(set, 'failed')).toBe('a');
    await time.advance(1000);
    expect(attempt(set, 'failed')).toBe('b');
    await time.advance(1000);
    expect(attempt(set, 'failed')).toBe('c');
    // a ends at 11000+1000, b a second later, c a second after that.
    expect(set.snapshot().map((s) => [s.name, s.healthy, s.ejectedUntilMs])).toEqual([
      ['a', false, 11_000],
      ['b', false, 12_000],
      ['c', false, 13_000],
    ]);
    expect(set.pick(new Set())?.upstream.name).toBe('a');
    expect(set.pick(new Set(['a']))?.upstream.name).toBe('b');
    expect(set.pick(new Set(['a', 'b']))?.upstream.name).toBe('c');
    expect(set.pick(new Set(['a', 'b', 'c']))).toBeUndefined();
    // A failure while ejected changes nothing; a success readmits (probation cleared).
    const c = set.pick(new Set(['a', 'b']));
    c?.end('failed');
    expect(set.snapshot()[2]?.ejectedUntilMs).toBe(13_000);
    set.pick(new Set(['a', 'b']))?.end('ok');
    // One pick above is still in flight.
    expect(set.snapshot()[2]).toEqual({ name: 'c', url: 'http://c', healthy: true, inFlight: 1 });
    expect(health.at(-1)).toEqual({ listener: 'fallback', upstream: 'c', healthy: true, cause: 'passive', detail: 'an attempt succeeded while it was ejected; readmitted' });
  });

  it('passive health off: failures never eject', () => {
    const { health } = events('off');
    const { set } = setOf('off', pool(['a', 'b']));
    for (let i = 0; i < 50; i++) attempt(set, 'connect-failed');
    expect(health).toEqual([]);
    expect(set.snapshot().every((s) => s.healthy)).toBe(true);
  });

  it('an ejection ends by the clock even without timers (closed set), without an event', () => {
    const { health } = events('lazy');
    const { set, time } = setOf('lazy', pool(['a', 'b'], { passiveHealth: { failures: 1, ejectMs: 100, maxEjectMs: 100 } }));
    expect(attempt(set, 'failed')).toBe('a');
    set.close();
    expect(time.count).toBe(0);
    expect([attempt(set, 'ok'), attempt(set, 'ok')]).toEqual(['b', 'b']);
    time.now += 100;
    expect([attempt(set, 'ok'), attempt(set, 'ok')]).toEqual(['a', 'b']);
    expect(health.map((h) => h.healthy)).toEqual([false]);
  });
});

/** A probe whose answers the test sets per upstream: a result, or 'hang' (never settles). */
function scriptedProbe(): { probe: HealthProbe; answers: Map<string, { ok: boolean; detail: string } | 'hang' | 'throw'>; calls: string[]; signals: AbortSignal[] } {
  const answers = new Map<string, { ok: boolean; detail: string } | 'hang' | 'throw'>();
  const calls: string[] = [];
  const signals: AbortSignal[] = [];
  const probe: HealthProbe = (u, _check, signal) => {
    calls.push(u.name);
    signals.push(signal);
    const answer = answers.get(u.name) ?? { ok: true, detail: 'GET /healthz: 200' };
    if (answer === 'throw') throw new Error('probe bug');
    if (answer === 'hang') return new Promise(() => undefined);
    return Promise.resolve(answer);
  };
  return { probe, answers, calls, signals };
}

describe('active health', () => {
  it('unhealthyThreshold failed checks take it out (not picked though passively fine), healthyThreshold passes readmit', async () => {
    const { health } = events('active');
    const script = scriptedProbe();
    const { set, time } = setOf('active', pool(['a', 'b'], { passiveHealth: PASSIVE, healthCheck: CHECK }), new FakeTime(), script.probe);
    set.start();
    set.start();
    // One timer per upstream (start twice does not double them).
    expect(time.count).toBe(2);
    script.answers.set('a', { ok: false, detail: 'GET /healthz: 503' });
    await time.advance(2000);
    expect(health).toEqual([]);
    await time.advance(1000);
    expect(health).toEqual([{ listener: 'active', upstream: 'a', healthy: false, cause: 'active', detail: 'GET /healthz: 503; 3 checks failed in a row' }]);
    expect(script.calls.filter((c) => c === 'a')).toHaveLength(3);
    expect([attempt(set, 'ok'), attempt(set, 'ok'), attempt(set, 'ok')]).toEqual(['b', 'b', 'b']);
    script.answers.set('a', { ok: true, detail: 'GET /healthz: 200' });
    await time.advance(1000);
    expect(health).toHaveLength(1);
    await time.advance(1000);
    expect(health[1]).toEqual({ listener: 'active', upstream: 'a', healthy: true, cause: 'active', detail: 'GET /healthz: 200; 2 checks passed in a row' });
    expect(attempt(set, 'ok')).toBe('a');
  });

  it('each interval is intervalMs ± 10%, and the checks go on every interval', async () => {
    const script = scriptedProbe();
    const time = new FakeTime();
    const draws = [0, 0.999, 0.5];
    let i = 0;
    const set = new UpstreamSet('jitter', pool(['a'], { healthCheck: CHECK }), { now: () => time.now, timers: time, probe: script.probe, random: () => draws[i++ % 3] ?? 0 });
    cleanups.push(() => set.close());
    set.start();
    await time.advance(10_000);
    const intervals = time.delays.filter((d) => d !== CHECK.timeoutMs);
    expect(intervals.slice(0, 3)).toEqual([900, 1100, 1000]);
    expect(script.calls.length).toBe(10);
    expect(jittered(1000, 0)).toBe(900);
    expect(jittered(1000, 0.999_999)).toBe(1100);
  });

  it('a probe that outlives timeoutMs counts as failed, is aborted, and never runs beside itself', async () => {
    const { health } = events('hang');
    const script = scriptedProbe();
    script.answers.set('a', 'hang');
    const { set, time } = setOf('hang', pool(['a', 'b'], { healthCheck: { ...CHECK, unhealthyThreshold: 2 } }), new FakeTime(), script.probe);
    set.start();
    await time.advance(1000);
    expect(script.calls.filter((c) => c === 'a')).toHaveLength(1);
    await time.advance(500);
    expect(script.signals[0]?.aborted).toBe(true);
    await time.advance(1000);
    // Still hanging: no second probe of a, and a second failure.
    expect(script.calls.filter((c) => c === 'a')).toHaveLength(1);
    expect(health).toEqual([{ listener: 'hang', upstream: 'a', healthy: false, cause: 'active', detail: 'the previous check has not ended; 2 checks failed in a row' }]);
  });

  it('a probe that throws or rejects is a failed check, not an exception', async () => {
    const { health } = events('throw');
    const script = scriptedProbe();
    script.answers.set('a', 'throw');
    const { set, time } = setOf('throw', pool(['a'], { healthCheck: { ...CHECK, unhealthyThreshold: 1 } }), new FakeTime(), script.probe);
    set.start();
    await time.advance(1000);
    expect(health).toEqual([{ listener: 'throw', upstream: 'a', healthy: false, cause: 'active', detail: 'Error: probe bug; 1 check failed in a row' }]);
  });

  it('passing checks end a passive ejection early (on probation)', async () => {
    const { health } = events('uneject');
    const script = scriptedProbe();
    const { set, time } = setOf('uneject', pool(['a', 'b'], { passiveHealth: { failures: 1, ejectMs: 60_000, maxEjectMs: 60_000 }, healthCheck: CHECK }), new FakeTime(), script.probe);
    set.start();
    expect(attempt(set, 'connect-failed')).toBe('a');
    expect(health.map((h) => h.detail)).toEqual(['1 failure in a row; ejected for 60000 ms']);
    await time.advance(1000);
    expect(set.snapshot()[0]?.healthy).toBe(false);
    await time.advance(1000);
    expect(health[1]).toEqual({ listener: 'uneject', upstream: 'a', healthy: true, cause: 'active', detail: 'GET /healthz: 200; 2 checks passed in a row' });
    expect(set.snapshot()[0]).toEqual({ name: 'a', url: 'http://a', healthy: true, inFlight: 0 });
    // On probation: one failure ejects it for twice as long (capped at 60 s here).
    expect(attempt(set, 'ok')).toBe('b');
    expect(attempt(set, 'failed')).toBe('a');
    expect(health[2]?.detail).toBe('failed on probation after an ejection; ejected for 60000 ms');
  });

  it('close() stops the checks and aborts the one in flight', async () => {
    const script = scriptedProbe();
    script.answers.set('a', 'hang');
    const { set, time } = setOf('close', pool(['a'], { healthCheck: CHECK }), new FakeTime(), script.probe);
    set.start();
    await time.advance(1000);
    expect(script.calls).toHaveLength(1);
    set.close();
    expect(script.signals[0]?.aborted).toBe(true);
    expect(time.count).toBe(0);
    await time.advance(10_000);
    expect(script.calls).toHaveLength(1);
    set.start();
    expect(time.count).toBe(0);
  });

  it('no health check configured: start() sets no timer', () => {
    const { set, time } = setOf('none', pool(['a']));
    set.start();
    expect(time.count).toBe(0);
  });
});

describe('pure helpers', () => {
  it.each<[number, number]>([
    [0, 10_000],
    [1, 20_000],
    [2, 40_000],
    [3, 45_000],
    [1000, 45_000],
  ])('ejectionMs after %i ejections in a row', (streak, expected) => {
    expect(ejectionMs(PASSIVE, streak)).toBe(expected);
  });

  it('boundDetail: one line, bounded', () => {
    expect(boundDetail('a\r\nb\u0000c')).toBe('a b c');
    expect(boundDetail('x'.repeat(500))).toHaveLength(200);
  });
});
