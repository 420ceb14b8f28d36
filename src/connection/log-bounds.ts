/**
 * Bounding text that reaches the logs. Much of what a decision record
 * carries comes from the client (SNI, names from the certificate or the
 * dane_clientid extension, parser and TLS error texts): without caps one
 * hostile connection writes a line as long as its certificate. Pure.
 */

/** The marker that ends cut text: `…(+N bytes)`, N the UTF-8 bytes left out (at most 22 bytes). */
export const truncationMarker = (omittedBytes: number): string => `…(+${omittedBytes} bytes)`;

/**
 * Characters shown escaped: C0 controls, DEL, C1 controls, the line/paragraph
 * separators, and lone surrogates (which JSON would emit as \uXXXX). An
 * escape costs 4 bytes in the text (6 once JSON escapes the backslash), so a
 * cap on the text also caps the log line.
 */
// With the u flag a surrogate range matches only lone surrogates (pairs are one code point).
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\ud800-\udfff]/gu;

function escapeUnprintable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * `text` with unprintable characters escaped and, when that is longer than
 * `maxBytes` bytes of UTF-8, cut (never inside a character) and ended with
 * the truncation marker, the whole at most `maxBytes` bytes (or just the
 * marker, for a limit smaller than the marker). Bounding bounded text
 * changes nothing.
 */
export function boundText(text: string, maxBytes: number): string {
  if (!Number.isInteger(maxBytes) || maxBytes < 0) throw new RangeError(`maxBytes must be a non-negative integer, got ${maxBytes}`);
  // Cheap exit for the common case: a short printable ASCII text.
  if (text.length <= maxBytes && /^[\x20-\x7e]*$/.test(text)) return text;
  const clean = escapeUnprintable(text);
  const bytes = Buffer.from(clean, 'utf8');
  if (bytes.length <= maxBytes) return clean;
  // Room for the marker: its longest form (everything omitted) bounds every shorter one.
  let cut = Math.max(0, maxBytes - Buffer.byteLength(truncationMarker(bytes.length)));
  // Back up to the start of a UTF-8 sequence (continuation bytes are 10xxxxxx).
  while (cut > 0 && ((bytes[cut] ?? 0) & 0xc0) === 0x80) cut--;
  return `${bytes.toString('utf8', 0, cut)}${truncationMarker(bytes.length - cut)}`;
}

/**
 * A list for a log message: at most `maxItems` items, each bounded to
 * `maxItemBytes`, joined with ", ", then "(+N more)" when items were left out.
 */
export function boundList(items: readonly string[], maxItems: number, maxItemBytes: number): string {
  const shown = items.slice(0, Math.max(0, maxItems)).map((item) => boundText(item, maxItemBytes));
  const more = items.length - shown.length;
  return more > 0 ? `${shown.join(', ')}${shown.length > 0 ? ' ' : ''}(+${more} more)` : shown.join(', ');
}
