/**
 * One log line per upstream failure (the client got 502, or its TCP
 * connection was closed because the upstream could not be reached), with
 * the connection's identity: what the forwarders publish on
 * upstreamErrorChannel.
 */
import type { Logger } from 'pino';
import { upstreamErrorChannel } from '../forward/channels.js';

/** Log every upstream failure at level warn; returns the unsubscribe function. */
export function logUpstreamErrors(logger: Pick<Logger, 'warn'>): () => void {
  return upstreamErrorChannel.subscribe((e) =>
    logger.warn({ event: 'upstream-error', listener: e.listener, upstream: e.upstream, identity: e.identity ?? null, source: e.source, error: e.error }, 'upstream failed'),
  );
}
