/** What the TLSA lookup chain publishes (see src/observe.ts). */
import { typedChannel } from '../observe.js';
import type { CacheStatus } from './cache.js';
import type { LookupOutcomeKind } from './tlsa-answer.js';

/** One per TLSA lookup a connection makes through the cache (exactly one per verified connection). */
export interface LookupEvent {
  readonly name: string;
  readonly cache: CacheStatus;
  readonly outcome: LookupOutcomeKind;
}
export const lookupChannel = typedChannel<LookupEvent>('dancegate:lookup');

/** One per lookup that went past the cache to the local TLSA file, the gate and DNS. */
export interface ResolveEvent {
  readonly outcome: LookupOutcomeKind;
  readonly seconds: number;
}
export const resolveChannel = typedChannel<ResolveEvent>('dancegate:lookup:resolve');
