import { describe, expect, it } from 'vitest';
import { canonicalizeClientName, InvalidNameError, requireClientName } from '../../src/dane/name.js';

const label63 = 'a'.repeat(63);
// 63+1+63+1+63+1+61 = 253 characters
const name253 = `${label63}.${label63}.${label63}.${'b'.repeat(61)}`;

describe('canonicalizeClientName', () => {
  it.each([
    ['sensor7._device.example.com', 'sensor7._device.example.com'],
    ['Sensor7._DEVICE.Example.COM', 'sensor7._device.example.com'],
    ['device73.example.com.', 'device73.example.com'],
    ['_smtp-client.device1.example.com', '_smtp-client.device1.example.com'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
    [`${label63}.example`, `${label63}.example`],
    [name253, name253],
    [`${name253}.`, name253],
    ['-leading-hyphen.example.com', '-leading-hyphen.example.com'],
  ])('accepts %s as %s', (input, expected) => {
    expect(canonicalizeClientName(input)).toEqual({ ok: true, name: expected });
  });

  it.each([
    ['', 'name is empty'],
    ['.', 'name is the root'],
    ['localhost', 'name has a single label; a client name needs at least two'],
    ['bücher.example', 'name contains a non-ASCII character at position 1; use the A-label (xn--) form'],
    ['a b.example', 'name contains a space or control character at position 1'],
    ['a\tb.example', 'name contains a space or control character at position 1'],
    ['a..example', 'label 2 is empty'],
    ['.a.example', 'label 1 is empty'],
    ['a.example..', 'label 3 is empty'],
    [`${'a'.repeat(64)}.example`, 'label 1 is 64 characters long; the limit is 63'],
    [`${name253}b`, 'name is longer than 253 characters'],
    ['x'.repeat(10_000), 'name is longer than 253 characters'],
    ['*.example.com', "label 1 contains '*'; only letters, digits, '-' and '_' are allowed"],
    ['a\\.b.example', "label 1 contains '\\'; only letters, digits, '-' and '_' are allowed"],
    ['host:443.example', "label 1 contains ':'; only letters, digits, '-' and '_' are allowed"],
  ])('rejects %j: %s', (input, reason) => {
    expect(canonicalizeClientName(input)).toEqual({ ok: false, reason });
  });

  it('requireClientName throws InvalidNameError with the input and reason', () => {
    expect(() => requireClientName('a..b')).toThrow(new InvalidNameError('a..b', 'label 2 is empty'));
    expect(() => requireClientName('a..b')).toThrow('invalid client name "a..b": label 2 is empty');
    expect(requireClientName('A.B')).toBe('a.b');
  });
});
