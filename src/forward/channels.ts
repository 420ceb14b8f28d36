/** What the forwarders publish (see src/observe.ts). */
import { typedChannel } from '../observe.js';

/** A new upstream connection is ready (TCP, or TLS when the upstream is https). */
export interface UpstreamConnectEvent {
  readonly listener: string;
  readonly seconds: number;
}
export const upstreamConnectChannel = typedChannel<UpstreamConnectEvent>('dancegate:upstream:connect');

/** An upstream connection or request failed (the client got 502 or its TCP connection was closed). */
export interface UpstreamErrorEvent {
  readonly listener: string;
  readonly upstream: string;
  /** The verified name, or undefined for an unauthenticated (policy optional) request. */
  readonly identity: string | undefined;
  readonly source: string;
  readonly error: string;
}
export const upstreamErrorChannel = typedChannel<UpstreamErrorEvent>('dancegate:upstream:error');

/** Bytes relayed since the last event for one connection: published while the connection lives (at most every few seconds) and when it closes. */
export interface UpstreamBytesEvent {
  readonly listener: string;
  readonly fromClient: number;
  readonly toClient: number;
}
export const upstreamBytesChannel = typedChannel<UpstreamBytesEvent>('dancegate:upstream:bytes');
