/**
 * Bytes relayed are published as deltas on upstreamBytesChannel while a
 * connection lives (one timer per forwarder, at most every interval) and
 * the remainder when it closes; the deltas add up to the socket's totals.
 */
import { EventEmitter, once } from 'node:events';
import * as net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ByteMeter, BYTES_INTERVAL_MS } from '../../src/forward/byte-meter.js';
import { upstreamBytesChannel, type UpstreamBytesEvent } from '../../src/forward/channels.js';
import { TcpForwarder } from '../../src/forward/tcp-forward.js';
import { contextFor, startFront, tcpListener, type Front } from './forward-fixtures.js';
import { waitUntil } from '../lab/wait.js';

/** A socket whose counters the test sets. */
class FakeSocket extends EventEmitter {
  bytesRead = 0;
  bytesWritten = 0;
}

function collect(listener: string): { events: UpstreamBytesEvent[]; stop: () => void } {
  const events: UpstreamBytesEvent[] = [];
  const stop = upstreamBytesChannel.subscribe((e) => {
    if (e.listener === listener) events.push(e);
  });
  return { events, stop };
}

describe('ByteMeter', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('publishes every 5 s by default', () => {
    expect(BYTES_INTERVAL_MS).toBe(5000);
  });

  it.each([
    [
      'bytes each interval, the rest at close',
      [
        [10, 20],
        [15, 20],
        [15, 20],
        [40, 90],
      ],
      [
        { fromClient: 10, toClient: 20 },
        { fromClient: 5, toClient: 0 },
        { fromClient: 25, toClient: 70 },
      ],
    ],
    [
      'nothing moved: no event',
      [
        [0, 0],
        [0, 0],
        [0, 0],
        [0, 0],
      ],
      [],
    ],
    [
      'only at close',
      [
        [0, 0],
        [0, 0],
        [0, 0],
        [7, 3],
      ],
      [{ fromClient: 7, toClient: 3 }],
    ],
  ] as const)('%s', (_label, readings, expected) => {
    vi.useFakeTimers();
    const { events, stop } = collect('meter-table');
    const meter = new ByteMeter('meter-table', 1000);
    const socket = new FakeSocket();
    meter.track(socket);
    // readings[0..2] are seen by three ticks; readings[3] by the close.
    for (const [i, [read, written]] of readings.entries()) {
      socket.bytesRead = read;
      socket.bytesWritten = written;
      if (i < 3) vi.advanceTimersByTime(1000);
      else socket.emit('close');
    }
    stop();
    expect(events).toEqual(expected.map((e) => ({ listener: 'meter-table', ...e })));
    expect(vi.getTimerCount()).toBe(0);
  });

  it('one timer walks every open connection; it stops when the last one closes', () => {
    vi.useFakeTimers();
    const { events, stop } = collect('meter-many');
    const meter = new ByteMeter('meter-many', 1000);
    const sockets = [new FakeSocket(), new FakeSocket(), new FakeSocket()];
    for (const s of sockets) meter.track(s);
    meter.track(sockets[0] as FakeSocket); // twice: still one entry
    expect([meter.size, vi.getTimerCount()]).toEqual([3, 1]);
    sockets.forEach((s, i) => (s.bytesRead = i + 1));
    vi.advanceTimersByTime(1000);
    expect(events.map((e) => e.fromClient)).toEqual([1, 2, 3]);
    for (const s of sockets) s.emit('close');
    expect([meter.size, vi.getTimerCount()]).toEqual([0, 0]);
    stop();
  });

  it('refuses a bad interval', () => {
    expect(() => new ByteMeter('x', 0)).toThrow('byte meter interval must be an integer >= 1 ms, got 0');
  });
});

describe('TcpForwarder: bytes of a long-lived connection', () => {
  let front: Front | undefined;
  let echo: net.Server | undefined;

  afterEach(async () => {
    await front?.close();
    echo?.close();
    front = undefined;
    echo = undefined;
  });

  it('publishes while the connection lives, and the deltas add up to bytesRead/bytesWritten', async () => {
    echo = net.createServer((s) => s.pipe(s));
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    const listener = tcpListener('bytes-long', `tcp://127.0.0.1:${(echo.address() as net.AddressInfo).port}`);
    const forwarder = new TcpForwarder(listener, { bytesIntervalMs: 50 });
    front = await startFront((socket) => forwarder.accept(socket, contextFor(listener, socket, 'long._device.forward.test')));
    const { events, stop } = collect('bytes-long');
    try {
      const client = net.connect(front.port, '127.0.0.1');
      await once(client, 'connect');
      let echoed = 0;
      client.on('data', (d: Buffer) => (echoed += d.length));
      const chunks = [100, 2000, 30_000, 5];
      for (const size of chunks) {
        const before = events.length;
        client.write(Buffer.alloc(size, 0x61));
        const total = chunks.slice(0, chunks.indexOf(size) + 1).reduce((a, b) => a + b, 0);
        await waitUntil('the echo', () => echoed === total, 5000);
        // The connection is still open, and the meter has told about it.
        await waitUntil('a bytes event while the connection lives', () => events.length > before, 2000);
      }
      const whileOpen = events.length;
      expect(whileOpen).toBeGreaterThanOrEqual(chunks.length);
      const server = front.accepted[0] as net.Socket;
      client.end();
      await once(server, 'close');
      const sum = (key: 'fromClient' | 'toClient'): number => events.reduce((a, e) => a + e[key], 0);
      const sent = chunks.reduce((a, b) => a + b, 0);
      expect([sum('fromClient'), sum('toClient')]).toEqual([server.bytesRead, server.bytesWritten]);
      expect([sum('fromClient'), sum('toClient')]).toEqual([sent, sent]);
      client.destroy();
    } finally {
      stop();
      forwarder.close();
    }
  });
});
