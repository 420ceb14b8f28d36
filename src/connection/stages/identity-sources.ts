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

/** The sources a route enables, in precedence order. */
export function sourcesOf(enabled: readonly IdentitySourceName[]): readonly IdentitySource<NameSource>[] {
  return IDENTITY_SOURCES.filter((source) => enabled.includes(source.source));
}
