/**
 * Choosing by SNI: among items with `serverNames` (exact names or
 * `*.suffix`, any depth below), the exact match wins, then the longest
 * wildcard suffix, then the default (an item with no serverNames, or the
 * first). Pure.
 */
export interface ServesNames {
  readonly serverNames: readonly string[];
}

export function selectBySni<T extends ServesNames>(items: readonly T[], sni: string | undefined, fallbackToFirst: boolean): T | undefined {
  const fallback = items.find((i) => i.serverNames.length === 0) ?? (fallbackToFirst ? items[0] : undefined);
  if (sni === undefined) return fallback;
  const name = sni.toLowerCase();
  const exact = items.find((i) => i.serverNames.includes(name));
  if (exact) return exact;
  for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
    const wildcard = `*.${name.slice(dot + 1)}`;
    const match = items.find((i) => i.serverNames.includes(wildcard));
    if (match) return match;
  }
  return fallback;
}
