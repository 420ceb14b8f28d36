/**
 * Every message between the cluster primary and a worker, as one
 * discriminated union per direction, and one `ask()` for the primary's
 * request/reply exchanges (with a deadline, and a stand-in answer when the
 * worker exits or is gone). Messages cross a process boundary: `asWorkerMessage`
 * and `asPrimaryMessage` check the tag before anything reads the fields.
 */
import type { Readiness } from '../metrics/admin-server.js';
import type { ListenerAddress, ReloadResult } from './running-proxy.js';

/** What the primary asks and expects an answer to (each carries an `id`, set by ask()). */
export type Request =
  | { readonly type: 'dancegate:prepare'; readonly text: string; readonly generation: number }
  | { readonly type: 'dancegate:commit'; readonly generation: number }
  | { readonly type: 'dancegate:status' }
  | { readonly type: 'dancegate:metrics' }
  | { readonly type: 'dancegate:unban'; readonly address: string };

/** What a penalty box lifted for one address (see Admission.unban). */
export interface UnbanResult {
  /** The key the limits count the address by (its /64 for IPv6). */
  readonly key: string;
  /** false: this process has no penalty box (limits.penaltyBox: false). */
  readonly penaltyBox: boolean;
  /** Milliseconds of ban that were left (0: it was not banned). */
  readonly bannedForMs: number;
  /** Failures counted towards a ban that were forgotten. */
  readonly failures: number;
}

/** A prom-client `getMetricsAsJSON()` entry, as far as the primary reads it. */
export interface MetricFamily {
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly aggregator?: string;
  readonly values: ReadonlyArray<{ readonly value: number; readonly labels: Readonly<Record<string, string | number | undefined>>; readonly metricName?: string }>;
}

/** The answer to each request type. */
export interface Replies {
  'dancegate:prepare':
    { readonly type: 'dancegate:prepared'; readonly id: number; readonly ok: true } | { readonly type: 'dancegate:prepared'; readonly id: number; readonly ok: false; readonly error: string };
  'dancegate:commit': { readonly type: 'dancegate:committed'; readonly id: number; readonly result: ReloadResult };
  'dancegate:status': { readonly type: 'dancegate:status'; readonly id: number; readonly status: object; readonly ready: Readiness };
  'dancegate:metrics': { readonly type: 'dancegate:metrics'; readonly id: number; readonly metrics: MetricFamily[] };
  'dancegate:unban': { readonly type: 'dancegate:unbanned'; readonly id: number; readonly result: UnbanResult };
}

export type Reply = Replies[keyof Replies];

/** Primary → worker. */
export type PrimaryMessage =
  | (Request & { readonly id: number })
  /** The configuration in force, answering 'dancegate:config-request'. */
  | { readonly type: 'dancegate:config'; readonly text: string; readonly generation: number }
  | { readonly type: 'dancegate:abort'; readonly generation: number }
  | { readonly type: 'dancegate:reopen-log' }
  | { readonly type: 'dancegate:shutdown' };

/** Worker → primary. */
export type WorkerMessage =
  | Reply
  | { readonly type: 'dancegate:config-request' }
  | { readonly type: 'dancegate:listening'; readonly listeners: ListenerAddress[]; readonly generation: number }
  /** The worker could not start (it exits next); `error` names what failed. */
  | { readonly type: 'dancegate:failed'; readonly error: string };

/** No answer: the deadline passed, or the worker exited or was gone. */
export interface NoAnswer {
  readonly type: 'timeout' | 'exited';
  readonly error: string;
}

const PRIMARY_TYPES = new Set<string>([
  'dancegate:prepare',
  'dancegate:commit',
  'dancegate:status',
  'dancegate:metrics',
  'dancegate:unban',
  'dancegate:config',
  'dancegate:abort',
  'dancegate:reopen-log',
  'dancegate:shutdown',
]);
const WORKER_TYPES = new Set<string>([
  'dancegate:prepared',
  'dancegate:committed',
  'dancegate:status',
  'dancegate:metrics',
  'dancegate:unbanned',
  'dancegate:config-request',
  'dancegate:listening',
  'dancegate:failed',
]);

const tagged = (m: unknown, types: ReadonlySet<string>): boolean =>
  typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string' && types.has((m as { type: string }).type);

/** A message from the primary, or undefined for anything else on the channel. */
export function asPrimaryMessage(m: unknown): PrimaryMessage | undefined {
  // The tag is checked; the fields are what the primary (this same program) sent with it.
  return tagged(m, PRIMARY_TYPES) ? (m as PrimaryMessage) : undefined;
}

/** A message from a worker, or undefined for anything else on the channel. */
export function asWorkerMessage(m: unknown): WorkerMessage | undefined {
  return tagged(m, WORKER_TYPES) ? (m as WorkerMessage) : undefined;
}

/** The part of a cluster Worker that ask() uses (a fake in tests). */
export interface WorkerChannel {
  readonly process: { readonly pid?: number | undefined };
  isConnected(): boolean;
  send(message: PrimaryMessage): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
  once(event: 'exit', listener: () => void): unknown;
  off(event: 'exit', listener: () => void): unknown;
}

let nextId = 1;

/**
 * Send `request` to `worker` and resolve with its reply (the message of the
 * matching reply type with the same id), or a NoAnswer once `timeoutMs` has
 * passed, the worker exits, or it is not connected. Never rejects.
 */
export function ask<R extends Request>(worker: WorkerChannel, request: R, timeoutMs: number): Promise<Replies[R['type']] | NoAnswer> {
  const id = nextId++;
  const pid = worker.process.pid;
  const replyType = REPLY_TYPE[request.type];
  return new Promise((resolve) => {
    const finish = (reply: Replies[R['type']] | NoAnswer): void => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', onExit);
      resolve(reply);
    };
    const onMessage = (raw: unknown): void => {
      const m = asWorkerMessage(raw);
      if (m !== undefined && m.type === replyType && 'id' in m && m.id === id) finish(m as Replies[R['type']]);
    };
    // A worker that dies meanwhile will not answer.
    const onExit = (): void => finish({ type: 'exited', error: `worker ${pid} exited` });
    const timer = setTimeout(() => finish({ type: 'timeout', error: `worker ${pid} did not answer within ${timeoutMs} ms` }), timeoutMs);
    worker.on('message', onMessage);
    worker.once('exit', onExit);
    if (!worker.isConnected()) return finish({ type: 'exited', error: `worker ${pid} is gone` });
    worker.send({ ...request, id } as PrimaryMessage);
  });
}

const REPLY_TYPE: { readonly [K in Request['type']]: Replies[K]['type'] } = {
  'dancegate:prepare': 'dancegate:prepared',
  'dancegate:commit': 'dancegate:committed',
  'dancegate:status': 'dancegate:status',
  'dancegate:metrics': 'dancegate:metrics',
  'dancegate:unban': 'dancegate:unbanned',
};

/** Ask every worker in `workers` at once; the answers in the same order. */
export function askAll<R extends Request>(workers: readonly WorkerChannel[], request: R, timeoutMs: number): Promise<Array<Replies[R['type']] | NoAnswer>> {
  return Promise.all(workers.map((w) => ask(w, request, timeoutMs)));
}

export const isNoAnswer = (r: Reply | NoAnswer): r is NoAnswer => r.type === 'timeout' || r.type === 'exited';
