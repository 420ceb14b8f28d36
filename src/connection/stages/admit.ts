/**
 * Stages: admission of the connection by its (original) client address
 * before anything is read past the PROXY header, and of the verified
 * identity after authentication. Each turns the admission's answer into a
 * stage result; the release function is the value.
 */
import type { Admission, OnBanned } from '../../ratelimit/admission.js';
import type { OnReplaced } from '../../ratelimit/identity-slots.js';
import { pass, refuse, type StageResult } from './result.js';

export type Release = () => void;

/** Penalty box, rate, handshake budget; until `release`, `onBanned` ends the connection when another one bans its address. */
export function admitConnection(admission: Pick<Admission, 'admitConnection'>, clientAddress: string, onBanned: OnBanned): StageResult<Release> {
  const admitted = admission.admitConnection(clientAddress, onBanned);
  return admitted.ok ? pass(admitted.release) : refuse(admitted.reason, admitted.detail);
}

/** An identity's slot: `release` when the connection closes, `confirm` when its handshake is complete. */
export interface IdentityHold {
  readonly release: Release;
  readonly confirm: () => void;
}

/**
 * The cap on concurrent connections per verified name; `onReplaced` when a newer one takes its slot
 * (newest-wins, which only a confirmed connection does: see ratelimit/identity-slots.ts).
 */
export function admitIdentity(admission: Pick<Admission, 'admitIdentity'>, name: string, onReplaced?: OnReplaced): StageResult<IdentityHold> {
  const admitted = admission.admitIdentity(name, onReplaced);
  return admitted.ok ? pass({ release: admitted.release, confirm: admitted.confirm }) : refuse(admitted.reason, admitted.detail);
}
