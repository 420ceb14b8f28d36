/**
 * The seam between the connection pipeline and what happens after the
 * decision. The pipeline never imports a forwarder: the top of the program
 * injects a ForwarderFactory, and a new mode (or HTTP/2) is one more
 * Forwarder there.
 */
import type { ListenerConfig, RouteConfig } from '../config/types.js';
import type { ParsedCertificate } from '../dane/certificate.js';
import type { ClientHelloInfo } from '../protocol/client-hello.js';
import type { ConnectionReason, RefusalReason } from '../reasons.js';
import type { SecureSocket } from '../tls/secure-socket.js';

/** What a forwarder learns about a decided connection. */
export interface ConnectionContext {
  readonly listener: ListenerConfig;
  readonly route: RouteConfig;
  /** Original client address (from an inbound PROXY header when there was one). */
  readonly clientAddress: string;
  readonly clientPort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** Unique within the process's life (also on the connection's decision log line): joins the access log's request lines to it. */
  readonly connectionId: string;
  readonly hello: ClientHelloInfo;
  /** The verified identity; undefined when forwarded unauthenticated (policy optional). */
  readonly identity:
    | {
        readonly name: string;
        readonly leaf: ParsedCertificate;
        readonly tlsa: readonly [number, number, number];
      }
    | undefined;
  /** 'authenticated' or the reason the client is unauthenticated. */
  readonly status: ConnectionReason;
}

export interface Forwarder {
  /** The ALPN protocols the TLS handshake offers, most preferred first; undefined: no ALPN. */
  readonly alpn: readonly string[] | undefined;
  /** Whether a refused client may still be forwarded, unauthenticated (policy optional; HTTP only). */
  readonly forwardsUnauthenticated: boolean;
  /**
   * Whether a refused client gets an answer in the protocol (HTTP 403/503 with the reason: http.refuseWith403).
   * On the native engine such a client's handshake is completed for it; otherwise (TCP mode, refuseWith403
   * false, a strict route) the refusal is a handshake_failure alert inside the handshake.
   */
  readonly answersRefusals: boolean;
  /** Serve a decided connection (the socket is paused; the forwarder resumes it). */
  accept(socket: SecureSocket, context: ConnectionContext): void;
  /** Answer a connection refused after its handshake (an HTTP 403/503, or just close) and close it. */
  refuse(socket: SecureSocket, reason: RefusalReason): void;
  /** Stop taking new requests on kept-alive connections; finish the ones in flight. */
  drain(): void;
  /** Release everything (upstream pools); connections are closed by the listener. */
  close(): void;
}

/** Builds the forwarder of one listener generation. */
export type ForwarderFactory = (listener: ListenerConfig) => Forwarder;
