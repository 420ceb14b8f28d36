/**
 * The authenticate stage with a fake TLSA source: one lookup per
 * connection (leaf first, then the chain, with the same answer), the cache
 * status and DNS time of that lookup, DNS outcomes as catalog reasons.
 */
import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../../certs/pki.js';
import { CertificateParseError, parseCertificateDer, type ParsedCertificate } from '../../../src/dane/certificate.js';
import { tlsaRecordForCertificate, type TlsaRecord } from '../../../src/dane/tlsa.js';
import type { CachedLookup, CacheStatus } from '../../../src/lookup/cache.js';
import { TlsaCache } from '../../../src/lookup/cache.js';
import type { LookupOutcome, LookupOutcomeKind } from '../../../src/lookup/tlsa-answer.js';
import { authenticate, describeVerdicts } from '../../../src/connection/stages/authenticate.js';
import { readCertificates } from '../../../src/connection/stages/certificate.js';
import { startLookup } from '../../../src/connection/stages/lookup.js';

const NAME = 'sensor7._device.example.test';
const p = (c: IssuedCertificate): ParsedCertificate => parseCertificateDer(c.der);
const rec = (c: IssuedCertificate, u: number, s: number, m: number): TlsaRecord => tlsaRecordForCertificate(p(c), u, s, m);
const secure = (records: TlsaRecord[]): LookupOutcome => ({ kind: 'secure', records, ttl: 300, detail: 'AD=1' });

let root: IssuedCertificate;
let intermediate: IssuedCertificate;
let leaf: IssuedCertificate;
let other: IssuedCertificate;

beforeAll(async () => {
  root = await createCertificate({ commonName: 'root', isCA: true });
  intermediate = await createCertificate({ commonName: 'intermediate', isCA: true, issuer: root });
  leaf = await createCertificate({ commonName: NAME, dnsNames: [NAME], issuer: intermediate });
  other = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
});

/** A TLSA source that answers `outcome` and counts lookups (status: what a cache would say for the nth lookup of a name). */
function fakeCache(outcome: () => LookupOutcome, status: (n: number) => CacheStatus = (n) => (n === 1 ? 'miss' : 'hit')) {
  const calls: string[] = [];
  return {
    calls,
    lookup: async (name: string): Promise<CachedLookup> => {
      calls.push(name);
      return { outcome: outcome(), cache: status(calls.length), expiresInMs: 60_000 };
    },
  };
}

const input = (cache: Parameters<typeof startLookup>[0], chain: IssuedCertificate[], extra: { signal?: AbortSignal; parses?: { n: number } } = {}) => {
  const parsedChain = chain.map(p);
  return {
    name: NAME,
    lookup: startLookup(cache, NAME, extra.signal),
    leaf: parsedChain.slice(0, 1),
    chain: () => {
      if (extra.parses) extra.parses.n++;
      return parsedChain;
    },
    now: new Date(),
    signal: extra.signal,
  };
};

describe('authenticate: one lookup per connection', () => {
  it('a DANE-TA client: one lookup, the leaf then the chain matched with its answer, cache miss on the first connection', async () => {
    const cache = fakeCache(() => secure([rec(intermediate, 2, 0, 1)]));
    const parses = { n: 0 };
    const result = await authenticate(input(cache, [leaf, intermediate], { parses }));
    expect(result).toMatchObject({ ok: true, value: { tlsa: [2, 0, 1], detail: 'record 1 of 1 matched' }, evidence: { cache: 'miss' } });
    expect(cache.calls).toEqual([NAME]);
    expect(parses.n).toBe(1);
  });

  it('through a real TlsaCache: the first DANE-TA connection is a miss, the second a hit, one resolver query in all', async () => {
    let queries = 0;
    const tlsaCache = new TlsaCache({
      lookup: async () => {
        queries++;
        return secure([rec(intermediate, 2, 0, 1)]);
      },
    });
    const first = await authenticate(input(tlsaCache, [leaf, intermediate]));
    const second = await authenticate(input(tlsaCache, [leaf, intermediate]));
    expect([first.ok, first.evidence.cache, second.ok, second.evidence.cache, queries]).toEqual([true, 'miss', true, 'hit', 1]);
  });

  it('a DANE-EE client: the leaf alone, the chain never parsed', async () => {
    const cache = fakeCache(() => secure([rec(leaf, 3, 1, 1)]));
    const parses = { n: 0 };
    expect(await authenticate(input(cache, [leaf, intermediate], { parses }))).toMatchObject({ ok: true, value: { tlsa: [3, 1, 1] } });
    expect(parses.n).toBe(0);
  });

  it('a DANE-EE mismatch is not matched again with the chain', async () => {
    const cache = fakeCache(() => secure([rec(other, 3, 1, 1)]));
    const parses = { n: 0 };
    const result = await authenticate(input(cache, [leaf, intermediate], { parses }));
    expect(result).toMatchObject({ ok: false, reason: 'no-matching-record', detail: 'no-matching-record: record 1 ee-mismatch' });
    expect([parses.n, cache.calls.length]).toEqual([0, 1]);
  });

  it('the DNS time is the lookup time only, not the matching', async () => {
    let t = 1000;
    const cache = {
      lookup: async (): Promise<CachedLookup> => {
        t += 7;
        return { outcome: secure([rec(intermediate, 2, 0, 1)]), cache: 'miss', expiresInMs: 60_000 };
      },
    };
    const lookup = startLookup(cache, NAME, undefined, () => t);
    const result = await authenticate({ name: NAME, lookup, leaf: [p(leaf)], chain: () => ((t += 500), [p(leaf), p(intermediate)]), now: new Date() });
    expect(result.ok).toBe(true);
    expect(result.evidence.dnsMs).toBe(7);
  });
});

describe('authenticate: DNS outcomes are catalog reasons', () => {
  it.each([
    ['no-tlsa', 'dns-no-tlsa'],
    ['insecure', 'dns-insecure'],
    ['bogus', 'dns-bogus'],
    ['timeout', 'dns-timeout'],
    ['malformed', 'dns-malformed'],
    ['server-error', 'dns-server-error'],
    ['over-capacity', 'dns-over-capacity'],
  ] as const satisfies ReadonlyArray<readonly [Exclude<LookupOutcomeKind, 'secure'>, string]>)('%s → %s', async (kind, reason) => {
    const cache = fakeCache(() => ({ kind, records: [], ttl: undefined, detail: `the ${kind} detail` }));
    const result = await authenticate(input(cache, [leaf]));
    expect(result).toEqual({ ok: false, reason, detail: `the ${kind} detail`, evidence: { lookup: expect.objectContaining({ kind }), cache: 'miss', decision: undefined, dnsMs: expect.any(Number) } });
  });
});

describe('authenticate: failures', () => {
  it('a lookup that throws (not expected of the cache) is dns-server-error, without evidence', async () => {
    const cache = { lookup: async (): Promise<CachedLookup> => Promise.reject(new Error('cache exploded')) };
    expect(await authenticate(input(cache, [leaf]))).toEqual({
      ok: false,
      reason: 'dns-server-error',
      detail: 'verification failed: cache exploded',
      evidence: { lookup: undefined, cache: undefined, decision: undefined, dnsMs: undefined },
    });
  });

  it('an issuer that cannot be parsed is no-matching-record, without evidence', async () => {
    const cache = fakeCache(() => secure([rec(intermediate, 2, 0, 1)]));
    const chain = (): ParsedCertificate[] => {
      throw new CertificateParseError('certificate 2: bad DER length');
    };
    expect(await authenticate({ ...input(cache, [leaf]), chain })).toEqual({
      ok: false,
      reason: 'no-matching-record',
      detail: 'verification failed: certificate 2: bad DER length',
      evidence: { lookup: undefined, cache: undefined, decision: undefined, dnsMs: undefined },
    });
  });

  it('a client gone during the lookup is client-closed', async () => {
    const controller = new AbortController();
    const cache = { lookup: (_n: string, signal?: AbortSignal): Promise<CachedLookup> => new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason))) };
    const pending = authenticate(input(cache, [leaf], { signal: controller.signal }));
    controller.abort(new Error('client disconnected'));
    expect(await pending).toMatchObject({ ok: false, reason: 'client-closed', detail: 'client went away during verification' });
  });
});

describe('describeVerdicts', () => {
  it('names 8 records and counts the rest by verdict', () => {
    const records = Array.from({ length: 11 }, (_, i) => ({ index: i, record: {} as TlsaRecord, verdict: i < 9 ? 'ee-mismatch' : 'unknown-usage' }) as const);
    expect(describeVerdicts({ records })).toBe(`${Array.from({ length: 8 }, (_, i) => `record ${i + 1} ee-mismatch`).join(', ')}, 3 more (1 ee-mismatch, 2 unknown-usage)`);
    expect(describeVerdicts({ records: [] })).toBe('nothing to match');
  });
});

describe('readCertificates', () => {
  it('no certificate, an unparseable leaf, a leaf with a lazily parsed chain', () => {
    expect(readCertificates([])).toEqual({ ok: false, reason: 'no-certificate', detail: 'the client presented no certificate' });
    expect(readCertificates([{ raw: Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]) }])).toMatchObject({
      ok: false,
      reason: 'no-matching-record',
      detail: expect.stringMatching(/^unparseable client certificate: /),
    });
    const presented = [leaf, intermediate].map((c) => ({ raw: Buffer.from(new X509Certificate(c.certPem).raw) }));
    const read = readCertificates(presented);
    expect(read.ok).toBe(true);
    if (!read.ok) return;
    expect(read.value.leaf.sha256Hex).toBe(p(leaf).sha256Hex);
    expect(read.value.chain().map((c) => c.sha256Hex)).toEqual([p(leaf).sha256Hex, p(intermediate).sha256Hex]);
  });
});
