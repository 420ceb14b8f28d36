/**
 * The configuration of issue 13: several upstreams per route (names,
 * HTTP/2, balance, passive and active health, retries), per-path rules,
 * and the HTTP listener's ALPN, HTTP/2 limits, request rate and access log.
 * Each key's default, a full valid file, and every mistake's exact message.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/pki.js';
import { canonicalizeRuleName, ConfigError, defaultUpstreamName, healthPathProblem, parseConfigText, rulePathProblem } from '../../src/config/load.js';
import type { DancegateConfig, HttpListenerConfig, TcpListenerConfig } from '../../src/config/types.js';
import { describeProxy } from '../../src/process/status.js';
import type { RunningProxy } from '../../src/process/running-proxy.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-config13-'));
  const ca = await createCertificate({ commonName: 'ca', isCA: true });
  const server = await createCertificate({ commonName: 'api', dnsNames: ['api.example.test'], issuer: ca, extendedKeyUsage: 'server' });
  const client = await createCertificate({ commonName: 'to-backend', issuer: ca });
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  await writeFile(join(dir, 'client.pem'), client.certPem);
  await writeFile(join(dir, 'client.key'), client.keyPem);
  await writeFile(join(dir, 'ca.pem'), ca.certPem);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const source = (): string => join(dir, 'dancegate.yaml');

/** One listener of `mode` whose only route has the YAML lines `route` (indented 8) and whose listener has `listener` (indented 4). */
function file(mode: 'http' | 'tcp', route: string, listener = ''): string {
  return `
resolver:
  servers:
    - address: 127.0.0.1:5353
listeners:
  - name: api
    listen: 127.0.0.1:8443
    mode: ${mode}
${listener}    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - allow: ['*._device.example.test']
${route}`;
}
const http = (route: string, listener = ''): string => file('http', route, listener);
const tcp = (route: string, listener = ''): string => file('tcp', route, listener);
const ONE = '        upstream: http://127.0.0.1:8080\n';

async function parse(text: string): Promise<DancegateConfig> {
  return parseConfigText(text, source());
}
async function httpListener(text: string): Promise<HttpListenerConfig> {
  const l = (await parse(text)).listeners[0];
  if (l?.mode !== 'http') throw new Error('expected an http listener');
  return l;
}
async function tcpListener(text: string): Promise<TcpListenerConfig> {
  const l = (await parse(text)).listeners[0];
  if (l?.mode !== 'tcp') throw new Error('expected a tcp listener');
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

describe('defaults', () => {
  it('one upstream: its name host:port, no HTTP/2, round-robin, passive health on, no active checks, one retry, no rules', async () => {
    const l = await httpListener(http(ONE));
    expect(l.routes[0]?.upstreams).toEqual({
      targets: [{ protocol: 'http', host: '127.0.0.1', port: 8080, url: 'http://127.0.0.1:8080', name: '127.0.0.1:8080', http2: false, tls: undefined }],
      balance: 'round-robin',
      passiveHealth: { failures: 5, ejectMs: 10000, maxEjectMs: 300000 },
      healthCheck: undefined,
      retries: 1,
    });
    expect(l.routes[0]?.rules).toEqual([]);
  });

  it('the HTTP listener: both ALPN protocols (h2 first), HTTP/2 limits, no request rate, every request logged without its query', async () => {
    const l = await httpListener(http(ONE));
    expect({ alpn: l.http.alpn, http2: l.http.http2, requestRatePerIdentity: l.http.requestRatePerIdentity, accessLog: l.http.accessLog }).toEqual({
      alpn: ['h2', 'http/1.1'],
      http2: { maxConcurrentStreams: 64, maxResetsPerSecond: 100, maxHeaderListBytes: 16384 },
      requestRatePerIdentity: undefined,
      accessLog: { enabled: true, sampleRate: 1, includeQuery: false },
    });
  });

  it.each<[string, string, Record<string, unknown>]>([
    ['h2c:// without a port is port 80, always HTTP/2', '        upstream: h2c://127.0.0.1\n', { protocol: 'h2c', port: 80, name: '127.0.0.1:80', http2: true, tls: undefined }],
    ['http:// without a port is port 80', '        upstream: http://10.0.0.1\n', { protocol: 'http', port: 80, name: '10.0.0.1:80', http2: false }],
    ['https:// without a port is 443, HTTP/1.1 unless upstreamHttp2', '        upstream: https://10.0.0.1\n', { protocol: 'https', port: 443, name: '10.0.0.1:443', http2: false }],
    ['https:// with upstreamHttp2 offers h2', '        upstream: https://10.0.0.1\n        upstreamHttp2: true\n', { protocol: 'https', http2: true }],
    ['an IPv6 upstream is named [v6]:port', '        upstream: "http://[::1]:8080"\n', { host: '::1', port: 8080, name: '[::1]:8080' }],
    ['a host name is named in lower case', '        upstream: https://Backend.Internal:8443\n', { host: 'backend.internal', name: 'backend.internal:8443' }],
    ['a host name with "_" (container names)', '        upstream: http://api_backend:8080\n', { host: 'api_backend', name: 'api_backend:8080' }],
  ])('%s', async (_label, route, expected) => {
    const l = await httpListener(http(route));
    expect(l.routes[0]?.upstreams.targets[0]).toMatchObject(expected);
  });

  it.each<[string, string, unknown]>([
    ['passiveHealth: {} is the default', '        passiveHealth: {}\n', { failures: 5, ejectMs: 10000, maxEjectMs: 300000 }],
    ['passiveHealth: one key given', '        passiveHealth: { failures: 2 }\n', { failures: 2, ejectMs: 10000, maxEjectMs: 300000 }],
    ['passiveHealth: false is off', '        passiveHealth: false\n', undefined],
  ])('%s', async (_label, route, expected) => {
    const l = await httpListener(http(ONE + route));
    expect(l.routes[0]?.upstreams.passiveHealth).toEqual(expected);
  });

  it('healthCheck: {} in http mode is an HTTP GET of /, in tcp mode a connect', async () => {
    const onHttp = await httpListener(http(`${ONE}        healthCheck: {}\n`));
    expect(onHttp.routes[0]?.upstreams.healthCheck).toEqual({ type: 'http', path: '/', intervalMs: 5000, timeoutMs: 2000, healthyThreshold: 2, unhealthyThreshold: 3 });
    const onTcp = await tcpListener(tcp('        upstream: tcp://127.0.0.1:9000\n        healthCheck: {}\n'));
    expect(onTcp.routes[0]?.upstreams.healthCheck).toEqual({ type: 'tcp', path: '/', intervalMs: 5000, timeoutMs: 2000, healthyThreshold: 2, unhealthyThreshold: 3 });
    const tcpOnHttp = await httpListener(http(`${ONE}        healthCheck: { type: tcp }\n`));
    expect(tcpOnHttp.routes[0]?.upstreams.healthCheck?.type).toBe('tcp');
  });

  it.each<[string, string, unknown]>([
    ['accessLog: false is off', 'accessLog: false', { enabled: false, sampleRate: 1, includeQuery: false }],
    ['accessLog: {} is on', 'accessLog: {}', { enabled: true, sampleRate: 1, includeQuery: false }],
    ['accessLog: sampled', 'accessLog: { sampleRate: 0.25 }', { enabled: true, sampleRate: 0.25, includeQuery: false }],
    ['accessLog: enabled false', 'accessLog: { enabled: false, includeQuery: true }', { enabled: false, sampleRate: 1, includeQuery: true }],
    ['accessLog: a sample rate of 0 (nothing)', 'accessLog: { sampleRate: 0 }', { enabled: true, sampleRate: 0, includeQuery: false }],
  ])('%s', async (_label, key, expected) => {
    const l = await httpListener(http(ONE, `    http: { ${key} }\n`));
    expect(l.http.accessLog).toEqual(expected);
  });

  it.each<[string, string, Partial<HttpListenerConfig['http']>]>([
    ['alpn: http/1.1 only', 'alpn: [http/1.1]', { alpn: ['http/1.1'] }],
    ['alpn: h2 only', 'alpn: [h2]', { alpn: ['h2'] }],
    ['alpn: http/1.1 preferred', 'alpn: [http/1.1, h2]', { alpn: ['http/1.1', 'h2'] }],
    ['http2: one limit given', 'http2: { maxConcurrentStreams: 8 }', { http2: { maxConcurrentStreams: 8, maxResetsPerSecond: 100, maxHeaderListBytes: 16384 } }],
    ['http2: {} is the default', 'http2: {}', { http2: { maxConcurrentStreams: 64, maxResetsPerSecond: 100, maxHeaderListBytes: 16384 } }],
    ['requestRatePerIdentity: false is off', 'requestRatePerIdentity: false', { requestRatePerIdentity: undefined }],
    ['requestRatePerIdentity: a bucket', 'requestRatePerIdentity: { ratePerSecond: 0.5, burst: 3 }', { requestRatePerIdentity: { ratePerSecond: 0.5, burst: 3 } }],
  ])('%s', async (_label, key, expected) => {
    const l = await httpListener(http(ONE, `    http: { ${key} }\n`));
    expect(l.http).toMatchObject(expected);
  });

  it('a rule: methods undefined when left out, allowUnauthenticated false, names canonical and each once', async () => {
    const l = await httpListener(http(`${ONE}        rules:\n          - { path: /a, allow: [OPS-*._Device.Example.TEST., ops-*._device.example.test, '*.Example.TEST', x.example.test] }\n`));
    expect(l.routes[0]?.rules).toEqual([{ path: '/a', methods: undefined, allow: ['ops-*._device.example.test', '*.example.test', 'x.example.test'], allowUnauthenticated: false }]);
  });

  it('a deny rule: an empty allow list refuses every identity on its path', async () => {
    const l = await httpListener(http(`${ONE}        rules: [{ path: /internal/*, allow: [] }, { path: '*', allow: ['*.example.test'] }]\n`));
    expect(l.routes[0]?.rules.map((r) => [r.path, r.allow])).toEqual([
      ['/internal/*', []],
      ['*', ['*.example.test']],
    ]);
  });
});

describe('a full valid file', () => {
  it('resolves every new key to exact values in both modes', async () => {
    const config = await parse(`
resolver:
  servers:
    - address: 127.0.0.1:5353
listeners:
  - name: api
    listen: 127.0.0.1:8443
    mode: http
    policy: optional
    http:
      alpn: [h2, http/1.1]
      http2: { maxConcurrentStreams: 50, maxResetsPerSecond: 20, maxHeaderListBytes: 8192 }
      requestRatePerIdentity: { ratePerSecond: 100, burst: 200 }
      accessLog: { enabled: true, sampleRate: 0.5, includeQuery: true }
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - allow: ['*._device.example.test']
        upstreams:
          - https://10.0.0.7:8443
          - { url: "https://[2001:db8::8]:8443", name: backend-b }
          - { url: h2c://10.0.0.9:50051, name: grpc }
          - http://10.0.0.10:8080
        upstreamHttp2: true
        upstreamTls: { caFile: ca.pem, certFile: client.pem, keyFile: client.key, serverName: backend.internal }
        balance: least-requests
        passiveHealth: { failures: 3, ejectMs: 1000, maxEjectMs: 60000 }
        healthCheck: { type: http, path: /healthz?full=1, intervalMs: 1000, timeoutMs: 500, healthyThreshold: 1, unhealthyThreshold: 5 }
        retries: 2
        rules:
          - { path: /admin/*, methods: [GET, POST], allow: ['ops-*._device.example.test'] }
          - { path: /public, allow: [], allowUnauthenticated: true }
          - { path: '*', allow: ['*._device.example.test'] }
  - name: mqtt
    listen: 127.0.0.1:8883
    mode: tcp
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - allow: ['*._device.example.test']
        upstreams: [tcp://10.0.1.1:1883, { url: tls://10.0.1.2:8883, name: broker-2 }]
        upstreamTls: { caFile: ca.pem }
        passiveHealth: false
        healthCheck: { intervalMs: 10000, timeoutMs: 9999 }
        retries: 0
`);
    const [api, mqtt] = config.listeners;
    if (api?.mode !== 'http' || mqtt?.mode !== 'tcp') throw new Error('expected an http then a tcp listener');
    expect(api.http).toMatchObject({
      alpn: ['h2', 'http/1.1'],
      http2: { maxConcurrentStreams: 50, maxResetsPerSecond: 20, maxHeaderListBytes: 8192 },
      requestRatePerIdentity: { ratePerSecond: 100, burst: 200 },
      accessLog: { enabled: true, sampleRate: 0.5, includeQuery: true },
    });
    const route = api.routes[0];
    const tls = route?.upstreams.targets[0]?.tls;
    expect(tls).toEqual({
      caPem: expect.stringContaining('BEGIN CERTIFICATE'),
      certPem: expect.stringContaining('BEGIN CERTIFICATE'),
      keyPem: expect.stringContaining('PRIVATE KEY'),
      serverName: 'backend.internal',
    });
    expect(route?.upstreams).toEqual({
      targets: [
        { protocol: 'https', host: '10.0.0.7', port: 8443, url: 'https://10.0.0.7:8443', name: '10.0.0.7:8443', http2: true, tls },
        { protocol: 'https', host: '2001:db8::8', port: 8443, url: 'https://[2001:db8::8]:8443', name: 'backend-b', http2: true, tls },
        { protocol: 'h2c', host: '10.0.0.9', port: 50051, url: 'h2c://10.0.0.9:50051', name: 'grpc', http2: true, tls: undefined },
        { protocol: 'http', host: '10.0.0.10', port: 8080, url: 'http://10.0.0.10:8080', name: '10.0.0.10:8080', http2: false, tls: undefined },
      ],
      balance: 'least-requests',
      passiveHealth: { failures: 3, ejectMs: 1000, maxEjectMs: 60000 },
      healthCheck: { type: 'http', path: '/healthz?full=1', intervalMs: 1000, timeoutMs: 500, healthyThreshold: 1, unhealthyThreshold: 5 },
      retries: 2,
    });
    expect(route?.rules).toEqual([
      { path: '/admin/*', methods: ['GET', 'POST'], allow: ['ops-*._device.example.test'], allowUnauthenticated: false },
      { path: '/public', methods: undefined, allow: [], allowUnauthenticated: true },
      { path: '*', methods: undefined, allow: ['*._device.example.test'], allowUnauthenticated: false },
    ]);
    const tcpTls = mqtt.routes[0]?.upstreams.targets[1]?.tls;
    expect(mqtt.routes[0]?.upstreams).toEqual({
      targets: [
        { protocol: 'tcp', host: '10.0.1.1', port: 1883, url: 'tcp://10.0.1.1:1883', name: '10.0.1.1:1883', http2: false, tls: undefined },
        {
          protocol: 'tls',
          host: '10.0.1.2',
          port: 8883,
          url: 'tls://10.0.1.2:8883',
          name: 'broker-2',
          http2: false,
          tls: { caPem: expect.stringContaining('BEGIN CERTIFICATE'), certPem: undefined, keyPem: undefined, serverName: undefined },
        },
      ],
      balance: 'round-robin',
      passiveHealth: undefined,
      healthCheck: { type: 'tcp', path: '/', intervalMs: 10000, timeoutMs: 9999, healthyThreshold: 2, unhealthyThreshold: 3 },
      retries: 0,
    });
    expect(tcpTls?.caPem).toBe(tls?.caPem);
  });

  it('32 upstreams and 256 rules are accepted', async () => {
    const upstreams = Array.from({ length: 32 }, (_, i) => `http://10.0.0.${i + 1}:8080`).join(', ');
    const rules = Array.from({ length: 256 }, (_, i) => `{ path: /r${i}, allow: [] }`).join(', ');
    const l = await httpListener(http(`        upstreams: [${upstreams}]\n        rules: [${rules}]\n`));
    expect(l.routes[0]?.upstreams.targets.map((u) => u.name)).toEqual(Array.from({ length: 32 }, (_, i) => `10.0.0.${i + 1}:8080`));
    expect(l.routes[0]?.rules).toHaveLength(256);
  });
});

describe('mistakes: exact messages with key paths', () => {
  const R = 'listeners[0].routes[0]';
  const H = 'listeners[0].http';
  const many = (n: number): string => Array.from({ length: n }, (_, i) => `http://10.0.0.${i + 1}:8080`).join(', ');
  it.each<[string, string, string[]]>([
    // upstream / upstreams
    ['both upstream and upstreams', http(`${ONE}        upstreams: [http://127.0.0.1:8081]\n`), [`${R}: give upstream or upstreams, not both`]],
    ['neither upstream nor upstreams', http(''), [`${R}: expected upstream (one URL) or upstreams (a list of 1 to 32)`]],
    ['an empty upstreams list', http('        upstreams: []\n'), [`${R}.upstreams: expected at least one upstream`]],
    ['33 upstreams', http(`        upstreams: [${many(33)}]\n`), [`${R}.upstreams: expected at most 32 upstreams`]],
    [
      'an upstream of the wrong kind in a list',
      http('        upstreams: [http://127.0.0.1:8080, tls://127.0.0.1:8081]\n'),
      [`${R}.upstreams[1]: a http-mode listener forwards to http://, https:// or h2c:// upstreams, not tls://`],
    ],
    ['an h2c upstream in tcp mode', tcp('        upstream: h2c://127.0.0.1:8080\n'), [`${R}.upstream: a tcp-mode listener forwards to tcp:// or tls:// upstreams, not h2c://`]],
    [
      'an object upstream with a path',
      http('        upstreams: [{ url: "http://127.0.0.1:8080/x", name: a }]\n'),
      [`${R}.upstreams[0].url: expected scheme://host:port only (no path, query or credentials)`],
    ],
    ['an object upstream without url', http('        upstreams: [{ name: a }]\n'), [`${R}.upstreams[0].url: Invalid input: expected string, received undefined`]],
    ['an unknown key in an upstream', http('        upstreams: [{ url: "http://127.0.0.1:8080", nmae: a }]\n'), [`${R}.upstreams[0]: Unrecognized key: "nmae" (did you mean "name"?)`]],
    ['a tcp upstream without a port', tcp('        upstream: tcp://10.0.0.1\n'), [`${R}.upstream: a tcp:// upstream needs a port`]],
    ['a host that is not a host name', tcp('        upstream: tcp://a*b:80\n'), [`${R}.upstream: 'a*b' is not an IP address or host name`]],
    ['an IPv4 shorthand host', tcp('        upstream: tcp://10.1:80\n'), [`${R}.upstream: '10.1' looks like an IPv4 address but is not one (write all four parts)`]],
    ['a percent-encoded host', tcp('        upstream: tcp://%41:80\n'), [`${R}.upstream: '%41' is not an IP address or host name`]],
    // names
    [
      'two upstreams with the same default name',
      http('        upstreams: [http://127.0.0.1:8080, http://127.0.0.1:8080]\n'),
      [`${R}.upstreams[1]: '127.0.0.1:8080' is already the name of upstreams[0] (a name defaults to host:port; give each upstream its own name)`],
    ],
    [
      'a name that is another upstream default name',
      http('        upstreams: [http://127.0.0.1:8080, { url: "http://127.0.0.1:8081", name: "127.0.0.1:8080" }]\n'),
      [`${R}.upstreams[1].name: '127.0.0.1:8080' is already the name of upstreams[0]`],
    ],
    [
      'a name twice',
      http('        upstreams: [{ url: "http://127.0.0.1:8080", name: a }, { url: "http://127.0.0.1:8081", name: a }]\n'),
      [`${R}.upstreams[1].name: 'a' is already the name of upstreams[0]`],
    ],
    [
      'a name with a space',
      http('        upstreams: [{ url: "http://127.0.0.1:8080", name: "a b" }]\n'),
      [`${R}.upstreams[0].name: expected a name of letters, digits, "_", ".", ":", "[", "]" or "-" (at most 64)`],
    ],
    [
      'an empty name',
      http('        upstreams: [{ url: "http://127.0.0.1:8080", name: "" }]\n'),
      [`${R}.upstreams[0].name: expected a name of letters, digits, "_", ".", ":", "[", "]" or "-" (at most 64)`],
    ],
    [
      'a name of 65 characters',
      http(`        upstreams: [{ url: "http://127.0.0.1:8080", name: ${'a'.repeat(65)} }]\n`),
      [`${R}.upstreams[0].name: expected a name of letters, digits, "_", ".", ":", "[", "]" or "-" (at most 64)`],
    ],
    [
      'a default name longer than 64 characters',
      http(`        upstream: http://${'a'.repeat(55)}.internal:8080\n`),
      [`${R}.upstream: the default name '${'a'.repeat(55)}.internal:8080' (host:port) is longer than 64 characters; give this upstream a name`],
    ],
    // upstreamHttp2 and upstreamTls
    [
      'upstreamHttp2 with no https upstream',
      http('        upstreams: [http://127.0.0.1:8080, h2c://127.0.0.1:8081]\n        upstreamHttp2: true\n'),
      [`${R}.upstreamHttp2: applies to https:// upstreams and this route has none (an h2c:// upstream always speaks HTTP/2)`],
    ],
    ['upstreamHttp2 in tcp mode', tcp('        upstream: tls://127.0.0.1:8080\n        upstreamHttp2: false\n'), [`${R}.upstreamHttp2: applies to http mode only (a tcp-mode route forwards bytes)`]],
    [
      'upstreamTls with only h2c and http upstreams',
      http('        upstreams: [h2c://127.0.0.1:8081, http://127.0.0.1:8080]\n        upstreamTls: { caFile: ca.pem }\n'),
      [`${R}.upstreamTls: upstreamTls applies to https:// and tls:// upstreams, not h2c:// or http://`],
    ],
    // balance, passive health, retries
    ['an unknown balance policy', http(`${ONE}        balance: random\n`), [`${R}.balance: Invalid option: expected one of "round-robin"|"least-requests"`]],
    ['passive health: 0 failures', http(`${ONE}        passiveHealth: { failures: 0 }\n`), [`${R}.passiveHealth.failures: Too small: expected number to be >=1`]],
    ['passive health: 1001 failures', http(`${ONE}        passiveHealth: { failures: 1001 }\n`), [`${R}.passiveHealth.failures: Too big: expected number to be <=1000`]],
    ['passive health: an ejection under 100 ms', http(`${ONE}        passiveHealth: { ejectMs: 99 }\n`), [`${R}.passiveHealth.ejectMs: Too small: expected number to be >=100`]],
    [
      'passive health: an ejection over an hour',
      http(`${ONE}        passiveHealth: { ejectMs: 3600001, maxEjectMs: 3600000 }\n`),
      [`${R}.passiveHealth.ejectMs: Too big: expected number to be <=3600000`],
    ],
    ['passive health: maxEjectMs below ejectMs', http(`${ONE}        passiveHealth: { ejectMs: 20000, maxEjectMs: 10000 }\n`), [`${R}.passiveHealth.maxEjectMs: must be at least ejectMs (20000)`]],
    ['passive health: true', http(`${ONE}        passiveHealth: true\n`), [`${R}.passiveHealth: Invalid input`]],
    ['retries: 11', http(`${ONE}        retries: 11\n`), [`${R}.retries: Too big: expected number to be <=10`]],
    ['retries: -1', http(`${ONE}        retries: -1\n`), [`${R}.retries: Too small: expected number to be >=0`]],
    ['retries: 1.5', http(`${ONE}        retries: 1.5\n`), [`${R}.retries: Invalid input: expected int, received number`]],
    // active health checks
    [
      'an HTTP check on a tcp route',
      tcp('        upstream: tcp://127.0.0.1:9000\n        healthCheck: { type: http }\n'),
      [`${R}.healthCheck.type: a tcp-mode route has no HTTP to check: use type: tcp (a connect, with the TLS handshake for tls:// upstreams)`],
    ],
    ['a path on a tcp check', http(`${ONE}        healthCheck: { type: tcp, path: /x }\n`), [`${R}.healthCheck.path: applies to type: http only`]],
    ['a check path without /', http(`${ONE}        healthCheck: { path: healthz }\n`), [`${R}.healthCheck.path: "healthz" expected a path starting with '/', such as /healthz`]],
    ['a check path with a fragment', http(`${ONE}        healthCheck: { path: "/h#x" }\n`), [`${R}.healthCheck.path: "/h#x" contains '#': a fragment is never sent to a server`]],
    [
      'a check path with a space',
      http(`${ONE}        healthCheck: { path: "/h x" }\n`),
      [`${R}.healthCheck.path: "/h x" contains a space, control or non-ASCII character at position 2; percent-encode it`],
    ],
    [
      'a check path that would split the request line',
      http(`${ONE}        healthCheck: { path: "/h\\r\\nX: y" }\n`),
      [`${R}.healthCheck.path: "/h\\r\\nX: y" contains a space, control or non-ASCII character at position 2; percent-encode it`],
    ],
    ['a check path of 1025 characters', http(`${ONE}        healthCheck: { path: /${'a'.repeat(1024)} }\n`), [`${R}.healthCheck.path: "/${'a'.repeat(1024)}" is longer than 1024 characters`]],
    ['a check timeout equal to the interval', http(`${ONE}        healthCheck: { intervalMs: 1000, timeoutMs: 1000 }\n`), [`${R}.healthCheck.timeoutMs: must be less than intervalMs (1000)`]],
    ['a default timeout above a short interval', http(`${ONE}        healthCheck: { intervalMs: 500 }\n`), [`${R}.healthCheck.timeoutMs: must be less than intervalMs (500)`]],
    ['a check interval under 100 ms', http(`${ONE}        healthCheck: { intervalMs: 99, timeoutMs: 50 }\n`), [`${R}.healthCheck.intervalMs: Too small: expected number to be >=100`]],
    ['a check interval over an hour', http(`${ONE}        healthCheck: { intervalMs: 3600001 }\n`), [`${R}.healthCheck.intervalMs: Too big: expected number to be <=3600000`]],
    ['a healthy threshold of 0', http(`${ONE}        healthCheck: { healthyThreshold: 0 }\n`), [`${R}.healthCheck.healthyThreshold: Too small: expected number to be >=1`]],
    ['an unhealthy threshold of 101', http(`${ONE}        healthCheck: { unhealthyThreshold: 101 }\n`), [`${R}.healthCheck.unhealthyThreshold: Too big: expected number to be <=100`]],
    ['an unknown check type', http(`${ONE}        healthCheck: { type: grpc }\n`), [`${R}.healthCheck.type: Invalid option: expected one of "http"|"tcp"`]],
    // rules
    ['rules in tcp mode', tcp('        upstream: tcp://127.0.0.1:9000\n        rules: []\n'), [`${R}.rules: per-path rules are for http-mode listeners (a tcp-mode route has no paths)`]],
    ['257 rules', http(`${ONE}        rules: [${Array.from({ length: 257 }, (_, i) => `{ path: /r${i}, allow: [] }`).join(', ')}]\n`), [`${R}.rules: expected at most 256 rules`]],
    ['a rule without allow', http(`${ONE}        rules: [{ path: /a }]\n`), [`${R}.rules[0].allow: Invalid input: expected array, received undefined`]],
    [
      'a rule key typo',
      http(`${ONE}        rules: [{ path: /a, allow: [], allowUnauthenticatd: true }]\n`),
      [`${R}.rules[0]: Unrecognized key: "allowUnauthenticatd" (did you mean "allowUnauthenticated"?)`],
    ],
    ['a rule path with a query', http(`${ONE}        rules: [{ path: "/a?b=1", allow: [] }]\n`), [`${R}.rules[0].path: "/a?b=1" contains '?': rules match the path without its query`]],
    [
      'a rule path with *.',
      http(`${ONE}        rules: [{ path: "/a/*.json", allow: [] }]\n`),
      [`${R}.rules[0].path: "/a/*.json" '*' may only be the whole path ('*') or the last segment ('/prefix/*')`],
    ],
    ['a rule path /a*', http(`${ONE}        rules: [{ path: "/a*", allow: [] }]\n`), [`${R}.rules[0].path: "/a*" '*' may only be the whole path ('*') or the last segment ('/prefix/*')`]],
    [
      'a rule path with dot segments',
      http(`${ONE}        rules: [{ path: "/a/../admin/*", allow: [] }]\n`),
      [`${R}.rules[0].path: "/a/../admin/*" contains a dot segment ('.' or '..'): requests with it are refused as bad-request, so this rule could never match`],
    ],
    ['a rule path without /', http(`${ONE}        rules: [{ path: admin, allow: [] }]\n`), [`${R}.rules[0].path: "admin" expected '*', '/exact' or '/prefix/*'`]],
    [
      'a rule path with a percent escape',
      http(`${ONE}        rules: [{ path: "/a%2Fb", allow: [] }]\n`),
      [`${R}.rules[0].path: "/a%2Fb" contains '%': rules match the percent-decoded path, so write it decoded`],
    ],
    ['a rule path with a tab', http(`${ONE}        rules: [{ path: "/a\\tb", allow: [] }]\n`), [`${R}.rules[0].path: "/a\\tb" contains a space, control or non-ASCII character at position 2`]],
    ['no methods', http(`${ONE}        rules: [{ path: /a, methods: [], allow: [] }]\n`), [`${R}.rules[0].methods: expected at least one method (leave methods out for every method)`]],
    [
      '17 methods',
      http(`${ONE}        rules: [{ path: /a, methods: [${Array.from({ length: 17 }, (_, i) => `M${i}`).join(', ')}], allow: [] }]\n`),
      [`${R}.rules[0].methods: expected at most 16 methods`],
    ],
    ['a lower-case method', http(`${ONE}        rules: [{ path: /a, methods: [GET, post], allow: [] }]\n`), [`${R}.rules[0].methods[1]: "post" must be upper case (methods are case-sensitive: POST)`]],
    [
      'a method that is not a token',
      http(`${ONE}        rules: [{ path: /a, methods: ["GET /"], allow: [] }]\n`),
      [`${R}.rules[0].methods[0]: "GET /" is not an HTTP method (RFC 9110 token characters, at most 32)`],
    ],
    [
      'a method of 33 characters',
      http(`${ONE}        rules: [{ path: /a, methods: [${'M'.repeat(33)}], allow: [] }]\n`),
      [`${R}.rules[0].methods[0]: "${'M'.repeat(33)}" is not an HTTP method (RFC 9110 token characters, at most 32)`],
    ],
    ['a method twice', http(`${ONE}        rules: [{ path: /a, methods: [GET, HEAD, GET], allow: [] }]\n`), [`${R}.rules[0].methods[2]: "GET" is listed twice`]],
    [
      "'*' alone as a name",
      http(`${ONE}        rules: [{ path: /a, allow: ['*'] }]\n`),
      [`${R}.rules[0].allow[0]: "*" is not a name pattern: '*' alone would allow every name; list names or '*.suffix' patterns`],
    ],
    [
      'two stars in the first label',
      http(`${ONE}        rules: [{ path: /a, allow: ['a-*-*.example.test'] }]\n`),
      [`${R}.rules[0].allow[0]: "a-*-*.example.test" is not a name pattern: '*' may appear once, in the first label only ('*.example.com', 'ops-*.example.com')`],
    ],
    [
      'a star below the first label',
      http(`${ONE}        rules: [{ path: /a, allow: ['ops.*.example.test'] }]\n`),
      [`${R}.rules[0].allow[0]: "ops.*.example.test" is not a name pattern: '*' may appear once, in the first label only ('*.example.com', 'ops-*.example.com')`],
    ],
    [
      'a star in a single label',
      http(`${ONE}        rules: [{ path: /a, allow: ['ops-*'] }]\n`),
      [`${R}.rules[0].allow[0]: "ops-*" is not a name pattern: name has a single label; a client name needs at least two`],
    ],
    [
      'a bad character in a name',
      http(`${ONE}        rules: [{ path: /a, allow: [ok.example.test, 'ops-*.ex!ample.test'] }]\n`),
      [`${R}.rules[0].allow[1]: "ops-*.ex!ample.test" is not a name pattern: label 2 contains '!'; only letters, digits, '-' and '_' are allowed`],
    ],
    [
      'a star in the suffix of a wildcard',
      http(`${ONE}        rules: [{ path: /a, allow: ['*.a*.example.test'] }]\n`),
      [`${R}.rules[0].allow[0]: "*.a*.example.test" is not a name pattern: a wildcard is only allowed as the whole first label, as in '*.example.com'`],
    ],
    // the HTTP listener
    ['no ALPN protocol', http(ONE, '    http: { alpn: [] }\n'), [`${H}.alpn: expected at least one of h2, http/1.1`]],
    ['an unknown ALPN protocol', http(ONE, '    http: { alpn: [h3] }\n'), [`${H}.alpn[0]: Invalid option: expected one of "h2"|"http/1.1"`]],
    ['an ALPN protocol twice', http(ONE, '    http: { alpn: [h2, h2] }\n'), [`${H}.alpn[1]: 'h2' is listed twice`]],
    ['three ALPN protocols', http(ONE, '    http: { alpn: [h2, http/1.1, h2] }\n'), [`${H}.alpn: expected h2, http/1.1 or both`]],
    ['0 concurrent streams', http(ONE, '    http: { http2: { maxConcurrentStreams: 0 } }\n'), [`${H}.http2.maxConcurrentStreams: Too small: expected number to be >=1`]],
    ['1001 concurrent streams', http(ONE, '    http: { http2: { maxConcurrentStreams: 1001 } }\n'), [`${H}.http2.maxConcurrentStreams: Too big: expected number to be <=1000`]],
    ['10001 resets per second', http(ONE, '    http: { http2: { maxResetsPerSecond: 10001 } }\n'), [`${H}.http2.maxResetsPerSecond: Too big: expected number to be <=10000`]],
    ['a header list under 1024 bytes', http(ONE, '    http: { http2: { maxHeaderListBytes: 1023 } }\n'), [`${H}.http2.maxHeaderListBytes: Too small: expected number to be >=1024`]],
    ['a header list over 1 MiB', http(ONE, '    http: { http2: { maxHeaderListBytes: 1048577 } }\n'), [`${H}.http2.maxHeaderListBytes: Too big: expected number to be <=1048576`]],
    ['a request rate of 0', http(ONE, '    http: { requestRatePerIdentity: { ratePerSecond: 0, burst: 1 } }\n'), [`${H}.requestRatePerIdentity.ratePerSecond: Too small: expected number to be >0`]],
    ['a request burst of 0', http(ONE, '    http: { requestRatePerIdentity: { ratePerSecond: 1, burst: 0 } }\n'), [`${H}.requestRatePerIdentity.burst: Too small: expected number to be >=1`]],
    [
      'a request rate above 1e6',
      http(ONE, '    http: { requestRatePerIdentity: { ratePerSecond: 1000001, burst: 1 } }\n'),
      [`${H}.requestRatePerIdentity.ratePerSecond: Too big: expected number to be <=1000000`],
    ],
    [
      'a request rate without burst',
      http(ONE, '    http: { requestRatePerIdentity: { ratePerSecond: 10 } }\n'),
      [`${H}.requestRatePerIdentity.burst: Invalid input: expected number, received undefined`],
    ],
    ['a sample rate above 1', http(ONE, '    http: { accessLog: { sampleRate: 1.5 } }\n'), [`${H}.accessLog.sampleRate: Too big: expected number to be <=1`]],
    ['a negative sample rate', http(ONE, '    http: { accessLog: { sampleRate: -0.1 } }\n'), [`${H}.accessLog.sampleRate: Too small: expected number to be >=0`]],
  ])('%s', async (_label, text, expected) => {
    expect(await problemsOf(text)).toEqual(expected);
  });

  it('every problem of a route at once', async () => {
    const problems = await problemsOf(
      http(
        `        upstreams: [ftp://x, http://127.0.0.1:8080]\n        upstreamHttp2: true\n        passiveHealth: { ejectMs: 500, maxEjectMs: 400 }\n        healthCheck: { path: x }\n        rules: [{ path: /a;b, methods: [get], allow: ['**.x.test'] }]\n`,
      ),
    );
    expect(problems).toEqual([
      `listeners[0].routes[0].upstreams[0]: a http-mode listener forwards to http://, https:// or h2c:// upstreams, not ftp://`,
      'listeners[0].routes[0].passiveHealth.maxEjectMs: must be at least ejectMs (500)',
      `listeners[0].routes[0].healthCheck.path: "x" expected a path starting with '/', such as /healthz`,
      `listeners[0].routes[0].rules[0].path: "/a;b" contains ';': requests with it are refused as bad-request, so this rule could never match`,
      'listeners[0].routes[0].rules[0].methods[0]: "get" must be upper case (methods are case-sensitive: GET)',
      `listeners[0].routes[0].rules[0].allow[0]: "**.x.test" is not a name pattern: '*' may appear once, in the first label only ('*.example.com', 'ops-*.example.com')`,
    ]);
  });
});

describe('pure checks', () => {
  it.each<[string, string | undefined]>([
    ['*', undefined],
    ['/', undefined],
    ['/*', undefined],
    ['/admin', undefined],
    ['/admin/', undefined],
    ['/admin/*', undefined],
    ['/a.b/c-d_e~f/*', undefined],
    ['/api/v1.0/...x', undefined],
    ['', "expected '*', '/exact' or '/prefix/*'"],
    ['admin/*', "expected '*', '/exact' or '/prefix/*'"],
    ['**', "expected '*', '/exact' or '/prefix/*'"],
    ['/*/x', "'*' may only be the whole path ('*') or the last segment ('/prefix/*')"],
    ['/a/**', "'*' may only be the whole path ('*') or the last segment ('/prefix/*')"],
    ['/a?x', "contains '?': rules match the path without its query"],
    ['/a#x', "contains '#': a fragment is never sent to a server"],
    ['/a%41', "contains '%': rules match the percent-decoded path, so write it decoded"],
    ['/a b', 'contains a space, control or non-ASCII character at position 2'],
    ['/a\u0000', 'contains a space, control or non-ASCII character at position 2'],
    ['/a\u007f', 'contains a space, control or non-ASCII character at position 2'],
    ['/caf\u00e9', 'contains a space, control or non-ASCII character at position 4'],
    ['/a\\b', "contains '\\': requests with it are refused as bad-request, so this rule could never match"],
    ['/a;jsessionid=1', "contains ';': requests with it are refused as bad-request, so this rule could never match"],
    ['//admin', "contains an empty segment ('//'): requests with it are refused as bad-request, so this rule could never match"],
    ['/a//*', "contains an empty segment ('//'): requests with it are refused as bad-request, so this rule could never match"],
    ['/./admin', "contains a dot segment ('.' or '..'): requests with it are refused as bad-request, so this rule could never match"],
    ['/admin/..', "contains a dot segment ('.' or '..'): requests with it are refused as bad-request, so this rule could never match"],
    ['/admin/./*', "contains a dot segment ('.' or '..'): requests with it are refused as bad-request, so this rule could never match"],
    [`/${'a'.repeat(1023)}`, undefined],
    [`/${'a'.repeat(1024)}`, 'is longer than 1024 characters'],
  ])('rulePathProblem(%j)', (path, expected) => {
    expect(rulePathProblem(path)).toBe(expected);
  });

  it.each<[string, { ok: true; pattern: string } | { ok: false; reason: string }]>([
    ['a._device.example.com', { ok: true, pattern: 'a._device.example.com' }],
    ['A._Device.Example.COM.', { ok: true, pattern: 'a._device.example.com' }],
    ['*.Example.com', { ok: true, pattern: '*.example.com' }],
    ['OPS-*._device.example.com', { ok: true, pattern: 'ops-*._device.example.com' }],
    ['*-ops._device.example.com.', { ok: true, pattern: '*-ops._device.example.com' }],
    ['a*b.example.com', { ok: true, pattern: 'a*b.example.com' }],
    ['*', { ok: false, reason: "'*' alone would allow every name; list names or '*.suffix' patterns" }],
    ['*.com', { ok: false, reason: 'name has a single label; a client name needs at least two' }],
    ['a**.example.com', { ok: false, reason: "'*' may appear once, in the first label only ('*.example.com', 'ops-*.example.com')" }],
    ['a.b*.example.com', { ok: false, reason: "'*' may appear once, in the first label only ('*.example.com', 'ops-*.example.com')" }],
    ['ops-*.', { ok: false, reason: 'name has a single label; a client name needs at least two' }],
    [`${'a'.repeat(63)}*.example.com`, { ok: false, reason: 'label 1 is 64 characters long; the limit is 63' }],
    ['ops-* .example.com', { ok: false, reason: 'name contains a space or control character at position 5' }],
    ['ops-\u00e9*.example.com', { ok: false, reason: 'name contains a non-ASCII character at position 4; use the A-label (xn--) form' }],
  ])('canonicalizeRuleName(%j)', (pattern, expected) => {
    expect(canonicalizeRuleName(pattern)).toEqual(expected);
  });

  it.each<[string, string | undefined]>([
    ['/', undefined],
    ['/healthz?deep=1', undefined],
    ['healthz', "expected a path starting with '/', such as /healthz"],
    ['*', "expected a path starting with '/', such as /healthz"],
    ['/a#b', "contains '#': a fragment is never sent to a server"],
    ['/a\r\nHost: x', 'contains a space, control or non-ASCII character at position 2; percent-encode it'],
    [`/${'a'.repeat(1024)}`, 'is longer than 1024 characters'],
  ])('healthPathProblem(%j)', (path, expected) => {
    expect(healthPathProblem(path)).toBe(expected);
  });

  it.each<[string, number, string]>([
    ['127.0.0.1', 80, '127.0.0.1:80'],
    ['::1', 8443, '[::1]:8443'],
    ['2001:db8::8', 1, '[2001:db8::8]:1'],
    ['Backend.Internal', 9000, 'backend.internal:9000'],
  ])('defaultUpstreamName(%s, %d)', (host, port, expected) => {
    expect(defaultUpstreamName(host, port)).toBe(expected);
  });
});

describe('/status', () => {
  it("shows each route's upstreams (name and URL), balance, retries and the number of rules", async () => {
    const config = await parse(`
resolver:
  servers:
    - address: 127.0.0.1:5353
listeners:
  - name: api
    listen: 127.0.0.1:8443
    mode: http
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - allow: ['*._device.example.test']
        upstreams: [http://127.0.0.1:8080, { url: h2c://127.0.0.1:8081, name: grpc }]
        balance: least-requests
        rules: [{ path: /a, allow: [] }, { path: '*', allow: ['*._device.example.test'] }]
  - name: mqtt
    listen: 127.0.0.1:8883
    mode: tcp
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - allow: ['*._device.example.test']
        upstream: tcp://127.0.0.1:1883
        retries: 3
        proxyHeader: v1
`);
    // Only what describeProxy reads of a running proxy; the configuration is the real one.
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
    expect((status.listeners as Array<{ routes: unknown }>).map((l) => l.routes)).toEqual([
      [
        {
          serverNames: ['(default)'],
          upstreams: [
            { name: '127.0.0.1:8080', url: 'http://127.0.0.1:8080' },
            { name: 'grpc', url: 'h2c://127.0.0.1:8081' },
          ],
          balance: 'least-requests',
          retries: 1,
          rules: 2,
          allowlist: 'listeners[0].routes[0].allow',
          allowPatterns: 1,
          identitySources: ['certificate-extension', 'clienthello-extension', 'san'],
          strict: false,
          proxyHeader: 'none',
          alpn: null,
          binding: 'none',
        },
      ],
      [
        {
          serverNames: ['(default)'],
          upstreams: [{ name: '127.0.0.1:1883', url: 'tcp://127.0.0.1:1883' }],
          balance: 'round-robin',
          retries: 3,
          rules: 0,
          allowlist: 'listeners[1].routes[0].allow',
          allowPatterns: 1,
          identitySources: ['certificate-extension', 'clienthello-extension', 'san'],
          strict: false,
          proxyHeader: 'v1',
          alpn: null,
          binding: 'none',
        },
      ],
    ]);
  });
});
