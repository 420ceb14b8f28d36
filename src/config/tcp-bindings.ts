/**
 * The configuration of what a TCP-mode listener understands beyond bytes
 * (issue 14): ALPN offered and routes chosen by it, the MQTT and RADSEC
 * identity bindings of a route, revalidation of established connections,
 * TCP keepalive. Schemas (shape and ranges) and the resolvers that check
 * meaning and apply defaults; load.ts composes them into the listener.
 */
import { z } from 'zod';
import { checkIdentityAttribute } from '../protocol/radius.js';
import type { MqttBindingConfig, ProtocolBinding, RadiusBindingConfig, RadiusIdentityAttribute, RevalidateConfig } from './types.js';

/** The listener modes an operator can write: mqtt and radsec are TCP mode with that binding on every route. */
export const LISTENER_MODES = ['http', 'tcp', 'mqtt', 'radsec'] as const;
export type WrittenMode = (typeof LISTENER_MODES)[number];

/** The mode the proxy runs (mqtt and radsec are TCP mode). */
export function runningMode(written: WrittenMode): 'http' | 'tcp' {
  return written === 'http' ? 'http' : 'tcp';
}

export const MQTT_DEFAULTS = {
  clientId: 'require-identity',
  username: 'identity',
  password: 'keep',
  maxConnectBytes: 16_384,
  connectTimeoutMs: 10_000,
} as const satisfies MqttBindingConfig;

/** IANA's example enterprise number (RFC 5612): a default that cannot collide with a real vendor's attributes. */
export const RADIUS_EXAMPLE_VENDOR_ID = 32473;

export const RADIUS_DEFAULTS = {
  secret: 'radsec',
  identityAttribute: { kind: 'vsa', vendorId: RADIUS_EXAMPLE_VENDOR_ID, vendorType: 1 },
  maxPacketBytes: 4096,
} as const satisfies RadiusBindingConfig;

export const REVALIDATE_DEFAULTS = { mode: 'ttl', floorSeconds: 30, ceilingSeconds: 3600, jitterSeconds: 30, graceSeconds: 300 } as const;
export const TCP_KEEPALIVE_DEFAULT_MS = 60_000;

/** An ALPN protocol id as written in the configuration: 1–255 printable ASCII characters (RFC 7301 allows any bytes; we take the readable ones). */
const AlpnId = z.string().regex(/^[\x21-\x7e]{1,255}$/, 'expected an ALPN protocol id of 1–255 printable ASCII characters (mqtt, radius/1.1, …)');
export const AlpnListSchema = z.array(AlpnId).min(1, 'expected at least one ALPN protocol id').max(32, 'expected at most 32 ALPN protocol ids');

export const MqttSchema = z.strictObject({
  clientId: z.enum(['require-identity', 'prefix-identity', 'any']).default(MQTT_DEFAULTS.clientId),
  username: z.enum(['identity', 'keep']).default(MQTT_DEFAULTS.username),
  password: z.enum(['keep', 'drop']).default(MQTT_DEFAULTS.password),
  // A CONNECT needs at least 12 bytes; 268 MB is MQTT's own ceiling, far above anything sane before authentication.
  maxConnectBytes: z.number().int().min(64).max(1_048_576).default(MQTT_DEFAULTS.maxConnectBytes),
  connectTimeoutMs: z.number().int().min(1).max(300_000).default(MQTT_DEFAULTS.connectTimeoutMs),
});

const byte = (min: number) => z.number().int().min(min).max(255);

export const RadiusSchema = z.strictObject({
  secret: z.string().min(1, 'expected a non-empty shared secret (RFC 6614: radsec)').max(256).default(RADIUS_DEFAULTS.secret),
  identityAttribute: z
    .union([z.strictObject({ vendorId: z.number().int().min(1).max(0xffffff), vendorType: byte(1) }), z.strictObject({ type: byte(1) })])
    .default({ vendorId: RADIUS_DEFAULTS.identityAttribute.vendorId, vendorType: RADIUS_DEFAULTS.identityAttribute.vendorType }),
  maxPacketBytes: z.number().int().min(20).max(65_535).default(RADIUS_DEFAULTS.maxPacketBytes),
});

const seconds = (max: number) => z.number().min(0).max(max);
export const RevalidateSchema = z
  .union([
    z.literal('off'),
    z.literal(false),
    z.strictObject({
      mode: z.enum(['ttl', 'off']).default(REVALIDATE_DEFAULTS.mode),
      floorSeconds: seconds(86_400).default(REVALIDATE_DEFAULTS.floorSeconds),
      ceilingSeconds: seconds(7 * 86_400).default(REVALIDATE_DEFAULTS.ceilingSeconds),
      jitterSeconds: seconds(86_400).default(REVALIDATE_DEFAULTS.jitterSeconds),
      graceSeconds: seconds(7 * 86_400).default(REVALIDATE_DEFAULTS.graceSeconds),
    }),
  ])
  .default({ ...REVALIDATE_DEFAULTS });

export const TcpKeepAliveSchema = z
  .union([z.literal(false), z.strictObject({ initialDelayMs: z.number().int().min(1000).max(7_200_000).default(TCP_KEEPALIVE_DEFAULT_MS) })])
  .default({ initialDelayMs: TCP_KEEPALIVE_DEFAULT_MS });

export const IdentityCapSchema = z.union([
  z.number().int().min(1).max(10_000_000),
  z.strictObject({ max: z.number().int().min(1).max(10_000_000), overflow: z.enum(['refuse-new', 'newest-wins']).default('refuse-new') }),
]);

type Report = (keyPath: string, message: string) => void;

/** Standard attributes RADIUS servers act on: User-Name, User-Password, CHAP-Password, NAS-IP-Address, NAS-Port, NAS-Identifier, EAP-Message, Message-Authenticator. */
const STANDARD_TYPES: readonly number[] = [1, 2, 3, 4, 5, 32, 79, 80];

/** Revalidation in milliseconds; the floor must not exceed the ceiling, and the floor is at least 1 s (a revalidation loop must not spin). */
export function resolveRevalidate(raw: z.infer<typeof RevalidateSchema>, keyPath: string, report: Report): RevalidateConfig {
  const r = raw === 'off' || raw === false ? { ...REVALIDATE_DEFAULTS, mode: 'off' as const } : raw;
  if (r.floorSeconds < 1) report(`${keyPath}.floorSeconds`, 'must be at least 1 (a connection re-checked more often than every second would turn revalidation into a query loop)');
  if (r.floorSeconds > r.ceilingSeconds) report(`${keyPath}.floorSeconds`, `must not exceed ceilingSeconds (${r.ceilingSeconds})`);
  const ms = (s: number): number => Math.round(s * 1000);
  return { mode: r.mode, floorMs: ms(r.floorSeconds), ceilingMs: ms(r.ceilingSeconds), jitterMs: ms(r.jitterSeconds), graceMs: ms(r.graceSeconds) };
}

export interface RawBindings {
  readonly mqtt?: z.infer<typeof MqttSchema> | undefined;
  readonly radius?: z.infer<typeof RadiusSchema> | undefined;
}

/** Why an identity attribute cannot be used: ours first (Vendor-Specific itself, attributes servers act on), then the codec's (extended types and the rest). */
function identityAttributeProblem(attribute: RadiusIdentityAttribute): { readonly onType: boolean; readonly message: string } | undefined {
  if (attribute.kind === 'attribute' && attribute.type === 26) return { onType: true, message: 'is Vendor-Specific (26): give vendorId and vendorType instead' };
  if (attribute.kind === 'attribute' && STANDARD_TYPES.includes(attribute.type)) {
    return {
      onType: true,
      message: `${attribute.type} is a standard attribute RADIUS servers act on (User-Name, User-Password, NAS-*, EAP-Message, Message-Authenticator…): choose a Vendor-Specific attribute`,
    };
  }
  const codec = checkIdentityAttribute(attribute);
  return codec === undefined ? undefined : { onType: false, message: codec };
}

/** A route's protocol binding: from its own mqtt:/radius: options, or the listener's mode (mqtt, radsec) with defaults. */
export function resolveBinding(raw: RawBindings, mode: WrittenMode, keyPath: string, report: Report): ProtocolBinding {
  if (mode === 'http') {
    if (raw.mqtt !== undefined) report(`${keyPath}.mqtt`, 'applies to mode: mqtt or tcp (HTTP mode forwards the identity in headers)');
    if (raw.radius !== undefined) report(`${keyPath}.radius`, 'applies to mode: radsec or tcp (HTTP mode forwards the identity in headers)');
    return { kind: 'none' };
  }
  if (raw.mqtt !== undefined && raw.radius !== undefined) report(keyPath, 'a route binds one protocol: mqtt or radius, not both');
  if (mode === 'mqtt' && raw.radius !== undefined) report(`${keyPath}.radius`, 'a mode: mqtt listener binds MQTT; use mode: radsec (or tcp) for RADIUS');
  if (mode === 'radsec' && raw.mqtt !== undefined) report(`${keyPath}.mqtt`, 'a mode: radsec listener binds RADIUS; use mode: mqtt (or tcp) for MQTT');
  if (raw.mqtt !== undefined || mode === 'mqtt') return { kind: 'mqtt', mqtt: raw.mqtt ?? MqttSchema.parse({}) };
  if (raw.radius !== undefined || mode === 'radsec') {
    const r = raw.radius ?? RadiusSchema.parse({});
    const a = r.identityAttribute;
    const identityAttribute = 'type' in a ? ({ kind: 'attribute', type: a.type } as const) : ({ kind: 'vsa', vendorId: a.vendorId, vendorType: a.vendorType } as const);
    const problem = identityAttributeProblem(identityAttribute);
    if (problem !== undefined) report(`${keyPath}.radius.identityAttribute${problem.onType ? '.type' : ''}`, problem.message);
    return { kind: 'radius', radius: { secret: r.secret, identityAttribute, maxPacketBytes: r.maxPacketBytes } };
  }
  return { kind: 'none' };
}

/** Listener ALPN (TCP modes only) and each route's ALPN must be offered by the listener, each id once. */
export function checkAlpn(listenerAlpn: readonly string[] | undefined, routesAlpn: ReadonlyArray<readonly string[] | undefined>, mode: WrittenMode, keyPath: string, report: Report): void {
  if (mode === 'http' && listenerAlpn !== undefined) report(`${keyPath}.alpn`, 'applies to tcp, mqtt and radsec listeners (HTTP mode: http.alpn)');
  const listed = (list: readonly string[], where: string): void =>
    list.forEach((p, i) => {
      if (list.indexOf(p) !== i) report(`${where}[${i}]`, `'${p}' is listed twice`);
    });
  if (listenerAlpn !== undefined) listed(listenerAlpn, `${keyPath}.alpn`);
  routesAlpn.forEach((alpn, r) => {
    if (alpn === undefined) return;
    const where = `${keyPath}.routes[${r}].alpn`;
    if (mode === 'http') return report(where, 'routes are chosen by ALPN in tcp, mqtt and radsec listeners only');
    listed(alpn, where);
    if (listenerAlpn === undefined) return report(where, `the listener offers no ALPN: add ${keyPath}.alpn listing ${alpn.join(', ')}`);
    alpn.forEach((p, i) => {
      if (!listenerAlpn.includes(p)) report(`${where}[${i}]`, `'${p}' is not offered by ${keyPath}.alpn (${listenerAlpn.join(', ')}): no connection could ever negotiate it`);
    });
  });
}

/** Two routes conflict over a server name only when they can serve the same ALPN (undefined: any). */
export function alpnOverlap(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.some((p) => b.includes(p));
}
