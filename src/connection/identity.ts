/**
 * Which name a client claims (draft-ietf-dance-tls-clientid): a non-empty
 * `dane_clientid` extension names it; an empty or absent one means the name
 * is in the certificate, where only allowlisted SAN dNSNames are candidates
 * and more than one candidate is ambiguous. Pure.
 */
import type { Allowlist } from '../allowlist/allowlist.js';
import { canonicalizeClientName } from '../dane/name.js';

export type NameSource = 'extension' | 'certificate';

export type ClaimedName =
  | { readonly ok: true; readonly name: string; readonly source: NameSource; readonly allowedBy: string }
  | { readonly ok: false; readonly reason: 'invalid-name' | 'not-allowed' | 'ambiguous-name' | 'no-name'; readonly detail: string; readonly source: NameSource };

/** The name from a non-empty `dane_clientid` extension, checked against the allowlist (before any DNS query). */
export function nameFromExtension(raw: string, allowlist: Pick<Allowlist, 'match'>): ClaimedName {
  const canonical = canonicalizeClientName(raw);
  if (!canonical.ok) return { ok: false, reason: 'invalid-name', detail: `dane_clientid: ${canonical.reason}`, source: 'extension' };
  const allowedBy = allowlist.match(canonical.name);
  if (allowedBy === undefined) {
    return { ok: false, reason: 'not-allowed', detail: `${canonical.name} is not on the allowlist`, source: 'extension' };
  }
  return { ok: true, name: canonical.name, source: 'extension', allowedBy };
}

/** Most SAN names quoted in a refusal's detail, and most characters of each. */
const DETAIL_NAMES = 4;
const DETAIL_NAME_CHARS = 64;

/**
 * SAN names for a log detail: at most DETAIL_NAMES, each cut to
 * DETAIL_NAME_CHARS; a name with anything but name characters (a quote, a
 * comma, a control byte: the client chose them) is JSON-quoted, so the list
 * stays unambiguous and printable.
 */
export function describeSanNames(dnsNames: readonly string[]): string {
  const shown = dnsNames.slice(0, DETAIL_NAMES).map((n) => {
    const cut = n.length > DETAIL_NAME_CHARS ? `${n.slice(0, DETAIL_NAME_CHARS)}...` : n;
    return /^[a-z0-9._*-]*$/.test(n) ? cut : JSON.stringify(cut);
  });
  const more = dnsNames.length > DETAIL_NAMES ? ` and ${dnsNames.length - DETAIL_NAMES} more` : '';
  return `${shown.join(', ')}${more}`;
}

/** The name from the certificate's SAN dNSNames: exactly one allowlisted candidate. */
export function nameFromCertificate(dnsNames: readonly string[], allowlist: Pick<Allowlist, 'match'>): ClaimedName {
  const candidates = new Map<string, string>();
  for (const dnsName of dnsNames) {
    const canonical = canonicalizeClientName(dnsName);
    if (!canonical.ok) continue;
    const allowedBy = allowlist.match(canonical.name);
    if (allowedBy !== undefined) candidates.set(canonical.name, allowedBy);
  }
  if (candidates.size === 0) {
    return dnsNames.length === 0
      ? { ok: false, reason: 'no-name', detail: 'no dane_clientid and no SAN dNSName in the certificate', source: 'certificate' }
      : { ok: false, reason: 'not-allowed', detail: `no SAN dNSName of the certificate is on the allowlist (${describeSanNames(dnsNames)})`, source: 'certificate' };
  }
  if (candidates.size > 1) {
    return {
      ok: false,
      reason: 'ambiguous-name',
      detail: `${candidates.size} allowlisted SAN dNSNames (${[...candidates.keys()].slice(0, 4).join(', ')}); send dane_clientid to choose`,
      source: 'certificate',
    };
  }
  const [[name, allowedBy]] = [...candidates] as [[string, string]];
  return { ok: true, name, source: 'certificate', allowedBy };
}
