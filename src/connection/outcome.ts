/**
 * The socket side of a decision: ending a connection refused before its
 * handshake (with the catalog's TLS alert, if any), answering one refused
 * after it (the forwarder's refusal, or forwarding it unauthenticated when
 * the forwarder does that), and handing a decided connection to the
 * forwarder with the listener's idle timeout and maximum lifetime.
 */
import type { Socket } from 'node:net';
import type { ListenerConfig } from '../config/types.js';
import { alertFor, REASONS } from '../reasons.js';
import type { SecureSocket } from '../tls/secure-socket.js';
import type { Connection } from './connection.js';
import type { ConnectionContext, Forwarder } from './forwarder.js';
import { fatalAlertRecord } from './peek.js';
import type { Refusal } from './stages/result.js';

/** How long a refused raw socket may take to flush its alert before it is destroyed. */
const ALERT_FLUSH_MS = 1000;

/** Refused before the TLS handshake: a fatal alert when the catalog names one, else just closed. */
export function endRaw(c: Connection, raw: Socket, refusal: Refusal): void {
  c.decide('refused', refusal.reason, refusal.detail);
  if (REASONS[refusal.reason].alert !== undefined && !raw.destroyed) raw.end(fatalAlertRecord(alertFor(refusal.reason)));
  else raw.destroy();
  raw.setTimeout(ALERT_FLUSH_MS, () => raw.destroy());
}

/** Refused at or after the end of the handshake: the forwarder answers (an HTTP 403/503, or a close). */
export function endSecured(c: Connection, socket: SecureSocket, refusal: Refusal, forwarder: Pick<Forwarder, 'refuse'>): void {
  c.decide('refused', refusal.reason, refusal.detail);
  if (socket.destroyed) return;
  forwarder.refuse(socket, refusal.reason);
}

/** The parts of the forwarder's context the pipeline knows once the handshake is over. */
export type DecidedContext = Omit<ConnectionContext, 'identity' | 'status'>;

/** Refused after the handshake; a forwarder that serves unauthenticated clients (policy optional) gets it anyway, without identity. */
export function refuseOrForwardUnauthenticated(c: Connection, socket: SecureSocket, refusal: Refusal, forwarder: Forwarder, context: DecidedContext): void {
  if (!forwarder.forwardsUnauthenticated) return endSecured(c, socket, refusal, forwarder);
  if (!c.decide('forwarded', refusal.reason, `unauthenticated: ${refusal.detail}`)) return void socket.destroy();
  forward(socket, forwarder, { ...context, identity: undefined, status: refusal.reason });
}

/** Hand a decided connection to the forwarder; the listener's idle timeout and maximum lifetime apply from now on. */
export function forward(socket: SecureSocket, forwarder: Pick<Forwarder, 'accept'>, context: ConnectionContext): void {
  const limits: Pick<ListenerConfig, 'idleTimeoutMs' | 'maxLifetimeMs'> = context.listener;
  socket.setTimeout(limits.idleTimeoutMs, () => socket.destroy());
  if (limits.maxLifetimeMs !== undefined) {
    const lifetime = setTimeout(() => socket.destroy(), limits.maxLifetimeMs);
    lifetime.unref();
    socket.once('close', () => clearTimeout(lifetime));
  }
  forwarder.accept(socket, context);
}
