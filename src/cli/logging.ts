/**
 * The process logger (pino): JSON lines with an ISO timestamp and the level
 * as a word, to stdout, stderr or a file. Decision lines and operational
 * events (start, reload, shutdown) share it.
 */
import { destination, pino, stdTimeFunctions, type Logger } from 'pino';
import type { LogConfig } from '../config/types.js';

export function createLogger(config: LogConfig): Logger {
  const dest = config.destination === 'stdout' ? 1 : config.destination === 'stderr' ? 2 : config.destination;
  return pino(
    {
      level: config.level,
      base: { pid: process.pid },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination({ dest, sync: false, mkdir: true }),
  );
}
