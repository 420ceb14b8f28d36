/**
 * Log lines about established sessions, from what the pipeline and the TCP
 * bindings publish: a refused MQTT CONNECT (with the identity, the client id
 * it claimed and the reason), a refused RADIUS packet, a connection closed by
 * revalidation (revoked, expired, unverifiable) or replaced by a newer one of
 * the same identity (newest-wins). Kept checks are logged at debug.
 */
import type { Logger } from 'pino';
import { connectionReplacedChannel } from '../connection/channels.js';
import { revalidationChannel } from '../connection/revalidation-channel.js';
import { mqttConnectChannel, radiusPacketChannel } from '../forward/channels.js';

/** Subscribe the session log lines; returns the unsubscribe function. */
export function logSessions(logger: Pick<Logger, 'warn' | 'info' | 'debug'>): () => void {
  const stops = [
    mqttConnectChannel.subscribe((e) => {
      if (e.outcome !== 'refused') return;
      logger.warn(
        { event: 'mqtt-connect-refused', listener: e.listener, connectionId: e.connectionId, identity: e.identity, clientId: e.clientId ?? null, reason: e.reason, detail: e.detail },
        'mqtt connect refused',
      );
    }),
    radiusPacketChannel.subscribe((e) => {
      if (e.outcome !== 'refused' && e.outcome !== 'stripped') return;
      logger.warn(
        {
          event: 'radius-packet-refused',
          listener: e.listener,
          connectionId: e.connectionId,
          identity: e.identity,
          direction: e.direction,
          code: e.code ?? null,
          identifier: e.identifier ?? null,
          reason: e.reason,
        },
        e.outcome === 'refused' ? 'radius packet refused' : 'radius identity attribute sent by the peer removed',
      );
    }),
    revalidationChannel.subscribe((e) => {
      const fields = { event: 'revalidation', listener: e.listener, connectionId: e.connectionId, identity: e.name, outcome: e.outcome, detail: e.detail };
      if (e.outcome === 'kept') return logger.debug({ ...fields, nextInMs: e.nextInMs }, 'connection revalidated');
      if (e.outcome === 'failed') return logger.warn({ ...fields, nextInMs: e.nextInMs }, 'connection revalidation failed; kept within the grace period');
      logger.warn({ ...fields, reason: e.outcome }, 'connection closed by revalidation');
    }),
    connectionReplacedChannel.subscribe((e) =>
      logger.info(
        { event: 'connection-replaced', listener: e.listener, connectionId: e.connectionId, identity: e.identity, detail: e.detail },
        'connection replaced by a newer one of the same identity',
      ),
    ),
  ];
  return () => {
    for (const stop of stops) stop();
  };
}
