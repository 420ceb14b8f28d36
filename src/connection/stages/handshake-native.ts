/**
 * Stage: the TLS handshake on the native engine, with the decision inside it.
 * The server's CertificateRequest asks for dane_clientid (TLS 1.3); when the
 * client's Certificate message is in, the engine pauses in certificate
 * verification and this stage runs the verification (verify-shown.ts:
 * claim → allowlist → lookup → match → identity slot) while the raw socket
 * is not read. Then the handshake completes (accepted, or forwarded
 * unauthenticated under policy optional) or fails with handshake_failure
 * (40), as draft-ietf-dance-client-auth-13 asks (unless the forwarder serves
 * or answers refused clients itself, see completeRefused): a TLS 1.2 client's
 * handshake fails, a TLS 1.3 client reads the alert. A client without a
 * certificate on a route that requires one gets certificate_required (116)
 * from OpenSSL. Nothing reaches a forwarder before the decision.
 */
import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { ClientHelloInfo } from '../../protocol/client-hello.js';
import { selectBySni } from '../../protocol/sni.js';
import type { Admission } from '../../ratelimit/admission.js';
import type { NativeBinding, NativeVerifyInfo } from '../../tls/native-binding.js';
import { NativeTlsError, NativeTlsSocket } from '../../tls/native-socket.js';
import type { SecureSocket } from '../../tls/secure-socket.js';
import type { Connection } from '../connection.js';
import type { NativeServerContext } from '../tls-engine.js';
import { applyJudgement, type HandshakeInput } from './handshake.js';
import { judgeHandshakeError, judgeSecured, judgeStall, judgeVerificationTimeout } from './handshake-judge.js';
import { pass, refuse, type Refusal, type StageResult } from './result.js';
import { awaitTlsSlot } from './tls-slot.js';
import type { Shown, Verified } from './verify-shown.js';

/** The alert OpenSSL sends to a client that sent no certificate when one is required. */
const CERTIFICATE_REQUIRED = 116;

export interface NativeHandshakeInput {
  readonly hello: ClientHelloInfo;
  readonly binding: NativeBinding;
  readonly contexts: readonly NativeServerContext[];
  readonly admission: Pick<Admission, 'enterTlsPhase' | 'maxTlsHandshakesPerIp' | 'clientChain'>;
  readonly handshakeTimeoutMs: number;
  readonly track: HandshakeInput['track'];
  /** Refuse a client without a certificate in the handshake (policy required). */
  readonly requireCertificate: boolean;
  /** A strict (draft -13) route: TLS 1.3 only. */
  readonly strict: boolean;
  /** Ask for dane_clientid in the TLS 1.3 CertificateRequest (see askForName). */
  readonly askForName: boolean;
  /**
   * Complete the handshake of a refused client all the same, for the forwarder to serve it unauthenticated
   * (policy optional) or to answer the refusal in its protocol (an HTTP 403/503; never on a strict route).
   */
  readonly completeRefused: boolean;
  /** The verification, run while the handshake is paused. */
  readonly verify: (shown: Shown) => Promise<StageResult<Verified>>;
}

/** The handshake is done: the socket, and the verification's verdict (a refusal only when the forwarder serves refused clients). */
export interface VerifiedHandshake {
  readonly socket: SecureSocket;
  readonly verdict: StageResult<Verified>;
}

/** Failed: before a secure socket, or (a chain over limits, when the forwarder answers refusals) on one, to be refused there. */
export type NativeHandshakeResult = { readonly ok: true; readonly value: VerifiedHandshake } | (Refusal & { readonly socket: SecureSocket | undefined });

const ended = (detail: string): NativeHandshakeResult => ({ ok: false, reason: 'client-closed', detail, socket: undefined });

export async function handshakeNative(c: Connection, raw: Socket, input: NativeHandshakeInput): Promise<NativeHandshakeResult> {
  const slot = await awaitTlsSlot(c, raw, input);
  if (!slot.ok) return ended(slot.detail);
  const context = selectBySni(input.contexts, input.hello.serverName, true)?.context;
  if (context === undefined) {
    c.decide('refused', 'handshake-failed', 'no server certificate for this name');
    raw.destroy();
    return ended('no server certificate');
  }
  let socket: NativeTlsSocket;
  try {
    const connection = new input.binding.Connection(context, {
      requireCertificate: input.requireCertificate,
      minVersion: input.strict ? 'TLSv1.3' : undefined,
      requestClientName: input.askForName,
      pauseForVerify: true,
    });
    socket = new NativeTlsSocket(raw, connection);
  } catch (err) {
    c.decide('refused', 'handshake-failed', `the TLS engine could not start: ${(err as Error).message}`);
    raw.destroy();
    return ended('the TLS engine could not start');
  }
  c.useSocket(socket);
  input.track(socket);
  socket.once('close', () => c.closed());
  const timeoutMs = input.handshakeTimeoutMs;
  const limits = input.admission.clientChain;
  // Bytes the client sent after its ClientHello (its Certificate flight, mostly).
  const readBeforeFlight = raw.bytesRead - raw.readableLength + input.hello.recordBytes;
  const sent = (): number => raw.bytesRead - readBeforeFlight;
  let verifying = false;
  c.expiryMeans(() => {
    // Paused for our own lookup: not the client's doing. Otherwise judge what it sent of its flight.
    applyJudgement(c, verifying ? judgeVerificationTimeout(timeoutMs) : judgeStall(sent(), limits.maxFlightBytes, timeoutMs));
    socket.destroy();
  });
  socket.on('error', (err: Error) => {
    // TLS 1.3 says certificate_required; OpenSSL answers a TLS 1.2 client without one with handshake_failure.
    if (err instanceof NativeTlsError && (err.alertSent === CERTIFICATE_REQUIRED || /peer did not return a certificate/.test(err.message))) {
      c.decide('refused', 'no-certificate', 'the client presented no certificate');
    } else applyJudgement(c, judgeHandshakeError(sent(), limits.maxFlightBytes, err.message));
  });
  let verdict: StageResult<Verified> | undefined;
  socket.once('verify', (info: NativeVerifyInfo) => {
    verifying = true;
    // The chain is parsed (OpenSSL verifies no signature of it: the decision is ours): the next connection of this address may start.
    c.releaseTlsSlot();
    c.note({ tlsVersion: info.protocol });
    // The client's flight up to and including its Certificate message, as the engine processed it: not what
    // followed in the same reads (the rest of a TLS 1.3 flight, early application data), and not what the
    // raw socket read and holds meanwhile.
    const flight = socket.bytesFed - info.pendingInput - input.hello.recordBytes;
    void judgeAndVerify(c, socket, input, info, flight)
      .then((result) => {
        verdict = result;
        // The identity's slot is held from now on: verification runs before the client's CertificateVerify and
        // Finished are read, so the handshake may still fail; the slot goes back when the connection closes.
        if (result.ok) socket.once('close', result.value.release);
        if (socket.destroyed) return result.ok ? result.value.release() : undefined;
        // Decided already: the deadline passed, or a chain over limits banned the address (answered by the forwarder when it answers refusals).
        const answerOverLimits = !result.ok && result.reason === 'chain-over-limits' && input.completeRefused;
        if (c.decided && !answerOverLimits) return void socket.destroy();
        // Our part is done: what remains of the handshake (the client's CertificateVerify and Finished) is the client's.
        verifying = false;
        if (result.ok || input.completeRefused) {
          // Decided, the connection's deadline is over: the rest of the handshake gets its own.
          if (c.decided) boundCompletion(socket, timeoutMs);
          return socket.decide(true);
        }
        // Decided before the alert goes out, so the record names the reason, not the failed handshake.
        if (!result.ok) c.decide('refused', result.reason, result.detail);
        socket.decide(false);
      })
      // A throw in what the decision set off (a listener of 'secure', the log sink) must cost this connection, never the process.
      .catch((err: unknown) => socket.destroy(err instanceof Error ? err : new Error(String(err))));
  });
  socket.start();
  const secure = await new Promise<boolean>((resolve) => {
    socket.once('secure', () => resolve(true));
    socket.once('close', () => resolve(false));
  });
  if (!secure) {
    c.decide('refused', 'client-closed', 'closed during the TLS handshake');
    return ended('closed during the TLS handshake');
  }
  c.releaseTlsSlot();
  c.phaseDone('handshake');
  if (verdict !== undefined && !verdict.ok && verdict.reason === 'chain-over-limits') {
    socket.pause();
    return { ...verdict, socket };
  }
  if (c.decided) {
    socket.destroy();
    return ended('decided during the handshake');
  }
  c.note({ tlsVersion: socket.getProtocol() ?? undefined });
  // Nothing is read from the client until the forwarder takes it.
  socket.pause();
  // No certificate and none required (policy optional): nothing was paused; the verification says why it is unauthenticated.
  return pass({ socket, verdict: verdict ?? (await input.verify({ presented: [] })) });
}

/** The chain limits, then the verification. */
async function judgeAndVerify(c: Connection, socket: NativeTlsSocket, input: NativeHandshakeInput, info: NativeVerifyInfo, sent: number): Promise<StageResult<Verified>> {
  const limits = input.admission.clientChain;
  let presented: X509Certificate[];
  try {
    presented = info.certificates.slice(0, limits.maxCertificates + 1).map((der) => new X509Certificate(der));
  } catch (err) {
    return refuse('no-matching-record', `unparseable client certificate: ${(err as Error).message}`);
  }
  const overLimits = judgeSecured(sent, presented, limits);
  if (overLimits !== undefined) {
    c.overLimits(overLimits);
    return refuse('chain-over-limits', overLimits);
  }
  let result: StageResult<Verified>;
  try {
    result = await input.verify({ presented, certificateName: info.clientName ?? undefined });
  } catch (err) {
    // A bug must refuse this client, never leave its handshake paused or reject unhandled.
    return refuse('handshake-failed', `verification failed: ${(err as Error).message}`);
  }
  if (!result.ok && result.reason === 'client-closed') return result;
  if (socket.destroyed && !c.decided) return refuse('client-closed', 'client went away during verification');
  return result;
}

/** A handshake completed only to answer a refusal (an HTTP 403) must still end in time: the client may stall it. */
function boundCompletion(socket: NativeTlsSocket, timeoutMs: number): void {
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  socket.once('secure', () => clearTimeout(timer));
  socket.once('close', () => clearTimeout(timer));
}

/**
 * Whether the CertificateRequest asks for the name: on a route that takes it
 * from the Certificate message, unless the client used dane_clientid in its
 * ClientHello (even empty): such a client knows the type only there, and TLS
 * 1.3 makes it abort (illegal_parameter) on meeting it in a CertificateRequest.
 * A strict route always asks: it serves draft -13 clients only.
 */
export function askForName(route: { readonly identity: { readonly sources: readonly string[]; readonly strict: boolean } }, hello: Pick<ClientHelloInfo, 'daneClientId'>): boolean {
  if (route.identity.strict) return true;
  return route.identity.sources.includes('certificate-extension') && !hello.daneClientId.present;
}
