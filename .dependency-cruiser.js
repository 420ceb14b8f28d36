// @ts-check
/**
 * The import rules of src/, checked by test/unit/import-graph.test.ts (and by
 * `npx depcruise src`, which reads this file by default).
 *
 * LAYERS is the one table of the layering: a folder of src/ (or one of the
 * two catalog files at its root) and its rank. A module may import
 *   - modules of its own folder,
 *   - modules of folders of a strictly lower rank,
 *   - the catalogs (src/reasons.ts, src/observe.ts), which import nothing in src.
 * Everything else in src/ is an upward or sideways import and an error.
 * A folder missing from the table is reported by the test (every folder needs a rank).
 */

/** @type {ReadonlyArray<{ folder: string; rank: number; note: string }>} */
export const LAYERS = [
  { folder: 'reasons.ts', rank: 0, note: 'the catalog of refusal reasons' },
  { folder: 'observe.ts', rank: 0, note: 'typed diagnostics channels' },
  { folder: 'protocol', rank: 0, note: 'wire formats' },
  { folder: 'dane', rank: 0, note: 'the DANE core: names, TLSA, matching' },
  { folder: 'allowlist', rank: 1, note: 'allowlist patterns (→ dane)' },
  { folder: 'dns', rank: 1, note: 'generic DNS exchange, nothing TLSA-specific' },
  { folder: 'ratelimit', rank: 1, note: 'admission limits (→ reasons)' },
  { folder: 'tls', rank: 1, note: 'the native TLS engine: loader, stream, secure-socket type' },
  { folder: 'lookup', rank: 2, note: 'the TLSA lookup chain (→ dane, dns, ratelimit, allowlist)' },
  { folder: 'config', rank: 3, note: 'configuration loading and types' },
  { folder: 'connection', rank: 4, note: 'the listener and its pipeline' },
  { folder: 'forward', rank: 5, note: 'HTTP and TCP forwarders' },
  { folder: 'metrics', rank: 6, note: 'metrics and admin endpoints' },
  { folder: 'process', rank: 7, note: 'the running proxy' },
  { folder: 'cli', rank: 8, note: 'the command line' },
];

/** The files every module may import: the rank-0 catalogs that import nothing in src. */
export const CATALOGS = ['reasons.ts', 'observe.ts'];

/** @param {string} name a folder or file name of src/ as in LAYERS */
function pathOf(name) {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return name.endsWith('.ts') ? `src/${escaped}$` : `src/${escaped}/`;
}

/**
 * One rule per entry of LAYERS: from that folder, no import of any src module
 * outside the folder, the strictly lower ranks and the catalogs.
 * @returns {import('dependency-cruiser').IForbiddenRuleType[]}
 */
export function layerRules() {
  return LAYERS.map(({ folder, rank }) => {
    const allowed = LAYERS.filter((other) => other.folder === folder || other.rank < rank || CATALOGS.includes(other.folder)).map((other) => pathOf(other.folder));
    // A catalog may import nothing else in src.
    const mayImport = CATALOGS.includes(folder) ? [pathOf(folder)] : allowed;
    return {
      name: `layer-${folder.replace(/\.ts$/, '')}`,
      comment: `src/${folder} (rank ${rank}) may import only: ${mayImport.join(', ')}`,
      severity: 'error',
      from: { path: `^${pathOf(folder)}` },
      to: { path: '^src/', pathNot: `^(${mayImport.join('|')})` },
    };
  });
}

/** @type {import('dependency-cruiser').IConfiguration} */
const config = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import loop between files of src/ (type-only imports count)',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    ...layerRules(),
    {
      name: 'src-not-to-tests',
      comment: 'src/ never imports test/, bench/ or fuzz/',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|fuzz)/' },
    },
    {
      name: 'src-resolvable',
      comment: 'every import of src/ resolves (an unresolved import would hide from the other rules)',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|dist|dist-bench)/' },
    // Type-only imports are dependencies too: a loop through types is still a loop.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};

export default config;
