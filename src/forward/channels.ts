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

/** One attempt to reach one upstream (a request, a retry, or a TCP connect): what the per-upstream metrics count. */
export interface UpstreamAttemptEvent {
  readonly listener: string;
  /** The upstream's configured name (bounded: the configuration's). */
  readonly upstream: string;
  /** ok: a response came (any status) or the TCP connection opened; connect-failed: never reached it; failed: broke after reaching it. */
  readonly outcome: 'ok' | 'connect-failed' | 'failed';
  readonly seconds: number;
}
export const upstreamAttemptChannel = typedChannel<UpstreamAttemptEvent>('dancegate:upstream:attempt');

/** An upstream was taken out of rotation or readmitted. */
export interface UpstreamHealthEvent {
  readonly listener: string;
  readonly upstream: string;
  readonly healthy: boolean;
  /** passive: failures of real traffic; active: the health check. */
  readonly cause: 'passive' | 'active';
  /** For the log: what failed, or how long the ejection lasts. */
  readonly detail: string;
}
export const upstreamHealthChannel = typedChannel<UpstreamHealthEvent>('dancegate:upstream:health');

/** One HTTP request, answered (by the upstream or by us): the access log and the request metrics. */
export interface HttpRequestEvent {
  readonly listener: string;
  readonly connectionId: string;
  /** The verified name; undefined when unauthenticated (policy optional). */
  readonly identity: string | undefined;
  readonly protocol: 'h1' | 'h2';
  readonly method: string;
  /** Without the query unless accessLog.includeQuery (bounded by the caller). */
  readonly path: string;
  readonly status: number;
  /** Request body bytes read from the client / response body bytes sent to it. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** The upstream's configured name; undefined when we answered ourselves. */
  readonly upstream: string | undefined;
  /** Time to the upstream's response headers, ms; undefined when no upstream answered. */
  readonly upstreamMs: number | undefined;
  readonly totalMs: number;
  /** Why we answered it ourselves (a request refusal reason, src/reasons.ts); undefined when forwarded. */
  readonly refusal: string | undefined;
  /** Whether the access log writes it (accessLog.enabled and the sample drawn); metrics count every request. */
  readonly log: boolean;
}
export const httpRequestChannel = typedChannel<HttpRequestEvent>('dancegate:http:request');

/** An inbound HTTP/2 session we ended for abuse (GOAWAY ENHANCE_YOUR_CALM, or nghttp2's own protocol errors). */
export interface Http2AbuseEvent {
  readonly listener: string;
  readonly connectionId: string;
  readonly identity: string | undefined;
  /** 'reset-rate' (rapid reset), 'invalid-frames', 'header-list-size', ... */
  readonly kind: string;
  readonly detail: string;
}
export const http2AbuseChannel = typedChannel<Http2AbuseEvent>('dancegate:http2:abuse');

/** An MQTT CONNECT judged by a route's MQTT binding. */
export interface MqttConnectEvent {
  readonly listener: string;
  readonly connectionId: string;
  readonly identity: string;
  /** The client id the CONNECT claimed (bounded by the caller); undefined when no CONNECT was read. */
  readonly clientId: string | undefined;
  readonly outcome: 'forwarded' | 'refused';
  /** Why it was refused (client-id-not-identity, connect-timeout, invalid, …); undefined when forwarded. */
  readonly reason: string | undefined;
  /** The refusal in words, or what the binding changed (username replaced, password dropped). */
  readonly detail: string;
}
export const mqttConnectChannel = typedChannel<MqttConnectEvent>('dancegate:mqtt:connect');

/** A RADIUS packet on a RADSEC route: rewritten (identity added), passed untouched, refused, or stripped of the peer's own copies of the identity attribute (besides rewritten). */
export interface RadiusPacketEvent {
  readonly listener: string;
  readonly connectionId: string;
  readonly identity: string;
  /** from-client: the peer's requests; from-server: the RADIUS server's answers (and requests). */
  readonly direction: 'from-client' | 'from-server';
  readonly outcome: 'rewritten' | 'passed' | 'refused' | 'stripped';
  readonly code: number | undefined;
  readonly identifier: number | undefined;
  /** Why it was refused, or how many copies were stripped; undefined otherwise. */
  readonly reason: string | undefined;
}
export const radiusPacketChannel = typedChannel<RadiusPacketEvent>('dancegate:radius:packet');
