/**
 * Runs one fuzz target: fast-check generates mutations of the seeds (and
 * replays or shrinks them from a seed and path), and every input is checked
 * for
 *  - exception: the parser threw outside its contract (see targets.ts);
 *  - contract: a documented property broke (the ClientHello parser's own
 *    catch-all fired, a prefix disagreed with the whole input);
 *  - hang: one input took longer than the per-input budget (a true infinite
 *    loop is caught by the watchdog in main.ts, which runs this in a worker);
 *  - nondeterministic: a second run on a copy of the same bytes gave a
 *    different verdict;
 *  - input-modified: the parser wrote into the buffer it was given.
 */
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { ContractViolation, type FuzzInput, type FuzzTarget } from './targets.js';

export type FailureKind = 'exception' | 'contract' | 'hang' | 'nondeterministic' | 'input-modified';

export interface Failure {
  readonly kind: FailureKind;
  readonly message: string;
  /** The (shrunk) failing input. */
  readonly bytes: Buffer;
  /** The parser's context for it (the DNS query), as JSON. */
  readonly context: string;
  /** fast-check seed and path: `--seed S --path P` replays exactly this input. */
  readonly seed: number;
  readonly path: string | undefined;
}

export interface RunReport {
  readonly target: string;
  readonly inputs: number;
  readonly elapsedMs: number;
  readonly execPerSecond: number;
  /** Slowest single input (both runs and the prefix check), in ms. */
  readonly slowestMs: number;
  readonly distinctVerdicts: number;
  /** The most frequent verdict classes with their counts. */
  readonly topVerdicts: ReadonlyArray<readonly [string, number]>;
  readonly failure: Failure | undefined;
  /** With keepGoing: every distinct failure met (first input of each kind and message class), unshrunk. */
  readonly failures: readonly Failure[];
  /** The time limit ended the run before `runs` inputs. */
  readonly interrupted: boolean;
}

export interface RunOptions {
  readonly runs: number;
  readonly seed: number;
  /** Replay one input: the path fast-check printed for a failure. */
  readonly path?: string;
  /** Per-input budget (ms) before an input counts as a hang. Default 1000. */
  readonly budgetMs?: number;
  /** Called before each input runs (the worker copies it where the watchdog can find it). */
  readonly beforeEach?: (input: FuzzInput<unknown>) => void;
  /** Called about every `progressEvery` inputs. */
  readonly onProgress?: (inputs: number, elapsedMs: number) => void;
  readonly progressEvery?: number;
  /** Shrinking stops after this many extra runs once something failed. Default 2000. */
  readonly maxShrinkRuns?: number;
  /**
   * Do not stop at the first failure: record up to this many distinct failures (by kind and
   * message with numbers blanked), unshrunk, and run every input. Default 0 (stop and shrink).
   */
  readonly keepGoing?: number;
  /** Stop after this long (ms) even if fewer than `runs` inputs ran; the report says so. */
  readonly timeLimitMs?: number;
}

/** Bounded count of verdict classes (a parser with unbounded distinct reasons cannot exhaust memory). */
const MAX_CLASSES = 10_000;

interface Checked {
  readonly ok: boolean;
  readonly kind?: FailureKind;
  readonly message?: string;
}

/** Check one input against every oracle. */
export function checkInput(target: FuzzTarget<unknown>, input: FuzzInput<unknown>, budgetMs: number, classes?: Map<string, number>): Checked & { ms: number } {
  const before = Buffer.from(input.bytes);
  const started = performance.now();
  let first;
  let second;
  try {
    first = target.run(input);
    const copy = { ...input, bytes: Buffer.from(before) };
    second = target.run(copy);
    if (!input.bytes.equals(before) || !copy.bytes.equals(before)) {
      return { ok: false, kind: 'input-modified', message: 'the parser modified the buffer it was given', ms: performance.now() - started };
    }
    target.checkPrefix?.({ ...input, bytes: Buffer.from(before) }, first);
  } catch (err) {
    const ms = performance.now() - started;
    if (err instanceof ContractViolation) return { ok: false, kind: 'contract', message: err.message, ms };
    const e = err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err);
    return { ok: false, kind: 'exception', message: e, ms };
  }
  const ms = performance.now() - started;
  if (ms > budgetMs) return { ok: false, kind: 'hang', message: `one input took ${ms.toFixed(0)} ms, over the ${budgetMs} ms budget`, ms };
  if (first.full !== second.full) {
    return { ok: false, kind: 'nondeterministic', message: `first run: ${first.full.slice(0, 500)}\nsecond run: ${second.full.slice(0, 500)}`, ms };
  }
  if (classes !== undefined) {
    const known = classes.get(first.kind);
    if (known !== undefined) classes.set(first.kind, known + 1);
    else if (classes.size < MAX_CLASSES) classes.set(first.kind, 1);
    else classes.set('(other)', (classes.get('(other)') ?? 0) + 1);
  }
  return { ok: true, ms };
}

export function runTarget(target: FuzzTarget<unknown>, options: RunOptions): RunReport {
  const budgetMs = options.budgetMs ?? 1000;
  const maxShrinkRuns = options.maxShrinkRuns ?? 2000;
  const progressEvery = options.progressEvery ?? 10_000;
  const classes = new Map<string, number>();
  let inputs = 0;
  let slowestMs = 0;
  let failedRuns = 0;
  let lastFailure: { input: FuzzInput<unknown>; kind: FailureKind; message: string } | undefined;
  const keepGoing = options.keepGoing ?? 0;
  const failures: Failure[] = [];
  const failureClasses = new Map<string, { index: number; ms: number }>();
  const started = performance.now();

  const property = fc.property(target.arbitrary, (input) => {
    // Enough shrinking: keep the last failure. A slow input is not shrunk at all (each try costs the budget again).
    if (lastFailure !== undefined && (lastFailure.kind === 'hang' || ++failedRuns > maxShrinkRuns)) return true;
    options.beforeEach?.(input);
    const r = checkInput(target, input, budgetMs, lastFailure === undefined ? classes : undefined);
    if (lastFailure === undefined) {
      inputs++;
      if (r.ms > slowestMs) slowestMs = r.ms;
      if (inputs % progressEvery === 0) options.onProgress?.(inputs, performance.now() - started);
    }
    if (r.ok) return true;
    if (keepGoing > 0) {
      const kind = r.kind ?? 'exception';
      const message = r.message ?? '';
      const cls = `${kind} ${message.split('\n')[0]?.replace(/[0-9]+/g, '#') ?? ''}`;
      const found: Failure = { kind, message, bytes: Buffer.from(input.bytes), context: JSON.stringify(input.context), seed: options.seed, path: undefined };
      const known = failureClasses.get(cls);
      if (known === undefined && failures.length < keepGoing) {
        failureClasses.set(cls, { index: failures.length, ms: r.ms });
        failures.push(found);
      } else if (known !== undefined && kind === 'hang' && r.ms > known.ms) {
        // Of the slow inputs, keep the slowest.
        failures[known.index] = found;
        known.ms = r.ms;
      }
      return true;
    }
    lastFailure = { input, kind: r.kind ?? 'exception', message: r.message ?? '' };
    return false;
  });
  const result = fc.check(property, {
    numRuns: options.runs,
    seed: options.seed,
    ...(options.path !== undefined && { path: options.path }),
    // Some inputs are deliberately large; fast-check's default bias towards small values is kept.
    endOnFailure: maxShrinkRuns === 0,
    ...(options.timeLimitMs !== undefined && { interruptAfterTimeLimit: options.timeLimitMs, markInterruptAsFailure: false }),
  });
  const elapsedMs = performance.now() - started;
  let failure: Failure | undefined;
  if (result.failed) {
    const counterexample = (result.counterexample?.[0] as FuzzInput<unknown> | undefined) ?? lastFailure?.input;
    // Re-check the reported counterexample so the message matches the saved bytes.
    const again = counterexample === undefined ? undefined : checkInput(target, counterexample, budgetMs);
    const kind = again !== undefined && !again.ok ? (again.kind ?? 'exception') : (lastFailure?.kind ?? 'exception');
    const message = again !== undefined && !again.ok ? (again.message ?? '') : (lastFailure?.message ?? String(result.errorInstance));
    failure = {
      kind,
      message,
      bytes: counterexample?.bytes ?? Buffer.alloc(0),
      context: JSON.stringify(counterexample?.context ?? null),
      seed: result.seed,
      path: result.counterexamplePath ?? undefined,
    };
  }
  const topVerdicts = [...classes.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
  return {
    target: target.name,
    inputs,
    elapsedMs,
    execPerSecond: inputs / (elapsedMs / 1000),
    slowestMs,
    distinctVerdicts: classes.size,
    topVerdicts,
    failure: failure ?? failures[0],
    failures,
    interrupted: result.interrupted,
  };
}
