/** What `serve` hands back to the command line, whichever role the process has. */
import type { ListenerAddress } from './running-proxy.js';

export interface ServeIo {
  readonly stderr: { write(text: string): unknown };
}

export interface Served {
  /** Resolves with the exit code once stopped: 0 clean drain, 1 connections had to be cut. */
  readonly done: Promise<number>;
  /** Where the listeners and the admin endpoints are (after start). */
  readonly listeners: readonly ListenerAddress[];
  readonly admin: { host: string; port: number } | undefined;
}
