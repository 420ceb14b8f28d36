/**
 * The validation probe of a configuration (src/lookup/validation-probe.ts)
 * as the serving processes ask it: the bare DNS TLSA query of the
 * configured resolver (no cache, no gate, no local file), the probe names
 * from `resolver.validationProbe.name` or derived from the allowlists.
 */
import type { DancegateConfig } from '../config/types.js';
import { buildDnsQuery } from '../lookup/build.js';
import type { TlsaResolver } from '../lookup/tlsa-resolver.js';
import { probeAll, probeNames } from '../lookup/validation-probe.js';
import type { Probe } from './resolver-check.js';

/** What the configuration says to do at start when the resolver does not validate (resolver.validationProbe.atStart). */
export function validationAtStart(config: DancegateConfig): 'refuse' | 'warn' {
  return config.resolver.validationProbe.atStart;
}

/** One DNS query object per configuration (a reload brings a new one). */
const queries = new WeakMap<DancegateConfig, TlsaResolver | undefined>();

export const probeResolver: Probe = async (config) => {
  const names = probeNames(config);
  if (names.length === 0) return { ok: true, detail: 'validation not checked: no allowlist pattern to derive a probe name from; set resolver.validationProbe.name' };
  if (!queries.has(config)) queries.set(config, buildDnsQuery(config.resolver));
  return probeAll(queries.get(config), names);
};
