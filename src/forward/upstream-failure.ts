/** Publishing an upstream failure (the client got 502, or its TCP connection was closed) with the connection's identity. */
import type { Upstream } from '../config/types.js';
import type { ConnectionContext } from '../connection/forwarder.js';
import { upstreamErrorChannel, type UpstreamErrorEvent } from './channels.js';

/** Longest error text in an event (it ends up in a log line). */
export const MAX_ERROR_TEXT = 300;

/** An error in one bounded line: `name: message` (and the code when the message does not say it). */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err).slice(0, MAX_ERROR_TEXT);
  const code = (err as Error & { code?: unknown }).code;
  const withCode = typeof code === 'string' && !err.message.includes(code) ? ` (${code})` : '';
  return `${err.name}: ${err.message}${withCode}`.replaceAll(/[\r\n]+/g, ' ').slice(0, MAX_ERROR_TEXT);
}

/** The event for a failure of `upstream` (one of `context`'s route's; the route's first when not known). */
export function upstreamErrorEvent(context: ConnectionContext, err: unknown, upstream?: Upstream): UpstreamErrorEvent {
  return {
    listener: context.listener.name,
    upstream: (upstream ?? context.route.upstreams.targets[0])?.url ?? '',
    identity: context.identity?.name,
    source: context.clientAddress,
    error: errorText(err),
  };
}

export function publishUpstreamError(context: ConnectionContext, err: unknown, upstream?: Upstream): void {
  if (upstreamErrorChannel.hasSubscribers) upstreamErrorChannel.publish(upstreamErrorEvent(context, err, upstream));
}
