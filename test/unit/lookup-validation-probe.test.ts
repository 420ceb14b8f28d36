import { describe, expect, it } from 'vitest';
import { outcome, type LookupOutcome } from '../../src/lookup/tlsa-answer.js';
import type { TlsaResolver } from '../../src/lookup/tlsa-resolver.js';
import { defaultProbeName, MAX_PROBE_NAMES, probeAll, probeNames, probeValidation, type ProbeNameSource, type ProbeResult } from '../../src/lookup/validation-probe.js';

const config = (patterns: string[][], name?: string): ProbeNameSource => ({
  resolver: { validationProbe: { name } },
  listeners: patterns.map((routePatterns) => ({ routes: [{ allowlist: { patterns: routePatterns } }] })),
});

describe('defaultProbeName', () => {
  it.each<[string, ProbeNameSource, string | undefined]>([
    ['a wildcard pattern: under its suffix', config([['*._device.example.com']]), '_dancegate-probe._device.example.com'],
    ['an exact name: under the name', config([['sensor7.example.com']]), '_dancegate-probe.sensor7.example.com'],
    ['the first pattern of the first route wins', config([['*.a.example.com', '*.b.example.com'], ['*.c.example.com']]), '_dancegate-probe.a.example.com'],
    ['a configured name wins over the allowlists', config([['*._device.example.com']], 'signed.example.org'), 'signed.example.org'],
    [
      'a suffix with no room left for the label: the next pattern',
      config([[`*.${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(50)}.test`, '*.ok.test']]),
      '_dancegate-probe.ok.test',
    ],
    ['no patterns and no name', config([[]]), undefined],
    ['no listeners', { resolver: {}, listeners: [] }, undefined],
  ])('%s', (_label, source, expected) => {
    expect(defaultProbeName(source)).toBe(expected);
  });
});

const answering = (o: LookupOutcome): TlsaResolver => ({ lookup: () => Promise.resolve(o) });
const NAME = '_dancegate-probe._device.example.com';

describe('probeValidation', () => {
  it.each<[string, LookupOutcome, ProbeResult]>([
    [
      'a secure answer',
      outcome('secure', '1 TLSA record(s) from udp://127.0.0.1:53'),
      { ok: true, detail: `the resolver validates DNSSEC (secure answer for ${NAME}: 1 TLSA record(s) from udp://127.0.0.1:53)` },
    ],
    [
      'a secure NXDOMAIN',
      outcome('no-tlsa', 'secure NXDOMAIN from udp://127.0.0.1:53'),
      { ok: true, detail: `the resolver validates DNSSEC (secure denial for ${NAME}: secure NXDOMAIN from udp://127.0.0.1:53)` },
    ],
    [
      'an answer without the AD bit',
      outcome('insecure', 'answer is not DNSSEC-validated (AD=0, NXDOMAIN) from udp://127.0.0.1:53'),
      {
        ok: false,
        problem: 'not-validating',
        message:
          `your resolver does not validate DNSSEC (answer for ${NAME} without the AD bit: answer is not DNSSEC-validated (AD=0, NXDOMAIN) from udp://127.0.0.1:53); dancegate refuses every client until it does. ` +
          `Enable DNSSEC validation with a trust anchor for the client zones, or, if ${NAME} is in a zone that is not signed, set resolver.validationProbe.name to a name in a signed zone`,
      },
    ],
    [
      'a timeout',
      outcome('timeout', 'no answer within 5000 ms'),
      { ok: false, problem: 'unreachable', message: `the resolver did not answer the validation probe for ${NAME}: no answer within 5000 ms` },
    ],
    [
      'a server error',
      outcome('server-error', 'resolver answered REFUSED'),
      { ok: false, problem: 'unreachable', message: `the resolver did not answer the validation probe for ${NAME}: resolver answered REFUSED` },
    ],
    ['SERVFAIL', outcome('bogus', 'SERVFAIL, EDE 6 (DNSSEC Bogus)'), { ok: false, problem: 'error', message: `the validation probe for ${NAME} failed (bogus): SERVFAIL, EDE 6 (DNSSEC Bogus)` }],
    ['a malformed answer', outcome('malformed', 'CNAME loop in the answer'), { ok: false, problem: 'error', message: `the validation probe for ${NAME} failed (malformed): CNAME loop in the answer` }],
  ])('%s', async (_label, o, expected) => {
    expect(await probeValidation(answering(o), NAME)).toEqual(expected);
  });

  it('nothing to probe without a DNS resolver (local TLSA file only)', async () => {
    expect(await probeValidation(undefined, NAME)).toEqual({ ok: true, detail: 'no DNS resolver configured (local TLSA file only): nothing to probe' });
  });

  it('a resolver that throws is an error; an abort rejects', async () => {
    const throwing: TlsaResolver = { lookup: () => Promise.reject(new Error('boom')) };
    expect(await probeValidation(throwing, NAME)).toEqual({ ok: false, problem: 'error', message: `validation probe for ${NAME} failed: boom` });
    const controller = new AbortController();
    controller.abort(new Error('stopping'));
    const aborted: TlsaResolver = { lookup: (_n, signal) => Promise.reject(signal?.reason) };
    await expect(probeValidation(aborted, NAME, controller.signal)).rejects.toThrow('stopping');
  });
});

describe('probeNames', () => {
  it.each<[string, ProbeNameSource, string[]]>([
    [
      'one per distinct allowlisted zone, in configuration order',
      config([
        ['*.tenant-a.example', '*._device.operator.example'],
        ['*.tenant-a.example', 'meter1.grid.example'],
      ]),
      ['_dancegate-probe.tenant-a.example', '_dancegate-probe._device.operator.example', '_dancegate-probe.meter1.grid.example'],
    ],
    ['a configured name alone', config([['*.tenant-a.example', '*._device.operator.example']], 'signed.example.org'), ['signed.example.org']],
    ['none', config([[]]), []],
  ])('%s', (_label, source, expected) => {
    expect(probeNames(source)).toEqual(expected);
  });

  it(`at most ${MAX_PROBE_NAMES}`, () => {
    const many = config([Array.from({ length: 20 }, (_, i) => `*.zone${i}.example`)]);
    expect(probeNames(many)).toEqual(Array.from({ length: MAX_PROBE_NAMES }, (_, i) => `_dancegate-probe.zone${i}.example`));
  });
});

describe('probeAll: one client zone cannot make a validating resolver look non-validating', () => {
  const TENANT = '_dancegate-probe.tenant-a.example';
  const OPERATOR = '_dancegate-probe._device.operator.example';
  // A resolver answering each name as given (what a zone owner can arrange for a name in their own zone).
  const byName = (answers: Record<string, LookupOutcome>): TlsaResolver => ({
    lookup: (name) => Promise.resolve(answers[name] ?? outcome('timeout', 'not in this test')),
  });
  const secure = outcome('no-tlsa', 'secure NXDOMAIN');
  const insecure = outcome('insecure', 'AD=0');
  const servfail = outcome('bogus', 'SERVFAIL');
  const timeout = outcome('timeout', 'no answer');

  it.each<[string, Record<string, LookupOutcome>, { ok: boolean; problem?: string; startsWith: string }]>([
    [
      'the tenant zone made unsigned, the operator zone validated: validates',
      { [TENANT]: insecure, [OPERATOR]: secure },
      { ok: true, startsWith: `the resolver validates DNSSEC (secure denial for ${OPERATOR}` },
    ],
    [
      'the tenant zone made bogus, the operator zone validated: validates',
      { [TENANT]: servfail, [OPERATOR]: secure },
      { ok: true, startsWith: `the resolver validates DNSSEC (secure denial for ${OPERATOR}` },
    ],
    [
      'every zone without AD: does not validate',
      { [TENANT]: insecure, [OPERATOR]: insecure },
      { ok: false, problem: 'not-validating', startsWith: `your resolver does not validate DNSSEC (answer for ${TENANT}` },
    ],
    [
      'one zone without AD, one unanswered: unreachable, not a verdict',
      { [TENANT]: insecure, [OPERATOR]: timeout },
      { ok: false, problem: 'unreachable', startsWith: `the resolver did not answer the validation probe for ${OPERATOR}` },
    ],
  ])('%s', async (_label, answers, expected) => {
    const result = await probeAll(byName(answers), [TENANT, OPERATOR]);
    expect(result.ok).toBe(expected.ok);
    if (!result.ok) expect(result.problem).toBe(expected.problem);
    expect(result.ok ? result.detail : result.message).toMatch(new RegExp(`^${expected.startsWith.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  });

  it('says how many zones were probed when none validated', async () => {
    const result = await probeAll(byName({ [TENANT]: insecure, [OPERATOR]: insecure }), [TENANT, OPERATOR]);
    expect(!result.ok && result.message.endsWith('(and the same for all 2 allowlisted zones probed)')).toBe(true);
  });
});
