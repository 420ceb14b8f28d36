import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/pki.js';
import { parseConfigText } from '../../src/config/load.js';
import { canonicalIpAddress, isLoopbackAddress, sameIpAddress, validateResolverOptions, type ResolverOptions } from '../../src/dns/resolver.js';

describe('canonicalIpAddress', () => {
  it.each([
    ['::1', '::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['0000:0000:0000:0000:0000:0000:0000:0001', '::1'],
    ['0::0:1', '::1'],
    ['2001:DB8:0:0:0:0:0:53', '2001:db8::53'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::FFFF:127.0.0.1', '::ffff:127.0.0.1'],
    ['::ffff:7f00:1', '::ffff:127.0.0.1'],
    ['fe80::1%lo', 'fe80::1%lo'],
    ['FE80:0::1%eth0', 'fe80::1%eth0'],
    ['127.0.0.1', '127.0.0.1'],
    ['192.0.2.53', '192.0.2.53'],
    ['localhost', undefined],
    ['127.0.0.01', undefined],
    ['[::1]', undefined],
    ['', undefined],
  ])('%s -> %s', (host, expected) => {
    expect(canonicalIpAddress(host)).toBe(expected);
  });

  it.each([
    ['::1', '0:0:0:0:0:0:0:1', true],
    ['::ffff:127.0.0.1', '::ffff:7f00:1', true],
    ['127.0.0.1', '::ffff:127.0.0.1', false],
    ['::1', '::2', false],
    ['localhost', 'localhost', false],
  ])('sameIpAddress(%s, %s) -> %s', (a, b, expected) => {
    expect(sameIpAddress(a, b)).toBe(expected);
  });
});

describe('isLoopbackAddress', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.8.9.10', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['0:0:0:0:0:0:0:1', true],
    ['0000::0001', true],
    ['::ffff:7f00:1', true],
    ['::FFFF:127.1.2.3', true],
    ['::2', false],
    ['::', false],
    ['128.0.0.1', false],
    ['10.0.0.1', false],
    ['2001:db8::1', false],
    ['localhost', false],
  ])('%s -> %s', (host, expected) => {
    expect(isLoopbackAddress(host)).toBe(expected);
  });
});

describe('validateResolverOptions', () => {
  const ok = (options: ResolverOptions): void => expect(() => validateResolverOptions(options)).not.toThrow();
  it('accepts plain DNS on loopback and DNS over TLS anywhere', () => {
    ok({ servers: [{ host: '127.0.0.1', port: 53, transport: 'udp' }] });
    ok({ servers: [{ host: '::1', port: 5353, transport: 'tcp' }] });
    ok({ servers: [{ host: '192.0.2.53', port: 853, transport: 'tls', tlsServerName: 'dns.example' }] });
    ok({ servers: [{ host: '192.0.2.53', port: 53, transport: 'udp' }], allowRemotePlainResolver: true });
  });

  it.each<[string, ResolverOptions, string]>([
    ['no servers', { servers: [] }, 'resolver: at least one server is required'],
    [
      'remote plain UDP',
      { servers: [{ host: '192.0.2.53', port: 53, transport: 'udp' }] },
      'resolver server 1 (192.0.2.53:53): plain UDP to a resolver that is not on loopback cannot protect the AD bit; use transport tls, run a validating resolver on loopback, or set allowRemotePlainResolver if the path is trusted',
    ],
    [
      'remote plain TCP as the second server',
      {
        servers: [
          { host: '127.0.0.1', port: 53, transport: 'udp' },
          { host: '2001:db8::53', port: 53, transport: 'tcp' },
        ],
      },
      'resolver server 2 ([2001:db8::53]:53): plain TCP to a resolver that is not on loopback cannot protect the AD bit; use transport tls, run a validating resolver on loopback, or set allowRemotePlainResolver if the path is trusted',
    ],
    ['host name', { servers: [{ host: 'dns.example', port: 53, transport: 'tls' }] }, 'resolver server 1 (dns.example:53): host must be an IP address literal'],
    ['port 0', { servers: [{ host: '127.0.0.1', port: 0, transport: 'udp' }] }, 'resolver server 1 (127.0.0.1:0): port must be an integer from 1 to 65535'],
    ['port 70000', { servers: [{ host: '127.0.0.1', port: 70000, transport: 'udp' }] }, 'resolver server 1 (127.0.0.1:70000): port must be an integer from 1 to 65535'],
    ['bad transport', { servers: [{ host: '127.0.0.1', port: 53, transport: 'doh' as 'udp' }] }, 'resolver server 1 (127.0.0.1:53): transport must be udp, tcp or tls'],
    ['zero timeout', { servers: [{ host: '127.0.0.1', port: 53, transport: 'udp' }], totalTimeoutMs: 0 }, 'resolver totalTimeoutMs: must be a number of milliseconds from 1 to 60000'],
    [
      'huge attempt timeout',
      { servers: [{ host: '127.0.0.1', port: 53, transport: 'udp' }], attemptTimeoutMs: 120_000 },
      'resolver attemptTimeoutMs: must be a number of milliseconds from 1 to 60000',
    ],
  ])('refuses %s', (_label, options, message) => {
    expect(() => validateResolverOptions(options)).toThrow(message);
  });
});

describe('resolver addresses in the configuration file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-resolver-config-'));
    const server = await createCertificate({ commonName: 'api', dnsNames: ['api.example.test'], extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  const config = (address: string): string => `
resolver:
  servers:
    - address: "${address}"
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

  it.each([
    ['[0:0:0:0:0:0:0:1]:5353', '::1', 5353],
    ['[0000:0000:0000:0000:0000:0000:0000:0001]:53', '::1', 53],
    ['[::FFFF:127.0.0.1]:53', '::ffff:127.0.0.1', 53],
    ['[::1]:53', '::1', 53],
    ['127.0.0.1:53', '127.0.0.1', 53],
  ])('%s is kept in canonical form (%s), the form replies come from', async (address, host, port) => {
    const parsed = await parseConfigText(config(address), join(dir, 'dancegate.yaml'));
    expect(parsed.resolver.servers.map((s) => [s.host, s.port])).toEqual([[host, port]]);
  });
});
