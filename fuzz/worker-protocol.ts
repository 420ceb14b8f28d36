/** What main.ts hands each fuzzing worker (worker.ts). */
export interface WorkerRequest {
  readonly target: string;
  readonly runs: number;
  readonly seed: number;
  readonly path: string | undefined;
  readonly budgetMs: number;
  readonly keepGoing: number;
  readonly timeLimitMs: number | undefined;
  readonly progressEvery: number;
  /** Int32 [0] = inputs started, [1] = length of the current input; then the bytes. */
  readonly shared: SharedArrayBuffer;
}

export const SHARED_HEADER_BYTES = 8;
