/**
 * A real Mosquitto broker and its command-line clients (mosquitto_pub,
 * mosquitto_sub) for end-to-end tests: the broker runs as a child on a port
 * the caller chose, its log (log_dest stderr) is kept line by line, and every
 * process started here is killed on stop() or when the test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { stopProcess, waitForTcpPort } from './process.js';
import { waitUntil } from './wait.js';

/** Debian's broker path; elsewhere whatever `mosquitto` the PATH finds. */
const MOSQUITTO = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';

/** The most output kept per stream of one client process (a runaway client cannot exhaust memory). */
const MAX_OUTPUT_CHARS = 1_000_000;

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

/** The most lines kept from one process; past it a last line says so (a test then fails on it rather than missing lines silently). */
const MAX_LINES = 100_000;

/** Split a stream into lines as they arrive (the last, unfinished line waits for its newline). */
function collectLines(stream: NodeJS.ReadableStream, into: string[]): void {
  let partial = '';
  stream.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = (parts.pop() ?? '').slice(0, MAX_OUTPUT_CHARS);
    for (const line of parts) {
      if (into.length < MAX_LINES) into.push(line);
      else if (into.length === MAX_LINES) into.push(`(more than ${MAX_LINES} lines: the rest was dropped)`);
    }
  });
}

export interface RunningMosquitto {
  readonly port: number;
  /** The broker's log so far, one entry per line, each still with its "<unix time>: " prefix. */
  lines(): readonly string[];
  /** Wait until a line at index >= `from` matches `pattern`; returns it. */
  waitForLine(pattern: RegExp, from?: number, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Start Mosquitto with `config` (written to `dir`/mosquitto.conf), which must
 * listen on 127.0.0.1:`port` and log to stderr (`log_dest stderr`: unlike
 * stdout, Mosquitto does not buffer it). A `user` line naming the current
 * user is added: started as root, Mosquitto would otherwise switch to the
 * user mosquitto, who cannot read the test's private temporary directory
 * (acl_file).
 */
export async function startMosquitto(options: { readonly dir: string; readonly config: string; readonly port: number }): Promise<RunningMosquitto> {
  if (!/^log_dest stderr$/m.test(options.config)) throw new Error('mosquitto config: needs a "log_dest stderr" line (the test reads the log from stderr)');
  if (!new RegExp(`^listener ${options.port} 127\\.0\\.0\\.1$`, 'm').test(options.config)) throw new Error(`mosquitto config: needs a "listener ${options.port} 127.0.0.1" line`);
  const file = join(options.dir, 'mosquitto.conf');
  await writeFile(file, `${options.config}\n# added by test/lab/mosquitto.ts\nuser ${userInfo().username}\n`);
  const child = spawn(MOSQUITTO, ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  const log: string[] = [];
  collectLines(child.stdout, log);
  collectLines(child.stderr, log);
  let exitedEarly: (code: number | null) => void = () => undefined;
  const early = new Promise<never>((_, reject) => (exitedEarly = (code) => reject(new Error(`mosquitto exited with code ${code}`))));
  child.once('exit', exitedEarly);
  try {
    await Promise.race([waitForTcpPort(options.port, 'Mosquitto', 10_000), early]);
  } catch (err) {
    await stopProcess(child);
    throw new Error(`Mosquitto did not start: ${(err as Error).message}; log:\n${log.join('\n')}`);
  } finally {
    child.off('exit', exitedEarly);
  }
  return {
    port: options.port,
    lines: () => log,
    async waitForLine(pattern, from = 0, timeoutMs = 10_000) {
      let found: string | undefined;
      try {
        await waitUntil(
          `a Mosquitto log line matching ${pattern}`,
          () => {
            found = log.slice(from).find((line) => pattern.test(line));
            return found !== undefined;
          },
          timeoutMs,
        );
      } catch (err) {
        throw new Error(`${(err as Error).message}; the log since:\n${log.slice(from).join('\n').slice(-3000)}`);
      }
      return found as string;
    },
    stop: () => stopProcess(child),
  };
}

/** What a finished client process left behind. */
export interface ClientResult {
  /** Exit code; null when it was killed (then `signal` says by what). */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Whether it ran past its time limit and was killed. */
  readonly timedOut: boolean;
}

/** Run mosquitto_pub with `args`; it is killed after `timeoutMs`. */
export function runMosquittoPub(args: readonly string[], timeoutMs = 10_000): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('mosquitto_pub', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout = (stdout + d.toString('utf8')).slice(0, MAX_OUTPUT_CHARS)));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(0, MAX_OUTPUT_CHARS)));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

export interface RunningSubscriber {
  /** What it printed on stdout so far, a line each (with -v: "<topic> <payload>"). */
  readonly lines: readonly string[];
  stderr(): string;
  /** The exit code, null while it runs or when it was killed. */
  readonly exitCode: number | null;
  /** Whether it has exited (by itself or killed). */
  readonly exited: boolean;
  /** Resolves when it has exited, with Date.now() at that moment. */
  readonly exit: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly at: number }>;
  /** Send the process a signal (SIGSTOP freezes it: a device that went silent without closing its connection). */
  signal(signal: NodeJS.Signals): void;
  /** Wait until it has printed at least `count` lines. */
  waitForLines(count: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Start mosquitto_sub with `args` (it runs until stopped, or until its connection fails for good). */
export function startMosquittoSub(args: readonly string[]): RunningSubscriber {
  const child = spawn('mosquitto_sub', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  const lines: string[] = [];
  let stderr = '';
  collectLines(child.stdout, lines);
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(0, MAX_OUTPUT_CHARS)));
  let exited = false;
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = true;
      resolve({ code, signal, at: Date.now() });
    }),
  );
  return {
    lines,
    stderr: () => stderr,
    get exitCode() {
      return child.exitCode;
    },
    get exited() {
      return exited;
    },
    exit,
    signal: (signal) => void child.kill(signal),
    async waitForLines(count, timeoutMs = 10_000) {
      const what = (): string => `${count} lines from mosquitto_sub ${args.join(' ')}: it printed ${lines.length} (last: ${lines.slice(-3).join(' | ')}); stderr: ${stderr.slice(-500)}`;
      try {
        await waitUntil('mosquitto_sub output', () => lines.length >= count || exited, timeoutMs);
      } catch {
        throw new Error(`timed out waiting for ${what()}`);
      }
      if (lines.length < count) throw new Error(`mosquitto_sub exited (code ${child.exitCode}) before ${what()}`);
    },
    stop: () => stopProcess(child),
  };
}
