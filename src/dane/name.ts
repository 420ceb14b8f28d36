/**
 * Client names: the full owner name of a client's TLSA RRset
 * (draft-ietf-dance-client-auth). One canonical form is used everywhere:
 * ASCII (A-labels only), lowercase, no trailing dot, labels of 1..63
 * letters/digits/hyphen/underscore, at least two labels, at most 253
 * characters in all.
 */

export const MAX_NAME_LENGTH = 253;
export const MAX_LABEL_LENGTH = 63;

export type NameResult = { ok: true; name: string } | { ok: false; reason: string };

const LABEL_CHARS = /^[a-z0-9_-]+$/;

/** Canonicalise a client name, or say exactly why it is not one. Pure. */
export function canonicalizeClientName(input: string): NameResult {
  if (input.length === 0) return { ok: false, reason: 'name is empty' };
  // Checked before anything else so that a long hostile string costs O(1).
  if (input.length > MAX_NAME_LENGTH + 1) {
    return { ok: false, reason: `name is longer than ${MAX_NAME_LENGTH} characters` };
  }
  for (let i = 0; i < input.length; i++) {
    const code = input.charCodeAt(i);
    if (code > 0x7e || code < 0x21) {
      return code > 0x7f
        ? { ok: false, reason: `name contains a non-ASCII character at position ${i}; use the A-label (xn--) form` }
        : { ok: false, reason: `name contains a space or control character at position ${i}` };
    }
  }
  let name = input.toLowerCase();
  // A single trailing dot is the root label of a fully qualified name.
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0) return { ok: false, reason: 'name is the root' };
  if (name.length > MAX_NAME_LENGTH) {
    return { ok: false, reason: `name is longer than ${MAX_NAME_LENGTH} characters` };
  }
  const labels = name.split('.');
  if (labels.length < 2) return { ok: false, reason: 'name has a single label; a client name needs at least two' };
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i] as string;
    if (label.length === 0) return { ok: false, reason: `label ${i + 1} is empty` };
    if (label.length > MAX_LABEL_LENGTH) {
      return { ok: false, reason: `label ${i + 1} is ${label.length} characters long; the limit is ${MAX_LABEL_LENGTH}` };
    }
    if (!LABEL_CHARS.test(label)) {
      const bad = [...label].find((c) => !/[a-z0-9_-]/.test(c));
      return { ok: false, reason: `label ${i + 1} contains '${bad}'; only letters, digits, '-' and '_' are allowed` };
    }
  }
  return { ok: true, name };
}

export class InvalidNameError extends Error {
  constructor(
    readonly input: string,
    readonly reason: string,
  ) {
    super(`invalid client name ${JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}…` : input)}: ${reason}`);
    this.name = 'InvalidNameError';
  }
}

/** As canonicalizeClientName, throwing InvalidNameError. For configuration and CLI input. */
export function requireClientName(input: string): string {
  const result = canonicalizeClientName(input);
  if (!result.ok) throw new InvalidNameError(input, result.reason);
  return result.name;
}
