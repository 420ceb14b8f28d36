/**
 * Does the configured resolver validate DNSSEC? dancegate trusts the AD bit
 * of its resolver; behind one that does not validate, every answer is
 * 'insecure' and every client is refused. The probe asks for the TLSA
 * records of a name in a signed zone: a validated answer, or a validated
 * denial (secure NXDOMAIN/NODATA), shows the resolver validates.
 */
import { canonicalizeClientName } from '../dane/name.js';
import type { LookupOutcome } from './tlsa-answer.js';
import type { TlsaResolver } from './tlsa-resolver.js';

export type ProbeResult = { readonly ok: true; readonly detail: string } | { readonly ok: false; readonly problem: 'not-validating' | 'unreachable' | 'error'; readonly message: string };

/** The first label of a probe name derived from an allowlist. */
export const PROBE_LABEL = '_dancegate-probe';

/** What defaultProbeName reads of the configuration (src/config's DancegateConfig has this shape). */
export interface ProbeNameSource {
  readonly resolver: { readonly validationProbe?: { readonly name?: string | undefined } | undefined };
  readonly listeners: ReadonlyArray<{ readonly routes: ReadonlyArray<{ readonly allowlist: { readonly patterns: readonly string[] } }> }>;
}

/** Most names probed when they are derived from the allowlists (one per distinct allowlisted zone suffix). */
export const MAX_PROBE_NAMES = 8;

/**
 * The names to probe: `resolver.validationProbe.name` alone when set; else
 * one name under the fixed part of each distinct allowlist pattern (at most
 * MAX_PROBE_NAMES, in configuration order): `*._device.example.com` →
 * `_dancegate-probe._device.example.com`, an exact `a.example.com` →
 * `_dancegate-probe.a.example.com`. A validating resolver answers each with
 * a secure denial when its zone is signed. Several, because whoever runs a
 * client zone can make a name in it look unsigned (an unsigned delegation):
 * one such zone must not decide that the resolver does not validate (see
 * probeAll). Empty when there is neither. Pure.
 */
export function probeNames(config: ProbeNameSource): string[] {
  const configured = config.resolver.validationProbe?.name;
  if (configured !== undefined) return [configured];
  const names = new Set<string>();
  for (const listener of config.listeners) {
    for (const route of listener.routes) {
      for (const pattern of route.allowlist.patterns) {
        const suffix = pattern.startsWith('*.') ? pattern.slice(2) : pattern;
        const name = canonicalizeClientName(`${PROBE_LABEL}.${suffix}`);
        if (name.ok) names.add(name.name);
        if (names.size >= MAX_PROBE_NAMES) return [...names];
      }
    }
  }
  return [...names];
}

/** The first name probeNames gives (undefined: none). Pure. */
export function defaultProbeName(config: ProbeNameSource): string | undefined {
  return probeNames(config)[0];
}

/**
 * Probe every name (in parallel) and judge the resolver: it validates as
 * soon as one answer is validated (AD is set only by a validator); it does
 * not validate only when every answer came back without AD; otherwise the
 * first failure says what is wrong (did not answer, or an error). Rejects
 * only when `signal` aborts.
 */
export async function probeAll(resolver: TlsaResolver | undefined, names: readonly string[], signal?: AbortSignal): Promise<ProbeResult> {
  const results = await Promise.all(names.map((name) => probeValidation(resolver, name, signal)));
  const validated = results.find((r) => r.ok);
  if (validated !== undefined) return validated;
  const failures = results.filter((r): r is Extract<ProbeResult, { ok: false }> => !r.ok);
  const first = failures[0];
  if (first === undefined) return { ok: false, problem: 'error', message: 'no name to probe' };
  if (failures.every((f) => f.problem === 'not-validating')) {
    return failures.length === 1 ? first : { ...first, message: `${first.message} (and the same for all ${failures.length} allowlisted zones probed)` };
  }
  return failures.find((f) => f.problem !== 'not-validating') ?? first;
}

/**
 * Probe `resolver` (the bare DNS TLSA query: no cache, no gate) with `name`.
 * No resolver (local TLSA file only): nothing to probe, ok. Rejects only
 * when `signal` aborts.
 */
export async function probeValidation(resolver: TlsaResolver | undefined, name: string, signal?: AbortSignal): Promise<ProbeResult> {
  if (resolver === undefined) return { ok: true, detail: 'no DNS resolver configured (local TLSA file only): nothing to probe' };
  let o: LookupOutcome;
  try {
    o = await resolver.lookup(name, signal);
  } catch (err) {
    if (signal?.aborted) throw err;
    return { ok: false, problem: 'error', message: `validation probe for ${name} failed: ${(err as Error).message}` };
  }
  switch (o.kind) {
    case 'secure':
      return { ok: true, detail: `the resolver validates DNSSEC (secure answer for ${name}: ${o.detail})` };
    case 'no-tlsa':
      return { ok: true, detail: `the resolver validates DNSSEC (secure denial for ${name}: ${o.detail})` };
    case 'insecure':
      return {
        ok: false,
        problem: 'not-validating',
        message:
          `your resolver does not validate DNSSEC (answer for ${name} without the AD bit: ${o.detail}); dancegate refuses every client until it does. ` +
          `Enable DNSSEC validation with a trust anchor for the client zones, or, if ${name} is in a zone that is not signed, set resolver.validationProbe.name to a name in a signed zone`,
      };
    case 'timeout':
    case 'server-error':
      return { ok: false, problem: 'unreachable', message: `the resolver did not answer the validation probe for ${name}: ${o.detail}` };
    default:
      return { ok: false, problem: 'error', message: `the validation probe for ${name} failed (${o.kind}): ${o.detail}` };
  }
}
