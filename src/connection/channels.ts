/** What the connection pipeline publishes (see src/observe.ts). */
import { typedChannel } from '../observe.js';
import type { DecisionRecord } from './decision-log.js';

/** One per connection, exactly once, with every field bounded: the decision log record. */
export const decisionChannel = typedChannel<DecisionRecord>('dancegate:decision');

/** An established connection we closed from outside its own traffic (newest-wins replaced it). */
export interface ConnectionReplacedEvent {
  readonly listener: string;
  readonly connectionId: string;
  /** The verified name whose newer connection took the slot. */
  readonly identity: string;
  readonly detail: string;
}
export const connectionReplacedChannel = typedChannel<ConnectionReplacedEvent>('dancegate:connection:replaced');
