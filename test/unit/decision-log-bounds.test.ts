import { afterEach, describe, expect, it, vi } from 'vitest';
import { boundDecisionRecord, DECISION_FIELD_LIMITS, jsonLineSink, loggerSink, type DecisionRecord } from '../../src/connection/decision-log.js';
import { boundList, boundText, truncationMarker } from '../../src/connection/log-bounds.js';

const RECORD: DecisionRecord = {
  time: '2026-12-01T13:00:00.000Z',
  connectionId: 'ab12cd-1',
  listener: 'mqtt',
  route: 'default',
  source: '127.0.0.1:40000',
  sni: 'broker.example.test',
  tlsVersion: 'TLSv1.3',
  claimedName: 'nas1._device.example.test',
  nameSource: 'san',
  outcome: 'refused',
  reason: 'not-allowed',
  detail: 'no SAN dNSName of the certificate is on the allowlist (a.example)',
  tlsa: '3 1 1',
  cache: 'miss',
  durationsMs: { clientHello: 1, handshake: 2, dns: 3, total: 7 },
};

describe('boundText', () => {
  it.each([
    ['short printable text is kept', 'abc', 10, 'abc'],
    ['exactly at the limit is kept', 'a'.repeat(20), 20, 'a'.repeat(20)],
    ['one byte over: cut so that text and marker fit the limit', 'a'.repeat(21), 20, `${'a'.repeat(6)}…(+15 bytes)`],
    ['a long text keeps its first bytes', 'x'.repeat(61_000), 40, `${'x'.repeat(23)}…(+60977 bytes)`],
    ['never cuts inside a character (é is 2 bytes)', 'é'.repeat(20), 31, `${'é'.repeat(8)}…(+24 bytes)`],
    ['never cuts inside a character (😀 is 4 bytes)', '😀'.repeat(10), 31, `${'😀'.repeat(4)}…(+24 bytes)`],
    ['control characters are escaped, and count', 'a\u0000b\nc', 100, 'a\\x00b\\x0ac'],
    ['C1, DEL and line separators are escaped', '\u007f\u0085\u2028', 100, '\\x7f\\x85\\u2028'],
    ['a lone surrogate is escaped, a pair is kept', 'a\ud800b😀', 100, 'a\\ud800b😀'],
    ['escapes are cut like any text', '\u0001'.repeat(10), 24, '\\x01\\x01\\x…(+30 bytes)'],
    ['a limit smaller than the marker keeps only the marker', 'abc', 0, '…(+3 bytes)'],
  ])('%s', (_label, text, max, expected) => {
    const bounded = boundText(text, max);
    expect(bounded).toBe(expected);
    // The bound: the limit, or the marker alone for a limit below it.
    expect(Buffer.byteLength(bounded)).toBeLessThanOrEqual(Math.max(max, Buffer.byteLength(truncationMarker(text.length * 6))));
    // Bounding bounded text changes nothing (when the limit has room for the marker).
    if (max >= 22) expect(boundText(bounded, max)).toBe(bounded);
  });

  it('refuses a bad limit', () => {
    expect(() => boundText('a', -1)).toThrow('maxBytes must be a non-negative integer, got -1');
  });
});

describe('boundList', () => {
  it.each([
    [[] as string[], 4, 10, ''],
    [['a', 'b'], 4, 10, 'a, b'],
    [['a', 'b', 'c', 'd', 'e', 'f'], 4, 10, 'a, b, c, d (+2 more)'],
    [['x'.repeat(40), 'b'], 4, 30, `${'x'.repeat(16)}…(+24 bytes), b`],
    [['a', 'b'], 0, 10, '(+2 more)'],
    [Array.from({ length: 2901 }, (_, i) => `n${i}.example`), 2, 64, 'n0.example, n1.example (+2899 more)'],
  ])('list case %#', (items, maxItems, maxBytes, expected) => {
    expect(boundList(items, maxItems, maxBytes)).toBe(expected);
  });
});

describe('boundDecisionRecord', () => {
  it('keeps an ordinary record unchanged', () => {
    expect(boundDecisionRecord(RECORD)).toStrictEqual(RECORD);
  });

  it('keeps undefined fields undefined', () => {
    const sparse: DecisionRecord = {
      ...RECORD,
      route: undefined,
      sni: undefined,
      tlsVersion: undefined,
      claimedName: undefined,
      nameSource: undefined,
      tlsa: undefined,
      cache: undefined,
      durationsMs: { total: 1 },
    };
    expect(boundDecisionRecord(sparse)).toStrictEqual(sparse);
  });

  it.each(Object.entries(DECISION_FIELD_LIMITS))('%s is cut to at most %i bytes, the marker included', (field, limit) => {
    const long = 'z'.repeat(limit + 1000);
    const bounded = boundDecisionRecord({ ...RECORD, [field]: long }) as unknown as Record<string, unknown>;
    const marker = truncationMarker(limit + 1000);
    const kept = limit - Buffer.byteLength(marker);
    expect(bounded[field]).toBe(`${'z'.repeat(kept)}${truncationMarker(limit + 1000 - kept)}`);
    expect(Buffer.byteLength(String(bounded[field]))).toBeLessThanOrEqual(limit);
    // Nothing else changed, and bounding again changes nothing.
    expect({ ...bounded, [field]: undefined }).toStrictEqual({ ...RECORD, [field]: undefined });
    expect(boundDecisionRecord(bounded as unknown as DecisionRecord)).toStrictEqual(bounded);
  });

  it('every limit leaves room for the longest marker', () => {
    expect(Math.min(...Object.values(DECISION_FIELD_LIMITS))).toBeGreaterThanOrEqual(Buffer.byteLength(truncationMarker(4_294_967_295)));
  });

  it('the limits: names keep every valid name whole (253), detail 1 KiB', () => {
    expect(DECISION_FIELD_LIMITS).toMatchObject({ sni: 253, claimedName: 253, route: 253, detail: 1024 });
  });

  it('a record with every text field hostile still makes a JSON line under 4 KiB', () => {
    const hostile = Object.fromEntries(Object.keys(DECISION_FIELD_LIMITS).map((k) => [k, '"\u0001'.repeat(30_000)]));
    const line = JSON.stringify(boundDecisionRecord({ ...RECORD, ...hostile } as DecisionRecord));
    expect(Buffer.byteLength(line)).toBeLessThan(4096 * 2);
    const plain = Object.fromEntries(Object.keys(DECISION_FIELD_LIMITS).map((k) => [k, 'é'.repeat(30_000)]));
    expect(Buffer.byteLength(JSON.stringify(boundDecisionRecord({ ...RECORD, ...plain } as DecisionRecord)))).toBeLessThan(4096);
  });

  it('drops fields the record type does not have and non-finite durations', () => {
    const odd = { ...RECORD, extra: 'x'.repeat(10_000), durationsMs: { total: Number.NaN, dns: Number.POSITIVE_INFINITY } } as unknown as DecisionRecord;
    expect(boundDecisionRecord(odd)).toStrictEqual({ ...RECORD, durationsMs: { total: 0 } });
  });
});

describe('the sinks write bounded records', () => {
  afterEach(() => vi.restoreAllMocks());
  const hostile: DecisionRecord = { ...RECORD, detail: `no SAN dNSName of the certificate is on the allowlist (${'a'.repeat(61_000)})` };
  const kept = 1024 - Buffer.byteLength(truncationMarker(hostile.detail.length));
  const boundedDetail = `${hostile.detail.slice(0, kept)}${truncationMarker(hostile.detail.length - kept)}`;

  it('jsonLineSink: one JSON line on stdout', () => {
    const lines: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    jsonLineSink(hostile);
    expect(lines).toHaveLength(1);
    expect(Buffer.byteLength(lines[0] ?? '')).toBeLessThan(2048);
    expect(JSON.parse(lines[0] ?? '')).toStrictEqual({ ...RECORD, detail: boundedDetail });
  });

  it('loggerSink: the fields handed to the logger', () => {
    const calls: Array<[object, string]> = [];
    loggerSink({ info: (fields, message) => calls.push([fields, message]) })(hostile);
    expect(calls).toHaveLength(1);
    const [fields, message] = calls[0] ?? [{}, ''];
    expect(message).toBe('connection decision');
    expect(fields).not.toHaveProperty('time');
    const { time: _time, ...rest } = RECORD;
    expect(fields).toStrictEqual({ ...rest, detail: boundedDetail });
    expect(Buffer.byteLength(JSON.stringify(fields))).toBeLessThan(2048);
  });
});
