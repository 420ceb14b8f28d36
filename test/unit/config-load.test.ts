/**
 * The configuration loader: a full file resolves to exact values and
 * defaults; every kind of mistake is reported with its key path.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/pki.js';
import { ConfigError, formatKeyPath, loadConfig, parseConfigText, parseHostPort } from '../../src/config/load.js';

let dir: string;
const A = 'aa'.repeat(32);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-config-'));
  const ca = await createCertificate({ commonName: 'ca', isCA: true });
  const server = await createCertificate({ commonName: 'api', dnsNames: ['api.example.test'], issuer: ca, extendedKeyUsage: 'server' });
  const other = await createCertificate({ commonName: 'other', dnsNames: ['other.example.test'] });
  await writeFile(join(dir, 'server.pem'), server.certPem + ca.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  await writeFile(join(dir, 'other.pem'), other.certPem);
  await writeFile(join(dir, 'other.key'), other.keyPem);
  await writeFile(join(dir, 'ca.pem'), ca.certPem);
  await writeFile(join(dir, 'allow.txt'), '# devices\n*._device.example.test\n');
  await writeFile(join(dir, 'bad-allow.txt'), 'ok.example.test\nbad..example\n');
  await writeFile(join(dir, 'pins.txt'), `a._device.example.test TLSA 3 1 1 ${A}\n`);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const source = (): string => join(dir, 'dancegate.yaml');

const MINIMAL = `
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
      - upstream: http://127.0.0.1:8080
        allow: ['*._device.example.test']
`;

async function problemsOf(text: string): Promise<readonly string[]> {
  try {
    await parseConfigText(text, source());
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('a valid configuration', () => {
  it('resolves the minimal file with every default', async () => {
    const config = await parseConfigText(MINIMAL, source());
    expect(config.source).toBe(source());
    expect(config.resolver).toMatchObject({
      servers: [{ host: '127.0.0.1', port: 5353, transport: 'udp' }],
      attemptTimeoutMs: 2000,
      totalTimeoutMs: 5000,
      allowRemotePlainResolver: false,
      localTlsa: undefined,
      cache: { maxEntries: 10_000, maxPositiveTtlSeconds: 3600, failureTtlSeconds: 5, maxTlsaRecords: 16 },
    });
    const [listener] = config.listeners;
    expect(listener).toMatchObject({
      name: 'api',
      host: '127.0.0.1',
      port: 8443,
      mode: 'http',
      minVersion: 'TLSv1.2',
      policy: 'required',
      daneClientIdType: 65500,
      maxClientHelloBytes: 16384,
      clientHelloTimeoutMs: 5000,
      handshakeTimeoutMs: 10000,
      idleTimeoutMs: 120000,
      inboundProxyProtocol: undefined,
      pkixRoots: [],
      http: {
        identityHeader: 'X-Dane-Client-Id',
        statusHeader: 'X-Dane-Status',
        forwardClientCert: false,
        forwardXfcc: false,
        tlsaHeader: undefined,
        refuseWith403: true,
        headersTimeoutMs: 10000,
        requestTimeoutMs: 60000,
        upstreamConnections: 256,
        upstreamMaxPerClient: 64,
        upstreamQueueTimeoutMs: 5000,
        alpn: ['h2', 'http/1.1'],
        http2: { maxConcurrentStreams: 64, maxResetsPerSecond: 100, maxHeaderListBytes: 16384 },
        requestRatePerIdentity: undefined,
        accessLog: { enabled: true, sampleRate: 1, includeQuery: false },
      },
    });
    expect(listener?.certificates[0]).toMatchObject({ serverNames: [], certFile: join(dir, 'server.pem') });
    const route = listener?.routes[0];
    expect(route).toMatchObject({
      serverNames: [],
      allowlistSource: 'listeners[0].routes[0].allow',
    });
    expect(route?.upstreams).toEqual({
      targets: [{ protocol: 'http', host: '127.0.0.1', port: 8080, url: 'http://127.0.0.1:8080', name: '127.0.0.1:8080', http2: false, tls: undefined }],
      balance: 'round-robin',
      passiveHealth: { failures: 5, ejectMs: 10000, maxEjectMs: 300000 },
      healthCheck: undefined,
      retries: 1,
    });
    expect(route !== undefined && 'rules' in route ? route.rules : undefined).toEqual([]);
    // Typed by mode: PROXY header settings are for TCP routes only.
    expect(route !== undefined && 'proxyHeader' in route).toBe(false);
    expect(route?.allowlist.allows('x._device.example.test')).toBe(true);
    expect(route?.allowlist.allows('example.test')).toBe(false);
  });

  it('resolves a full TCP-mode file: DoT resolver, local TLSA, SNI routes, TLS upstream, PROXY v2 TLVs, inbound PROXY', async () => {
    const config = await parseConfigText(
      `
resolver:
  servers:
    - address: "[::1]:853"
      transport: tls
      tlsServerName: resolver.example.test
      tlsCaFile: ca.pem
    - address: 127.0.0.1
  attemptTimeoutMs: 1000
  totalTimeoutMs: 3000
  localTlsaFile: pins.txt
  cache: { maxEntries: 500, failureTtlSeconds: 10, maxTlsaRecords: 4 }
listeners:
  - name: radsec
    listen: "[::]:2083"
    mode: tcp
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
          serverNames: [API.example.test, '*.radsec.example.test']
        - certFile: other.pem
          keyFile: other.key
      minVersion: TLSv1.3
      pkixCaFile: ca.pem
    daneClientIdType: 65280
    idleTimeoutMs: 3600000
    proxyProtocol:
      versions: v2
      trustedCidrs: [10.0.0.0/8, "::1/128"]
    routes:
      - serverNames: [api.example.test]
        upstream: tls://radius.internal:2083
        upstreamTls: { caFile: ca.pem, certFile: other.pem, keyFile: other.key, serverName: radius.internal }
        allowFile: allow.txt
        proxyHeader: v2
        proxyV2: { nameTlv: 0xE0, certHashTlv: 0xE1, tlsaTlv: 0xF0, crc32c: true }
      - upstream: tcp://127.0.0.1:1812
        allow: [a._device.example.test]
        proxyHeader: v1
`,
      source(),
    );
    expect(config.resolver.servers).toEqual([
      { host: '::1', port: 853, transport: 'tls', tlsServerName: 'resolver.example.test', tlsCa: expect.stringContaining('BEGIN CERTIFICATE') },
      { host: '127.0.0.1', port: 53, transport: 'udp', tlsServerName: undefined, tlsCa: undefined },
    ]);
    expect(config.resolver.localTlsaFile).toBe(join(dir, 'pins.txt'));
    expect([...(config.resolver.localTlsa?.keys() ?? [])]).toEqual(['a._device.example.test']);
    expect(config.resolver.cache).toMatchObject({ maxEntries: 500, failureTtlSeconds: 10, maxPositiveTtlSeconds: 3600, maxTlsaRecords: 4 });
    const l = config.listeners[0];
    expect(l).toMatchObject({ host: '::', port: 2083, mode: 'tcp', minVersion: 'TLSv1.3', daneClientIdType: 65280, idleTimeoutMs: 3600000 });
    expect(l?.inboundProxyProtocol).toEqual({ versions: 'v2', trustedCidrs: ['10.0.0.0/8', '::1/128'] });
    // Typed by mode: no HTTP settings on a TCP listener.
    expect(l !== undefined && 'http' in l).toBe(false);
    expect(l?.pkixRoots).toHaveLength(1);
    expect(l?.certificates.map((c) => c.serverNames)).toEqual([['api.example.test', '*.radsec.example.test'], []]);
    expect(l?.routes[0]).toMatchObject({
      serverNames: ['api.example.test'],
      upstreams: { targets: [{ protocol: 'tls', host: 'radius.internal', port: 2083, name: 'radius.internal:2083', http2: false, tls: { serverName: 'radius.internal' } }] },
      allowlistSource: join(dir, 'allow.txt'),
      proxyHeader: { version: 'v2', tlvTypes: { name: 0xe0, certHash: 0xe1, tlsa: 0xf0 }, crc32c: true },
    });
    expect(l?.routes[0]?.upstreams.targets[0]?.tls?.certPem).toContain('BEGIN CERTIFICATE');
    expect(l?.routes[1]).toMatchObject({ upstreams: { targets: [{ protocol: 'tcp', port: 1812, name: '127.0.0.1:1812', tls: undefined }] }, proxyHeader: { version: 'v1' } });
    // Typed by mode: per-path rules are for HTTP routes only.
    expect(l?.routes[0] !== undefined && 'rules' in l.routes[0]).toBe(false);
  });

  it('limits: defaults, and switching parts off', async () => {
    const defaults = await parseConfigText(MINIMAL, source());
    expect(defaults.limits).toEqual({
      resolverGate: { maxInFlight: 128, maxInFlightPerZone: 8, maxQueued: 1024, maxQueuedPerZone: 32, maxQueueWaitMs: 2000 },
      handshakes: { maxConcurrent: 4096, maxConcurrentPerIp: 256, maxClientCertificates: 10, maxClientFlightBytes: 16384, maxTlsHandshakesPerIp: 4 },
      newConnectionsPerIp: { ratePerSecond: 50, burst: 200 },
      penaltyBox: { failures: 20, windowMs: 60000, banMs: 60000 },
      maxConnectionsPerIdentity: undefined,
      identityOverflow: 'refuse-new',
      trackedAddresses: 100000,
    });
    expect(defaults.listeners[0]?.maxLifetimeMs).toBeUndefined();
    const off = await parseConfigText(`${MINIMAL}limits:\n  resolverGate: { enabled: false }\n  newConnectionsPerIp: false\n  penaltyBox: false\n  maxConnectionsPerIdentity: 4\n`, source());
    expect(off.limits).toMatchObject({ resolverGate: undefined, newConnectionsPerIp: undefined, penaltyBox: undefined, maxConnectionsPerIdentity: 4 });
    // TLS handshakes per address: 4 by default, never more than the per-address budget.
    const small = await parseConfigText(`${MINIMAL}limits: { handshakes: { maxConcurrentPerIp: 2 } }\n`, source());
    expect(small.limits.handshakes).toMatchObject({ maxConcurrentPerIp: 2, maxTlsHandshakesPerIp: 2 });
  });

  it('a local TLSA file alone is enough (no resolver servers)', async () => {
    const config = await parseConfigText(MINIMAL.replace('  servers:\n    - address: 127.0.0.1:5353\n', '  localTlsaFile: pins.txt\n'), source());
    expect(config.resolver.servers).toEqual([]);
  });

  it('loadConfig reads relative paths from the file directory', async () => {
    await writeFile(source(), MINIMAL);
    expect((await loadConfig(source())).listeners[0]?.certificates[0]?.certFile).toBe(join(dir, 'server.pem'));
  });

  it('the TLS engine and identity sources: defaults, the fixed precedence order, and a strict route', async () => {
    const defaults = (await parseConfigText(MINIMAL, source())).listeners[0];
    expect(defaults?.engine).toBe('auto');
    expect(defaults?.routes[0]?.identity).toEqual({ sources: ['certificate-extension', 'clienthello-extension', 'san'], strict: false });
    const route = "allow: ['*._device.example.test']";
    const onNode = MINIMAL.replace('          keyFile: server.key\n', '          keyFile: server.key\n      engine: node\n');
    const listedText = onNode.replace(route, `${route}\n        identitySources: [san, clienthello-extension]`);
    const listed = (await parseConfigText(listedText, source())).listeners[0];
    expect(listed?.engine).toBe('node');
    expect(listed?.routes[0]?.identity).toEqual({ sources: ['clienthello-extension', 'san'], strict: false });
    const strict = (await parseConfigText(MINIMAL.replace(route, `${route}\n        strict: true`), source())).listeners[0];
    expect(strict?.routes[0]?.identity).toEqual({ sources: ['certificate-extension'], strict: true });
  });
});

describe('mistakes are reported with their key path', () => {
  const replace = (from: string, to: string): string => {
    if (!MINIMAL.includes(from)) throw new Error(`fixture does not contain ${from}`);
    return MINIMAL.replace(from, to);
  };

  it.each<[string, string, string[]]>([
    ['YAML syntax', 'listeners: [', ['YAML syntax at line 1, column 13: ']],
    ['a duplicate key', `${MINIMAL}resolver: {}\n`, ['YAML syntax at line 16, column 1: Map keys must be unique']],
    ['an unknown top-level key (typo)', `${MINIMAL}listner: []\n`, ['(top level): Unrecognized key: "listner"']],
    ['an unknown listener key', replace('    mode: http\n', '    mode: http\n    polcy: optional\n'), ['listeners[0]: Unrecognized key: "polcy"']],
    ['a wrong mode', replace('mode: http', 'mode: udp'), ['listeners[0].mode: Invalid option: expected one of "http"|"tcp"']],
    ['a string for a number', replace('    mode: http\n', '    mode: http\n    handshakeTimeoutMs: ten\n'), ['listeners[0].handshakeTimeoutMs: Invalid input: expected number, received string']],
    ['no listeners', 'resolver:\n  localTlsaFile: pins.txt\nlisteners: []\n', ['listeners: expected at least one listener']],
    [
      'no resolver and no local file',
      replace('  servers:\n    - address: 127.0.0.1:5353\n', '  attemptTimeoutMs: 100\n'),
      ['resolver: expected servers (a validating resolver) or localTlsaFile, or both'],
    ],
    ['a resolver host name', replace('127.0.0.1:5353', 'dns.example:53'), ["resolver.servers[0].address: expected an IP address literal (the resolver must not itself need DNS), got 'dns.example'"]],
    [
      'a remote plain resolver',
      replace('127.0.0.1:5353', '192.0.2.1:53'),
      ['resolver.servers: resolver server 1 (192.0.2.1:53): plain UDP to a resolver that is not on loopback cannot protect the AD bit'],
    ],
    ['a bad port', replace('127.0.0.1:5353', '127.0.0.1:70000'), ['resolver.servers[0].address: port 70000 is above 65535']],
    [
      'DoT options on UDP',
      replace('    - address: 127.0.0.1:5353\n', '    - address: 127.0.0.1:5353\n      tlsServerName: x.example\n'),
      ['resolver.servers[0]: tlsServerName and tlsCaFile apply only to transport: tls (this server uses udp)'],
    ],
    ['a TLSA record cap of 0', replace('  servers:\n', '  cache: { maxTlsaRecords: 0 }\n  servers:\n'), ['resolver.cache.maxTlsaRecords']],
    ['a TLSA record cap above 256', replace('  servers:\n', '  cache: { maxTlsaRecords: 257 }\n  servers:\n'), ['resolver.cache.maxTlsaRecords']],
    ['total below attempt timeout', replace('  servers:\n', '  attemptTimeoutMs: 3000\n  totalTimeoutMs: 1000\n  servers:\n'), ['resolver.totalTimeoutMs: must be at least attemptTimeoutMs (3000)']],
    ['a missing local TLSA file', replace('  servers:\n', '  localTlsaFile: nope.txt\n  servers:\n'), [`resolver.localTlsaFile: cannot read local TLSA file ${join('DIR', 'nope.txt')}: ENOENT`]],
    ['a listen address without port', replace('listen: 127.0.0.1:8443', 'listen: 127.0.0.1'), ["listeners[0].listen: expected HOST:PORT, got '127.0.0.1' (no port)"]],
    ['a listen host name', replace('listen: 127.0.0.1:8443', 'listen: localhost:8443'), ["listeners[0].listen: expected an IP address to bind (127.0.0.1, 0.0.0.0, ::), got 'localhost'"]],
    ['a missing certificate file', replace('certFile: server.pem', 'certFile: missing.pem'), [`listeners[0].tls.certificates[0].certFile: cannot read ${join('DIR', 'missing.pem')}: ENOENT`]],
    [
      'a key file given as the certificate',
      replace('certFile: server.pem', 'certFile: server.key'),
      ['listeners[0].tls.certificates[0].certFile: ', "PEM block 1 is 'PRIVATE KEY', expected 'CERTIFICATE' (is this the key file?)"],
    ],
    [
      'a certificate given as the key',
      replace('keyFile: server.key', 'keyFile: server.pem'),
      [`listeners[0].tls.certificates[0].keyFile: ${join('DIR', 'server.pem')} does not hold a private key (PEM or DER`],
    ],
    [
      'a key of another certificate',
      replace('keyFile: server.key', 'keyFile: other.key'),
      [`listeners[0].tls.certificates[0].keyFile: the key in ${join('DIR', 'other.key')} does not belong to the first certificate in ${join('DIR', 'server.pem')}`],
    ],
    [
      'an upstream of the wrong kind for the mode',
      replace('http://127.0.0.1:8080', 'tcp://127.0.0.1:8080'),
      ['listeners[0].routes[0].upstream: a http-mode listener forwards to http://, https:// or h2c:// upstreams, not tcp://'],
    ],
    ['an upstream with a path', replace('http://127.0.0.1:8080', 'http://127.0.0.1:8080/api'), ['listeners[0].routes[0].upstream: expected scheme://host:port only (no path, query or credentials)']],
    [
      'an upstream that is not a URL',
      replace('http://127.0.0.1:8080', '127.0.0.1:8080'),
      ["listeners[0].routes[0].upstream: expected a URL such as http://127.0.0.1:8080, https://127.0.0.1:8080 or h2c://127.0.0.1:8080, got '127.0.0.1:8080'"],
    ],
    [
      'both allow and allowFile',
      replace("allow: ['*._device.example.test']", "allow: ['*._device.example.test']\n        allowFile: allow.txt"),
      ['listeners[0].routes[0]: expected exactly one of allow (a list of names and *.suffix patterns) or allowFile'],
    ],
    ['neither allow nor allowFile', replace("        allow: ['*._device.example.test']\n", ''), ['listeners[0].routes[0]: expected exactly one of allow']],
    [
      'a bad allow pattern',
      replace("allow: ['*._device.example.test']", "allow: [ok.example.test, '*']"),
      ['listeners[0].routes[0].allow: listeners[0].routes[0].allow, line 2: invalid allowlist pattern "*": '],
    ],
    [
      'a bad line in an allow file',
      replace("allow: ['*._device.example.test']", 'allowFile: bad-allow.txt'),
      [`listeners[0].routes[0].allowFile: ${join('DIR', 'bad-allow.txt')}, line 2: invalid allowlist pattern "bad..example"`],
    ],
    ['an empty allow list', replace("allow: ['*._device.example.test']", 'allow: []'), ['listeners[0].routes[0].allow: is empty: no client could ever be authenticated on this route']],
    [
      'a PROXY header in HTTP mode',
      replace("allow: ['*._device.example.test']", "allow: ['*._device.example.test']\n        proxyHeader: v2"),
      ['listeners[0].routes[0].proxyHeader: PROXY headers are for tcp-mode listeners'],
    ],
    ['policy optional in TCP mode', replace('mode: http', 'mode: tcp\n    policy: optional').replace('http://', 'tcp://'), ["listeners[0].policy: 'optional' is for http mode only"]],
    [
      'a TLV type outside the custom range',
      replace("allow: ['*._device.example.test']", "allow: ['*._device.example.test']\n        proxyV2: { nameTlv: 0x20 }"),
      ['listeners[0].routes[0].proxyV2.nameTlv: expected a custom TLV type 0xE0–0xEF or 0xF0–0xF7'],
    ],
    ['dane_clientid colliding with ALPN', replace('    mode: http\n', '    mode: http\n    daneClientIdType: 16\n'), ['listeners[0].daneClientIdType: is a registered TLS extension type']],
    ['dane_clientid as renegotiation_info', replace('    mode: http\n', '    mode: http\n    daneClientIdType: 65281\n'), ['listeners[0].daneClientIdType: is a registered TLS extension type']],
    [
      'an identity header that frames the body',
      replace('    mode: http\n', '    mode: http\n    http: { statusHeader: Transfer_Encoding }\n'),
      ['listeners[0].http.statusHeader: is a header dancegate or HTTP itself needs'],
    ],
    [
      'headers timeout above the request timeout',
      replace('    mode: http\n', '    mode: http\n    http: { requestTimeoutMs: 5000 }\n'),
      ['listeners[0].http.headersTimeoutMs: must not exceed requestTimeoutMs (5000)'],
    ],
    [
      'an invalid trusted CIDR',
      replace('    mode: http\n', '    mode: http\n    proxyProtocol: { trustedCidrs: [10.0.0.0/33] }\n'),
      ["listeners[0].proxyProtocol.trustedCidrs[0]: prefix length '33' is not 0..32"],
    ],
    [
      'inbound PROXY with no trusted CIDRs',
      replace('    mode: http\n', '    mode: http\n    proxyProtocol: { trustedCidrs: [] }\n'),
      ['listeners[0].proxyProtocol.trustedCidrs: expected at least one CIDR'],
    ],
    [
      'a bad identity header name',
      replace('    mode: http\n', '    mode: http\n    http: { identityHeader: "X Dane" }\n'),
      ['listeners[0].http.identityHeader: expected an HTTP header name (token characters only)'],
    ],
    [
      'two default routes',
      replace('    routes:\n', '    routes:\n      - upstream: http://127.0.0.1:9000\n        allow: [a.example.test]\n'),
      ['listeners[0].routes: 2 routes have no serverNames; at most one can be the default route'],
    ],
    [
      'upstreamTls on a plain upstream',
      replace("allow: ['*._device.example.test']", "allow: ['*._device.example.test']\n        upstreamTls: { serverName: x.example }"),
      ['listeners[0].routes[0].upstreamTls: upstreamTls applies to https:// and tls:// upstreams, not http://'],
    ],
    [
      'a gate at Unbound wait-limit',
      `${MINIMAL}limits: { resolverGate: { maxInFlight: 1000, maxInFlightPerZone: 8 } }\n`,
      ["limits.resolverGate.maxInFlight: must stay below Unbound's default wait-limit"],
    ],
    ['a zone cap above the global cap', `${MINIMAL}limits: { resolverGate: { maxInFlight: 4, maxInFlightPerZone: 8 } }\n`, ['limits.resolverGate.maxInFlightPerZone: must not exceed maxInFlight (4)']],
    [
      'a per-IP handshake cap above the total',
      `${MINIMAL}limits: { handshakes: { maxConcurrent: 10, maxConcurrentPerIp: 20 } }\n`,
      ['limits.handshakes.maxConcurrentPerIp: must not exceed maxConcurrent (10)'],
    ],
    ['a rate of zero', `${MINIMAL}limits: { newConnectionsPerIp: { ratePerSecond: 0, burst: 5 } }\n`, ['limits.newConnectionsPerIp']],
    ['a client flight limit below 4096 bytes', `${MINIMAL}limits: { handshakes: { maxClientFlightBytes: 1000 } }\n`, ['limits.handshakes.maxClientFlightBytes']],
    [
      'TLS handshakes per address above the per-address budget',
      `${MINIMAL}limits: { handshakes: { maxConcurrentPerIp: 8, maxTlsHandshakesPerIp: 9 } }\n`,
      ['limits.handshakes.maxTlsHandshakesPerIp: must not exceed maxConcurrentPerIp (8)'],
    ],
    ['no TLS handshake per address', `${MINIMAL}limits: { handshakes: { maxTlsHandshakesPerIp: 0 } }\n`, ['limits.handshakes.maxTlsHandshakesPerIp']],
    ['a client chain limit of 0 certificates', `${MINIMAL}limits: { handshakes: { maxClientCertificates: 0 } }\n`, ['limits.handshakes.maxClientCertificates']],
  ])('%s', async (_label, text, expected) => {
    const problems = (await problemsOf(text)).map((p) => p.replaceAll(dir, 'DIR'));
    for (const fragment of expected)
      expect(
        problems.some((p) => p.includes(fragment)),
        `${JSON.stringify(problems)} should include ${fragment}`,
      ).toBe(true);
    // Key paths come first (or YAML syntax).
    for (const p of problems) expect(p).toMatch(/^(YAML syntax|\(top level\)|resolver|listeners|limits)/);
  });

  it('lists every problem at once, not only the first', async () => {
    const text = replace('listen: 127.0.0.1:8443', 'listen: nowhere').replace('http://127.0.0.1:8080', 'ftp://x');
    const problems = await problemsOf(text);
    expect(problems).toHaveLength(2);
  });

  it('duplicate listener names and addresses', async () => {
    const second = MINIMAL.split('listeners:\n')[1] ?? '';
    const problems = await problemsOf(`${MINIMAL}${second}`);
    expect(problems).toEqual(["listeners[1].name: 'api' is already the name of listeners[0]", 'listeners[1].listen: 127.0.0.1:8443 is already used by listeners[0]']);
  });

  it('a missing configuration file', async () => {
    await expect(loadConfig(join(dir, 'none.yaml'))).rejects.toThrow(`${join(dir, 'none.yaml')}:\n  - cannot read the configuration file: ENOENT`);
  });

  it('the message lists the source and each problem on its own line', async () => {
    const err = await parseConfigText('listeners: 1', source()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(`${source()}:\n  - resolver: Invalid input: expected object, received undefined\n  - listeners: Invalid input: expected array, received number`);
  });
});

describe('helpers', () => {
  it.each([
    [['listeners', 0, 'routes', 1, 'allow'], 'listeners[0].routes[1].allow'],
    [[], '(top level)'],
  ])('formatKeyPath %j', (path, expected) => {
    expect(formatKeyPath(path)).toBe(expected);
  });
  it.each([
    ['127.0.0.1:53', undefined, { host: '127.0.0.1', port: 53 }],
    ['[::1]:853', undefined, { host: '::1', port: 853 }],
    ['[::1]', 53, { host: '::1', port: 53 }],
    ['::1', 53, 'write an IPv6 address with a port as [::1]:PORT'],
    ['[x]:1', undefined, "expected an IPv6 address inside [ ], got 'x'"],
    [':53', undefined, 'expected HOST:PORT, the host is empty'],
    ['h:5x', undefined, "expected a port number, got '5x'"],
  ])('parseHostPort %s', (text, defaultPort, expected) => {
    expect(parseHostPort(text, defaultPort)).toEqual(expected);
  });
});

describe("the README's configuration reference", () => {
  it('is a valid configuration (with its files present)', async () => {
    const { readFile } = await import('node:fs/promises');
    const readme = await readFile(join(import.meta.dirname, '../../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    expect(yaml).toBeDefined();
    const { createCertificate: make } = await import('../../certs/pki.js');
    const ca = await make({ commonName: 'any CA', isCA: true });
    const leaf = await make({ commonName: 'api.example.com', dnsNames: ['api.example.com'], issuer: ca });
    for (const f of ['dot-ca.pem', 'clients-ca.pem', 'backend-ca.pem']) await writeFile(join(dir, f), ca.certPem);
    for (const f of ['api', 'to-backend']) {
      await writeFile(join(dir, `${f}.pem`), leaf.certPem);
      await writeFile(join(dir, `${f}.key`), leaf.keyPem);
    }
    await writeFile(join(dir, 'pinned-tlsa.txt'), `x.api.example.com TLSA 3 1 1 ${A}\n`);
    const config = await parseConfigText(yaml ?? '', source());
    expect(config.listeners.map((l) => [l.name, l.mode, l.port, l.routes.length])).toEqual([
      ['api', 'http', 443, 1],
      ['devices', 'tcp', 8883, 1],
      ['radsec', 'tcp', 2083, 1],
    ]);
    // The MQTT and RADSEC listeners show every binding default, and the api listener the listener-level defaults.
    const [, devices, radsec] = config.listeners;
    if (devices?.mode !== 'tcp' || radsec?.mode !== 'tcp') throw new Error('expected the tcp listeners');
    expect([devices.protocol, devices.alpn, devices.routes[0]?.alpn, devices.routes[0]?.binding]).toEqual([
      'mqtt',
      ['mqtt'],
      ['mqtt'],
      { kind: 'mqtt', mqtt: { clientId: 'require-identity', username: 'identity', password: 'keep', maxConnectBytes: 16384, connectTimeoutMs: 10000 } },
    ]);
    expect([radsec.protocol, radsec.routes[0]?.binding]).toEqual([
      'radsec',
      { kind: 'radius', radius: { secret: 'radsec', identityAttribute: { kind: 'vsa', vendorId: 32473, vendorType: 1 }, maxPacketBytes: 4096 } },
    ]);
    const bare = await parseConfigText(MINIMAL.replace('mode: http', 'mode: mqtt').replace('http://', 'tcp://'), source());
    expect(bare.listeners[0]?.mode === 'tcp' ? bare.listeners[0].routes[0]?.binding : undefined).toEqual(devices.routes[0]?.binding);
    expect(config.resolver.servers.map((s) => s.transport)).toEqual(['udp', 'tls']);
    const [api] = config.listeners;
    if (api?.mode !== 'http') throw new Error('expected the http listener');
    // The upstream pool and the HTTP/2, rate and access-log keys it shows resolve as commented (defaults where it says so).
    expect(api.routes[0]?.upstreams.targets.map((u) => [u.name, u.http2, u.tls?.serverName])).toEqual([
      ['10.0.0.7:8443', false, 'backend.internal'],
      ['backend-b', false, 'backend.internal'],
    ]);
    expect(api.routes[0]?.upstreams).toMatchObject({ balance: 'round-robin', passiveHealth: { failures: 5, ejectMs: 10000, maxEjectMs: 300000 }, retries: 1 });
    expect(api.routes[0]?.rules.map((r) => r.path)).toEqual(['/admin/*', '*']);
    const defaults = await parseConfigText(MINIMAL, source());
    const http = (c: typeof config) => {
      const l = c.listeners[0];
      return l?.mode === 'http' ? { alpn: l.http.alpn, http2: l.http.http2, requestRatePerIdentity: l.http.requestRatePerIdentity, accessLog: l.http.accessLog } : undefined;
    };
    expect(http(config)).toEqual(http(defaults));
    expect([config.listeners[0]?.revalidate, config.listeners[0]?.tcpKeepAlive]).toEqual([defaults.listeners[0]?.revalidate, defaults.listeners[0]?.tcpKeepAlive]);
    expect(config.listeners[0]?.revalidate).toEqual({ mode: 'ttl', floorMs: 30000, ceilingMs: 3600000, jitterMs: 30000, graceMs: 300000 });
    // Its limits section says it shows the defaults: it must equal what an empty one gives.
    expect(config.limits).toEqual(defaults.limits);
  });
});
