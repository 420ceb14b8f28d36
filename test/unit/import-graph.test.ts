/**
 * The import graph of src/: no import loop, no upward or sideways import
 * between folders (the ranks of .dependency-cruiser.js), no import of test
 * code. dependency-cruiser reads the same configuration from the command line:
 * `npx depcruise src`.
 */
import { describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cruise, type ICruiseResult, type IConfiguration, type IViolation } from 'dependency-cruiser';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';

const ROOT = resolve(import.meta.dirname, '../..');
const FIXTURE = resolve(import.meta.dirname, 'fixtures/import-graph');

interface RulesModule {
  default: IConfiguration;
  LAYERS: ReadonlyArray<{ folder: string; rank: number }>;
}

async function loadRules(): Promise<RulesModule> {
  // A plain JavaScript module (the form depcruise reads); typed by RulesModule.
  return (await import(pathToFileURL(resolve(ROOT, '.dependency-cruiser.js')).href)) as RulesModule;
}

/** Cruises baseDir/src with the repository's rules and returns the result. */
async function cruiseSrc(baseDir: string): Promise<ICruiseResult> {
  const rules = await loadRules();
  const { tsConfig: _tsConfigOption, ...options } = rules.default.options ?? {};
  const reported = await cruise(
    ['src'],
    { ...options, baseDir, validate: true, ruleSet: { forbidden: rules.default.forbidden ?? [] } },
    {},
    { tsConfig: extractTSConfig(resolve(ROOT, 'tsconfig.json')) },
  );
  const output = reported.output;
  if (typeof output === 'string') throw new Error(`dependency-cruiser gave text, not a result: ${output.slice(0, 200)}`);
  return output;
}

/** One line per violation: "rule: from → to", with the loop spelled out for cycles. */
function describeViolation(v: IViolation): string {
  const loop = v.cycle && v.cycle.length > 0 ? ` (loop: ${[v.from, ...v.cycle.map((step) => step.name)].join(' → ')})` : '';
  return `${v.rule.name}: ${v.from} → ${v.to}${loop}`;
}

/** src modules whose folder (or root file) has no rank in LAYERS. */
function unranked(result: ICruiseResult, layers: RulesModule['LAYERS']): string[] {
  return result.modules
    .map((m) => m.source)
    .filter((source) => source.startsWith('src/'))
    .filter((source) => {
      const rest = source.slice('src/'.length);
      const first = rest.includes('/') ? rest.slice(0, rest.indexOf('/')) : rest;
      return !layers.some((layer) => layer.folder === first);
    });
}

describe('import graph of src/', () => {
  const cruised = cruiseSrc(ROOT); // once for both tests
  cruised.catch(() => undefined); // awaited (and reported) by the tests

  it('has no import loop, no upward or sideways import, and no import of test code', async () => {
    const result = await cruised;
    // Resolution works (.js specifiers reach the .ts files): an empty graph would pass every rule.
    expect(result.summary.totalCruised).toBeGreaterThan(50);
    expect(result.summary.totalDependenciesCruised).toBeGreaterThan(150);
    const violations = result.summary.violations.map(describeViolation);
    expect(violations, `import-graph violations:\n${violations.join('\n')}`).toEqual([]);
  });

  it('gives every src folder a rank', async () => {
    const rules = await loadRules();
    const result = await cruised;
    expect(unranked(result, rules.LAYERS)).toEqual([]);
  });
});

describe('the import-graph rules bite', () => {
  it('reports exactly the loop (once), the upward, the sideways and the test import of the fixture tree', async () => {
    const result = await cruiseSrc(FIXTURE);
    expect(result.summary.totalCruised).toBe(9);
    const violations = result.summary.violations.map(describeViolation).sort();
    expect(violations).toEqual(
      [
        'layer-dane: src/dane/match.ts → src/connection/listener.ts',
        'layer-dns: src/dns/exchange.ts → src/ratelimit/gate.ts',
        'no-circular: src/connection/listener.ts → src/connection/stage.ts (loop: src/connection/listener.ts → src/connection/stage.ts → src/connection/listener.ts)',
        'src-not-to-tests: src/lookup/cache.ts → test/helper.ts',
      ].sort(),
    );
  });

  it('flags a module in a folder without a rank', async () => {
    const rules = await loadRules();
    const result = await cruiseSrc(FIXTURE);
    expect(unranked(result, rules.LAYERS)).toEqual([]);
    const withoutDns = rules.LAYERS.filter((layer) => layer.folder !== 'dns');
    expect(unranked(result, withoutDns)).toEqual(['src/dns/exchange.ts']);
  });
});
