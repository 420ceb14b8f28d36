/**
 * What a forwarder may use of a client connection once it is decided: a
 * node:tls TLSSocket or a NativeTlsSocket, both of which are this. Type only.
 */
import type { Duplex } from 'node:stream';

export interface SecureSocketInfo {
  /** The ALPN protocol chosen; false: none; null: not known yet. */
  readonly alpnProtocol: string | false | null;
  getProtocol(): string | null;
  getCipher(): { readonly name: string } | undefined;
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  /** Ciphertext bytes read from / written to the client. */
  readonly bytesRead: number;
  readonly bytesWritten: number;
  setTimeout(ms: number, callback?: () => void): unknown;
  setNoDelay(noDelay?: boolean): unknown;
  destroySoon(): void;
}

export type SecureSocket = Duplex & SecureSocketInfo;
