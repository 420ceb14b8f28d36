/**
 * What the access log is given per request: the path as the client sent it
 * (without the query unless asked: queries often carry tokens), bounded and
 * with unprintable characters escaped like every client-supplied log field;
 * and whether this request is drawn for the log at all. Pure.
 */
import type { AccessLogConfig } from '../config/types.js';
import { boundText } from '../connection/log-bounds.js';

/** Bytes of UTF-8 an access-log path takes at most (a target may be as long as the header limit). */
export const MAX_ACCESS_PATH_BYTES = 1024;

export function accessPath(target: string, includeQuery: boolean): string {
  const query = includeQuery ? -1 : target.indexOf('?');
  return boundText(query === -1 ? target : target.slice(0, query), MAX_ACCESS_PATH_BYTES);
}

/** Whether the access log writes this request: enabled, and drawn with probability sampleRate (1 = always, no draw). */
export function sampled(config: AccessLogConfig, random: () => number = Math.random): boolean {
  if (!config.enabled || !(config.sampleRate > 0)) return false;
  return config.sampleRate >= 1 || random() < config.sampleRate;
}
