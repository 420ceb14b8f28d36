/**
 * Bytes relayed per connection, published on upstreamBytesChannel as
 * deltas: while a connection lives (one unref'd timer per meter walks every
 * open connection at most every `intervalMs`) and the remainder when it
 * closes, so a counter fed from the events advances during long
 * connections and adds up to the socket's totals at the end.
 */
import { upstreamBytesChannel } from './channels.js';

/** How often a live connection's bytes are published, at most. */
export const BYTES_INTERVAL_MS = 5000;

/** What a forwarder's constructor takes for its meter (tests shorten the interval). */
export interface MeterOptions {
  readonly bytesIntervalMs?: number;
}

/** The counters a meter reads (a net.Socket or TLSSocket). */
export interface ByteCounted {
  readonly bytesRead: number;
  readonly bytesWritten: number;
  once(event: 'close', listener: () => void): unknown;
}

interface Reported {
  read: number;
  written: number;
}

export class ByteMeter {
  /** Open connections and what has been published for each so far. */
  private readonly open = new Map<ByteCounted, Reported>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly listener: string,
    private readonly intervalMs = BYTES_INTERVAL_MS,
  ) {
    if (!(Number.isInteger(intervalMs) && intervalMs >= 1)) throw new RangeError(`byte meter interval must be an integer >= 1 ms, got ${intervalMs}`);
  }

  /** Count a connection until it closes. */
  track(socket: ByteCounted): void {
    if (this.open.has(socket)) return;
    this.open.set(socket, { read: 0, written: 0 });
    socket.once('close', () => {
      const reported = this.open.get(socket);
      if (reported === undefined) return;
      this.open.delete(socket);
      this.publish(socket, reported);
      if (this.open.size === 0) this.stopTimer();
    });
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Connections counted now. */
  get size(): number {
    return this.open.size;
  }

  /** Stop the periodic walk; open connections still publish their remainder when they close. */
  close(): void {
    this.stopTimer();
  }

  private tick(): void {
    for (const [socket, reported] of this.open) this.publish(socket, reported);
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private publish(socket: ByteCounted, reported: Reported): void {
    // Counters only grow; should one ever read lower, nothing is taken back and nothing counted twice.
    const fromClient = Math.max(0, socket.bytesRead - reported.read);
    const toClient = Math.max(0, socket.bytesWritten - reported.written);
    if (fromClient === 0 && toClient === 0) return;
    reported.read += fromClient;
    reported.written += toClient;
    upstreamBytesChannel.publish({ listener: this.listener, fromClient, toClient });
  }
}
