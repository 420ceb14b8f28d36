import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Allowlist, AllowlistError, canonicalizePattern } from '../../src/allowlist/allowlist.js';

describe('canonicalizePattern', () => {
  it.each([
    ['Sensor7._Device.Example.COM', { ok: true, pattern: 'sensor7._device.example.com' }],
    ['sensor7._device.example.com.', { ok: true, pattern: 'sensor7._device.example.com' }],
    ['*._device.example.com', { ok: true, pattern: '*._device.example.com' }],
    ['*.EXAMPLE.com', { ok: true, pattern: '*.example.com' }],
    ['*', { ok: false, reason: "'*' alone would allow every name; list names or '*.suffix' patterns" }],
    ['*.com', { ok: false, reason: 'name has a single label; a client name needs at least two' }],
    ['a.*.example.com', { ok: false, reason: "a wildcard is only allowed as the whole first label, as in '*.example.com'" }],
    ['*foo.example.com', { ok: false, reason: "a wildcard is only allowed as the whole first label, as in '*.example.com'" }],
    ['**.example.com', { ok: false, reason: "a wildcard is only allowed as the whole first label, as in '*.example.com'" }],
    ['bad name.example.com', { ok: false, reason: 'name contains a space or control character at position 3' }],
    ['', { ok: false, reason: 'name is empty' }],
  ])('%s', (input, expected) => {
    expect(canonicalizePattern(input)).toEqual(expected);
  });
});

describe('Allowlist.match', () => {
  const list = Allowlist.fromList(['exact.example.com', '*._device.example.com', '*.fleet.example.net', 'Upper.Example.Org'], 'routes[0].allow');
  it.each([
    ['exact.example.com', 'exact.example.com'],
    ['upper.example.org', 'upper.example.org'],
    ['sensor7._device.example.com', '*._device.example.com'],
    ['a.b.c._device.example.com', '*._device.example.com'],
    ['x.y.fleet.example.net', '*.fleet.example.net'],
    // Strictly below: the suffix itself is not matched by '*.suffix'.
    ['_device.example.com', undefined],
    ['fleet.example.net', undefined],
    ['other.example.com', undefined],
    ['sub.exact.example.com', undefined],
    ['device.example.com', undefined],
    ['xfleet.example.net', undefined],
    ['sensor7._device.example.com.evil.test', undefined],
  ])('%s -> %s', (name, expected) => {
    expect(list.match(name)).toBe(expected);
    expect(list.allows(name)).toBe(expected !== undefined);
  });

  it('deduplicates canonical patterns', () => {
    expect(Allowlist.fromList(['a.example.com', 'A.example.com.', '*.x.example.com'], 'allow').patterns).toEqual(['a.example.com', '*.x.example.com']);
  });

  it('matches in O(labels): 200,000 patterns, lookups still use only set probes', () => {
    const patterns = Array.from({ length: 200_000 }, (_, i) => (i % 2 ? `*.zone${i}.example.com` : `host${i}.example.com`));
    const big = Allowlist.fromList(patterns, 'allow');
    expect(big.size).toBe(200_000);
    expect(big.match('host199998.example.com')).toBe('host199998.example.com');
    expect(big.match('a.b.zone199999.example.com')).toBe('*.zone199999.example.com');
    expect(big.match('host1.example.com')).toBe(undefined);
  });
});

describe('Allowlist sources', () => {
  it('names the key path and position of a bad pattern in a config list', () => {
    expect(() => Allowlist.fromList(['ok.example.com', 'bad..example.com'], 'listeners[0].routes[1].allow')).toThrow(
      new AllowlistError('listeners[0].routes[1].allow, line 2: invalid allowlist pattern "bad..example.com": label 2 is empty'),
    );
  });

  it('reads a file with comments and blank lines, and names the line of a bad pattern', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dancegate-allow-'));
    try {
      const good = join(dir, 'good.txt');
      await writeFile(good, '# devices\n\n*._device.example.com   # all of them\nadmin.example.com\r\n');
      expect((await Allowlist.fromFile(good)).patterns).toEqual(['*._device.example.com', 'admin.example.com']);
      const bad = join(dir, 'bad.txt');
      await writeFile(bad, 'a.example.com\n# comment\nb.*.example.com\n');
      await expect(Allowlist.fromFile(bad)).rejects.toThrow(`${bad}, line 3: invalid allowlist pattern "b.*.example.com": a wildcard is only allowed as the whole first label, as in '*.example.com'`);
      await expect(Allowlist.fromFile(join(dir, 'missing.txt'))).rejects.toThrow(`cannot read allowlist file ${join(dir, 'missing.txt')}: ENOENT`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('every bad pattern is reported', () => {
  it('names each bad line, in order, and keeps the good ones out of the message', () => {
    const err = (() => {
      try {
        Allowlist.fromText('a.example.com\nbad..example.com\n*\n# ok\nb.*.example.com\n', 'allow.txt');
      } catch (e) {
        return e;
      }
      throw new Error('expected an AllowlistError');
    })();
    expect(err).toBeInstanceOf(AllowlistError);
    expect((err as AllowlistError).problems).toEqual([
      'allow.txt, line 2: invalid allowlist pattern "bad..example.com": label 2 is empty',
      "allow.txt, line 3: invalid allowlist pattern \"*\": '*' alone would allow every name; list names or '*.suffix' patterns",
      'allow.txt, line 5: invalid allowlist pattern "b.*.example.com": a wildcard is only allowed as the whole first label, as in \'*.example.com\'',
    ]);
    expect((err as AllowlistError).message).toBe((err as AllowlistError).problems.join('\n'));
  });

  it.each([
    [20, 20, undefined],
    [21, 21, 'allow: and 1 more bad line'],
    [1000, 21, 'allow: and 980 more bad lines'],
  ])('%i bad lines give %i problems, the last %s', (bad, listed, last) => {
    const patterns = Array.from({ length: bad }, (_, i) => `bad${i}..example.com`);
    let problems: readonly string[] = [];
    try {
      Allowlist.fromList(patterns, 'allow');
    } catch (e) {
      problems = (e as AllowlistError).problems;
    }
    expect(problems).toHaveLength(listed);
    expect(problems[0]).toBe('allow, line 1: invalid allowlist pattern "bad0..example.com": label 2 is empty');
    if (last !== undefined) expect(problems[listed - 1]).toBe(last);
    else expect(problems[listed - 1]).toBe(`allow, line ${bad}: invalid allowlist pattern "bad${bad - 1}..example.com": label 2 is empty`);
  });
});
