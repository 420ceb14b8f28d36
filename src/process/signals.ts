/**
 * The signals a serving process answers (the single process and the
 * cluster primary; workers hear from the primary): SIGTERM and SIGINT drain
 * and stop, SIGHUP reopens the log file and reloads.
 */

/** `fn` on its first call; later calls do nothing (a second SIGTERM while draining changes nothing). */
export function firstCallOnly<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
  let called = false;
  return (...args: A) => {
    if (called) return;
    called = true;
    fn(...args);
  };
}

export function onStopAndHangup(stop: (signal: string) => void, hangup: () => void): void {
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', hangup);
}
