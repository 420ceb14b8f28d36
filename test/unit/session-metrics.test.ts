/**
 * What established sessions publish (issue 14), as metrics and as log
 * lines: revalidation outcomes, connections closed from outside their own
 * traffic (revoked, expired, unverifiable, replaced), MQTT CONNECTs judged
 * by a route binding and RADIUS packets through a RADSEC binding. Exact
 * exposition lines from an own Registry; exact logger calls; the JSON line
 * a real pino logger writes.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { connectionReplacedChannel, type ConnectionReplacedEvent } from '../../src/connection/channels.js';
import { revalidationChannel, type RevalidationEvent } from '../../src/connection/revalidation-channel.js';
import { mqttConnectChannel, radiusPacketChannel, type MqttConnectEvent, type RadiusPacketEvent } from '../../src/forward/channels.js';
import { SessionMetrics } from '../../src/metrics/session-metrics.js';
import { logSessions } from '../../src/process/session-log.js';

const open: Array<() => void> = [];
afterEach(() => {
  for (const stop of open.splice(0)) stop();
});

function fresh(): { metrics: SessionMetrics; registry: Registry } {
  const registry = new Registry();
  const metrics = new SessionMetrics([registry]);
  open.push(() => metrics.close());
  return { metrics, registry };
}

/** Exposition lines (no comments) of the families starting with `prefix`, in the registry's order. */
async function lines(registry: Registry, prefix: string): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((l) => !l.startsWith('#') && l.startsWith(prefix));
}

const mqtt = (over: Partial<MqttConnectEvent>): MqttConnectEvent => ({
  listener: 'mqtt',
  connectionId: 'c-1',
  identity: 'sensor7._device.example.com',
  clientId: 'sensor7._device.example.com',
  outcome: 'forwarded',
  reason: undefined,
  detail: 'username set to the identity',
  ...over,
});
const radius = (over: Partial<RadiusPacketEvent>): RadiusPacketEvent => ({
  listener: 'radsec',
  connectionId: 'c-2',
  identity: 'nas1.nas.radsec.example',
  direction: 'from-client',
  outcome: 'rewritten',
  code: 1,
  identifier: 7,
  reason: undefined,
  ...over,
});
const revalidation = (over: Partial<RevalidationEvent>): RevalidationEvent => ({
  listener: 'mqtt',
  connectionId: 'c-3',
  name: 'sensor7._device.example.com',
  outcome: 'kept',
  detail: 'the certificate still matches 3 1 1',
  ...over,
});
const replaced = (over: Partial<ConnectionReplacedEvent> = {}): ConnectionReplacedEvent => ({
  listener: 'mqtt',
  connectionId: 'c-4',
  identity: 'sensor7._device.example.com',
  detail: 'a newer connection of sensor7._device.example.com took its place (maxConnectionsPerIdentity 1, newest-wins)',
  ...over,
});

const ZEROED = (listener: string): string[] => [
  ...['kept', 'revoked', 'expired', 'failed', 'unverifiable'].map((o) => `dancegate_revalidations_total{listener="${listener}",outcome="${o}"} 0`),
  ...['revoked', 'expired', 'unverifiable', 'replaced'].map((r) => `dancegate_connections_closed_total{listener="${listener}",reason="${r}"} 0`),
  ...['forwarded', 'refused'].map((o) => `dancegate_mqtt_connects_total{listener="${listener}",outcome="${o}"} 0`),
  ...['from-client', 'from-server'].flatMap((d) =>
    ['rewritten', 'passed', 'refused', 'stripped'].map((o) => `dancegate_radius_packets_total{listener="${listener}",direction="${d}",outcome="${o}"} 0`),
  ),
];

describe('SessionMetrics', () => {
  it('zero(listener): every series of the listener at 0, once (a second zero changes nothing)', async () => {
    const { metrics, registry } = fresh();
    metrics.zero('mqtt');
    expect(await lines(registry, 'dancegate_')).toEqual(ZEROED('mqtt'));
    revalidationChannel.publish(revalidation({}));
    metrics.zero('mqtt');
    expect(await lines(registry, 'dancegate_revalidations_total{listener="mqtt",outcome="kept"}')).toEqual(['dancegate_revalidations_total{listener="mqtt",outcome="kept"} 1']);
  });

  it('a listener first seen on a channel is zeroed then counted', async () => {
    const { registry } = fresh();
    connectionReplacedChannel.publish(replaced({ listener: 'fresh' }));
    const expected = ZEROED('fresh').map((l) => (l === 'dancegate_connections_closed_total{listener="fresh",reason="replaced"} 0' ? l.replace(/ 0$/, ' 1') : l));
    expect(await lines(registry, 'dancegate_')).toEqual(expected);
  });

  it('revalidations by outcome; revoked, expired and unverifiable also count as closed connections, kept and failed do not', async () => {
    const { metrics, registry } = fresh();
    metrics.zero('mqtt');
    for (const outcome of ['kept', 'kept', 'kept', 'failed', 'failed', 'revoked', 'expired', 'unverifiable'] as const) revalidationChannel.publish(revalidation({ outcome }));
    expect(await lines(registry, 'dancegate_revalidations_total')).toEqual([
      'dancegate_revalidations_total{listener="mqtt",outcome="kept"} 3',
      'dancegate_revalidations_total{listener="mqtt",outcome="revoked"} 1',
      'dancegate_revalidations_total{listener="mqtt",outcome="expired"} 1',
      'dancegate_revalidations_total{listener="mqtt",outcome="failed"} 2',
      'dancegate_revalidations_total{listener="mqtt",outcome="unverifiable"} 1',
    ]);
    expect(await lines(registry, 'dancegate_connections_closed_total')).toEqual([
      'dancegate_connections_closed_total{listener="mqtt",reason="revoked"} 1',
      'dancegate_connections_closed_total{listener="mqtt",reason="expired"} 1',
      'dancegate_connections_closed_total{listener="mqtt",reason="unverifiable"} 1',
      'dancegate_connections_closed_total{listener="mqtt",reason="replaced"} 0',
    ]);
  });

  it('replaced connections count as closed, reason replaced', async () => {
    const { metrics, registry } = fresh();
    metrics.zero('mqtt');
    connectionReplacedChannel.publish(replaced());
    connectionReplacedChannel.publish(replaced({ connectionId: 'c-5' }));
    expect(await lines(registry, 'dancegate_connections_closed_total{listener="mqtt",reason="replaced"}')).toEqual(['dancegate_connections_closed_total{listener="mqtt",reason="replaced"} 2']);
  });

  it('MQTT CONNECTs by outcome, refusals by reason; an unknown or missing reason is other', async () => {
    const { metrics, registry } = fresh();
    metrics.zero('mqtt');
    mqttConnectChannel.publish(mqtt({}));
    mqttConnectChannel.publish(mqtt({}));
    mqttConnectChannel.publish(mqtt({ outcome: 'refused', reason: 'client-id-not-identity', detail: 'x' }));
    mqttConnectChannel.publish(mqtt({ outcome: 'refused', reason: 'client-id-not-identity', detail: 'x' }));
    mqttConnectChannel.publish(mqtt({ outcome: 'refused', reason: 'connect-timeout', detail: 'x' }));
    mqttConnectChannel.publish(mqtt({ outcome: 'refused', reason: 'made-up-by-a-bug', detail: 'x' }));
    mqttConnectChannel.publish(mqtt({ outcome: 'refused', reason: '__proto__', detail: 'x' }));
    mqttConnectChannel.publish(mqtt({ outcome: 'refused', reason: 'toString', detail: 'x' }));
    mqttConnectChannel.publish(mqtt({ outcome: 'refused', reason: undefined, detail: 'x' }));
    expect(await lines(registry, 'dancegate_mqtt_connect')).toEqual([
      'dancegate_mqtt_connects_total{listener="mqtt",outcome="forwarded"} 2',
      'dancegate_mqtt_connects_total{listener="mqtt",outcome="refused"} 7',
      'dancegate_mqtt_connect_refusals_total{listener="mqtt",reason="client-id-not-identity"} 2',
      'dancegate_mqtt_connect_refusals_total{listener="mqtt",reason="connect-timeout"} 1',
      'dancegate_mqtt_connect_refusals_total{listener="mqtt",reason="other"} 4',
    ]);
  });

  it('RADIUS packets by direction and outcome', async () => {
    const { metrics, registry } = fresh();
    metrics.zero('radsec');
    radiusPacketChannel.publish(radius({}));
    radiusPacketChannel.publish(radius({ outcome: 'stripped', reason: '1 copy removed' }));
    radiusPacketChannel.publish(radius({ outcome: 'refused', reason: 'Message-Authenticator does not verify' }));
    radiusPacketChannel.publish(radius({ code: 12, outcome: 'passed' }));
    radiusPacketChannel.publish(radius({ direction: 'from-server', code: 2, outcome: 'passed' }));
    radiusPacketChannel.publish(radius({ direction: 'from-server', code: 5, outcome: 'rewritten' }));
    radiusPacketChannel.publish(radius({ direction: 'from-server', code: 5, outcome: 'rewritten' }));
    expect(await lines(registry, 'dancegate_radius_packets_total')).toEqual([
      'dancegate_radius_packets_total{listener="radsec",direction="from-client",outcome="rewritten"} 1',
      'dancegate_radius_packets_total{listener="radsec",direction="from-client",outcome="passed"} 1',
      'dancegate_radius_packets_total{listener="radsec",direction="from-client",outcome="refused"} 1',
      'dancegate_radius_packets_total{listener="radsec",direction="from-client",outcome="stripped"} 1',
      'dancegate_radius_packets_total{listener="radsec",direction="from-server",outcome="rewritten"} 2',
      'dancegate_radius_packets_total{listener="radsec",direction="from-server",outcome="passed"} 1',
      'dancegate_radius_packets_total{listener="radsec",direction="from-server",outcome="refused"} 0',
      'dancegate_radius_packets_total{listener="radsec",direction="from-server",outcome="stripped"} 0',
    ]);
  });

  it('listeners are counted apart', async () => {
    const { registry } = fresh();
    mqttConnectChannel.publish(mqtt({ listener: 'a' }));
    mqttConnectChannel.publish(mqtt({ listener: 'b' }));
    mqttConnectChannel.publish(mqtt({ listener: 'b' }));
    expect(await lines(registry, 'dancegate_mqtt_connects_total')).toEqual([
      'dancegate_mqtt_connects_total{listener="a",outcome="forwarded"} 1',
      'dancegate_mqtt_connects_total{listener="a",outcome="refused"} 0',
      'dancegate_mqtt_connects_total{listener="b",outcome="forwarded"} 2',
      'dancegate_mqtt_connects_total{listener="b",outcome="refused"} 0',
    ]);
  });

  it('close(): nothing more is counted (the series stay)', async () => {
    const registry = new Registry();
    const metrics = new SessionMetrics([registry]);
    metrics.zero('mqtt');
    metrics.close();
    mqttConnectChannel.publish(mqtt({}));
    revalidationChannel.publish(revalidation({ outcome: 'revoked' }));
    connectionReplacedChannel.publish(replaced());
    radiusPacketChannel.publish(radius({ listener: 'mqtt' }));
    expect(await lines(registry, 'dancegate_')).toEqual(ZEROED('mqtt'));
  });
});

interface Call {
  readonly level: 'warn' | 'info' | 'debug';
  readonly fields: Record<string, unknown>;
  readonly msg: string;
}

/** A logger that records each call (the three levels logSessions uses). */
function fakeLogger(): { calls: Call[]; logger: Parameters<typeof logSessions>[0] } {
  const calls: Call[] = [];
  const at =
    (level: Call['level']) =>
    (fields: Record<string, unknown>, msg: string): void => {
      calls.push({ level, fields, msg });
    };
  return { calls, logger: { warn: at('warn'), info: at('info'), debug: at('debug') } as unknown as Parameters<typeof logSessions>[0] };
}

function subscribed(): Call[] {
  const { calls, logger } = fakeLogger();
  open.push(logSessions(logger));
  return calls;
}

describe('logSessions: exact lines', () => {
  it('a refused MQTT CONNECT: warn, with the client id it claimed; a forwarded one: nothing', () => {
    const calls = subscribed();
    mqttConnectChannel.publish(mqtt({}));
    mqttConnectChannel.publish(
      mqtt({ outcome: 'refused', clientId: 'sensor8._device.example.com', reason: 'client-id-not-identity', detail: "client id 'sensor8._device.example.com' is not the verified name" }),
    );
    mqttConnectChannel.publish(mqtt({ connectionId: 'c-9', outcome: 'refused', clientId: undefined, reason: 'connect-timeout', detail: 'no CONNECT within 10000 ms' }));
    expect(calls).toEqual([
      {
        level: 'warn',
        msg: 'mqtt connect refused',
        fields: {
          event: 'mqtt-connect-refused',
          listener: 'mqtt',
          connectionId: 'c-1',
          identity: 'sensor7._device.example.com',
          clientId: 'sensor8._device.example.com',
          reason: 'client-id-not-identity',
          detail: "client id 'sensor8._device.example.com' is not the verified name",
        },
      },
      {
        level: 'warn',
        msg: 'mqtt connect refused',
        fields: {
          event: 'mqtt-connect-refused',
          listener: 'mqtt',
          connectionId: 'c-9',
          identity: 'sensor7._device.example.com',
          clientId: null,
          reason: 'connect-timeout',
          detail: 'no CONNECT within 10000 ms',
        },
      },
    ]);
  });

  it('RADIUS: refused and stripped are warned, rewritten and passed are not', () => {
    const calls = subscribed();
    radiusPacketChannel.publish(radius({}));
    radiusPacketChannel.publish(radius({ outcome: 'passed', code: 12 }));
    radiusPacketChannel.publish(radius({ outcome: 'refused', reason: 'Access-Request id 7: Message-Authenticator does not verify with the shared secret' }));
    radiusPacketChannel.publish(radius({ outcome: 'stripped', identifier: 8, reason: '1 copy of the identity attribute removed' }));
    radiusPacketChannel.publish(radius({ outcome: 'refused', code: undefined, identifier: undefined, reason: 'packet length 70000 over 4096' }));
    const base = { event: 'radius-packet-refused', listener: 'radsec', connectionId: 'c-2', identity: 'nas1.nas.radsec.example', direction: 'from-client' };
    expect(calls).toEqual([
      { level: 'warn', msg: 'radius packet refused', fields: { ...base, code: 1, identifier: 7, reason: 'Access-Request id 7: Message-Authenticator does not verify with the shared secret' } },
      { level: 'warn', msg: 'radius identity attribute sent by the peer removed', fields: { ...base, code: 1, identifier: 8, reason: '1 copy of the identity attribute removed' } },
      { level: 'warn', msg: 'radius packet refused', fields: { ...base, code: null, identifier: null, reason: 'packet length 70000 over 4096' } },
    ]);
  });

  it('revalidation: kept at debug, failed at warn with the next check, revoked/expired/unverifiable closed at warn with the reason', () => {
    const calls = subscribed();
    revalidationChannel.publish(revalidation({ nextInMs: 61_000 }));
    revalidationChannel.publish(revalidation({ outcome: 'failed', detail: 'SERVFAIL', nextInMs: 30_000 }));
    for (const outcome of ['revoked', 'expired', 'unverifiable'] as const) revalidationChannel.publish(revalidation({ outcome, detail: `${outcome} detail` }));
    const base = { event: 'revalidation', listener: 'mqtt', connectionId: 'c-3', identity: 'sensor7._device.example.com' };
    expect(calls).toEqual([
      { level: 'debug', msg: 'connection revalidated', fields: { ...base, outcome: 'kept', detail: 'the certificate still matches 3 1 1', nextInMs: 61_000 } },
      { level: 'warn', msg: 'connection revalidation failed; kept within the grace period', fields: { ...base, outcome: 'failed', detail: 'SERVFAIL', nextInMs: 30_000 } },
      { level: 'warn', msg: 'connection closed by revalidation', fields: { ...base, outcome: 'revoked', detail: 'revoked detail', reason: 'revoked' } },
      { level: 'warn', msg: 'connection closed by revalidation', fields: { ...base, outcome: 'expired', detail: 'expired detail', reason: 'expired' } },
      { level: 'warn', msg: 'connection closed by revalidation', fields: { ...base, outcome: 'unverifiable', detail: 'unverifiable detail', reason: 'unverifiable' } },
    ]);
  });

  it('a replaced connection: info with the detail', () => {
    const calls = subscribed();
    connectionReplacedChannel.publish(replaced());
    expect(calls).toEqual([
      {
        level: 'info',
        msg: 'connection replaced by a newer one of the same identity',
        fields: {
          event: 'connection-replaced',
          listener: 'mqtt',
          connectionId: 'c-4',
          identity: 'sensor7._device.example.com',
          detail: 'a newer connection of sensor7._device.example.com took its place (maxConnectionsPerIdentity 1, newest-wins)',
        },
      },
    ]);
  });

  it('after the returned function is called, nothing is logged', () => {
    const { calls, logger } = fakeLogger();
    const stop = logSessions(logger);
    stop();
    mqttConnectChannel.publish(mqtt({ outcome: 'refused', reason: 'client-id-empty', detail: 'x' }));
    radiusPacketChannel.publish(radius({ outcome: 'refused', reason: 'x' }));
    revalidationChannel.publish(revalidation({ outcome: 'revoked' }));
    connectionReplacedChannel.publish(replaced());
    expect(calls).toEqual([]);
  });

  it('with a real pino logger: the JSON lines the contract names (msg and fields)', () => {
    const out: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done): void {
        out.push(
          ...chunk
            .toString()
            .split('\n')
            .filter((l) => l !== ''),
        );
        done();
      },
    });
    const logger = pino({ level: 'info', base: undefined, timestamp: false }, sink);
    open.push(logSessions(logger));
    mqttConnectChannel.publish(mqtt({ outcome: 'refused', clientId: 'x', reason: 'client-id-not-identity', detail: 'd' }));
    radiusPacketChannel.publish(radius({ outcome: 'refused', reason: 'r' }));
    revalidationChannel.publish(revalidation({ outcome: 'revoked', detail: 'no TLSA record' }));
    // kept is debug: not written at level info.
    revalidationChannel.publish(revalidation({ outcome: 'kept', nextInMs: 1000 }));
    expect(out.map((l) => JSON.parse(l) as unknown)).toEqual([
      {
        level: 40,
        event: 'mqtt-connect-refused',
        listener: 'mqtt',
        connectionId: 'c-1',
        identity: 'sensor7._device.example.com',
        clientId: 'x',
        reason: 'client-id-not-identity',
        detail: 'd',
        msg: 'mqtt connect refused',
      },
      {
        level: 40,
        event: 'radius-packet-refused',
        listener: 'radsec',
        connectionId: 'c-2',
        identity: 'nas1.nas.radsec.example',
        direction: 'from-client',
        code: 1,
        identifier: 7,
        reason: 'r',
        msg: 'radius packet refused',
      },
      {
        level: 40,
        event: 'revalidation',
        listener: 'mqtt',
        connectionId: 'c-3',
        identity: 'sensor7._device.example.com',
        outcome: 'revoked',
        detail: 'no TLSA record',
        reason: 'revoked',
        msg: 'connection closed by revalidation',
      },
    ]);
  });
});
