/**
 * The raw surface of the native TLS engine (native/tls-engine, a C addon on
 * the OpenSSL inside Node). Only src/tls/ touches it: the loader
 * (native-engine.ts) and the stream (native-socket.ts). Every call is
 * synchronous and returns what OpenSSL produced; the addon never calls back
 * into JavaScript.
 */

/** 'TLSv1.2' | 'TLSv1.3', as node:tls spells them. */
export type NativeTlsVersion = 'TLSv1.2' | 'TLSv1.3';

export interface NativeContextOptions {
  readonly role: 'server' | 'client';
  /** PEM: the leaf, then its chain. Required for a server; a client's own certificate when it has one. */
  readonly certPem?: string;
  /** PEM private key matching certPem. */
  readonly keyPem?: string;
  /** The dane_clientid extension's codepoint (no IANA value yet: 65280 by default, configurable). */
  readonly extensionType: number;
  readonly minVersion: NativeTlsVersion;
  readonly maxVersion: NativeTlsVersion;
  /**
   * Server: the protocols it accepts, most preferred first (a client offering
   * ALPN with none of them gets no_application_protocol; one offering none
   * gets none). Client: the protocols it offers. Undefined: no ALPN.
   */
  readonly alpn?: readonly string[];
  /** OpenSSL signature-algorithm list (SSL_CTX_set1_sigalgs_list); undefined: OpenSSL's default. */
  readonly sigalgs?: string;
  /** TLS 1.2 cipher list (SSL_CTX_set_cipher_list); undefined: OpenSSL's default. */
  readonly ciphers?: string;
  /** TLS 1.3 cipher suites (SSL_CTX_set_ciphersuites); undefined: OpenSSL's default. */
  readonly ciphersuites?: string;
  /** Key-exchange groups (SSL_CTX_set1_groups_list); undefined: OpenSSL's default. */
  readonly groups?: string;
  /** Largest certificate list accepted from the peer, bytes (SSL_CTX_set_max_cert_list). */
  readonly maxCertListBytes?: number;
  /** Client only: PEM CA bundle to verify the server with; undefined: the system's default paths. */
  readonly caPem?: string;
  /** Client only: verify the server's certificate (default true). */
  readonly verifyPeer?: boolean;
}

/** Opaque: an SSL_CTX and its settings, kept alive by every connection made from it. */
export interface NativeContext {
  readonly __nativeContext: never;
}

export interface NativeConnectionOptions {
  /** Server: refuse a client without a certificate (certificate_required, 116) instead of completing without one. */
  readonly requireCertificate?: boolean;
  /** Server: raise the context's minimum version for this connection (a strict route: TLSv1.3). */
  readonly minVersion?: NativeTlsVersion;
  /**
   * Server: send dane_clientid, empty, in the TLS 1.3 CertificateRequest (default true). False for a client that
   * named itself in its ClientHello (it knows the type only there, and TLS 1.3 makes it abort on meeting it in a
   * CertificateRequest) and on routes that do not take the name from the Certificate message.
   */
  readonly requestClientName?: boolean;
  /** Server: pause in certificate verification for decide() (true); false: accept any certificate without pausing (tests, benchmarks). */
  readonly pauseForVerify?: boolean;
  /** Client: SNI to send. */
  readonly serverName?: string;
  /** Client: the name the server's certificate must carry (SSL_set1_host); undefined: no name check. */
  readonly verifyHost?: string;
  /** Client: its TLSA owner name, sent in dane_clientid. */
  readonly clientName?: string;
  /** Client: where the name goes: the TLS 1.3 Certificate message (draft -13, only when the server's CertificateRequest asks) or the ClientHello (tls-clientid-07). */
  readonly clientNameForm?: 'certificate' | 'clienthello';
}

/**
 * - handshake: needs more bytes from the peer.
 * - verify: (server) paused inside certificate verification; call decide().
 * - busy: (server) the cap on paused handshakes is reached; nothing was consumed; feed() again later.
 * - open: the handshake is done; application data flows.
 * - closed: the peer sent close_notify (or we shut down and it answered).
 * - error: fatal; see `error`, `alertSent`, `alertReceived`.
 */
export type NativeState = 'handshake' | 'verify' | 'busy' | 'open' | 'closed' | 'error';

/** What the client showed, on the one result that enters 'verify'. */
export interface NativeVerifyInfo {
  /** The ClientName of the dane_clientid extension in the end-entity entry of the client's TLS 1.3 Certificate message; null when absent or empty. Raw bytes: the caller validates. */
  readonly clientName: Buffer | null;
  /** The certificates the client sent, leaf first, DER. */
  readonly certificates: readonly Buffer[];
  readonly protocol: NativeTlsVersion;
  /** Bytes given to the engine and not yet processed when it paused: what the client sent after its Certificate message (the rest of its flight, and any early application data). */
  readonly pendingInput: number;
}

/** Set on the one result where the handshake completes. */
export interface NativeEstablished {
  readonly protocol: NativeTlsVersion;
  /** The ALPN protocol chosen; null: none. */
  readonly alpn: string | null;
  /** OpenSSL's cipher name, e.g. TLS_AES_128_GCM_SHA256. */
  readonly cipher: string;
}

export interface NativeResult {
  readonly state: NativeState;
  /** Bytes to send to the peer (always write them, even on 'error': they may carry the alert). */
  readonly out: Buffer | null;
  /** Application data decrypted by this call. */
  readonly plaintext: Buffer | null;
  readonly verify?: NativeVerifyInfo;
  readonly established?: NativeEstablished;
  /** TLS alert description we sent (40 handshake_failure, 116 certificate_required, …). */
  readonly alertSent?: number;
  /** TLS alert description the peer sent. */
  readonly alertReceived?: number;
  /** state 'error': what went wrong (OpenSSL's reason string). */
  readonly error?: string;
}

export interface NativeConnection {
  /** Give the engine bytes from the peer (none: just advance, e.g. after 'busy'). */
  feed(data?: Buffer): NativeResult;
  /** Only in 'verify': accept (the handshake completes) or refuse (handshake_failure, 40). */
  decide(accept: boolean): NativeResult;
  /** Only in 'open': encrypt application data. */
  write(data: Buffer): NativeResult;
  /** Send close_notify. */
  shutdown(): NativeResult;
  /** Free the connection now (a paused handshake is finished, refused, first). Idempotent; any later call throws. */
  destroy(): void;
}

export interface NativeBinding {
  /** OpenSSL_version(OPENSSL_VERSION) of the library the addon runs on (Node's own). */
  opensslVersion(): string;
  /**
   * Cap this thread's paused handshakes (and the memory OpenSSL's job pool
   * keeps for them): ASYNC_init_thread(max, 0). Effective once, before the
   * first paused handshake; returns false when too late or already set.
   */
  limitPausedHandshakes(max: number): boolean;
  createContext(options: NativeContextOptions): NativeContext;
  Connection: new (context: NativeContext, options: NativeConnectionOptions) => NativeConnection;
}
