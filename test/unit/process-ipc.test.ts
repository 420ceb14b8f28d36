/**
 * The primary's one request/reply exchange with a worker: the matching
 * reply by type and id, a deadline, a worker that exits or is gone; and the
 * tag checks of messages crossing the process boundary.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ask, askAll, asPrimaryMessage, asWorkerMessage, isNoAnswer, type PrimaryMessage, type WorkerChannel } from '../../src/process/ipc.js';

class FakeWorker extends EventEmitter implements WorkerChannel {
  readonly sent: PrimaryMessage[] = [];
  connected = true;
  constructor(
    readonly process: { pid: number },
    private readonly answer?: (m: PrimaryMessage & { id?: number }) => unknown[],
  ) {
    super();
  }
  isConnected(): boolean {
    return this.connected;
  }
  send(message: PrimaryMessage): boolean {
    this.sent.push(message);
    for (const reply of this.answer?.(message) ?? []) setImmediate(() => this.emit('message', reply));
    return true;
  }
}

describe('ask', () => {
  it('resolves with the reply of the matching type and id, ignoring others', async () => {
    const worker = new FakeWorker({ pid: 11 }, (m) => {
      const id = 'id' in m && m.id !== undefined ? m.id : -1;
      return [
        { type: 'dancegate:unbanned', id: id + 1000, result: { key: 'x', penaltyBox: true, bannedForMs: 1, failures: 0 } },
        { type: 'dancegate:status', id, status: {}, ready: { ready: true, checks: {} } },
        'not a message',
        { type: 'dancegate:unbanned', id, result: { key: '192.0.2.7', penaltyBox: true, bannedForMs: 5000, failures: 2 } },
      ];
    });
    const reply = await ask(worker, { type: 'dancegate:unban', address: '192.0.2.7' }, 1000);
    expect(reply).toEqual({ type: 'dancegate:unbanned', id: expect.any(Number), result: { key: '192.0.2.7', penaltyBox: true, bannedForMs: 5000, failures: 2 } });
    expect(worker.sent).toEqual([{ type: 'dancegate:unban', address: '192.0.2.7', id: expect.any(Number) }]);
    // Every listener it added is gone.
    expect(worker.listenerCount('message')).toBe(0);
    expect(worker.listenerCount('exit')).toBe(0);
  });

  it('a worker that does not answer: a timeout stand-in after the deadline', async () => {
    const worker = new FakeWorker({ pid: 12 });
    const t0 = Date.now();
    const reply = await ask(worker, { type: 'dancegate:status' }, 100);
    expect(reply).toEqual({ type: 'timeout', error: 'worker 12 did not answer within 100 ms' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    expect(worker.listenerCount('message')).toBe(0);
  });

  it('a worker that exits meanwhile: an exited stand-in at once', async () => {
    const worker = new FakeWorker({ pid: 13 });
    const pending = ask(worker, { type: 'dancegate:metrics' }, 10_000);
    worker.emit('exit');
    expect(await pending).toEqual({ type: 'exited', error: 'worker 13 exited' });
    expect(worker.listenerCount('exit')).toBe(0);
  });

  it('a worker already gone: nothing is sent', async () => {
    const worker = new FakeWorker({ pid: 14 });
    worker.connected = false;
    expect(await ask(worker, { type: 'dancegate:commit', generation: 3 }, 10_000)).toEqual({ type: 'exited', error: 'worker 14 is gone' });
    expect(worker.sent).toEqual([]);
  });

  it('askAll: answers in the order of the workers, stand-ins included', async () => {
    const answering = new FakeWorker({ pid: 21 }, (m) => [{ type: 'dancegate:prepared', id: 'id' in m ? m.id : 0, ok: false, error: 'listener api: 127.0.0.1:1 is already in use' }]);
    const gone = new FakeWorker({ pid: 22 });
    gone.connected = false;
    const replies = await askAll([answering, gone], { type: 'dancegate:prepare', text: 'listeners: []', generation: 2 }, 1000);
    expect(replies.map((r) => (isNoAnswer(r) ? r.type : r.type === 'dancegate:prepared' && !r.ok ? r.error : 'ok'))).toEqual(['listener api: 127.0.0.1:1 is already in use', 'exited']);
  });
});

describe('message tags', () => {
  it.each([
    [{ type: 'dancegate:config-request' }, true],
    [{ type: 'dancegate:listening', listeners: [], generation: 1 }, true],
    [{ type: 'dancegate:failed', error: 'x' }, true],
    [{ type: 'dancegate:prepare', id: 1, text: '', generation: 2 }, false],
    [{ type: 'other' }, false],
    [{ cmd: 'NODE_CLUSTER' }, false],
    ['dancegate:listening', false],
    [null, false],
  ])('asWorkerMessage(%j) is a worker message: %s', (m, expected) => {
    expect(asWorkerMessage(m) !== undefined).toBe(expected);
  });

  it.each([
    [{ type: 'dancegate:config', text: '', generation: 1 }, true],
    [{ type: 'dancegate:shutdown' }, true],
    [{ type: 'dancegate:unban', id: 1, address: '192.0.2.7' }, true],
    [{ type: 'dancegate:listening' }, false],
    [{ type: 7 }, false],
    [undefined, false],
  ])('asPrimaryMessage(%j) is a primary message: %s', (m, expected) => {
    expect(asPrimaryMessage(m) !== undefined).toBe(expected);
  });
});
