/**
 * The answer of POST /penalty-box/unban: what was lifted, in one process or
 * across the workers of a cluster (each worker has its own penalty box).
 * Pure.
 */
import type { UnbanResult } from './ipc.js';

export interface UnbanAnswer {
  readonly address: string;
  /** What the limits count the address by: itself, or its /64 for IPv6. */
  readonly key: string;
  /** true when a ban was in force (in at least one process) and was lifted. */
  readonly lifted: boolean;
  /** Longest ban time that was left, ms. */
  readonly bannedForMs: number;
  /** Failures forgotten (counted towards a ban), all processes. */
  readonly failures: number;
  readonly detail: string;
  /** Under `workers`: processes that did not answer (their bans stay). */
  readonly unanswered?: string[];
}

export function describeUnban(address: string, results: readonly UnbanResult[], unanswered: readonly string[] = []): UnbanAnswer {
  const key = results[0]?.key ?? address;
  const bannedForMs = Math.max(0, ...results.map((r) => r.bannedForMs));
  const failures = results.reduce((n, r) => n + r.failures, 0);
  const bannedIn = results.filter((r) => r.bannedForMs > 0).length;
  const who = key === address ? address : `${address} (counted as ${key})`;
  const where = results.length > 1 ? ` in ${bannedIn} of ${results.length} workers` : '';
  let detail: string;
  if (results.length === 0) detail = 'no process answered; nothing was lifted';
  else if (results.every((r) => !r.penaltyBox)) detail = 'there is no penalty box (limits.penaltyBox: false); nothing to lift';
  else if (bannedIn > 0) detail = `lifted the ban of ${who}${where} (${Math.ceil(bannedForMs / 1000)} s were left)`;
  else detail = `${who} was not banned`;
  if (results.length > 0 && failures > 0) detail += `; forgot ${failures} failure(s) counted towards a ban`;
  const answer: UnbanAnswer = { address, key, lifted: bannedIn > 0, bannedForMs, failures, detail };
  return unanswered.length > 0 ? { ...answer, unanswered: [...unanswered] } : answer;
}
