/**
 * Typed wrappers over node:diagnostics_channel: producers publish what
 * happened (a decision, a lookup, an upstream event) and whoever cares
 * (metrics, tests) subscribes. Channels are process-wide: a subscriber sees
 * every proxy in the process (filter on the listener name where it matters).
 */
import { channel } from 'node:diagnostics_channel';

export interface TypedChannel<T> {
  readonly name: string;
  /** Whether anyone listens (skip building a costly message otherwise). */
  readonly hasSubscribers: boolean;
  publish(message: T): void;
  /** Returns the unsubscribe function. */
  subscribe(handler: (message: T) => void): () => void;
}

export function typedChannel<T>(name: string): TypedChannel<T> {
  const ch = channel(name);
  return {
    name,
    get hasSubscribers() {
      return ch.hasSubscribers;
    },
    publish(message: T): void {
      if (ch.hasSubscribers) ch.publish(message);
    },
    subscribe(handler: (message: T) => void): () => void {
      // The channel carries only what publish() above put there. A subscriber that throws would have
      // node:diagnostics_channel re-throw on the next tick (an uncaught exception: the process dies):
      // it costs a warning instead, once per subscriber.
      let warned = false;
      const listener = (message: unknown): void => {
        try {
          handler(message as T);
        } catch (err) {
          if (warned) return;
          warned = true;
          process.emitWarning(`dancegate: a subscriber of ${name} failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      };
      ch.subscribe(listener);
      return () => {
        ch.unsubscribe(listener);
      };
    },
  };
}
