/**
 * The configuration of issue 14: listener modes mqtt and radsec (TCP mode
 * with a protocol binding on every route) and the route keys mqtt:/radius:,
 * ALPN on TCP listeners and routes chosen by it, revalidation, TCP
 * keepalive, maxConnectionsPerIdentity with its overflow policy and the
 * PROXY v2 header cap. Each key's resolved value (defaults included), and
 * every mistake's exact message with its key path.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/pki.js';
import { ConfigError, parseConfigText } from '../../src/config/load.js';
import type { DancegateConfig, HttpListenerConfig, ProtocolBinding, TcpListenerConfig } from '../../src/config/types.js';
import { describeProxy } from '../../src/process/status.js';
import type { RunningProxy } from '../../src/process/running-proxy.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-config14-'));
  const server = await createCertificate({ commonName: 'broker', dnsNames: ['mqtt.example.test'], extendedKeyUsage: 'server' });
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

type Mode = 'http' | 'tcp' | 'mqtt' | 'radsec';

/** One listener of `mode` with the YAML `routes` (each entry "      - ..." ) and extra listener lines (indented 4), and extra top-level text. */
function file(mode: Mode, routes: string, listener = '', top = ''): string {
  return `
resolver:
  servers:
    - address: 127.0.0.1:5353
${top}listeners:
  - name: edge
    listen: 127.0.0.1:8883
    mode: ${mode}
${listener}    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
${routes}`;
}

/** One route (allow added) with the given lines (indented 8); the upstream fits the mode. */
const route = (mode: Mode, lines = '', names = ''): string =>
  `      - allow: ['*._device.example.test']
        upstream: ${mode === 'http' ? 'http://127.0.0.1:8080' : 'tcp://127.0.0.1:1883'}
${names === '' ? '' : `        serverNames: [${names}]\n`}${lines}`;

const one = (mode: Mode, lines = '', listener = '', top = ''): string => file(mode, route(mode, lines), listener, top);

async function parse(text: string): Promise<DancegateConfig> {
  return parseConfigText(text, join(dir, 'dancegate.yaml'));
}
async function tcpListener(text: string): Promise<TcpListenerConfig> {
  const l = (await parse(text)).listeners[0];
  if (l?.mode !== 'tcp') throw new Error(`expected a tcp listener, got ${l?.mode}`);
  return l;
}
async function httpListener(text: string): Promise<HttpListenerConfig> {
  const l = (await parse(text)).listeners[0];
  if (l?.mode !== 'http') throw new Error(`expected an http listener, got ${l?.mode}`);
  return l;
}
async function problemsOf(text: string): Promise<readonly string[]> {
  try {
    await parse(text);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => p.replaceAll(dir, 'DIR'));
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const MQTT_DEFAULT: ProtocolBinding = {
  kind: 'mqtt',
  mqtt: { clientId: 'require-identity', username: 'identity', password: 'keep', maxConnectBytes: 16384, connectTimeoutMs: 10000 },
};
const RADIUS_DEFAULT: ProtocolBinding = {
  kind: 'radius',
  radius: { secret: 'radsec', identityAttribute: { kind: 'vsa', vendorId: 32473, vendorType: 1 }, maxPacketBytes: 4096 },
};
const REVALIDATE_DEFAULT = { mode: 'ttl', floorMs: 30_000, ceilingMs: 3_600_000, jitterMs: 30_000, graceMs: 300_000 };

describe('modes and bindings: resolved values', () => {
  it.each<[string, string, 'tcp' | 'mqtt' | 'radsec', ProtocolBinding]>([
    ['mode: mqtt gives the route the MQTT defaults', one('mqtt'), 'mqtt', MQTT_DEFAULT],
    ['mode: radsec gives the route the RADIUS defaults', one('radsec'), 'radsec', RADIUS_DEFAULT],
    ['mode: tcp with mqtt: {} is the same binding', one('tcp', '        mqtt: {}\n'), 'tcp', MQTT_DEFAULT],
    ['mode: tcp with radius: {} is the same binding', one('tcp', '        radius: {}\n'), 'tcp', RADIUS_DEFAULT],
    ['mode: tcp alone binds nothing', one('tcp'), 'tcp', { kind: 'none' }],
    ['mode: mqtt with mqtt: {} (the same as the mode)', one('mqtt', '        mqtt: {}\n'), 'mqtt', MQTT_DEFAULT],
    [
      'mqtt: every key given',
      one('mqtt', '        mqtt: { clientId: prefix-identity, username: keep, password: drop, maxConnectBytes: 64, connectTimeoutMs: 300000 }\n'),
      'mqtt',
      { kind: 'mqtt', mqtt: { clientId: 'prefix-identity', username: 'keep', password: 'drop', maxConnectBytes: 64, connectTimeoutMs: 300000 } },
    ],
    [
      'mqtt: one key given, the rest default',
      one('tcp', '        mqtt: { clientId: any }\n'),
      'tcp',
      { kind: 'mqtt', mqtt: { clientId: 'any', username: 'identity', password: 'keep', maxConnectBytes: 16384, connectTimeoutMs: 10000 } },
    ],
    [
      'radius: a plain attribute, a secret and the largest packet',
      one('radsec', '        radius: { secret: s3cret, identityAttribute: { type: 224 }, maxPacketBytes: 65535 }\n'),
      'radsec',
      { kind: 'radius', radius: { secret: 's3cret', identityAttribute: { kind: 'attribute', type: 224 }, maxPacketBytes: 65535 } },
    ],
    [
      'radius: another vendor attribute, the smallest packet',
      one('tcp', '        radius: { identityAttribute: { vendorId: 16777215, vendorType: 255 }, maxPacketBytes: 20 }\n'),
      'tcp',
      { kind: 'radius', radius: { secret: 'radsec', identityAttribute: { kind: 'vsa', vendorId: 16777215, vendorType: 255 }, maxPacketBytes: 20 } },
    ],
    [
      'radius: the smallest vendor id and type',
      one('radsec', '        radius: { identityAttribute: { vendorId: 1, vendorType: 1 } }\n'),
      'radsec',
      { kind: 'radius', radius: { secret: 'radsec', identityAttribute: { kind: 'vsa', vendorId: 1, vendorType: 1 }, maxPacketBytes: 4096 } },
    ],
  ])('%s', async (_label, text, protocol, binding) => {
    const l = await tcpListener(text);
    expect(l.mode).toBe('tcp');
    expect(l.protocol).toBe(protocol);
    expect(l.routes[0]?.binding).toEqual(binding);
  });

  it('a TCP listener without alpn: no ALPN on the listener or its routes, keepalive and revalidation by default, PROXY v2 cap 500', async () => {
    const l = await tcpListener(one('mqtt'));
    expect({ alpn: l.alpn, routeAlpn: l.routes[0]?.alpn, tcpKeepAlive: l.tcpKeepAlive, revalidate: l.revalidate, proxyHeader: l.routes[0]?.proxyHeader }).toEqual({
      alpn: undefined,
      routeAlpn: undefined,
      tcpKeepAlive: { initialDelayMs: 60000 },
      revalidate: REVALIDATE_DEFAULT,
      proxyHeader: { version: 'none', tlvTypes: { name: 0xe4, certHash: 0xe5, tlsa: 0xe6 }, crc32c: false, maxHeaderBytes: 500 },
    });
  });

  it('an HTTP listener has the same keepalive and revalidation defaults, and its routes no ALPN', async () => {
    const l = await httpListener(one('http'));
    expect({ tcpKeepAlive: l.tcpKeepAlive, revalidate: l.revalidate, alpn: l.routes[0]?.alpn }).toEqual({
      tcpKeepAlive: { initialDelayMs: 60000 },
      revalidate: REVALIDATE_DEFAULT,
      alpn: undefined,
    });
  });

  it('the contract example (mqtt and radsec listeners; RADSEC offering radius/1.0 only) resolves exactly', async () => {
    const config = await parse(`
resolver:
  servers:
    - address: 127.0.0.1:5353
limits:
  maxConnectionsPerIdentity: { max: 1, overflow: newest-wins }
listeners:
  - name: mqtt
    listen: 127.0.0.1:8883
    mode: mqtt
    alpn: [mqtt]
    tcpKeepAlive: { initialDelayMs: 60000 }
    revalidate: { mode: ttl, floorSeconds: 30, ceilingSeconds: 3600, jitterSeconds: 30, graceSeconds: 300 }
    tls: { certificates: [ { certFile: server.pem, keyFile: server.key } ] }
    routes:
      - upstream: tcp://127.0.0.1:1883
        allow: ['*._device.fleet.test']
        alpn: [mqtt]
        proxyHeader: none
        mqtt: { clientId: require-identity, username: identity, password: keep, maxConnectBytes: 16384, connectTimeoutMs: 10000 }
  - name: radsec
    listen: 127.0.0.1:2083
    mode: radsec
    alpn: [radius/1.0]
    tls: { certificates: [ { certFile: server.pem, keyFile: server.key } ] }
    routes:
      - upstream: tcp://127.0.0.1:12083
        allow: ['*.nas.radsec.example']
        proxyHeader: v2
        radius: { secret: radsec, identityAttribute: { vendorId: 32473, vendorType: 1 }, maxPacketBytes: 4096 }
`);
    expect({ max: config.limits.maxConnectionsPerIdentity, overflow: config.limits.identityOverflow }).toEqual({ max: 1, overflow: 'newest-wins' });
    const [mqtt, radsec] = config.listeners;
    if (mqtt?.mode !== 'tcp' || radsec?.mode !== 'tcp') throw new Error('expected two tcp listeners');
    expect([mqtt.protocol, mqtt.alpn, mqtt.routes[0]?.alpn, mqtt.routes[0]?.binding]).toEqual(['mqtt', ['mqtt'], ['mqtt'], MQTT_DEFAULT]);
    expect([radsec.protocol, radsec.alpn, radsec.routes[0]?.alpn, radsec.routes[0]?.binding]).toEqual(['radsec', ['radius/1.0'], undefined, RADIUS_DEFAULT]);
    expect(radsec.routes[0]?.proxyHeader.maxHeaderBytes).toBe(500);
  });
});

describe('ALPN: resolved values', () => {
  it('listener ALPN in its order; each route its own list', async () => {
    const l = await tcpListener(
      file(
        'tcp',
        `${route('tcp', '        alpn: [x-other]\n', 'a.example.test')}${route('tcp', '        alpn: [mqtt]\n', 'a.example.test')}${route('tcp', '', 'a.example.test')}`,
        '    alpn: [mqtt, x-other]\n',
      ),
    );
    expect(l.alpn).toEqual(['mqtt', 'x-other']);
    expect(l.routes.map((r) => [r.serverNames, r.alpn])).toEqual([
      [['a.example.test'], ['x-other']],
      [['a.example.test'], ['mqtt']],
      [['a.example.test'], undefined],
    ]);
  });

  it('a default route per ALPN protocol, and one without ALPN, may live together', async () => {
    const l = await tcpListener(file('tcp', `${route('tcp', '        alpn: [mqtt]\n')}${route('tcp', '        alpn: [x-other]\n')}${route('tcp')}`, '    alpn: [mqtt, x-other]\n'));
    expect(l.routes.map((r) => [r.serverNames, r.alpn])).toEqual([
      [[], ['mqtt']],
      [[], ['x-other']],
      [[], undefined],
    ]);
  });

  it('RADIUS/1.1 (RFC 9765) to a plain route, RADIUS/1.0 to the RADSEC binding', async () => {
    const l = await tcpListener(
      file('tcp', `${route('tcp', '        alpn: [radius/1.0]\n        radius: {}\n')}${route('tcp', '        alpn: [radius/1.1]\n')}`, '    alpn: [radius/1.1, radius/1.0]\n'),
    );
    expect(l.routes.map((r) => [r.alpn, r.binding.kind])).toEqual([
      [['radius/1.0'], 'radius'],
      [['radius/1.1'], 'none'],
    ]);
  });

  it('a RADSEC route without alpn of its own is accepted when another route takes radius/1.1', async () => {
    const l = await tcpListener(file('tcp', `${route('tcp', '        alpn: [radius/1.1]\n')}${route('tcp', '        radius: {}\n')}`, '    alpn: [radius/1.1, radius/1.0]\n'));
    expect(l.routes.map((r) => [r.alpn, r.binding.kind])).toEqual([
      [['radius/1.1'], 'none'],
      [undefined, 'radius'],
    ]);
  });

  it('ids of 1 and 255 printable characters, 32 ids', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `p${i}`);
    const l = await tcpListener(one('tcp', '', `    alpn: ['!', ${'~'.repeat(255)}, ${ids.join(', ')}]\n`));
    expect(l.alpn).toEqual(['!', '~'.repeat(255), ...ids]);
  });
});

describe('revalidate, tcpKeepAlive, maxConnectionsPerIdentity: resolved values', () => {
  it.each<[string, string, unknown]>([
    ['revalidate: off', 'revalidate: off', { ...REVALIDATE_DEFAULT, mode: 'off' }],
    ["revalidate: 'off'", "revalidate: 'off'", { ...REVALIDATE_DEFAULT, mode: 'off' }],
    ['revalidate: false', 'revalidate: false', { ...REVALIDATE_DEFAULT, mode: 'off' }],
    ['revalidate: {} is the default', 'revalidate: {}', REVALIDATE_DEFAULT],
    ['revalidate: { mode: off }', 'revalidate: { mode: off }', { ...REVALIDATE_DEFAULT, mode: 'off' }],
    [
      'revalidate: seconds to milliseconds, fractions rounded',
      'revalidate: { floorSeconds: 1.5, ceilingSeconds: 60, jitterSeconds: 0.0004, graceSeconds: 0.0006 }',
      { mode: 'ttl', floorMs: 1500, ceilingMs: 60000, jitterMs: 0, graceMs: 1 },
    ],
    [
      'revalidate: floor equal to the ceiling',
      'revalidate: { floorSeconds: 1, ceilingSeconds: 1, jitterSeconds: 0, graceSeconds: 0 }',
      { mode: 'ttl', floorMs: 1000, ceilingMs: 1000, jitterMs: 0, graceMs: 0 },
    ],
    [
      'revalidate: the largest values',
      'revalidate: { floorSeconds: 86400, ceilingSeconds: 604800, jitterSeconds: 86400, graceSeconds: 604800 }',
      { mode: 'ttl', floorMs: 86_400_000, ceilingMs: 604_800_000, jitterMs: 86_400_000, graceMs: 604_800_000 },
    ],
  ])('%s', async (_label, line, expected) => {
    expect((await tcpListener(one('mqtt', '', `    ${line}\n`))).revalidate).toEqual(expected);
  });

  it.each<[string, string, unknown]>([
    ['tcpKeepAlive left out: 60 s', '', { initialDelayMs: 60000 }],
    ['tcpKeepAlive: false is off', '    tcpKeepAlive: false\n', undefined],
    ['tcpKeepAlive: {} is 60 s', '    tcpKeepAlive: {}\n', { initialDelayMs: 60000 }],
    ['tcpKeepAlive: 1 s (the least)', '    tcpKeepAlive: { initialDelayMs: 1000 }\n', { initialDelayMs: 1000 }],
    ['tcpKeepAlive: 2 h (the most)', '    tcpKeepAlive: { initialDelayMs: 7200000 }\n', { initialDelayMs: 7200000 }],
  ])('%s', async (_label, listener, expected) => {
    expect((await tcpListener(one('tcp', '', listener))).tcpKeepAlive).toEqual(expected);
    expect((await httpListener(one('http', '', listener))).tcpKeepAlive).toEqual(expected);
  });

  it.each<[string, string, { max: number | undefined; overflow: string }]>([
    ['left out: no cap, refuse-new', '', { max: undefined, overflow: 'refuse-new' }],
    ['a number: that cap, refuse-new', 'limits:\n  maxConnectionsPerIdentity: 2\n', { max: 2, overflow: 'refuse-new' }],
    ['{ max } alone: refuse-new', 'limits:\n  maxConnectionsPerIdentity: { max: 3 }\n', { max: 3, overflow: 'refuse-new' }],
    ['{ max, overflow: refuse-new }', 'limits:\n  maxConnectionsPerIdentity: { max: 4, overflow: refuse-new }\n', { max: 4, overflow: 'refuse-new' }],
    ['{ max, overflow: newest-wins }', 'limits:\n  maxConnectionsPerIdentity: { max: 1, overflow: newest-wins }\n', { max: 1, overflow: 'newest-wins' }],
    ['the largest cap', 'limits:\n  maxConnectionsPerIdentity: 10000000\n', { max: 10_000_000, overflow: 'refuse-new' }],
  ])('maxConnectionsPerIdentity %s', async (_label, top, expected) => {
    const { limits } = await parse(one('tcp', '', '', top));
    expect({ max: limits.maxConnectionsPerIdentity, overflow: limits.identityOverflow }).toEqual(expected);
  });
});

describe('proxyV2.maxHeaderBytes: resolved values', () => {
  it.each<[string, string, string, number]>([
    ['default 500', '        proxyHeader: v2\n', '', 500],
    ['316 is the floor without ALPN or checksum', '        proxyHeader: v2\n        proxyV2: { maxHeaderBytes: 316 }\n', '', 316],
    ['323 is the floor with the checksum', '        proxyHeader: v2\n        proxyV2: { crc32c: true, maxHeaderBytes: 323 }\n', '', 323],
    ['an ALPN id of 250 bytes fits 569', '        proxyHeader: v2\n        proxyV2: { maxHeaderBytes: 569 }\n', `    alpn: [mqtt, ${'a'.repeat(250)}]\n`, 569],
    ['the largest, 4096', '        proxyHeader: v2\n        proxyV2: { maxHeaderBytes: 4096 }\n', `    alpn: [${'a'.repeat(255)}]\n`, 4096],
    ['a v1 route keeps any cap (no floor)', '        proxyHeader: v1\n        proxyV2: { maxHeaderBytes: 64 }\n', '', 64],
    ['no header: any cap', '        proxyV2: { maxHeaderBytes: 64 }\n', `    alpn: [${'a'.repeat(255)}]\n`, 64],
  ])('%s', async (_label, lines, listener, expected) => {
    expect((await tcpListener(one('tcp', lines, listener))).routes[0]?.proxyHeader.maxHeaderBytes).toBe(expected);
  });
});

describe('mistakes: exact messages with key paths', () => {
  const L = 'listeners[0]';
  const R = 'listeners[0].routes[0]';
  const offered = '    alpn: [mqtt, x-other]\n';
  it.each<[string, string, string[]]>([
    // modes and bindings
    ['an unknown mode', one('tcp').replace('mode: tcp', 'mode: amqp'), [`${L}.mode: Invalid option: expected one of "http"|"tcp"|"mqtt"|"radsec"`]],
    ['mqtt: on an http listener', one('http', '        mqtt: {}\n'), [`${R}.mqtt: applies to mode: mqtt or tcp (HTTP mode forwards the identity in headers)`]],
    ['radius: on an http listener', one('http', '        radius: {}\n'), [`${R}.radius: applies to mode: radsec or tcp (HTTP mode forwards the identity in headers)`]],
    ['mqtt: and radius: on one tcp route', one('tcp', '        mqtt: {}\n        radius: {}\n'), [`${R}: a route binds one protocol: mqtt or radius, not both`]],
    ['radius: on a mqtt listener', one('mqtt', '        radius: {}\n'), [`${R}.radius: a mode: mqtt listener binds MQTT; use mode: radsec (or tcp) for RADIUS`]],
    ['mqtt: on a radsec listener', one('radsec', '        mqtt: {}\n'), [`${R}.mqtt: a mode: radsec listener binds RADIUS; use mode: mqtt (or tcp) for MQTT`]],
    [
      'both on a mqtt listener',
      one('mqtt', '        mqtt: {}\n        radius: {}\n'),
      [`${R}: a route binds one protocol: mqtt or radius, not both`, `${R}.radius: a mode: mqtt listener binds MQTT; use mode: radsec (or tcp) for RADIUS`],
    ],
    ['an unknown mqtt key', one('mqtt', '        mqtt: { clientID: any }\n'), [`${R}.mqtt: Unrecognized key: "clientID" (did you mean "clientId"?)`]],
    ['an unknown clientId policy', one('mqtt', '        mqtt: { clientId: prefix }\n'), [`${R}.mqtt.clientId: Invalid option: expected one of "require-identity"|"prefix-identity"|"any"`]],
    ['an unknown username policy', one('mqtt', '        mqtt: { username: drop }\n'), [`${R}.mqtt.username: Invalid option: expected one of "identity"|"keep"`]],
    ['an unknown password policy', one('mqtt', '        mqtt: { password: identity }\n'), [`${R}.mqtt.password: Invalid option: expected one of "keep"|"drop"`]],
    ['maxConnectBytes 63', one('mqtt', '        mqtt: { maxConnectBytes: 63 }\n'), [`${R}.mqtt.maxConnectBytes: Too small: expected number to be >=64`]],
    ['maxConnectBytes over 1 MiB', one('mqtt', '        mqtt: { maxConnectBytes: 1048577 }\n'), [`${R}.mqtt.maxConnectBytes: Too big: expected number to be <=1048576`]],
    ['connectTimeoutMs 0', one('mqtt', '        mqtt: { connectTimeoutMs: 0 }\n'), [`${R}.mqtt.connectTimeoutMs: Too small: expected number to be >=1`]],
    ['connectTimeoutMs over 5 min', one('mqtt', '        mqtt: { connectTimeoutMs: 300001 }\n'), [`${R}.mqtt.connectTimeoutMs: Too big: expected number to be <=300000`]],
    // radius
    [
      'identityAttribute { type: 26 }',
      one('radsec', '        radius: { identityAttribute: { type: 26 } }\n'),
      [`${R}.radius.identityAttribute.type: is Vendor-Specific (26): give vendorId and vendorType instead`],
    ],
    ...[1, 2, 3, 4, 5, 32, 79, 80].map((type): [string, string, string[]] => [
      `identityAttribute { type: ${type} }`,
      one('radsec', `        radius: { identityAttribute: { type: ${type} } }\n`),
      [
        `${R}.radius.identityAttribute.type: ${type} is a standard attribute RADIUS servers act on (User-Name, User-Password, NAS-*, EAP-Message, Message-Authenticator…): choose a Vendor-Specific attribute`,
      ],
    ]),
    ['identityAttribute { type: 0 }', one('radsec', '        radius: { identityAttribute: { type: 0 } }\n'), [`${R}.radius.identityAttribute.type: Too small: expected number to be >=1`]],
    ['identityAttribute { type: 256 }', one('radsec', '        radius: { identityAttribute: { type: 256 } }\n'), [`${R}.radius.identityAttribute.type: Too big: expected number to be <=255`]],
    [
      'identityAttribute vendorId 0',
      one('radsec', '        radius: { identityAttribute: { vendorId: 0, vendorType: 1 } }\n'),
      [`${R}.radius.identityAttribute.vendorId: Too small: expected number to be >=1`],
    ],
    [
      'identityAttribute vendorId 2^24',
      one('radsec', '        radius: { identityAttribute: { vendorId: 16777216, vendorType: 1 } }\n'),
      [`${R}.radius.identityAttribute.vendorId: Too big: expected number to be <=16777215`],
    ],
    [
      'identityAttribute vendorType 0',
      one('radsec', '        radius: { identityAttribute: { vendorId: 9, vendorType: 0 } }\n'),
      [`${R}.radius.identityAttribute.vendorType: Too small: expected number to be >=1`],
    ],
    [
      'identityAttribute vendorType 256',
      one('radsec', '        radius: { identityAttribute: { vendorId: 9, vendorType: 256 } }\n'),
      [`${R}.radius.identityAttribute.vendorType: Too big: expected number to be <=255`],
    ],
    ['identityAttribute vendorId without vendorType', one('radsec', '        radius: { identityAttribute: { vendorId: 9 } }\n'), [`${R}.radius.identityAttribute: Invalid input`]],
    ['identityAttribute type and vendorId', one('radsec', '        radius: { identityAttribute: { type: 224, vendorId: 9, vendorType: 1 } }\n'), [`${R}.radius.identityAttribute: Invalid input`]],
    ['an empty secret', one('radsec', "        radius: { secret: '' }\n"), [`${R}.radius.secret: expected a non-empty shared secret (RFC 6614: radsec)`]],
    ['a secret of 257 characters', one('radsec', `        radius: { secret: ${'s'.repeat(257)} }\n`), [`${R}.radius.secret: Too big: expected string to have <=256 characters`]],
    ['maxPacketBytes 19', one('radsec', '        radius: { maxPacketBytes: 19 }\n'), [`${R}.radius.maxPacketBytes: Too small: expected number to be >=20`]],
    ['maxPacketBytes 65536', one('radsec', '        radius: { maxPacketBytes: 65536 }\n'), [`${R}.radius.maxPacketBytes: Too big: expected number to be <=65535`]],
    ['maxPacketBytes 4096.5', one('radsec', '        radius: { maxPacketBytes: 4096.5 }\n'), [`${R}.radius.maxPacketBytes: Invalid input: expected int, received number`]],
    // ALPN
    ['listener alpn on an http listener', one('http', '', '    alpn: [h2]\n'), [`${L}.alpn: applies to tcp, mqtt and radsec listeners (HTTP mode: http.alpn)`]],
    ['route alpn on an http listener', one('http', '        alpn: [h2]\n'), [`${R}.alpn: routes are chosen by ALPN in tcp, mqtt and radsec listeners only`]],
    ['route alpn without listener alpn', one('mqtt', '        alpn: [mqtt, x-other]\n'), [`${R}.alpn: the listener offers no ALPN: add ${L}.alpn listing mqtt, x-other`]],
    [
      'route alpn the listener does not offer',
      one('tcp', '        alpn: [mqtt, h2]\n', offered),
      [`${R}.alpn[1]: 'h2' is not offered by ${L}.alpn (mqtt, x-other): no connection could ever negotiate it`],
    ],
    ['listener alpn listed twice', one('tcp', '', '    alpn: [mqtt, x-other, mqtt]\n'), [`${L}.alpn[2]: 'mqtt' is listed twice`]],
    ['route alpn listed twice', one('tcp', '        alpn: [mqtt, mqtt]\n', offered), [`${R}.alpn[1]: 'mqtt' is listed twice`]],
    ['an empty listener alpn', one('tcp', '', '    alpn: []\n'), [`${L}.alpn: expected at least one ALPN protocol id`]],
    ['an empty route alpn', one('tcp', '        alpn: []\n', offered), [`${R}.alpn: expected at least one ALPN protocol id`]],
    ['33 ids', one('tcp', '', `    alpn: [${Array.from({ length: 33 }, (_, i) => `p${i}`).join(', ')}]\n`), [`${L}.alpn: expected at most 32 ALPN protocol ids`]],
    ['an id of 256 characters', one('tcp', '', `    alpn: [${'a'.repeat(256)}]\n`), [`${L}.alpn[0]: expected an ALPN protocol id of 1–255 printable ASCII characters (mqtt, radius/1.1, …)`]],
    ['an empty id', one('tcp', '', "    alpn: ['']\n"), [`${L}.alpn[0]: expected an ALPN protocol id of 1–255 printable ASCII characters (mqtt, radius/1.1, …)`]],
    ['an id with a space', one('tcp', '', "    alpn: ['my proto']\n"), [`${L}.alpn[0]: expected an ALPN protocol id of 1–255 printable ASCII characters (mqtt, radius/1.1, …)`]],
    ['an id that is not ASCII', one('tcp', '', "    alpn: ['mqtté']\n"), [`${L}.alpn[0]: expected an ALPN protocol id of 1–255 printable ASCII characters (mqtt, radius/1.1, …)`]],
    // routes by name and ALPN
    [
      'the same name on two routes with overlapping ALPN',
      file('tcp', `${route('tcp', '        alpn: [mqtt]\n', 'a.example.test')}${route('tcp', '        alpn: [x-other, mqtt]\n', 'a.example.test')}`, offered),
      [`${L}.routes[1].serverNames: 'a.example.test' is already served by routes[0]`],
    ],
    [
      'the same name on two routes without ALPN',
      file('tcp', `${route('tcp', '', 'a.example.test')}${route('tcp', '', 'a.example.test')}`, offered),
      [`${L}.routes[1].serverNames: 'a.example.test' is already served by routes[0]`],
    ],
    [
      'two default routes for the same ALPN',
      file('tcp', `${route('tcp', '        alpn: [mqtt, x-other]\n')}${route('tcp', '        alpn: [x-other]\n')}`, offered),
      [`${L}.routes[1]: has no serverNames, like routes[0], for the same ALPN: at most one default route per ALPN protocol`],
    ],
    ['two default routes without ALPN', file('tcp', `${route('tcp')}${route('tcp')}`, offered), [`${L}.routes: 2 routes have no serverNames; at most one can be the default route`]],
    // RADSEC binds RADIUS/1.0
    [
      'a radsec listener offering radius/1.1',
      one('radsec', '', '    alpn: [radius/1.1, radius/1.0]\n'),
      [`${R}: a RADSEC route binds RADIUS/1.0 (it checks and signs the MD5 authenticators RFC 9765's radius/1.1 drops): offer radius/1.0 only, or route radius/1.1 to a plain tcp route`],
    ],
    [
      'a RADSEC route naming radius/1.1',
      one('tcp', '        alpn: [radius/1.1]\n        radius: {}\n', '    alpn: [radius/1.1, radius/1.0]\n'),
      [`${R}.alpn: a RADSEC route binds RADIUS/1.0 (it checks and signs the MD5 authenticators RFC 9765's radius/1.1 drops): offer radius/1.0 only, or route radius/1.1 to a plain tcp route`],
    ],
    // revalidate
    ['revalidate: floor above the ceiling', one('mqtt', '', '    revalidate: { floorSeconds: 100, ceilingSeconds: 50 }\n'), [`${L}.revalidate.floorSeconds: must not exceed ceilingSeconds (50)`]],
    [
      'revalidate: a floor under 1 s',
      one('mqtt', '', '    revalidate: { floorSeconds: 0.5 }\n'),
      [`${L}.revalidate.floorSeconds: must be at least 1 (a connection re-checked more often than every second would turn revalidation into a query loop)`],
    ],
    [
      'revalidate: a floor of 0 and a ceiling of 0',
      one('mqtt', '', '    revalidate: { floorSeconds: 0, ceilingSeconds: 0 }\n'),
      [`${L}.revalidate.floorSeconds: must be at least 1 (a connection re-checked more often than every second would turn revalidation into a query loop)`],
    ],
    ['revalidate: a negative grace', one('mqtt', '', '    revalidate: { graceSeconds: -1 }\n'), [`${L}.revalidate.graceSeconds: Too small: expected number to be >=0`]],
    ['revalidate: a ceiling over a week', one('mqtt', '', '    revalidate: { ceilingSeconds: 604801 }\n'), [`${L}.revalidate.ceilingSeconds: Too big: expected number to be <=604800`]],
    ['revalidate: an unknown mode', one('mqtt', '', '    revalidate: { mode: always }\n'), [`${L}.revalidate.mode: Invalid option: expected one of "ttl"|"off"`]],
    ['revalidate: true', one('mqtt', '', '    revalidate: true\n'), [`${L}.revalidate: Invalid input`]],
    ['revalidate: on', one('mqtt', '', '    revalidate: on\n'), [`${L}.revalidate: Invalid input`]],
    // tcpKeepAlive
    ['tcpKeepAlive: true', one('tcp', '', '    tcpKeepAlive: true\n'), [`${L}.tcpKeepAlive: Invalid input`]],
    ['tcpKeepAlive under 1 s', one('tcp', '', '    tcpKeepAlive: { initialDelayMs: 999 }\n'), [`${L}.tcpKeepAlive.initialDelayMs: Too small: expected number to be >=1000`]],
    ['tcpKeepAlive over 2 h', one('tcp', '', '    tcpKeepAlive: { initialDelayMs: 7200001 }\n'), [`${L}.tcpKeepAlive.initialDelayMs: Too big: expected number to be <=7200000`]],
    // maxConnectionsPerIdentity
    ['maxConnectionsPerIdentity 0', one('tcp', '', '', 'limits:\n  maxConnectionsPerIdentity: 0\n'), ['limits.maxConnectionsPerIdentity: Too small: expected number to be >=1']],
    ['maxConnectionsPerIdentity { max: 0 }', one('tcp', '', '', 'limits:\n  maxConnectionsPerIdentity: { max: 0 }\n'), ['limits.maxConnectionsPerIdentity.max: Too small: expected number to be >=1']],
    [
      'maxConnectionsPerIdentity without max',
      one('tcp', '', '', 'limits:\n  maxConnectionsPerIdentity: { overflow: newest-wins }\n'),
      ['limits.maxConnectionsPerIdentity.max: Invalid input: expected number, received undefined'],
    ],
    [
      'an unknown overflow',
      one('tcp', '', '', 'limits:\n  maxConnectionsPerIdentity: { max: 1, overflow: oldest-wins }\n'),
      ['limits.maxConnectionsPerIdentity.overflow: Invalid option: expected one of "refuse-new"|"newest-wins"'],
    ],
    // PROXY v2 size
    [
      'an ALPN id of 250 bytes cannot fit 500',
      one('tcp', '        proxyHeader: v2\n', `    alpn: [mqtt, ${'a'.repeat(250)}]\n`),
      [`${R}.proxyV2.maxHeaderBytes: must be at least 569: the addresses, ALPN (up to 250 bytes), the SSL TLV with the longest name (253) and nothing else are never left out`],
    ],
    [
      'the same with the checksum',
      one('tcp', '        proxyHeader: v2\n        proxyV2: { crc32c: true, maxHeaderBytes: 575 }\n', `    alpn: [${'a'.repeat(250)}]\n`),
      [`${R}.proxyV2.maxHeaderBytes: must be at least 576: the addresses, ALPN (up to 250 bytes), the SSL TLV with the longest name (253) and the checksum are never left out`],
    ],
    [
      'one byte under the floor without ALPN',
      one('tcp', '        proxyHeader: v2\n        proxyV2: { maxHeaderBytes: 315 }\n'),
      [`${R}.proxyV2.maxHeaderBytes: must be at least 316: the addresses, ALPN (up to 0 bytes), the SSL TLV with the longest name (253) and nothing else are never left out`],
    ],
    ['maxHeaderBytes 63', one('tcp', '        proxyV2: { maxHeaderBytes: 63 }\n'), [`${R}.proxyV2.maxHeaderBytes: Too small: expected number to be >=64`]],
    ['maxHeaderBytes 4097', one('tcp', '        proxyV2: { maxHeaderBytes: 4097 }\n'), [`${R}.proxyV2.maxHeaderBytes: Too big: expected number to be <=4096`]],
  ])('%s', async (_label, text, expected) => {
    expect(await problemsOf(text)).toEqual(expected);
  });
});

describe('/status', () => {
  it('shows protocol, ALPN, keepalive, revalidation and each binding, never the RADIUS secret', async () => {
    const config = await parse(
      file(
        'radsec',
        `${route('radsec', '        alpn: [radius/1.0]\n        radius: { secret: do-not-show-me, identityAttribute: { type: 224 } }\n')}`,
        '    alpn: [radius/1.0, x-other]\n    tcpKeepAlive: false\n    revalidate: off\n',
      ),
    );
    const proxy = {
      config,
      generation: 1,
      lastReload: undefined,
      openConnections: 0,
      admission: { handshakesInProgress: 0 },
      gate: undefined,
      listeners: config.listeners.map((l) => ({ name: l.name, mode: l.mode, host: l.host, port: l.port, tlsEngine: 'node', tlsEngineFallback: undefined })),
    } as unknown as RunningProxy;
    const status = describeProxy(proxy, '0.0.0', 'now');
    expect(JSON.stringify(status)).not.toContain('do-not-show-me');
    const [listener] = status.listeners as Array<Record<string, unknown>>;
    expect(listener).toMatchObject({
      mode: 'tcp',
      protocol: 'radsec',
      alpn: ['radius/1.0', 'x-other'],
      tcpKeepAlive: false,
      revalidate: { ...REVALIDATE_DEFAULT, mode: 'off' },
    });
    expect((listener?.routes as Array<Record<string, unknown>>).map((r) => [r.alpn, r.binding])).toEqual([
      [['radius/1.0'], { protocol: 'radius', identityAttribute: { kind: 'attribute', type: 224 }, maxPacketBytes: 4096 }],
    ]);
  });

  it('an mqtt route shows its policies; a route without binding and ALPN shows none and null', async () => {
    const config = await parse(file('tcp', `${route('tcp', '        mqtt: { password: drop }\n', 'a.example.test')}${route('tcp')}`));
    const proxy = {
      config,
      generation: 1,
      admission: { handshakesInProgress: 0 },
      listeners: config.listeners.map((l) => ({ name: l.name, mode: l.mode, host: l.host, port: l.port, tlsEngine: 'node' })),
    } as unknown as RunningProxy;
    const [listener] = describeProxy(proxy, '0.0.0', 'now').listeners as Array<Record<string, unknown>>;
    expect([listener?.protocol, listener?.alpn, listener?.tcpKeepAlive]).toEqual(['tcp', null, { initialDelayMs: 60000 }]);
    expect((listener?.routes as Array<Record<string, unknown>>).map((r) => [r.alpn, r.binding])).toEqual([
      [null, { protocol: 'mqtt', clientId: 'require-identity', username: 'identity', password: 'drop' }],
      [null, 'none'],
    ]);
  });
});
