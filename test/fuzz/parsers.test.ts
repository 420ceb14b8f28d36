/**
 * The CI pass of the fuzzer (fuzz/): a short, fixed-seed run of each parser
 * over mutations of the committed real captures, failing on any exception
 * outside the parser's contract, broken incremental contract, hang, or
 * non-deterministic verdict. `npm run fuzz` runs the same targets with
 * 1,000,000 inputs each. FUZZ_SEED and FUZZ_CI_SCALE (a multiplier) vary it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadRegressions } from '../../fuzz/corpus.js';
import { checkInput, runTarget, type RunReport } from '../../fuzz/harness.js';
import { certificateTarget, clientHelloTarget, dnsResponseTarget, proxyProtocolTarget, TARGETS, type FuzzTarget } from '../../fuzz/targets.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const SCALE = Number(process.env.FUZZ_CI_SCALE ?? 1);

/** Inputs per parser: the certificate parser (OpenSSL + @peculiar/x509) runs ~150 inputs/s, the others thousands. */
const CI_RUNS: Record<string, number> = {
  'client-hello': 20_000,
  'proxy-protocol': 20_000,
  'dns-response': 10_000,
  certificate: 3_000,
};

/** What a failure looks like in the test output: kind, message and the input as hex. */
function describeFailure(report: RunReport): string {
  const f = report.failure;
  if (f === undefined) return 'no failure';
  return `${report.target}: ${f.kind}: ${f.message}\ncontext ${f.context}\ninput (${f.bytes.length} bytes) ${f.bytes.toString('hex')}\nreplay: npm run fuzz -- --target ${report.target} --seed ${f.seed} --path ${f.path ?? ''}`;
}

describe('fuzzing seed corpus (real captures)', () => {
  it.each([
    ['client-hello', 8, /^complete$/],
    ['proxy-protocol', 12, /^complete v[12] /],
    ['dns-response', 9, /^final (secure|no-tlsa|insecure|bogus):/],
    ['certificate', 6, /^(eager|lazy|tls-peer) parsed, failing fields: $/],
  ] as const)('every %s seed (at least %i) parses as the capture it is', (name, atLeast, expected) => {
    const make = TARGETS[name];
    if (make === undefined) throw new Error(`no target ${name}`);
    const target = make();
    expect(target.seeds.length).toBeGreaterThanOrEqual(atLeast);
    const kinds = target.seedInputs().map((input) => target.run(input).kind);
    for (const kind of kinds) expect(kind).toMatch(expected);
    if (name === 'dns-response') {
      expect([...new Set(kinds.map((k) => k.split(':')[0]))].sort()).toEqual(['final bogus', 'final insecure', 'final no-tlsa', 'final secure']);
    }
  });
});

describe('fuzzing regressions (inputs that once broke a parser, fuzz/regressions/)', () => {
  it.each(Object.keys(TARGETS))('every %s regression input passes every oracle in every parser mode', (name) => {
    const make = TARGETS[name];
    if (make === undefined) throw new Error(`no target ${name}`);
    const target = make();
    // The contexts the target fuzzes with (parser options, certificate parse modes, DNS queries).
    const contexts = [...new Map(target.seedInputs().map((i) => [JSON.stringify(i.context), i.context])).values()];
    const failures: string[] = [];
    for (const regression of loadRegressions(name)) {
      for (const context of contexts) {
        const r = checkInput(target, { bytes: regression.bytes, context, cut: Math.floor(regression.bytes.length / 2) }, 5000);
        if (!r.ok) failures.push(`${regression.name} with ${JSON.stringify(context)}: ${r.kind ?? ''}: ${(r.message ?? '').split('\n')[0] ?? ''}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('holds the certificate with a malformed certificatePolicies extension that crashed the proxy (audit finding 2)', () => {
    expect(loadRegressions('certificate').map((r) => r.name)).toContain('audit2-malformed-certificate-policies.bin');
  });
});

describe('fuzz harness oracles', () => {
  const seedBytes = Buffer.from('seed input');
  const fake = (run: FuzzTarget<null>['run']): FuzzTarget<unknown> => ({
    name: 'fake',
    seeds: [{ name: 'seed.bin', bytes: seedBytes }],
    arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => ({ bytes: Buffer.from(b), context: null, cut: 0 })),
    seedInputs: () => [{ bytes: seedBytes, context: null, cut: 0 }],
    run,
  });
  let calls = 0;
  it.each([
    ['exception', fake(() => JSON.parse('{') as never)],
    ['nondeterministic', fake(() => ({ full: String(calls++), kind: 'x' }))],
    [
      'input-modified',
      fake(({ bytes }) => {
        bytes[0] = (bytes[0] ?? 0) ^ 1;
        return { full: 'x', kind: 'x' };
      }),
    ],
    [
      'hang',
      fake(() => {
        const until = Date.now() + 60;
        while (Date.now() < until) {
          /* spin past the 5 ms budget below */
        }
        return { full: 'x', kind: 'x' };
      }),
    ],
  ] as const)('a parser whose fault is "%s" is reported with its input', (kind, target) => {
    const report = runTarget(target, { runs: 50, seed: 1, budgetMs: 5, maxShrinkRuns: 20 });
    expect(report.failure?.kind).toBe(kind);
    expect(report.failure?.bytes.length).toBeGreaterThan(0);
  });

  it('a well-behaved parser passes every input and its verdicts are counted', () => {
    const report = runTarget(
      fake(({ bytes }) => ({ full: bytes.toString('hex'), kind: `len ${bytes.length}` })),
      { runs: 500, seed: 1 },
    );
    expect(report.failure).toBeUndefined();
    expect(report.inputs).toBe(500);
    expect(report.distinctVerdicts).toBe(8);
  });

  it('checkInput accepts a seed that parses the same way twice', () => {
    const target = clientHelloTarget();
    const seed = target.seeds[0];
    if (seed === undefined) throw new Error('no seed');
    expect(checkInput(target as FuzzTarget<unknown>, { bytes: seed.bytes, context: 0, cut: 10 }, 1000).ok).toBe(true);
  });
});

describe('fuzzing the parsers (CI pass; npm run fuzz runs 1,000,000 inputs each)', () => {
  it.each([
    ['client-hello', clientHelloTarget, 25],
    ['proxy-protocol', proxyProtocolTarget, 25],
    ['dns-response', dnsResponseTarget, 25],
    ['certificate', certificateTarget, 10],
  ] as const)(
    '%s: no exception, hang or non-deterministic verdict',
    (name, make, minVerdicts) => {
      const runs = Math.max(1, Math.round((CI_RUNS[name] ?? 1000) * SCALE));
      // A hang here is an input taking over 5 s: a loop, not a slow machine (npm run fuzz holds inputs to 1 s).
      const report = runTarget(make() as FuzzTarget<unknown>, { runs, seed: SEED, budgetMs: 5000 });
      console.log(
        `fuzz ${name}: ${report.inputs} inputs, ${Math.round(report.execPerSecond)} exec/s, slowest ${report.slowestMs.toFixed(1)} ms, ${report.distinctVerdicts} distinct verdicts (seed ${SEED})`,
      );
      expect(describeFailure(report)).toBe('no failure');
      expect(report.inputs).toBe(runs);
      // The mutations reach many different outcomes, not one error path.
      expect(report.distinctVerdicts).toBeGreaterThanOrEqual(minVerdicts);
    },
    180_000,
  );
});
