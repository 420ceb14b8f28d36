/**
 * The process logger (pino): JSON lines with an ISO timestamp and the level
 * as a word, to stdout, stderr or a file. Decision lines and operational
 * events (start, reload, shutdown) share it.
 */
import { destination, pino, stdTimeFunctions, type Logger } from 'pino';
import type { LogConfig } from '../config/types.js';

/** Each logger's destination, for reopening a log file after rotation. */
const destinations = new WeakMap<Logger, ReturnType<typeof destination>>();

export function createLogger(config: LogConfig): Logger {
  const dest = config.destination === 'stdout' ? 1 : config.destination === 'stderr' ? 2 : config.destination;
  const stream = destination({ dest, sync: false, mkdir: true });
  const logger = pino(
    {
      level: config.level,
      base: { pid: process.pid },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
  destinations.set(logger, stream);
  return logger;
}

/**
 * Reopen a file destination (after logrotate moved the file away); nothing
 * for stdout/stderr. The level and destination themselves are fixed for the
 * life of the process: a reload that changes them is told so.
 */
export function reopenLog(logger: Logger, config: LogConfig): void {
  if (config.destination !== 'stdout' && config.destination !== 'stderr') destinations.get(logger)?.reopen();
}

/**
 * Resolves once the log destination is open (a file opens asynchronously)
 * and what was logged has been handed to it: call before the process exits,
 * or an early exit loses the last lines (and pino's exit hook throws
 * "sonic boom is not ready yet").
 */
export async function settleLog(logger: Logger): Promise<void> {
  const stream = destinations.get(logger);
  // sonic-boom's fd is -1 until the file is open (its typings do not name the property).
  if (stream !== undefined && (stream as unknown as { fd: number }).fd < 0) {
    await new Promise<void>((resolve) => {
      stream.once('ready', () => resolve());
      stream.once('error', () => resolve());
    });
  }
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
}

/** Run `start`; if it fails, log why (one `start` line, the log flushed) and rethrow, so the CLI can exit with its message. */
export async function startLogged<T>(logger: Logger, describe: (err: unknown) => string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    logger.error({ event: 'start', error: describe(err) }, 'dancegate could not start');
    await settleLog(logger);
    throw err;
  }
}
