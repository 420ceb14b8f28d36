/**
 * src/connection/identity.ts with SAN names an unauthenticated client chose
 * (issue 10, finding 3): the refusal detail stays short, printable and
 * unambiguous whatever the names hold.
 */
import { describe, expect, it } from 'vitest';
import { Allowlist } from '../../src/allowlist/allowlist.js';
import { describeSanNames, nameFromCertificate } from '../../src/connection/identity.js';

const allow = Allowlist.fromList(['*._device.example.test'], 'allow');
const long = `${'a'.repeat(70)}.test`;

describe('describeSanNames', () => {
  it.each<[string, string[], string]>([
    ['no names', [], ''],
    ['plain names are shown as they are', ['www.example.test', '*.wild.test'], 'www.example.test, *.wild.test'],
    ['a name with a quote and a comma is JSON-quoted', ['"0,y.example.test', 'b.test'], '"\\"0,y.example.test", b.test'],
    ['control bytes are escaped', ['a\u0000b\nc.test'], '"a\\u0000b\\nc.test"'],
    ['at most 4 names, then a count', ['a.test', 'b.test', 'c.test', 'd.test', 'e.test', 'f.test'], 'a.test, b.test, c.test, d.test and 2 more'],
    ['a long name is cut to 64 characters', [long], `${'a'.repeat(64)}...`],
    ['a long odd name is cut, then quoted', [`"${long}`], JSON.stringify(`"${'a'.repeat(63)}...`)],
  ])('%s', (_label, names, expected) => {
    expect(describeSanNames(names)).toBe(expected);
  });

  it('100 hostile names of 60 KB make a detail of a few hundred characters', () => {
    const names = Array.from({ length: 100 }, (_, i) => `"${i},${'y'.repeat(600)}.example.test`);
    const result = nameFromCertificate(names, allow);
    expect(result.ok).toBe(false);
    const detail = result.ok ? '' : result.detail;
    const shown = [0, 1, 2, 3].map((i) => JSON.stringify(`${(names[i] as string).slice(0, 64)}...`)).join(', ');
    expect(detail).toBe(`no SAN dNSName of the certificate is on the allowlist (${shown} and 96 more)`);
    expect(detail.length).toBeLessThan(400);
  });

  it('names with quotes are never candidates, even next to an allowlisted one', () => {
    expect(nameFromCertificate(['"x,y._device.example.test', 'ok._device.example.test'], allow)).toEqual({
      ok: true,
      name: 'ok._device.example.test',
      source: 'san',
      allowedBy: '*._device.example.test',
    });
  });
});
