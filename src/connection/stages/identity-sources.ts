/**
 * Where a client's name may come from, in order of precedence (the names
 * of IDENTITY_SOURCE_NAMES in config/types.ts; a route enables a subset).
 * A new source is one file and one line here.
 */
import type { IdentitySourceName } from '../../config/types.js';
import { certificateExtensionSource } from './claim-certificate-extension.js';
import { clientHelloExtensionSource } from './claim-clienthello-extension.js';
import type { IdentitySource } from './claim.js';
import { sanSource } from './claim-san.js';

export const IDENTITY_SOURCES = [certificateExtensionSource, clientHelloExtensionSource, sanSource] as const;

/** The source a decision record names. */
export type NameSource = (typeof IDENTITY_SOURCES)[number]['source'];

/** Each route's list, built once per configuration (a route's `sources` array lives as long as its generation). */
const chosen = new WeakMap<readonly IdentitySourceName[], readonly IdentitySource<NameSource>[]>();

/** The sources a route enables, in precedence order. */
export function sourcesOf(enabled: readonly IdentitySourceName[]): readonly IdentitySource<NameSource>[] {
  let sources = chosen.get(enabled);
  if (sources === undefined) {
    sources = IDENTITY_SOURCES.filter((source) => enabled.includes(source.source));
    chosen.set(enabled, sources);
  }
  return sources;
}
