/**
 * Stage: the TLS handshake on node:tls (requestCert), the socket part: a TLS
 * slot first (tls-slot.ts), then the handshake, judged (handshake-judge.ts,
 * pure) when it fails, stalls or ends. node:tls verifies nothing of ours
 * inside the handshake: the client is verified once it is over. The native
 * engine's handshake (handshake-native.ts) verifies inside it instead.
 */
import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import * as tls from 'node:tls';
import type { Admission } from '../../ratelimit/admission.js';
import type { ClientHelloInfo } from '../../protocol/client-hello.js';
import { selectBySni } from '../../protocol/sni.js';
import { presentedChain } from '../client-chain.js';
import type { Connection } from '../connection.js';
import type { ServerContext } from '../secure-context.js';
import { judgeHandshakeError, judgeSecured, judgeStall, judgeVerificationTimeout, type HandshakeJudgement } from './handshake-judge.js';
import { pass, type Refusal } from './result.js';
import { awaitTlsSlot } from './tls-slot.js';

/** What the listener keeps of a connection's TLS socket, of either engine: it destroys it on close(). */
export interface TrackedSocket {
  destroy(): void;
  once(event: 'close', listener: () => void): unknown;
}

export interface HandshakeInput {
  readonly hello: ClientHelloInfo;
  readonly contexts: readonly ServerContext[];
  /** ALPN protocols offered (the forwarder's); undefined: none. */
  readonly alpn: readonly string[] | undefined;
  readonly admission: Pick<Admission, 'enterTlsPhase' | 'maxTlsHandshakesPerIp' | 'clientChain'>;
  readonly handshakeTimeoutMs: number;
  /** Told of the TLS socket as soon as it exists (the listener closes it on shutdown). */
  readonly track: (socket: TrackedSocket) => void;
}

export interface Secured {
  readonly socket: tls.TLSSocket;
  /** The certificates the client sent, leaf first (at most maxCertificates + 1). */
  readonly presented: readonly X509Certificate[];
}

/** A failed handshake; `socket` when it got as far as a secure TLS socket (a chain over limits), to be refused on it. */
export type HandshakeResult = { readonly ok: true; readonly value: Secured } | (Refusal & { readonly socket: tls.TLSSocket | undefined });

const closed = (detail: string, socket?: tls.TLSSocket): HandshakeResult => ({ ok: false, reason: 'client-closed', detail, socket });

/** A judgement of handshake-judge.ts as the connection's decision (a chain over limits bans the address). */
export function applyJudgement(c: Connection, judged: HandshakeJudgement): void {
  if (judged.reason === 'chain-over-limits') return c.overLimits(judged.detail);
  c.penaltyWeight = judged.weight;
  c.decide('refused', judged.reason, judged.detail);
}

export async function handshake(c: Connection, raw: Socket, input: HandshakeInput): Promise<HandshakeResult> {
  const { admission, handshakeTimeoutMs: timeoutMs } = input;
  const slot = await awaitTlsSlot(c, raw, input);
  if (!slot.ok) return closed(slot.detail);

  const socket = new tls.TLSSocket(raw, {
    isServer: true,
    secureContext: selectBySni(input.contexts, input.hello.serverName, true)?.context,
    requestCert: true,
    rejectUnauthorized: false,
    ALPNProtocols: input.alpn === undefined ? undefined : [...input.alpn],
  });
  // Kept as a second line of defence; what stops renegotiation is SSL_OP_NO_RENEGOTIATION (tls-server-options.ts).
  socket.disableRenegotiation();
  c.useSocket(socket);
  input.track(socket);
  socket.once('close', () => c.closed());
  // Bytes the client sends after its ClientHello until the handshake ends (its Certificate flight, mostly):
  // the only measure node:tls gives of what OpenSSL had to verify when a handshake fails or stalls.
  const readBeforeFlight = raw.bytesRead - raw.readableLength + input.hello.recordBytes;
  const sent = (): number => raw.bytesRead - readBeforeFlight;
  const limits = admission.clientChain;
  let secure = false;
  c.expiryMeans(() => {
    // A handshake that never finished: judge what the client sent of its flight. A finished one waited on our DNS: no weight.
    applyJudgement(c, secure ? judgeVerificationTimeout(timeoutMs) : judgeStall(sent(), limits.maxFlightBytes, timeoutMs));
    socket.destroy();
  });
  // The raw socket allows half-close (for TCP mode); a client that sends FIN before the handshake is done is gone.
  socket.once('end', () => {
    if (!secure) socket.destroy();
  });
  socket.on('error', (err: Error) => {
    if (!secure) applyJudgement(c, judgeHandshakeError(sent(), limits.maxFlightBytes, err.message));
    socket.destroy();
  });
  raw.resume();
  let presented: X509Certificate[] = [];
  let overLimits: string | undefined;
  await new Promise<void>((resolve) => {
    socket.once('secure', () => {
      secure = true;
      c.note({ tlsVersion: socket.getProtocol() ?? undefined });
      // Judged here, synchronously, before OpenSSL reads another connection's flight: a ban now spares
      // the verification of chains this address has sent on its other connections.
      presented = presentedChain(socket, limits.maxCertificates);
      overLimits = judgeSecured(sent(), presented, limits);
      if (overLimits !== undefined) c.overLimits(overLimits);
      // The TLS handshake is over (OpenSSL verifies nothing more: no renegotiation): the next connection of this address may start its own.
      c.releaseTlsSlot();
      resolve();
    });
    socket.once('close', () => resolve());
  });
  if (!secure) {
    c.decide('refused', 'client-closed', 'closed during the TLS handshake');
    return closed('closed during the TLS handshake');
  }
  c.phaseDone('handshake');
  // Nothing is read from the client until the decision.
  socket.pause();
  if (overLimits !== undefined) return { ok: false, reason: 'chain-over-limits', detail: overLimits, socket };
  return pass({ socket, presented });
}
