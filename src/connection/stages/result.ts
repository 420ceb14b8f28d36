/**
 * What every stage of the connection pipeline returns: the value it found,
 * or the refusal (a catalog reason and a detail in words).
 */
import type { RefusalReason } from '../../reasons.js';

export interface Refusal {
  readonly ok: false;
  readonly reason: RefusalReason;
  readonly detail: string;
}

export type StageResult<T> = { readonly ok: true; readonly value: T } | Refusal;

export const pass = <T>(value: T): { readonly ok: true; readonly value: T } => ({ ok: true, value });

export const refuse = (reason: RefusalReason, detail: string): Refusal => ({ ok: false, reason, detail });
