/**
 * Does the configured resolver validate DNSSEC? Asked at start (single
 * process, and the cluster primary before it forks) and by /readyz. A
 * resolver that answers but does not validate refuses every client (their
 * TLSA answers come back insecure), so it is said in words: "your resolver
 * does not validate DNSSEC". At start, `resolver.validationProbe.atStart`
 * decides: refuse (exit 1) or warn (log and serve).
 */
import type { Logger } from 'pino';
import type { DancegateConfig } from '../config/types.js';
import { StartError } from './start-error.js';

/** What a validation probe finds (src/lookup/validation-probe.ts). */
export type ProbeVerdict = { readonly ok: true; readonly detail: string } | { readonly ok: false; readonly problem: 'not-validating' | 'unreachable' | 'error'; readonly message: string };

/** Probe the resolver of `config` (no DNS servers: the caller does not ask). */
export type Probe = (config: DancegateConfig) => Promise<ProbeVerdict>;

export interface Check {
  readonly ok: boolean;
  readonly detail: string;
}

export const NOT_VALIDATING = 'your resolver does not validate DNSSEC';
export const LOCAL_ONLY = 'no DNS resolver configured (local TLSA file only)';
export const READINESS_CACHE_MS = 5_000;

/** A verdict as a readiness check, in words. Pure. */
export function checkOf(verdict: ProbeVerdict): Check {
  if (verdict.ok) return { ok: true, detail: verdict.detail };
  if (verdict.problem === 'not-validating') return { ok: false, detail: verdict.message.startsWith(NOT_VALIDATING) ? verdict.message : `${NOT_VALIDATING}: ${verdict.message}` };
  return { ok: false, detail: verdict.message };
}

const hasDns = (config: DancegateConfig): boolean => config.resolver.servers.length > 0;

/** Validation checked at start: throws StartError when it does not validate and atStart is refuse; otherwise logs what is wrong. */
export async function checkResolverAtStart(config: DancegateConfig, probe: Probe, logger: Pick<Logger, 'info' | 'warn'>, atStart: 'refuse' | 'warn'): Promise<void> {
  if (!hasDns(config)) return;
  let verdict: ProbeVerdict;
  try {
    verdict = await probe(config);
  } catch (err) {
    verdict = { ok: false, problem: 'error', message: err instanceof Error ? err.message : String(err) };
  }
  const check = checkOf(verdict);
  if (check.ok) {
    logger.info({ event: 'resolver-check', ok: true, detail: check.detail }, 'the resolver validates DNSSEC');
    return;
  }
  if (!verdict.ok && verdict.problem === 'not-validating' && atStart === 'refuse') throw new StartError(`${check.detail} (resolver.validationProbe.atStart: refuse; set it to warn to start anyway)`);
  // An unreachable resolver may come up after us (a sidecar): /readyz says so until it does.
  logger.warn({ event: 'resolver-check', ok: false, detail: check.detail }, verdict.ok ? check.detail : verdict.problem === 'not-validating' ? NOT_VALIDATING : 'the resolver could not be checked');
}

/** The /readyz resolver check, cached `cacheMs` so that /readyz stays cheap. */
export function resolverReadiness(getConfig: () => DancegateConfig, probe: Probe, cacheMs = READINESS_CACHE_MS, now: () => number = Date.now): () => Promise<Check> {
  let last: { at: number; config: DancegateConfig; check: Check } | undefined;
  let inFlight: Promise<Check> | undefined;
  return async () => {
    const config = getConfig();
    if (!hasDns(config)) return { ok: true, detail: LOCAL_ONLY };
    if (last && last.config === config && now() - last.at < cacheMs) return last.check;
    inFlight ??= probe(config)
      .then(checkOf, (err: unknown) => ({ ok: false, detail: err instanceof Error ? err.message : String(err) }))
      .then((check) => {
        last = { at: now(), config, check };
        inFlight = undefined;
        return check;
      });
    return inFlight;
  };
}
