/**
 * Issue 11, "upstream failures are never logged": an HTTP request answered
 * 502 and a TCP connection closed because its upstream refused each publish
 * exactly one upstreamErrorChannel event naming the listener, the upstream,
 * the connection's identity (or undefined) and source address, and the error.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { upstreamErrorChannel, type UpstreamErrorEvent } from '../../src/forward/channels.js';
import { HttpForwarder } from '../../src/forward/http-forward.js';
import { TcpForwarder } from '../../src/forward/tcp-forward.js';
import { errorText, MAX_ERROR_TEXT } from '../../src/forward/upstream-failure.js';
import { parseResponses } from '../lab/http-raw-kit.js';
import { closedPort, contextFor, httpListener, startFront, tcpListener, type Front } from './forward-fixtures.js';

const NAME = 'sensor7._device.forward.test';

function collect(listener: string): { events: UpstreamErrorEvent[]; stop: () => void } {
  const events: UpstreamErrorEvent[] = [];
  const stop = upstreamErrorChannel.subscribe((e) => {
    if (e.listener === listener) events.push(e);
  });
  return { events, stop };
}

/** Send one request and read until the proxy closes. */
async function request(port: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let data = '';
  socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
  socket.on('error', () => undefined);
  socket.write('GET /x HTTP/1.1\r\nHost: api.forward.test\r\n\r\n');
  await once(socket, 'close');
  return data;
}

describe('upstream failures are published with the identity', () => {
  let front: Front | undefined;
  const cleanups: Array<() => void> = [];

  afterEach(async () => {
    for (const c of cleanups.splice(0)) c();
    await front?.close();
    front = undefined;
  });

  it.each([
    ['authenticated', NAME],
    ['unauthenticated (policy optional)', undefined],
  ])('HTTP, upstream refuses, %s: 502 and exactly one event', async (_label, identity) => {
    const port = await closedPort();
    const listener = httpListener('err-http', `http://127.0.0.1:${port}`, { policy: 'optional' });
    const forwarder = new HttpForwarder(listener);
    cleanups.push(() => forwarder.close());
    front = await startFront((socket) => forwarder.accept(socket, contextFor(listener, socket, identity)));
    const { events, stop } = collect('err-http');
    cleanups.push(stop);
    const response = await request(front.port);
    const [answer] = parseResponses(response, [false]).responses;
    expect([answer?.status, answer?.headers['connection'], answer?.body]).toEqual([502, 'close', 'Bad Gateway: the upstream is unavailable\n']);
    expect(events).toHaveLength(1);
    expect(events[0]).toEqual({ listener: 'err-http', upstream: `http://127.0.0.1:${port}`, identity, source: '127.0.0.1', error: expect.stringContaining('ECONNREFUSED') });
  });

  it('TCP, upstream refuses: the client connection closes and exactly one event', async () => {
    const port = await closedPort();
    const listener = tcpListener('err-tcp', `tcp://127.0.0.1:${port}`);
    const forwarder = new TcpForwarder(listener);
    cleanups.push(() => forwarder.close());
    front = await startFront((socket) => forwarder.accept(socket, contextFor(listener, socket, NAME)));
    const { events, stop } = collect('err-tcp');
    cleanups.push(stop);
    const client = net.connect(front.port, '127.0.0.1');
    client.on('error', () => undefined);
    await once(client, 'close');
    expect(events).toEqual([
      { listener: 'err-tcp', upstream: `tcp://127.0.0.1:${port}`, identity: NAME, source: '127.0.0.1', error: expect.stringMatching(/^Error: connect ECONNREFUSED 127\.0\.0\.1:\d+$/) },
    ]);
  });

  it('TCP, a TLS upstream that is not TLS: one event, though both of its sockets fail', async () => {
    const garbage = net.createServer((s) => s.end('this is not TLS\r\n\r\n'));
    garbage.listen(0, '127.0.0.1');
    await once(garbage, 'listening');
    cleanups.push(() => garbage.close());
    const url = `tls://127.0.0.1:${(garbage.address() as net.AddressInfo).port}`;
    const listener = tcpListener('err-tls', url);
    const forwarder = new TcpForwarder(listener);
    cleanups.push(() => forwarder.close());
    front = await startFront((socket) => forwarder.accept(socket, contextFor(listener, socket, NAME)));
    const { events, stop } = collect('err-tls');
    cleanups.push(stop);
    const client = net.connect(front.port, '127.0.0.1');
    client.on('error', () => undefined);
    await once(client, 'close');
    // Give a second socket's error the chance to be (wrongly) published too.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ listener: 'err-tls', upstream: url, identity: NAME, source: '127.0.0.1' });
  });

  it('a context naming a route of another listener closes the connection with one event', async () => {
    const listener = tcpListener('err-route', 'tcp://127.0.0.1:9');
    const other = tcpListener('err-route', 'tcp://127.0.0.1:9');
    const forwarder = new TcpForwarder(listener);
    cleanups.push(() => forwarder.close());
    front = await startFront((socket) => forwarder.accept(socket, contextFor(other, socket, NAME)));
    const { events, stop } = collect('err-route');
    cleanups.push(stop);
    const client = net.connect(front.port, '127.0.0.1');
    client.on('error', () => undefined);
    await once(client, 'close');
    expect(events.map((e) => e.error)).toEqual(["Error: the connection's route is not a route of listener err-route"]);
  });
});

describe('errorText', () => {
  it.each([
    ['an Error', new TypeError('bad thing'), 'TypeError: bad thing'],
    ['a code the message does not say', Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }), 'Error: other side closed (UND_ERR_SOCKET)'],
    ['a code the message says', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'Error: connect ECONNREFUSED 127.0.0.1:1'],
    ['line breaks', new Error('one\r\ntwo'), 'Error: one two'],
    ['not an Error', 'plain', 'plain'],
  ])('%s', (_label, err, expected) => {
    expect(errorText(err)).toBe(expected);
  });

  it(`is at most ${MAX_ERROR_TEXT} characters`, () => {
    expect(errorText(new Error('x'.repeat(1000)))).toHaveLength(MAX_ERROR_TEXT);
  });
});
