/**
 * Which name a client claims (draft-ietf-dance-tls-clientid): a non-empty
 * `dane_clientid` extension names it; an empty or absent one means the name
 * is in the certificate, where only allowlisted SAN dNSNames are candidates
 * and more than one candidate is ambiguous. This is the one place a claimed
 * name is canonicalised and allowlisted; everything after it (the lookup,
 * the matching) takes the canonical name as it is. Pure.
 */
import type { Allowlist } from '../allowlist/allowlist.js';
import { canonicalizeClientName } from '../dane/name.js';

export type ClaimedName<S extends string = string> =
  | { readonly ok: true; readonly name: string; readonly source: S; readonly allowedBy: string }
  | { readonly ok: false; readonly reason: 'invalid-name' | 'not-allowed' | 'ambiguous-name' | 'no-name'; readonly detail: string; readonly source: S };

/** A name given as a whole (the extension, or the command line): canonical, and allowed when there is an allowlist. */
export type CheckedName =
  | { readonly ok: true; readonly name: string; readonly allowedBy: string | undefined }
  | { readonly ok: false; readonly reason: 'invalid-name' | 'not-allowed'; readonly detail: string; readonly name: string | undefined };

/** Canonicalise `raw`; then, when `allowlist` is given, refuse a name it does not allow (before any DNS query). */
export function checkName(raw: string, allowlist: Pick<Allowlist, 'match'> | undefined): CheckedName {
  const canonical = canonicalizeClientName(raw);
  if (!canonical.ok) return { ok: false, reason: 'invalid-name', detail: canonical.reason, name: undefined };
  if (allowlist === undefined) return { ok: true, name: canonical.name, allowedBy: undefined };
  const allowedBy = allowlist.match(canonical.name);
  if (allowedBy === undefined) return { ok: false, reason: 'not-allowed', detail: `${canonical.name} is not on the allowlist`, name: canonical.name };
  return { ok: true, name: canonical.name, allowedBy };
}

/** The name from a non-empty `dane_clientid` extension (of the ClientHello or the Certificate message), checked against the allowlist (before any DNS query). */
export function nameFromExtension<S extends string>(raw: string, allowlist: Pick<Allowlist, 'match'>, source: S): ClaimedName<S> {
  const checked = checkName(raw, allowlist);
  if (!checked.ok) return { ok: false, reason: checked.reason, detail: checked.reason === 'invalid-name' ? `dane_clientid: ${checked.detail}` : checked.detail, source };
  return { ok: true, name: checked.name, source, allowedBy: checked.allowedBy ?? checked.name };
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
export function nameFromCertificate(dnsNames: readonly string[], allowlist: Pick<Allowlist, 'match'>): ClaimedName<'san'> {
  const candidates = new Map<string, string>();
  for (const dnsName of dnsNames) {
    const checked = checkName(dnsName, allowlist);
    if (checked.ok && checked.allowedBy !== undefined) candidates.set(checked.name, checked.allowedBy);
  }
  if (candidates.size === 0) {
    return dnsNames.length === 0
      ? { ok: false, reason: 'no-name', detail: 'no dane_clientid and no SAN dNSName in the certificate', source: 'san' }
      : { ok: false, reason: 'not-allowed', detail: `no SAN dNSName of the certificate is on the allowlist (${describeSanNames(dnsNames)})`, source: 'san' };
  }
  if (candidates.size > 1) {
    return {
      ok: false,
      reason: 'ambiguous-name',
      detail: `${candidates.size} allowlisted SAN dNSNames (${[...candidates.keys()].slice(0, 4).join(', ')}); send dane_clientid to choose`,
      source: 'san',
    };
  }
  const [[name, allowedBy]] = [...candidates] as [[string, string]];
  return { ok: true, name, source: 'san', allowedBy };
}
