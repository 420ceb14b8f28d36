import { describe, expect, it } from 'vitest';
import { canonicalizeClientName, InvalidNameError, MAX_LABEL_LENGTH, MAX_NAME_LENGTH, requireClientName } from '../../src/dane/name.js';

const l63 = 'a'.repeat(63);
const l64 = 'a'.repeat(64);
// 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters.
const name253 = `${l63}.${l63}.${l63}.${'b'.repeat(61)}`;
const name254 = `${name253}c`;
const name252 = name253.slice(0, -1);

const charReason = (label: number, c: string): string => `label ${label} contains '${c}'; only letters, digits, '-' and '_' are allowed`;

describe('canonicalizeClientName: fixtures are what they claim', () => {
  it.each([
    ['name252', name252, 252],
    ['name253', name253, 253],
    ['name254', name254, 254],
    ['l63', l63, 63],
    ['l64', l64, 64],
  ])('%s has %i characters', (_label, value, length) => {
    expect(value.length).toBe(length);
  });

  it('exports the limits of the note', () => {
    expect([MAX_NAME_LENGTH, MAX_LABEL_LENGTH]).toEqual([253, 63]);
  });
});

describe('canonicalizeClientName accepts', () => {
  it.each<[string, string, string]>([
    ['freeform name', 'device73.example.com', 'device73.example.com'],
    ['service-specific name with underscore', '_smtp-client.device1.example.com', '_smtp-client.device1.example.com'],
    ['IoT device name', 'sensor7._device.example.com', 'sensor7._device.example.com'],
    ['upper case folded', 'Sensor7._DEVICE.Example.COM', 'sensor7._device.example.com'],
    ['all upper case with trailing dot', 'DEVICE73.EXAMPLE.COM.', 'device73.example.com'],
    ['one trailing dot stripped', 'device73.example.com.', 'device73.example.com'],
    ['A-label', 'xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['A-label upper case', 'XN--BCHER-KVA.Example', 'xn--bcher-kva.example'],
    ['two labels', 'a.b', 'a.b'],
    ['digits only labels', '123.456', '123.456'],
    ['hyphens at label edges', '-lead.trail-.example', '-lead.trail-.example'],
    ['underscore-only label', '_.example', '_.example'],
    ['63-character label', `${l63}.example`, `${l63}.example`],
    ['63-character last label', `example.${l63}`, `example.${l63}`],
    ['252-character name', name252, name252],
    ['253-character name', name253, name253],
    ['253-character name plus trailing dot (254 input)', `${name253}.`, name253],
  ])('%s: %j -> %j', (_label, input, expected) => {
    expect(canonicalizeClientName(input)).toEqual({ ok: true, name: expected });
  });
});

describe('canonicalizeClientName rejects', () => {
  it.each<[string, string, string]>([
    ['empty input', '', 'name is empty'],
    ['only the root', '.', 'name is the root'],
    ['two dots', '..', 'label 1 is empty'],
    ['single label', 'localhost', 'name has a single label; a client name needs at least two'],
    ['single label with trailing dot', 'example.', 'name has a single label; a client name needs at least two'],
    // U-labels and other non-ASCII: the reason must tell the user to use the A-label.
    ['U-label', 'bücher.example', 'name contains a non-ASCII character at position 1; use the A-label (xn--) form'],
    ['U-label in last label', 'device.bücher', 'name contains a non-ASCII character at position 8; use the A-label (xn--) form'],
    ['ideographic full stop as separator', 'a\u3002example', 'name contains a non-ASCII character at position 1; use the A-label (xn--) form'],
    ['Kelvin sign (lowercases to ASCII k)', '\u212a.example', 'name contains a non-ASCII character at position 0; use the A-label (xn--) form'],
    ['dotted capital I (lowercases to i + combining dot)', '\u0130.example', 'name contains a non-ASCII character at position 0; use the A-label (xn--) form'],
    ['zero-width space', 'a\u200b.example', 'name contains a non-ASCII character at position 1; use the A-label (xn--) form'],
    ['non-breaking space', 'a\u00a0.example', 'name contains a non-ASCII character at position 1; use the A-label (xn--) form'],
    // Spaces and control characters.
    ['space', 'a b.example', 'name contains a space or control character at position 1'],
    ['leading space', ' a.example', 'name contains a space or control character at position 0'],
    ['trailing space', 'a.example ', 'name contains a space or control character at position 9'],
    ['tab', 'a\tb.example', 'name contains a space or control character at position 1'],
    ['NUL', 'a\u0000.example', 'name contains a space or control character at position 1'],
    ['trailing newline', 'a.example\n', 'name contains a space or control character at position 9'],
    ['carriage return', 'a.example\r', 'name contains a space or control character at position 9'],
    ['DEL (0x7f, an ASCII control character)', 'a\u007fb.example', 'name contains a space or control character at position 1'],
    // Empty labels.
    ['leading dot', '.a.example', 'label 1 is empty'],
    ['double dot inside', 'a..example', 'label 2 is empty'],
    ['two trailing dots (only one is stripped)', 'a.example..', 'label 3 is empty'],
    // Lengths.
    ['64-character first label', `${l64}.example`, 'label 1 is 64 characters long; the limit is 63'],
    ['64-character second label', `example.${l64}`, 'label 2 is 64 characters long; the limit is 63'],
    ['254-character name', name254, 'name is longer than 253 characters'],
    ['254-character name plus trailing dot', `${name254}.`, 'name is longer than 253 characters'],
    ['253-character name plus two dots', `${name253}..`, 'name is longer than 253 characters'],
    ['hostile 100000-character input', 'x'.repeat(100_000), 'name is longer than 253 characters'],
    // Characters that are not letters, digits, hyphen, underscore.
    ['wildcard', '*.example.com', charReason(1, '*')],
    ['wildcard in the middle', 'a.*.example', charReason(2, '*')],
    ['IoT wildcard owner', '*._device.example.com', charReason(1, '*')],
    ['escaped dot', 'a\\.b.example', charReason(1, '\\')],
    ['decimal escape', '\\065.example', charReason(1, '\\')],
    ['port suffix', 'device.example:443', charReason(2, ':')],
    ['at sign (email-like)', 'user@example.com', charReason(1, '@')],
    ['slash', 'a/b.example', charReason(1, '/')],
    ['quote', '"a".example', charReason(1, '"')],
    ['plus', 'a+b.example', charReason(1, '+')],
  ])('%s: %j', (_label, input, reason) => {
    expect(canonicalizeClientName(input)).toEqual({ ok: false, reason });
  });
});

describe('requireClientName', () => {
  it.each([
    ['Device73.Example.COM.', 'device73.example.com'],
    ['_smtp-client.device1.example.com', '_smtp-client.device1.example.com'],
  ])('returns the canonical name for %j', (input, expected) => {
    expect(requireClientName(input)).toBe(expected);
  });

  it.each<[string, string, string, string]>([
    ['space', 'Bad Name.example', 'name contains a space or control character at position 3', 'invalid client name "Bad Name.example": name contains a space or control character at position 3'],
    ['single label', 'localhost', 'name has a single label; a client name needs at least two', 'invalid client name "localhost": name has a single label; a client name needs at least two'],
    ['long input, truncated to 80 characters in the message', 'x'.repeat(300), 'name is longer than 253 characters', `invalid client name "${'x'.repeat(80)}…": name is longer than 253 characters`],
  ])('throws InvalidNameError (%s)', (_label, input, reason, message) => {
    let caught: unknown;
    try {
      requireClientName(input);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidNameError);
    const error = caught as InvalidNameError;
    expect([error.name, error.input, error.reason, error.message]).toEqual(['InvalidNameError', input, reason, message]);
  });
});
