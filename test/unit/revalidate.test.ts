/**
 * Revalidation of established connections: the pure parts (when the next
 * check is due, what a check's result means, which configurations are
 * refused) as tables, and watchConnection's behaviour with fake timers, a fake
 * socket and a fake TLSA source answering prepared outcomes, matched against
 * real certificates and TLSA records by the real authenticate stage.
 */
import { EventEmitter } from 'node:events';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { CertificateParseError, parseCertificateDer, type ParsedCertificate } from '../../src/dane/certificate.js';
import { tlsaRecordForCertificate, type TlsaRecord } from '../../src/dane/tlsa.js';
import type { CachedLookup } from '../../src/lookup/cache.js';
import { outcome, type LookupOutcome, type LookupOutcomeKind } from '../../src/lookup/tlsa-answer.js';
import { REFUSAL_REASONS, type RefusalReason } from '../../src/reasons.js';
import {
  classifyRevalidation,
  CLOSE_FLUSH_MS,
  nextCheckInMs,
  revalidationConfigProblem,
  untilCertificateExpiryMs,
  watchConnection,
  type RevalidationConfig,
  type RevalidationSubject,
  type RevalidationVerdict,
} from '../../src/connection/revalidate.js';
import { revalidationChannel, type RevalidationEvent } from '../../src/connection/revalidation-channel.js';
import { authenticate, type Authentication } from '../../src/connection/stages/authenticate.js';
import { startLookup } from '../../src/connection/stages/lookup.js';
import { refuse } from '../../src/connection/stages/result.js';

const NAME = 'sensor7._device.example.test';
const MINUTE = 60_000;
const DAY = 86_400_000;
/** Captured before any test fakes the timers: real waiting for work on the thread pool (path validation). */
const realSetTimeout = globalThis.setTimeout;

const p = (c: IssuedCertificate): ParsedCertificate => parseCertificateDer(c.der);
const rec = (c: IssuedCertificate, u: number, s: number, m: number): TlsaRecord => tlsaRecordForCertificate(p(c), u, s, m);

/** The time the certificates are made at, and the fake clock starts from. */
let T0: number;
let intermediate: IssuedCertificate;
/** Valid for a year, issued by the intermediate. */
let leaf: IssuedCertificate;
/** Same name, another key: what the zone publishes after a key change. */
let otherKey: IssuedCertificate;
/** Issued by the intermediate, expires 30 minutes after T0. */
let shortLeaf: IssuedCertificate;
let expiredLeaf: IssuedCertificate;
let futureLeaf: IssuedCertificate;

beforeAll(async () => {
  T0 = Date.now();
  const root = await createCertificate({ commonName: 'root', isCA: true });
  intermediate = await createCertificate({ commonName: 'intermediate', isCA: true, issuer: root });
  const named = { commonName: NAME, dnsNames: [NAME], issuer: intermediate };
  leaf = await createCertificate(named);
  otherKey = await createCertificate(named);
  shortLeaf = await createCertificate({ ...named, notAfter: new Date(T0 + 30 * MINUTE) });
  expiredLeaf = await createCertificate({ ...named, notBefore: new Date(T0 - 10 * DAY), notAfter: new Date(T0 - DAY) });
  futureLeaf = await createCertificate({ ...named, notBefore: new Date(T0 + DAY), notAfter: new Date(T0 + 10 * DAY) });
}, 60_000);

const CONFIG: RevalidationConfig = { mode: 'ttl', floorMs: 30_000, ceilingMs: 3_600_000, jitterMs: 30_000, graceMs: 100_000 };

describe('nextCheckInMs: the answer’s remaining life (+1 ms) clamped to [floor, ceiling], plus 0..jitter', () => {
  it.each<[string, number | undefined, number, number]>([
    ['a 300 s answer, no jitter drawn', 300_000, 0, 300_001],
    ['a 300 s answer, half the jitter', 300_000, 0.5, 315_001],
    ['a 300 s answer, the most jitter', 300_000, 0.999_999, 330_001],
    ['random() out of range (1) still gives at most jitterMs', 300_000, 1, 330_001],
    ['random() NaN: no jitter', 300_000, Number.NaN, 300_001],
    ['a fractional remaining life is rounded up', 299_999.2, 0, 300_001],
    ['below the floor: the floor', 1, 0, 30_000],
    ['an answer already expired: the floor', 0, 0, 30_000],
    ['negative: the floor', -5, 0, 30_000],
    ['unknown: the floor', undefined, 0, 30_000],
    ['NaN: the floor', Number.NaN, 0, 30_000],
    ['just under the ceiling reaches it', 3_599_999, 0, 3_600_000],
    ['a day: the ceiling', DAY, 0, 3_600_000],
    ['a day: the ceiling plus jitter', DAY, 0.5, 3_615_000],
    ['forever: the ceiling', Infinity, 0, 3_600_000],
  ])('%s', (_label, expiresInMs, random, expected) => {
    expect(nextCheckInMs(expiresInMs, CONFIG, () => random)).toBe(expected);
  });

  it('jitter 0: exactly the clamped life, whatever random() says', () => {
    expect([0, 0.5, 0.99].map((r) => nextCheckInMs(60_000, { ...CONFIG, jitterMs: 0 }, () => r))).toEqual([60_001, 60_001, 60_001]);
  });

  it('the jitter is uniform over 0..jitterMs: each of 0..3 for a quarter of [0, 1)', () => {
    const small = { ...CONFIG, jitterMs: 3 };
    expect([0, 0.24, 0.25, 0.49, 0.5, 0.74, 0.75, 0.99].map((r) => nextCheckInMs(60_000, small, () => r) - 60_001)).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
  });
});

describe('revalidationConfigProblem', () => {
  it.each<[string, Partial<RevalidationConfig> | Record<string, unknown>, string | undefined]>([
    ['the defaults', {}, undefined],
    ['off', { mode: 'off' }, undefined],
    ['no grace', { graceMs: 0 }, undefined],
    ['floor equal to ceiling', { floorMs: 60_000, ceilingMs: 60_000 }, undefined],
    ['an unknown mode', { mode: 'always' }, `revalidate mode must be 'ttl' or 'off', got "always"`],
    ['a negative jitter', { jitterMs: -1 }, 'revalidate jitterMs must be a non-negative integer, got -1'],
    ['a fractional grace', { graceMs: 1.5 }, 'revalidate graceMs must be a non-negative integer, got 1.5'],
    ['a NaN ceiling', { ceilingMs: Number.NaN }, 'revalidate ceilingMs must be a non-negative integer, got NaN'],
    ['a floor under a second', { floorMs: 999 }, 'revalidate floorMs must be at least 1000, got 999'],
    ['a ceiling under the floor', { floorMs: 60_000, ceilingMs: 59_999 }, 'revalidate ceilingMs (59999) must not be below floorMs (60000)'],
    ['past what setTimeout honours', { ceilingMs: 2_147_483_000, jitterMs: 1000 }, 'revalidate ceilingMs + jitterMs must be at most 2147483647 (about 24.8 days), got 2147484000'],
  ])('%s', (_label, change, expected) => {
    expect(revalidationConfigProblem({ ...CONFIG, ...change } as RevalidationConfig)).toBe(expected);
  });
});

describe('classifyRevalidation', () => {
  const NO_EVIDENCE = { lookup: undefined, cache: undefined, decision: undefined, dnsMs: undefined };
  const refused = (reason: RefusalReason): Authentication => ({ ...refuse(reason, 'x'), evidence: NO_EVIDENCE });

  /** Every refusal the authenticate stage gives, and what it means for an established connection. */
  const AUTHENTICATE_REFUSALS: ReadonlyArray<[RefusalReason, RevalidationVerdict]> = [
    ['dns-no-tlsa', 'revoked'],
    ['dns-insecure', 'revoked'],
    ['no-records', 'revoked'],
    ['no-usable-records', 'revoked'],
    ['no-matching-record', 'revoked'],
    ['no-certificate', 'revoked'],
    ['chain-too-long', 'revoked'],
    ['dns-bogus', 'failed'],
    ['dns-malformed', 'failed'],
    ['dns-timeout', 'failed'],
    ['dns-server-error', 'failed'],
    ['dns-over-capacity', 'failed'],
    ['client-closed', 'failed'],
  ];
  it.each(AUTHENTICATE_REFUSALS)('%s → %s', (reason, expected) => {
    expect(classifyRevalidation(refused(reason))).toBe(expected);
  });

  it('a reason authenticate never gives is judged by the catalog: temporary → failed, otherwise revoked (fail closed)', () => {
    const others = REFUSAL_REASONS.filter((r) => !AUTHENTICATE_REFUSALS.some(([known]) => known === r));
    const judged = Object.fromEntries(others.map((r) => [r, classifyRevalidation(refused(r))]));
    expect(judged).toEqual({
      'proxy-header-invalid': 'revoked',
      'proxy-header-timeout': 'revoked',
      'penalty-box': 'revoked',
      'rate-limited': 'failed',
      'handshake-budget': 'failed',
      'handshake-budget-ip': 'failed',
      'client-hello-invalid': 'revoked',
      'client-hello-timeout': 'revoked',
      'no-route': 'revoked',
      'invalid-name': 'revoked',
      'not-allowed': 'revoked',
      'no-name': 'revoked',
      'ambiguous-name': 'revoked',
      'handshake-failed': 'revoked',
      'handshake-timeout': 'revoked',
      'chain-over-limits': 'revoked',
      'identity-limit': 'failed',
      'no-application-protocol': 'revoked',
    });
  });

  /** The real authenticate stage, answering `answer` for the chain `chain` at `now`. */
  const authenticateWith = (answer: LookupOutcome, chain: IssuedCertificate[], now = new Date(T0)): Promise<Authentication> => {
    const parsed = chain.map(p);
    const cache = { lookup: async (): Promise<CachedLookup> => ({ outcome: answer, cache: 'miss', expiresInMs: 300_000 }) };
    return authenticate({ name: NAME, lookup: startLookup(cache, NAME, undefined), leaf: parsed.slice(0, 1), chain: () => parsed, now });
  };
  const secure = (records: TlsaRecord[]): LookupOutcome => outcome('secure', 'AD=1', { records, ttl: 300 });

  it.each<[Exclude<LookupOutcomeKind, 'secure'>, RevalidationVerdict]>([
    ['no-tlsa', 'revoked'],
    ['insecure', 'revoked'],
    ['bogus', 'failed'],
    ['timeout', 'failed'],
    ['malformed', 'failed'],
    ['server-error', 'failed'],
    ['over-capacity', 'failed'],
  ])('through authenticate: a %s answer → %s', async (kind, expected) => {
    expect(classifyRevalidation(await authenticateWith(outcome(kind, 'detail'), [leaf]))).toBe(expected);
  });

  it.each<[string, () => [TlsaRecord[], IssuedCertificate[]], RevalidationVerdict]>([
    ['DANE-EE still published → kept', () => [[rec(leaf, 3, 1, 1)], [leaf]], 'kept'],
    ['DANE-EE of an expired certificate (dates ignored) → kept', () => [[rec(expiredLeaf, 3, 1, 1)], [expiredLeaf]], 'kept'],
    ['DANE-TA, the chain still valid → kept', () => [[rec(intermediate, 2, 0, 1)], [leaf, intermediate]], 'kept'],
    ['the key changed (DANE-EE of another key) → revoked', () => [[rec(otherKey, 3, 1, 1)], [leaf]], 'revoked'],
    ['an empty RRset → revoked', () => [[], [leaf]], 'revoked'],
    ['only records we cannot use → revoked', () => [[{ usage: 3, selector: 1, matchingType: 9, data: Buffer.alloc(32) }], [leaf]], 'revoked'],
    ['DANE-TA, the leaf expired → expired', () => [[rec(intermediate, 2, 0, 1)], [expiredLeaf, intermediate]], 'expired'],
    ['DANE-TA, the leaf not yet valid → expired', () => [[rec(intermediate, 2, 0, 1)], [futureLeaf, intermediate]], 'expired'],
    [
      'the key changed, and a DANE-TA record the expired chain fails on dates → expired',
      () => [
        [rec(otherKey, 3, 1, 1), rec(intermediate, 2, 0, 1)],
        [expiredLeaf, intermediate],
      ],
      'expired',
    ],
    ['DANE-TA of another issuer → revoked', () => [[rec(otherKey, 2, 0, 1)], [leaf, intermediate]], 'revoked'],
  ])('through authenticate: %s', async (_label, build, expected) => {
    const [records, chain] = build();
    expect(classifyRevalidation(await authenticateWith(secure(records), chain))).toBe(expected);
  });
});

describe('untilCertificateExpiryMs', () => {
  it('DANE-EE ignores the dates; other usages (and an unknown one) wait for the earliest notAfter still ahead, plus 1 s', () => {
    const short = p(shortLeaf);
    const chain = () => [short, p(intermediate)];
    const untilShort = short.notAfter.getTime() - T0 + 1000;
    expect(untilCertificateExpiryMs(3, short, chain, T0)).toBeUndefined();
    expect(untilCertificateExpiryMs(2, short, chain, T0)).toBe(untilShort);
    expect(untilCertificateExpiryMs(undefined, short, chain, T0)).toBe(untilShort);
    expect(untilCertificateExpiryMs(0, short, chain, T0)).toBe(untilShort);
    // Once the leaf's notAfter is past, the intermediate's is the next one.
    const afterShort = short.notAfter.getTime() + 1;
    expect(untilCertificateExpiryMs(2, short, chain, afterShort)).toBe(p(intermediate).notAfter.getTime() - afterShort + 1000);
  });

  it('a chain that cannot be parsed: the leaf alone', () => {
    const short = p(shortLeaf);
    const broken = (): ParsedCertificate[] => {
      throw new CertificateParseError('certificate 2: bad DER length');
    };
    expect(untilCertificateExpiryMs(2, short, broken, T0)).toBe(short.notAfter.getTime() - T0 + 1000);
    expect(untilCertificateExpiryMs(2, p(expiredLeaf), broken, T0)).toBeUndefined();
  });
});

/** A client socket as the forwarder holds it: end() is counted (the client does not answer it), destroy() closes. */
class FakeSocket extends EventEmitter {
  destroyed = false;
  ends = 0;
  destroys = 0;
  end(): void {
    this.ends++;
  }
  destroy(): void {
    this.destroys++;
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}

type Answer = { readonly outcome: LookupOutcome; readonly expiresInMs: number } | 'hang';

/** A TLSA source answering the prepared answers in order (the last one again once they run out). */
class PreparedSource {
  readonly signals: AbortSignal[] = [];
  constructor(private readonly answers: Answer[]) {}
  get lookups(): number {
    return this.signals.length;
  }
  lookup(name: string, signal?: AbortSignal): Promise<CachedLookup> {
    if (name !== NAME) throw new Error(`unexpected name ${name}`);
    if (signal === undefined) throw new Error('a revalidation lookup must be abortable');
    this.signals.push(signal);
    const answer = this.answers.length > 1 ? this.answers.shift() : this.answers[0];
    if (answer === undefined) throw new Error('no answer prepared');
    if (answer === 'hang') return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
    return Promise.resolve({ outcome: answer.outcome, cache: 'miss', expiresInMs: answer.expiresInMs });
  }
}

const secureAnswer = (records: TlsaRecord[], expiresInMs: number): Answer => ({ outcome: outcome('secure', 'AD=1', { records, ttl: expiresInMs / 1000 }), expiresInMs });
const failure = (kind: LookupOutcomeKind, detail: string): Answer => ({ outcome: outcome(kind, detail), expiresInMs: 5000 });

describe('watchConnection', () => {
  let events: RevalidationEvent[];
  let unsubscribe: () => void;
  let n = 0;
  let connectionId: string;

  beforeEach(() => {
    vi.useFakeTimers({ now: T0, toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    connectionId = `c-${++n}`;
    events = [];
    unsubscribe = revalidationChannel.subscribe((e) => {
      if (e.connectionId === connectionId) events.push(e);
    });
  });
  afterEach(() => {
    unsubscribe();
    vi.useRealTimers();
  });

  /** Real time: lets a check's promises and thread-pool work (path validation) finish. */
  const settle = (ms = 20): Promise<void> => new Promise((r) => realSetTimeout(r, ms));
  /** Waits (real time, at most 5 s) until `count` events were published. */
  async function published(count: number): Promise<RevalidationEvent[]> {
    // performance.now() is not faked here (Date is).
    const deadline = performance.now() + 5000;
    while (events.length < count) {
      if (performance.now() > deadline) throw new Error(`expected ${count} revalidation events, got ${events.length}: ${JSON.stringify(events)}`);
      await settle(2);
    }
    return events;
  }

  function watch(source: PreparedSource, options: { subject?: Partial<RevalidationSubject>; config?: Partial<RevalidationConfig>; chain?: IssuedCertificate[]; random?: () => number } = {}) {
    const socket = new FakeSocket();
    const chain = (options.chain ?? [leaf]).map(p);
    const subject: RevalidationSubject = {
      listener: 'mqtt',
      connectionId,
      name: NAME,
      leaf: chain[0] as ParsedCertificate,
      chain: () => chain,
      pkixRoots: [],
      tlsa: [3, 1, 1],
      expiresInMs: 300_000,
      ...options.subject,
    };
    watchConnection(socket, subject, { cache: source, config: { ...CONFIG, ...options.config }, now: () => new Date(), random: options.random ?? (() => 0) });
    return socket;
  }

  const event = (outcome: RevalidationEvent['outcome'], detail: string, nextInMs?: number): RevalidationEvent =>
    nextInMs === undefined ? { listener: 'mqtt', connectionId, name: NAME, outcome, detail } : { listener: 'mqtt', connectionId, name: NAME, outcome, detail, nextInMs };

  it('mode off: no timer, no lookup, ever', async () => {
    const source = new PreparedSource([secureAnswer([rec(leaf, 3, 1, 1)], 300_000)]);
    watch(source, { config: { mode: 'off' } });
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10 * DAY);
    expect([source.lookups, events.length]).toEqual([0, 0]);
  });

  it('a socket already destroyed is not watched; a bad configuration throws', () => {
    const socket = new FakeSocket();
    socket.destroy();
    const subject = { listener: 'mqtt', connectionId, name: NAME, leaf: p(leaf), chain: () => [p(leaf)], expiresInMs: 1000 };
    watchConnection(socket, subject, { cache: new PreparedSource([]), config: CONFIG, now: () => new Date() });
    expect(vi.getTimerCount()).toBe(0);
    expect(() => watchConnection(new FakeSocket(), subject, { cache: new PreparedSource([]), config: { ...CONFIG, floorMs: 10 }, now: () => new Date() })).toThrow(
      new RangeError('revalidate floorMs must be at least 1000, got 10'),
    );
  });

  it('kept: checked when the answer expires, then again when the new answer expires', async () => {
    const source = new PreparedSource([secureAnswer([rec(leaf, 3, 1, 1)], 120_000), secureAnswer([rec(leaf, 3, 1, 1)], DAY)]);
    const socket = watch(source);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(300_000);
    expect(source.lookups).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(source.lookups).toBe(1);
    expect(await published(1)).toEqual([event('kept', 'record 1 of 1 matched', 120_001)]);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(source.lookups).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await published(2)).toEqual([event('kept', 'record 1 of 1 matched', 120_001), event('kept', 'record 1 of 1 matched', 3_600_000)]);
    expect([socket.ends, socket.destroys, vi.getTimerCount(), source.signals.some((s) => s.aborted)]).toEqual([0, 0, 1, false]);
  });

  it('the record removed: published revoked, end() (close_notify), destroyed after the flush time unless the client closed', async () => {
    const source = new PreparedSource([{ outcome: outcome('no-tlsa', 'NXDOMAIN (AD=1)', { ttl: 60 }), expiresInMs: 60_000 }]);
    const socket = watch(source);
    await vi.advanceTimersByTimeAsync(300_001);
    expect(await published(1)).toEqual([event('revoked', 'dns-no-tlsa: NXDOMAIN (AD=1)')]);
    expect([socket.ends, socket.destroys]).toEqual([1, 0]);
    await vi.advanceTimersByTimeAsync(CLOSE_FLUSH_MS - 1);
    expect(socket.destroys).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect([socket.destroys, vi.getTimerCount(), source.lookups]).toEqual([1, 0, 1]);
  });

  it('the client answers close_notify: the flush timer is cleared, destroy() not called again', async () => {
    const source = new PreparedSource([{ outcome: outcome('insecure', 'AD=0'), expiresInMs: 60_000 }]);
    const socket = watch(source);
    await vi.advanceTimersByTimeAsync(300_001);
    expect(await published(1)).toEqual([event('revoked', 'dns-insecure: AD=0')]);
    socket.destroy();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(DAY);
    expect([socket.ends, socket.destroys, events.length]).toEqual([1, 1, 1]);
  });

  it('the key changed: revoked', async () => {
    const source = new PreparedSource([secureAnswer([rec(otherKey, 3, 1, 1)], 300_000)]);
    const socket = watch(source);
    await vi.advanceTimersByTimeAsync(300_001);
    expect(await published(1)).toEqual([event('revoked', 'no-matching-record: no-matching-record: record 1 ee-mismatch')]);
    expect(socket.ends).toBe(1);
  });

  it('DANE-TA: checked one second after the leaf’s notAfter (before the TTL check), then expired', async () => {
    const short = p(shortLeaf);
    const untilExpiry = short.notAfter.getTime() - T0 + 1000;
    const source = new PreparedSource([secureAnswer([rec(intermediate, 2, 0, 1)], 3_600_000)]);
    const socket = watch(source, { chain: [shortLeaf, intermediate], subject: { tlsa: [2, 0, 1], expiresInMs: 3_600_000 } });
    expect(untilExpiry).toBeLessThan(30 * MINUTE + 1000 + 1);
    await vi.advanceTimersByTimeAsync(untilExpiry - 1);
    expect(source.lookups).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(source.lookups).toBe(1);
    const [only] = await published(1);
    expect(only).toMatchObject({ outcome: 'expired', detail: expect.stringMatching(/^no-matching-record: no-matching-record: record 1 certificate-expired/) });
    expect(only?.nextInMs).toBeUndefined();
    expect(socket.ends).toBe(1);
  });

  it('DANE-TA kept before the leaf expires: the next check is at the notAfter, not the TTL', async () => {
    const short = p(shortLeaf);
    const source = new PreparedSource([secureAnswer([rec(intermediate, 2, 0, 1)], DAY)]);
    watch(source, { chain: [shortLeaf, intermediate], subject: { tlsa: [2, 0, 1], expiresInMs: 600_000 } });
    await vi.advanceTimersByTimeAsync(600_001);
    const [kept] = await published(1);
    expect(kept).toEqual(event('kept', 'record 1 of 1 matched', short.notAfter.getTime() - (T0 + 600_001) + 1000));
  });

  it('DANE-EE with the same short-lived leaf: no check at its notAfter (the dates do not count), kept after it', async () => {
    const source = new PreparedSource([secureAnswer([rec(shortLeaf, 3, 1, 1)], DAY)]);
    const socket = watch(source, { chain: [shortLeaf, intermediate], subject: { tlsa: [3, 1, 1], expiresInMs: DAY } });
    await vi.advanceTimersByTimeAsync(3_600_000 - 1);
    expect(source.lookups).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(await published(1)).toEqual([event('kept', 'record 1 of 1 matched', 3_600_000)]);
    expect(socket.ends).toBe(0);
  });

  it('a temporary failure keeps the connection, retried at the floor, until the grace period is over: unverifiable', async () => {
    const source = new PreparedSource([failure('timeout', 'no answer from 127.0.0.1:53')]);
    const socket = watch(source);
    await vi.advanceTimersByTimeAsync(300_001);
    await published(1);
    for (const [i, step] of [30_000, 30_000, 30_000].entries()) {
      await vi.advanceTimersByTimeAsync(step);
      await published(i + 2);
    }
    expect(socket.ends).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000 - 1);
    expect(source.lookups).toBe(4);
    await vi.advanceTimersByTimeAsync(1);
    const detail = 'dns-timeout: no answer from 127.0.0.1:53';
    expect(await published(5)).toEqual([
      event('failed', detail, 30_000),
      event('failed', detail, 30_000),
      event('failed', detail, 30_000),
      event('failed', detail, 10_000),
      event('unverifiable', `${detail}; no check succeeded for 100000 ms (grace 100000 ms)`),
    ]);
    expect([socket.ends, source.lookups]).toEqual([1, 5]);
  });

  it('our own resolver gate full (dns-over-capacity) never closes a connection: retried past the grace period, kept when the gate frees', async () => {
    const full = failure('over-capacity', 'the resolver gate is full');
    const source = new PreparedSource([full, full, full, full, full, full, secureAnswer([rec(leaf, 3, 1, 1)], 300_000)]);
    const socket = watch(source, { config: { graceMs: 0 } });
    await vi.advanceTimersByTimeAsync(300_001);
    for (let i = 1; i <= 6; i++) {
      expect(await published(i)).toHaveLength(i);
      await vi.advanceTimersByTimeAsync(30_000);
    }
    const outcomes = (await published(7)).map((e) => e.outcome);
    expect(outcomes).toEqual(['failed', 'failed', 'failed', 'failed', 'failed', 'failed', 'kept']);
    expect([socket.ends, socket.destroys, source.lookups]).toEqual([0, 0, 7]);
  });

  it('failed checks are retried after the floor plus jitter, so a fleet that failed together does not retry together', async () => {
    const source = new PreparedSource([failure('timeout', 'no answer')]);
    watch(source, { random: () => 0.5 });
    // The first check: the answer's life (300 000 + 1) plus floor(0.5 x 30 001) of jitter.
    await vi.advanceTimersByTimeAsync(315_001);
    // floor 30 000 + floor(0.5 x (jitter 30 000 + 1)) = 45 000
    expect(await published(1)).toEqual([event('failed', 'dns-timeout: no answer', 45_000)]);
  });

  it('bogus is a failure with grace, not a revocation', async () => {
    const source = new PreparedSource([failure('bogus', 'SERVFAIL (EDE 6: DNSSEC Bogus)')]);
    const socket = watch(source, { config: { graceMs: 0 } });
    await vi.advanceTimersByTimeAsync(300_001);
    expect(await published(1)).toEqual([event('unverifiable', 'dns-bogus: SERVFAIL (EDE 6: DNSSEC Bogus); no check succeeded for 0 ms (grace 0 ms)')]);
    expect(socket.ends).toBe(1);
  });

  it('a check that succeeds within the grace period ends the run of failures: the grace starts again at the next failure', async () => {
    const kept = secureAnswer([rec(leaf, 3, 1, 1)], 300_000);
    const down = failure('server-error', 'REFUSED');
    const source = new PreparedSource([down, down, down, kept, down, down, down, down, down]);
    const socket = watch(source);
    const steps = [300_001, 30_000, 30_000, 30_000, 300_001, 30_000, 30_000, 30_000, 10_000];
    for (const [i, step] of steps.entries()) {
      await vi.advanceTimersByTimeAsync(step);
      await published(i + 1);
    }
    expect(events.map((e) => [e.outcome, e.nextInMs])).toEqual([
      ['failed', 30_000],
      ['failed', 30_000],
      ['failed', 30_000],
      ['kept', 300_001],
      ['failed', 30_000],
      ['failed', 30_000],
      ['failed', 30_000],
      ['failed', 10_000],
      ['unverifiable', undefined],
    ]);
    expect(events[8]?.detail).toBe('dns-server-error: REFUSED; no check succeeded for 100000 ms (grace 100000 ms)');
    expect(socket.ends).toBe(1);
  });

  it('closed before the timer fires: the timer is cleared, no lookup is made', async () => {
    const source = new PreparedSource([secureAnswer([rec(leaf, 3, 1, 1)], 300_000)]);
    const socket = watch(source);
    expect(vi.getTimerCount()).toBe(1);
    socket.destroy();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10 * DAY);
    expect([source.lookups, events.length]).toEqual([0, 0]);
  });

  it('closed during the lookup: the lookup is aborted, nothing is published, no timer is left', async () => {
    const source = new PreparedSource(['hang']);
    const socket = watch(source);
    await vi.advanceTimersByTimeAsync(300_001);
    expect(source.lookups).toBe(1);
    const [signal] = source.signals;
    expect(signal?.aborted).toBe(false);
    socket.destroy();
    expect(signal?.aborted).toBe(true);
    await settle();
    await vi.advanceTimersByTimeAsync(10 * DAY);
    expect([events.length, vi.getTimerCount(), source.lookups, socket.ends]).toEqual([0, 0, 1, 0]);
  });

  it('closed after the lookup, while the chain is matched (DANE-TA): nothing is published, no timer is left', async () => {
    const source = new PreparedSource([secureAnswer([rec(intermediate, 2, 0, 1)], 300_000)]);
    const chain = [leaf, intermediate].map(p);
    let chainReads = 0;
    let armed = false;
    const socket = new FakeSocket();
    // Once the watch has started (and read the chain for its notAfter), the client goes away exactly when the matcher asks for the issuers.
    const closingChain = (): ParsedCertificate[] => {
      chainReads++;
      if (armed) socket.destroy();
      return chain;
    };
    const subject = { listener: 'mqtt', connectionId, name: NAME, leaf: chain[0] as ParsedCertificate, chain: closingChain, tlsa: [2, 0, 1] as const, expiresInMs: 300_000 };
    watchConnection(socket, subject, { cache: source, config: CONFIG, now: () => new Date(), random: () => 0 });
    armed = true;
    await vi.advanceTimersByTimeAsync(300_001);
    await settle(100);
    expect([source.lookups, chainReads, socket.destroyed, events.length, vi.getTimerCount()]).toEqual([1, 2, true, 0, 0]);
  });

  it('closed while the watch starts (the chain read for its notAfter): no timer is set', async () => {
    const source = new PreparedSource([secureAnswer([rec(intermediate, 2, 0, 1)], 300_000)]);
    const socket = new FakeSocket();
    const chain = [leaf, intermediate].map(p);
    const closingChain = (): ParsedCertificate[] => {
      socket.destroy();
      return chain;
    };
    const subject = { listener: 'mqtt', connectionId, name: NAME, leaf: chain[0] as ParsedCertificate, chain: closingChain, tlsa: [2, 0, 1] as const, expiresInMs: 300_000 };
    watchConnection(socket, subject, { cache: source, config: CONFIG, now: () => new Date(), random: () => 0 });
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10 * DAY);
    expect([source.lookups, events.length]).toEqual([0, 0]);
  });
});
