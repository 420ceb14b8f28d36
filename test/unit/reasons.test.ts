/**
 * The reason catalog (src/reasons.ts) and the README's "Refusal reasons"
 * table: the table is parsed out of README.md and must equal the catalog
 * row by row, so neither can drift; and the catalog's own rules.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alertFor, REASONS, REFUSAL_REASONS, REQUEST_REFUSALS, TLS_ALERTS, type RefusalReason } from '../../src/reasons.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const HEADER = ['Reason', 'HTTP', 'Temporary', 'Penalty box', 'Alert before handshake', 'Meaning'];

/** A markdown table line as trimmed cells (whatever the column padding). */
const cells = (line: string): string[] =>
  line
    .trim()
    .replace(/^\||\|$/g, '')
    .split('|')
    .map((cell) => cell.trim());

/** The table's rows under `heading` ("### Refusal reasons" by default), as cells. */
function readmeTable(heading = 'Refusal reasons', header = HEADER): string[][] {
  const section = README.split(`\n### ${heading}\n`)[1];
  if (section === undefined) throw new Error(`README.md has no "### ${heading}" section`);
  const lines = section.split('\n');
  const start = lines.findIndex((line) => line.startsWith('|'));
  expect(cells(lines[start] ?? '')).toEqual(header);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(cells(line));
  }
  return rows;
}

const yesNo = (b: boolean): string => (b ? 'yes' : 'no');
const code = (s: string): string => `\`${s}\``;

describe('README: the Refusal reasons table', () => {
  it('equals the catalog, row by row, in catalog order', () => {
    const expected = REFUSAL_REASONS.map((r) => {
      const info = REASONS[r];
      return [code(r), String(info.http), yesNo(info.temporary), yesNo(info.penalized), info.alert === undefined ? '—' : code(info.alert), info.meaning];
    });
    expect(readmeTable()).toEqual(expected);
  });

  it('the Request refusal reasons table equals REQUEST_REFUSALS, row by row', () => {
    const expected = Object.entries(REQUEST_REFUSALS).map(([reason, info]) => [code(reason), String(info.status), info.meaning]);
    expect(readmeTable('Request refusal reasons', ['Reason', 'HTTP', 'Meaning'])).toEqual(expected);
  });

  it('the old hand-written reason lists are gone', () => {
    expect(README).not.toContain('Connection-level reasons, besides the verifier');
    expect(README).not.toMatch(/temporary \(`dns-timeout`, `dns-bogus`/);
  });
});

describe('the catalog', () => {
  it('every alert is a TLS_ALERTS name; alertFor gives its code, handshake_failure when none is named', () => {
    for (const reason of REFUSAL_REASONS) {
      const alert = REASONS[reason].alert;
      if (alert !== undefined) expect(Object.keys(TLS_ALERTS)).toContain(alert);
      expect(alertFor(reason)).toBe(TLS_ALERTS[alert ?? 'handshake_failure']);
    }
    expect(TLS_ALERTS).toEqual({ handshake_failure: 40, internal_error: 80, unrecognized_name: 112, certificate_required: 116, no_application_protocol: 120 });
  });

  it('temporary ⇔ HTTP 503, and a temporary refusal is never penalised', () => {
    for (const reason of REFUSAL_REASONS) {
      const info = REASONS[reason];
      expect([reason, info.http === 503]).toEqual([reason, info.temporary]);
      if (info.temporary) expect([reason, info.penalized]).toEqual([reason, false]);
    }
  });

  it('no DNS outcome is penalised (a resolver that does not validate must not ban clients)', () => {
    const dns = REFUSAL_REASONS.filter((r) => r.startsWith('dns-'));
    expect(dns).toEqual(['dns-no-tlsa', 'dns-insecure', 'dns-bogus', 'dns-timeout', 'dns-malformed', 'dns-server-error', 'dns-over-capacity']);
    for (const reason of dns) expect([reason, REASONS[reason].penalized]).toEqual([reason, false]);
  });

  it('the alerts before the handshake: unrecognized_name for no route, no_application_protocol for no ALPN in common, handshake_failure for a dane_clientid name refused', () => {
    const withAlert = REFUSAL_REASONS.filter((r) => REASONS[r].alert !== undefined).map((r) => [r, REASONS[r].alert]);
    expect(withAlert).toEqual([
      ['no-route', 'unrecognized_name'],
      ['no-application-protocol', 'no_application_protocol'],
      ['invalid-name', 'handshake_failure'],
      ['not-allowed', 'handshake_failure'],
    ]);
  });

  it('every reason has a meaning in words, and the list holds each reason once', () => {
    expect(new Set(REFUSAL_REASONS).size).toBe(REFUSAL_REASONS.length);
    for (const reason of REFUSAL_REASONS) expect(REASONS[reason as RefusalReason].meaning.length).toBeGreaterThan(10);
  });
});
