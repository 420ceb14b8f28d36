/**
 * `npm run fuzz`: mutation fuzzing of the ClientHello, PROXY v1/v2, DNS
 * response and certificate parsers, seeded with real captures (fuzz/corpus).
 *
 *   npm run fuzz                              1,000,000 inputs per parser
 *   npm run fuzz -- --runs 50000 --target certificate
 *   FUZZ_RUNS=200000 FUZZ_SEED=42 npm run fuzz
 *   npm run fuzz -- --target dns-response --seed S --path P   (replay a failure)
 *
 * Each target runs in its own worker thread, one after the other (--jobs N
 * to run N at once). A watchdog ends a worker whose current input has not
 * returned within the hang limit and saves that input. Exit status 1 if any
 * parser threw outside its contract, broke a documented property, hung, or
 * gave two verdicts for the same bytes; the input is saved under
 * fuzz/failures/ (or --out DIR) with a .txt describing it. --keep-going N records up to N distinct
 * failures (unshrunk; of the slow inputs, the slowest) and runs every input instead of stopping and shrinking at the first;
 * --max-seconds S ends a target's run after S seconds (reported as such).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { repositoryRoot } from './corpus.js';
import type { Failure, RunReport } from './harness.js';
import { MAX_MUTATED_BYTES } from './bytes.js';
import { TARGETS } from './targets.js';
import { SHARED_HEADER_BYTES, type WorkerRequest } from './worker-protocol.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: process.env.FUZZ_RUNS ?? '1000000' },
    seed: { type: 'string', default: process.env.FUZZ_SEED },
    path: { type: 'string' },
    target: { type: 'string', multiple: true },
    'budget-ms': { type: 'string', default: process.env.FUZZ_BUDGET_MS ?? '1000' },
    'hang-ms': { type: 'string', default: process.env.FUZZ_HANG_MS ?? '30000' },
    jobs: { type: 'string', default: '1' },
    out: { type: 'string' },
    'keep-going': { type: 'string', default: '0' },
    'max-seconds': { type: 'string' },
    'progress-every': { type: 'string', default: '50000' },
  },
});

function integer(name: string, text: string | undefined, min: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${String(text)}`);
  return n;
}

const runs = integer('runs', values.runs, 1);
const seed = values.seed === undefined ? (Date.now() ^ (process.pid << 10)) | 0 : integer('seed', values.seed, -(2 ** 31));
const budgetMs = integer('budget-ms', values['budget-ms'], 1);
const hangMs = Math.max(integer('hang-ms', values['hang-ms'], 1), budgetMs * 2);
const jobs = integer('jobs', values.jobs, 1);
const keepGoing = integer('keep-going', values['keep-going'], 0);
const timeLimitMs = values['max-seconds'] === undefined ? undefined : integer('max-seconds', values['max-seconds'], 1) * 1000;
const progressEvery = integer('progress-every', values['progress-every'], 1);
const outDir = values.out ?? join(repositoryRoot(), 'fuzz', 'failures');
const targets = values.target ?? Object.keys(TARGETS);
for (const t of targets) if (TARGETS[t] === undefined) throw new Error(`unknown target ${t}; known: ${Object.keys(TARGETS).join(', ')}`);

function save(target: string, failure: Failure): string {
  mkdirSync(outDir, { recursive: true });
  // The default folder lives in the repository: keep what it collects out of git.
  if (values.out === undefined) writeFileSync(join(outDir, '.gitignore'), '*\n');
  const base = join(outDir, `${target}-${failure.kind}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  writeFileSync(`${base}.bin`, failure.bytes);
  const replay = `npm run fuzz -- --target ${target} --runs ${runs} --seed ${failure.seed}${failure.path === undefined ? '' : ` --path ${failure.path}`}`;
  writeFileSync(`${base}.txt`, `target: ${target}\nkind: ${failure.kind}\ncontext: ${failure.context}\nreplay: ${replay}\n\n${failure.message}\n`);
  return `${base}.bin`;
}

function fuzzOne(target: string): Promise<RunReport | Failure> {
  const shared = new SharedArrayBuffer(SHARED_HEADER_BYTES + MAX_MUTATED_BYTES);
  const control = new Int32Array(shared, 0, 2);
  const request: WorkerRequest = { target, runs, seed, path: values.path, budgetMs, keepGoing, timeLimitMs, progressEvery, shared };
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: request });
  return new Promise((resolve, reject) => {
    let lastCount = -1;
    let lastChange = Date.now();
    const watchdog = setInterval(() => {
      const count = Atomics.load(control, 0);
      if (count !== lastCount) {
        lastCount = count;
        lastChange = Date.now();
        return;
      }
      if (Date.now() - lastChange < hangMs) return;
      clearInterval(watchdog);
      const length = Atomics.load(control, 1);
      const bytes = Buffer.from(new Uint8Array(shared, SHARED_HEADER_BYTES, length));
      void worker.terminate();
      resolve({
        kind: 'hang',
        message: `input ${count} did not return within ${hangMs} ms (worker terminated)`,
        bytes,
        context: 'see the seed and options',
        seed,
        path: undefined,
      });
    }, 200);
    worker.on('message', (m: { type: 'progress'; inputs: number; elapsedMs: number } | { type: 'done'; report: RunReport }) => {
      if (m.type === 'progress') {
        console.log(`  ${target}: ${m.inputs.toLocaleString('en')} inputs, ${Math.round(m.inputs / (m.elapsedMs / 1000)).toLocaleString('en')}/s`);
        return;
      }
      clearInterval(watchdog);
      const report = m.report;
      // Buffers arrive as Uint8Array through structured clone.
      const buffer = (f: Failure): Failure => ({ ...f, bytes: Buffer.from(f.bytes) });
      resolve({ ...report, failure: report.failure && buffer(report.failure), failures: report.failures.map(buffer) });
    });
    worker.on('error', (err) => {
      clearInterval(watchdog);
      reject(err);
    });
  });
}

function print(report: RunReport): void {
  console.log(
    `${report.target}: ${report.inputs.toLocaleString('en')} inputs in ${(report.elapsedMs / 1000).toFixed(1)} s, ` +
      `${Math.round(report.execPerSecond).toLocaleString('en')} exec/s, slowest input ${report.slowestMs.toFixed(1)} ms, ` +
      `${report.distinctVerdicts} distinct verdicts${report.interrupted ? ` (stopped by --max-seconds before ${runs.toLocaleString('en')})` : ''}`,
  );
  for (const [kind, count] of report.topVerdicts) console.log(`    ${String(count).padStart(9)}  ${kind}`);
}

async function main(): Promise<void> {
  console.log(`fuzzing ${targets.join(', ')}: ${runs.toLocaleString('en')} inputs each, seed ${seed}, budget ${budgetMs} ms/input, hang ${hangMs} ms`);
  let failed = false;
  const queue = [...targets];
  const runNext = async (): Promise<void> => {
    for (let target = queue.shift(); target !== undefined; target = queue.shift()) {
      const result = await fuzzOne(target);
      if ('target' in result) print(result);
      const found = 'target' in result ? (result.failures.length > 0 ? result.failures : result.failure === undefined ? [] : [result.failure]) : [result];
      for (const failure of found) {
        failed = true;
        console.log(`FAIL ${target}: ${failure.kind}: ${failure.message.split('\n')[0] ?? ''}\n  input saved to ${save(target, failure)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, targets.length) }, runNext));
  if (failed) process.exitCode = 1;
  else console.log('no failures');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 2;
});
