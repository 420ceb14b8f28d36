/** What the connection pipeline publishes (see src/observe.ts). */
import { typedChannel } from '../observe.js';
import type { DecisionRecord } from './decision-log.js';

/** One per connection, exactly once, with every field bounded: the decision log record. */
export const decisionChannel = typedChannel<DecisionRecord>('dancegate:decision');
