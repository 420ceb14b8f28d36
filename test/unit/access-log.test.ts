/**
 * The access log: the path it records (no query by default, bounded,
 * escaped), the sampling draw, and the exact lines logHttpRequests writes
 * for requests, upstream health changes and HTTP/2 abuse.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { accessPath, MAX_ACCESS_PATH_BYTES, sampled } from '../../src/forward/access-log.js';
import { http2AbuseChannel, httpRequestChannel, upstreamHealthChannel, type HttpRequestEvent } from '../../src/forward/channels.js';
import { logHttpRequests } from '../../src/process/access-log.js';

describe('accessPath', () => {
  it.each<[string, boolean, string]>([
    ['/a/b?token=secret', false, '/a/b'],
    ['/a/b?token=secret', true, '/a/b?token=secret'],
    ['/a/b', false, '/a/b'],
    ['/?', false, '/'],
    ['*', false, '*'],
    ['/a\u0000b\nc?q', false, '/a\\x00b\\x0ac'],
    ['/x\u2028y', false, '/x\\u2028y'],
    ['/caf\u00e9', false, '/caf\u00e9'],
  ])('%j includeQuery %s', (target, includeQuery, expected) => {
    expect(accessPath(target, includeQuery)).toBe(expected);
  });

  it('a long target is cut to 1024 bytes with the marker; the query does not count when left out', () => {
    const long = `/${'a'.repeat(5000)}`;
    const path = accessPath(`${long}?q`, true);
    expect(Buffer.byteLength(path)).toBe(MAX_ACCESS_PATH_BYTES);
    expect(path).toBe(`${long.slice(0, 1008)}…(+3995 bytes)`);
    expect(accessPath(`/${'a'.repeat(1000)}?${'q'.repeat(5000)}`, false)).toBe(`/${'a'.repeat(1000)}`);
  });
});

describe('sampled', () => {
  const draws = (values: number[]): (() => number) => {
    let i = 0;
    return () => values[i++] ?? Number.NaN;
  };
  it.each<[boolean, number, number[], boolean[]]>([
    [false, 1, [0, 0], [false, false]],
    [true, 1, [], [true, true]],
    [true, 0, [0, 0], [false, false]],
    [true, 0.25, [0, 0.2499, 0.25, 0.9], [true, true, false, false]],
  ])('enabled %s, sampleRate %d', (enabled, sampleRate, values, expected) => {
    const random = draws(values);
    expect(expected.map(() => sampled({ enabled, sampleRate, includeQuery: false }, random))).toEqual(expected);
  });
});

interface Line {
  level: 'info' | 'warn';
  fields: unknown;
  message: string;
}

function fakeLogger(): { lines: Line[]; logger: { info: (fields: unknown, message: string) => void; warn: (fields: unknown, message: string) => void } } {
  const lines: Line[] = [];
  return {
    lines,
    logger: {
      info: (fields, message) => lines.push({ level: 'info', fields, message }),
      warn: (fields, message) => lines.push({ level: 'warn', fields, message }),
    },
  };
}

const request = (over: Partial<HttpRequestEvent>): HttpRequestEvent => ({
  listener: 'api',
  connectionId: 'c-17',
  identity: 'ops-7._device.example.com',
  protocol: 'h2',
  method: 'GET',
  path: '/admin/users',
  status: 200,
  bytesIn: 0,
  bytesOut: 512,
  upstream: 'backend-a',
  upstreamMs: 1.23456789,
  totalMs: 2.5,
  refusal: undefined,
  log: true,
  ...over,
});

describe('logHttpRequests', () => {
  const stops: Array<() => void> = [];
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
  });

  // The fake logger only has the two methods used; pino's Logger type has many more.
  const subscribe = (logger: ReturnType<typeof fakeLogger>['logger']): void => void stops.push(logHttpRequests(logger as unknown as Parameters<typeof logHttpRequests>[0]));

  it('one info line per request drawn for the log, with every field; none when not drawn', () => {
    const { lines, logger } = fakeLogger();
    subscribe(logger);
    httpRequestChannel.publish(request({}));
    httpRequestChannel.publish(request({ log: false }));
    httpRequestChannel.publish(
      request({
        identity: undefined,
        protocol: 'h1',
        method: 'POST',
        path: '/admin',
        status: 403,
        bytesIn: 12,
        bytesOut: 60,
        upstream: undefined,
        upstreamMs: undefined,
        totalMs: 0.1004,
        refusal: 'path-not-allowed',
      }),
    );
    expect(lines).toEqual([
      {
        level: 'info',
        message: 'http request',
        fields: {
          event: 'request',
          connectionId: 'c-17',
          listener: 'api',
          identity: 'ops-7._device.example.com',
          protocol: 'h2',
          method: 'GET',
          path: '/admin/users',
          status: 200,
          bytesIn: 0,
          bytesOut: 512,
          upstream: 'backend-a',
          upstreamMs: 1.235,
          totalMs: 2.5,
        },
      },
      {
        level: 'info',
        message: 'http request',
        fields: {
          event: 'request',
          connectionId: 'c-17',
          listener: 'api',
          identity: null,
          protocol: 'h1',
          method: 'POST',
          path: '/admin',
          status: 403,
          bytesIn: 12,
          bytesOut: 60,
          upstream: null,
          upstreamMs: null,
          totalMs: 0.1,
          refusal: 'path-not-allowed',
        },
      },
    ]);
    // Field order is the line's order: refusal last, and absent (not undefined) on a forwarded request.
    expect(Object.keys(lines[0]?.fields as object)).toEqual([
      'event',
      'connectionId',
      'listener',
      'identity',
      'protocol',
      'method',
      'path',
      'status',
      'bytesIn',
      'bytesOut',
      'upstream',
      'upstreamMs',
      'totalMs',
    ]);
  });

  it('a hostile HTTP/2 method is bounded and escaped', () => {
    const { lines, logger } = fakeLogger();
    subscribe(logger);
    httpRequestChannel.publish(request({ method: `X\n${'M'.repeat(10_000)}` }));
    const method = (lines[0]?.fields as { method: string }).method;
    expect(Buffer.byteLength(method)).toBeLessThanOrEqual(64);
    expect(method.startsWith('X\\x0aMMM')).toBe(true);
    expect(method.endsWith('bytes)')).toBe(true);
  });

  it('upstream health: ejection warns, readmission informs', () => {
    const { lines, logger } = fakeLogger();
    subscribe(logger);
    upstreamHealthChannel.publish({ listener: 'api', upstream: 'backend-b', healthy: false, cause: 'passive', detail: '5 consecutive failures; ejected for 10000 ms' });
    upstreamHealthChannel.publish({ listener: 'api', upstream: 'backend-b', healthy: true, cause: 'active', detail: `GET / answered 200${'x'.repeat(1000)}` });
    expect(lines[0]).toEqual({
      level: 'warn',
      message: 'upstream ejected',
      fields: { event: 'upstream-health', listener: 'api', upstream: 'backend-b', healthy: false, cause: 'passive', detail: '5 consecutive failures; ejected for 10000 ms' },
    });
    expect(lines[1]).toEqual({
      level: 'info',
      message: 'upstream readmitted',
      fields: { event: 'upstream-health', listener: 'api', upstream: 'backend-b', healthy: true, cause: 'active', detail: `GET / answered 200${'x'.repeat(478)}…(+522 bytes)` },
    });
    expect(lines).toHaveLength(2);
  });

  it('HTTP/2 abuse: one warn line', () => {
    const { lines, logger } = fakeLogger();
    subscribe(logger);
    http2AbuseChannel.publish({ listener: 'api', connectionId: 'c-9', identity: undefined, kind: 'reset-rate', detail: '101 resets in 1 s (limit 100)' });
    expect(lines).toEqual([
      {
        level: 'warn',
        message: 'HTTP/2 session ended',
        fields: { event: 'http2-abuse', connectionId: 'c-9', listener: 'api', identity: null, kind: 'reset-rate', detail: '101 resets in 1 s (limit 100)' },
      },
    ]);
  });

  it('the returned function unsubscribes all three', () => {
    const { lines, logger } = fakeLogger();
    const stop = logHttpRequests(logger as unknown as Parameters<typeof logHttpRequests>[0]);
    stop();
    httpRequestChannel.publish(request({}));
    upstreamHealthChannel.publish({ listener: 'api', upstream: 'b', healthy: false, cause: 'active', detail: 'x' });
    http2AbuseChannel.publish({ listener: 'api', connectionId: 'c', identity: undefined, kind: 'k', detail: 'd' });
    expect(lines).toEqual([]);
    expect([httpRequestChannel.hasSubscribers, upstreamHealthChannel.hasSubscribers, http2AbuseChannel.hasSubscribers]).toEqual([false, false, false]);
  });
});
