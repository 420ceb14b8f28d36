/**
 * Metrics of established sessions (issue 14): revalidation checks by
 * outcome, connections closed from outside their own traffic (revalidation,
 * newest-wins), MQTT CONNECTs judged by a route's binding and RADIUS packets
 * through a RADSEC binding. Fed by the channels; label values are bounded
 * (listener names from the configuration, outcomes and reasons from closed
 * sets: an unknown reason counts as 'other').
 */
import { Counter, type Registry } from 'prom-client';
import { connectionReplacedChannel } from '../connection/channels.js';
import { REVALIDATION_OUTCOMES, revalidationChannel } from '../connection/revalidation-channel.js';
import { mqttConnectChannel, radiusPacketChannel, type MqttConnectEvent } from '../forward/channels.js';
import type { MqttGateReason } from '../forward/mqtt-gate.js';

/** Every reason the MQTT gate gives (the compiler checks the list is whole); anything else counts as 'other'. */
const MQTT_GATE_REASONS: Readonly<Record<MqttGateReason, true>> = {
  'client-id-not-identity': true,
  'client-id-not-prefixed': true,
  'client-id-forbidden-character': true,
  'client-id-empty': true,
  'password-without-username': true,
  'identity-unusable': true,
  'enhanced-auth-not-allowed': true,
  'connect-not-forwardable': true,
  'connect-timeout': true,
  'connect-too-large': true,
  'connect-invalid': true,
  'client-closed': true,
};
const RADIUS_OUTCOMES = ['rewritten', 'passed', 'refused', 'stripped'] as const;
const RADIUS_DIRECTIONS = ['from-client', 'from-server'] as const;
const CLOSE_REASONS = ['revoked', 'expired', 'unverifiable', 'replaced'] as const;

function mqttRefusalLabel(e: MqttConnectEvent): string {
  return e.reason !== undefined && Object.hasOwn(MQTT_GATE_REASONS, e.reason) ? e.reason : 'other';
}

export class SessionMetrics {
  private readonly revalidations: Counter<'listener' | 'outcome'>;
  private readonly closed: Counter<'listener' | 'reason'>;
  private readonly mqttConnects: Counter<'listener' | 'outcome'>;
  private readonly mqttRefusals: Counter<'listener' | 'reason'>;
  private readonly radiusPackets: Counter<'listener' | 'direction' | 'outcome'>;
  private readonly unsubscribe: Array<() => void>;
  private readonly known = new Set<string>();

  constructor(registers: Registry[]) {
    this.revalidations = new Counter({
      name: 'dancegate_revalidations_total',
      help: 'Revalidation checks of established connections by outcome (kept, revoked, expired, failed: DNS trouble within the grace period, unverifiable: failed past it)',
      labelNames: ['listener', 'outcome'] as const,
      registers,
    });
    this.closed = new Counter({
      name: 'dancegate_connections_closed_total',
      help: 'Established connections we closed by reason (revoked, expired, unverifiable: revalidation; replaced: a newer connection of the identity, newest-wins)',
      labelNames: ['listener', 'reason'] as const,
      registers,
    });
    this.mqttConnects = new Counter({
      name: 'dancegate_mqtt_connects_total',
      help: 'MQTT CONNECTs judged by a route binding, by outcome (forwarded, refused)',
      labelNames: ['listener', 'outcome'] as const,
      registers,
    });
    this.mqttRefusals = new Counter({
      name: 'dancegate_mqtt_connect_refusals_total',
      help: 'MQTT CONNECTs refused, by reason',
      labelNames: ['listener', 'reason'] as const,
      registers,
    });
    this.radiusPackets = new Counter({
      name: 'dancegate_radius_packets_total',
      help: 'RADIUS packets through RADSEC bindings, by direction (from-client, from-server) and outcome (rewritten: identity added, passed: untouched, refused; stripped: the peer sent its own copy of the identity attribute, removed)',
      labelNames: ['listener', 'direction', 'outcome'] as const,
      registers,
    });
    this.unsubscribe = [
      revalidationChannel.subscribe((e) => {
        this.zero(e.listener);
        this.revalidations.inc({ listener: e.listener, outcome: e.outcome });
        if (e.outcome === 'revoked' || e.outcome === 'expired' || e.outcome === 'unverifiable') this.closed.inc({ listener: e.listener, reason: e.outcome });
      }),
      connectionReplacedChannel.subscribe((e) => {
        this.zero(e.listener);
        this.closed.inc({ listener: e.listener, reason: 'replaced' });
      }),
      mqttConnectChannel.subscribe((e) => {
        this.zero(e.listener);
        this.mqttConnects.inc({ listener: e.listener, outcome: e.outcome });
        if (e.outcome === 'refused') this.mqttRefusals.inc({ listener: e.listener, reason: mqttRefusalLabel(e) });
      }),
      radiusPacketChannel.subscribe((e) => {
        this.zero(e.listener);
        this.radiusPackets.inc({ listener: e.listener, direction: e.direction, outcome: e.outcome });
      }),
    ];
  }

  /** Every series of a listener at 0 (at start and after a reload, and when first seen on a channel). */
  zero(listener: string): void {
    if (this.known.has(listener)) return;
    this.known.add(listener);
    for (const outcome of REVALIDATION_OUTCOMES) this.revalidations.inc({ listener, outcome }, 0);
    for (const reason of CLOSE_REASONS) this.closed.inc({ listener, reason }, 0);
    for (const outcome of ['forwarded', 'refused']) this.mqttConnects.inc({ listener, outcome }, 0);
    for (const direction of RADIUS_DIRECTIONS) for (const outcome of RADIUS_OUTCOMES) this.radiusPackets.inc({ listener, direction, outcome }, 0);
  }

  close(): void {
    for (const stop of this.unsubscribe.splice(0)) stop();
  }
}
