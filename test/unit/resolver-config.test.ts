import { describe, expect, it } from 'vitest';
import { isLoopbackAddress, validateResolverOptions, type ResolverOptions } from '../../src/dane/resolver.js';

describe('isLoopbackAddress', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.8.9.10', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
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
      { servers: [{ host: '127.0.0.1', port: 53, transport: 'udp' }, { host: '2001:db8::53', port: 53, transport: 'tcp' }] },
      'resolver server 2 ([2001:db8::53]:53): plain TCP to a resolver that is not on loopback cannot protect the AD bit; use transport tls, run a validating resolver on loopback, or set allowRemotePlainResolver if the path is trusted',
    ],
    ['host name', { servers: [{ host: 'dns.example', port: 53, transport: 'tls' }] }, 'resolver server 1 (dns.example:53): host must be an IP address literal'],
    ['port 0', { servers: [{ host: '127.0.0.1', port: 0, transport: 'udp' }] }, 'resolver server 1 (127.0.0.1:0): port must be an integer from 1 to 65535'],
    ['port 70000', { servers: [{ host: '127.0.0.1', port: 70000, transport: 'udp' }] }, 'resolver server 1 (127.0.0.1:70000): port must be an integer from 1 to 65535'],
    [
      'bad transport',
      { servers: [{ host: '127.0.0.1', port: 53, transport: 'doh' as 'udp' }] },
      'resolver server 1 (127.0.0.1:53): transport must be udp, tcp or tls',
    ],
    ['zero timeout', { servers: [{ host: '127.0.0.1', port: 53, transport: 'udp' }], totalTimeoutMs: 0 }, 'resolver totalTimeoutMs: must be a number of milliseconds from 1 to 60000'],
    ['huge attempt timeout', { servers: [{ host: '127.0.0.1', port: 53, transport: 'udp' }], attemptTimeoutMs: 120_000 }, 'resolver attemptTimeoutMs: must be a number of milliseconds from 1 to 60000'],
  ])('refuses %s', (_label, options, message) => {
    expect(() => validateResolverOptions(options)).toThrow(message);
  });
});
