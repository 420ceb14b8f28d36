/**
 * A TCP route's protocol binding, as the TCP forwarder runs it: what must be
 * read from the client before any upstream is chosen (MQTT: its CONNECT,
 * judged by the route's policy; a refused client never reaches the
 * upstream), and what the session's bytes go through (RADIUS: every packet
 * framed and rewritten by a RadsecFilter). Every judgement is published
 * (mqttConnectChannel, radiusPacketChannel) for the log and the metrics.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { ProtocolBinding, RadiusBindingConfig } from '../config/types.js';
import type { ConnectionContext } from '../connection/forwarder.js';
import { boundText } from '../connection/log-bounds.js';
import type { SecureSocket } from '../tls/secure-socket.js';
import { mqttConnectChannel, radiusPacketChannel, type RadiusPacketEvent } from './channels.js';
import { readMqttConnect } from './mqtt-gate.js';
import { RadsecFilter, type FilterStep } from './radsec-filter.js';

/** Most UTF-8 bytes of a client id a log line carries (MQTT allows 65535; unprintable characters escaped). */
const MAX_LOGGED_CLIENT_ID = 256;

/** The session's two directions through a binding's filter (RADSEC). */
export interface SessionFilters {
  readonly fromClient: Transform;
  readonly fromServer: Transform;
}

/** What the upstream gets first (the MQTT CONNECT and what followed it) and the filters its bytes go through; ok false: the client was answered and closed. */
export type Opening = { readonly ok: true; readonly first: Buffer | undefined; readonly filters: SessionFilters | undefined } | { readonly ok: false };

/**
 * What the binding needs before the upstream: for MQTT, the client's
 * CONNECT, checked and rewritten (`first` is what the upstream gets first:
 * the CONNECT and anything the client sent after it; a refused client was
 * answered with a CONNACK and closed by the gate); for RADIUS, the session's
 * filter (a name the identity attribute cannot carry is refused here).
 */
export async function readOpening(client: SecureSocket, context: ConnectionContext, binding: ProtocolBinding): Promise<Opening> {
  if (binding.kind === 'none') return { ok: true, first: undefined, filters: undefined };
  const identity = context.identity?.name;
  // TCP mode forwards authenticated clients only; a context without an identity is a pipeline bug: fail closed.
  if (identity === undefined) {
    client.destroy();
    return { ok: false };
  }
  if (binding.kind === 'radius') return radsecOpening(client, context, binding.radius, identity);
  const { mqtt } = binding;
  const gate = await readMqttConnect(client, {
    name: identity,
    policy: { clientId: mqtt.clientId, username: mqtt.username, password: mqtt.password },
    maxConnectBytes: mqtt.maxConnectBytes,
    timeoutMs: mqtt.connectTimeoutMs,
  });
  const clientId = gate.clientId === undefined ? undefined : boundText(gate.clientId, MAX_LOGGED_CLIENT_ID);
  const event = { listener: context.listener.name, connectionId: context.connectionId, identity, clientId };
  if (!gate.ok) {
    mqttConnectChannel.publish({ ...event, outcome: 'refused', reason: gate.reason, detail: gate.detail });
    return { ok: false };
  }
  mqttConnectChannel.publish({ ...event, outcome: 'forwarded', reason: undefined, detail: gate.changes.join('; ') });
  return { ok: true, first: gate.first, filters: undefined };
}

function radsecOpening(client: SecureSocket, context: ConnectionContext, radius: RadiusBindingConfig, identity: string): Opening {
  const base = { listener: context.listener.name, connectionId: context.connectionId, identity };
  let filter: RadsecFilter;
  try {
    filter = new RadsecFilter({ secret: radius.secret, identity: radius.identityAttribute, name: identity, maxPacketBytes: radius.maxPacketBytes });
  } catch (err) {
    // The name does not fit the identity attribute: the server could not be told who this is.
    const reason = `the identity attribute cannot carry ${identity}: ${err instanceof Error ? err.message : String(err)}`;
    radiusPacketChannel.publish({ ...base, direction: 'from-client', outcome: 'refused', code: undefined, identifier: undefined, reason });
    client.destroy();
    return { ok: false };
  }
  return {
    ok: true,
    first: undefined,
    filters: {
      fromClient: filterStream((chunk) => filter.fromClient(chunk), { ...base, direction: 'from-client' }),
      fromServer: filterStream((chunk) => filter.fromServer(chunk), { ...base, direction: 'from-server' }),
    },
  };
}

type EventBase = Pick<RadiusPacketEvent, 'listener' | 'connectionId' | 'identity' | 'direction'>;

/** A Transform running one direction of the filter: whole packets out, a fatal step fails the stream (and so the session). */
function filterStream(step: (chunk: Buffer) => FilterStep, base: EventBase): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
      const result = step(chunk);
      for (const e of result.events) radiusPacketChannel.publish({ ...base, outcome: e.kind, code: e.code, identifier: e.identifier, reason: e.reason });
      for (const packet of result.out) this.push(packet);
      if (result.fatal !== undefined) {
        // The step's events already hold the refused packet (with its code and identifier).
        done(new Error(`RADSEC ${base.direction}: ${result.fatal}`));
        return;
      }
      done();
    },
  });
}
