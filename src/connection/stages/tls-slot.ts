/**
 * Stage: a TLS handshake slot of the client's address, and the connection's
 * deadline. OpenSSL parses (node:tls: and verifies) a client chain inside
 * the handshake, before anything else can judge it, so at most
 * maxTlsHandshakesPerIp connections of an address are there at once; the
 * others wait, FIFO, the raw socket paused and their ClientHello not yet
 * handed to TLS, and if the address is banned meanwhile they end without
 * reaching TLS. The deadline (handshake and verification together) runs from
 * the start of this stage. Shared by both TLS engines.
 */
import type { Socket } from 'node:net';
import type { Admission } from '../../ratelimit/admission.js';
import type { Connection } from '../connection.js';
import { pass, type StageResult } from './result.js';

export interface TlsSlotInput {
  readonly admission: Pick<Admission, 'enterTlsPhase' | 'maxTlsHandshakesPerIp'>;
  readonly handshakeTimeoutMs: number;
}

/** Granted: the connection holds a slot (released by the connection at its decision or close). Not granted: decided as client-closed. */
export async function awaitTlsSlot(c: Connection, raw: Socket, input: TlsSlotInput): Promise<StageResult<undefined>> {
  const { admission, handshakeTimeoutMs: timeoutMs } = input;
  c.startDeadline(timeoutMs, () => {
    // Waiting is our queue's doing, not the client's: no penalty-box weight.
    c.penaltyWeight = 0;
    c.decide(
      'refused',
      'handshake-timeout',
      `no TLS handshake slot within ${timeoutMs} ms: ${admission.maxTlsHandshakesPerIp} connections from ${c.clientAddress} in the handshake (limits.handshakes.maxTlsHandshakesPerIp)`,
    );
    raw.destroy();
  });
  if (raw.destroyed) {
    c.decide('refused', 'client-closed', 'closed before the TLS handshake');
    return { ok: false, reason: 'client-closed', detail: 'closed before the TLS handshake' };
  }
  const granted = await new Promise<boolean>((resolve) => {
    raw.once('close', () => resolve(false));
    c.holdTlsSlot(
      admission.enterTlsPhase(
        c.clientAddress,
        () => resolve(true),
        (why) => c.banned(why),
      ).release,
    );
  });
  if (!granted || c.decided || raw.destroyed) {
    c.decide('refused', 'client-closed', 'closed while waiting for a TLS handshake slot');
    c.releaseTlsSlot();
    return { ok: false, reason: 'client-closed', detail: 'closed while waiting for a TLS handshake slot' };
  }
  return pass(undefined);
}
