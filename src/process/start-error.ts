/**
 * Failures an operator can fix, said in words: a port already in use, a
 * port that needs privileges, an address not on this host, a resolver that
 * does not validate. `serve` exits 1 with the message (no stack trace).
 */

/** A start-up failure whose message is the whole story (the CLI prints it and exits 1). */
export class StartError extends Error {
  override readonly name = 'StartError';
}

/**
 * What went wrong binding `what` ("listener api", "admin") to host:port, in
 * words, from a listen() error. Pure.
 */
export function describeListenError(what: string, host: string, port: number, err: unknown): string {
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'EADDRINUSE':
      return `${what}: ${address} is already in use`;
    case 'EACCES':
      return `${what}: ${address}: permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE)`;
    case 'EADDRNOTAVAIL':
      return `${what}: ${address}: that address is not on this host`;
    default:
      return `${what}: ${address}: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** Is `err` a failure to bind an address (as opposed to, say, a bad certificate)? */
export const isListenError = (err: unknown): boolean => ['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL'].includes((err as NodeJS.ErrnoException | undefined)?.code ?? '');
