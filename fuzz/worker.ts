/**
 * Runs one target in a worker thread (started by main.ts). Before each input
 * it copies the bytes and bumps a counter in shared memory, so that the
 * watchdog in the main thread can see a stuck input and save it even when
 * the parser never returns.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runTarget, type RunOptions } from './harness.js';
import { TARGETS } from './targets.js';
import { SHARED_HEADER_BYTES, type WorkerRequest } from './worker-protocol.js';

const request = workerData as WorkerRequest;
const control = new Int32Array(request.shared, 0, 2);
const data = new Uint8Array(request.shared, SHARED_HEADER_BYTES);
const make = TARGETS[request.target];
if (make === undefined) throw new Error(`unknown target ${request.target}`);

const options: RunOptions = {
  runs: request.runs,
  seed: request.seed,
  path: request.path,
  budgetMs: request.budgetMs,
  keepGoing: request.keepGoing,
  ...(request.timeLimitMs !== undefined && { timeLimitMs: request.timeLimitMs }),
  beforeEach: (input) => {
    const n = Math.min(input.bytes.length, data.length);
    data.set(input.bytes.subarray(0, n));
    Atomics.store(control, 1, n);
    Atomics.add(control, 0, 1);
  },
  progressEvery: request.progressEvery,
  onProgress: (inputs, elapsedMs) => parentPort?.postMessage({ type: 'progress', inputs, elapsedMs }),
};
const report = runTarget(make(), options);
parentPort?.postMessage({ type: 'done', report });
