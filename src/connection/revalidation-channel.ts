/** What the revalidation of established connections publishes (see src/observe.ts and revalidate.ts). */
import { typedChannel } from '../observe.js';

/** Every outcome of a revalidation check, in the order of the metric's label values. */
export const REVALIDATION_OUTCOMES = ['kept', 'revoked', 'expired', 'failed', 'unverifiable'] as const;

/**
 * kept: the certificate still authenticates the name; revoked: it no longer
 * does (no TLSA records, an insecure answer, no record matches: the key
 * changed); expired: a record still designates the chain but a certificate's
 * validity dates refuse it; failed: the check could not be made (DNS
 * trouble), the connection is kept within the grace period; unverifiable:
 * checks kept failing for the whole grace period.
 */
export type RevalidationOutcome = (typeof REVALIDATION_OUTCOMES)[number];

/** One per revalidation check of an established connection (a check whose connection closed meanwhile publishes nothing). */
export interface RevalidationEvent {
  readonly listener: string;
  readonly connectionId: string;
  /** The verified name being checked again. */
  readonly name: string;
  readonly outcome: RevalidationOutcome;
  /** Why, in words (bounded). */
  readonly detail: string;
  /** Milliseconds until the next check (kept, failed); absent when the connection is being closed. */
  readonly nextInMs?: number;
}

export const revalidationChannel = typedChannel<RevalidationEvent>('dancegate:revalidation');
