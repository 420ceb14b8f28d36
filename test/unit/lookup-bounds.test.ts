/**
 * One set of bounds on the resolver settings: what the configuration loader
 * (and so `config check`) accepts is exactly what the resolver accepts (and
 * so `serve`), both read from RESOLVER_LIMITS.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/pki.js';
import { ConfigError, parseConfigText } from '../../src/config/load.js';
import { RESOLVER_LIMITS, validateResolverOptions, type ResolverOptions } from '../../src/dns/resolver.js';
import { buildLookup } from '../../src/lookup/build.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-bounds-'));
  const server = await createCertificate({ commonName: 'api', dnsNames: ['api.example.test'], extendedKeyUsage: 'server' });
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

interface ResolverSettings {
  readonly servers: number;
  readonly attemptTimeoutMs: number;
  readonly totalTimeoutMs: number;
}

const addresses = (n: number): string[] => Array.from({ length: n }, (_, i) => `127.0.0.1:${5300 + i}`);

function yaml(s: ResolverSettings): string {
  return `
resolver:
  attemptTimeoutMs: ${s.attemptTimeoutMs}
  totalTimeoutMs: ${s.totalTimeoutMs}
  servers: [${addresses(s.servers)
    .map((a) => `{ address: "${a}" }`)
    .join(', ')}]
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
}

/** The loader's problems with the resolver section ([] when it accepts it). */
async function loaderProblems(s: ResolverSettings): Promise<string[]> {
  try {
    await parseConfigText(yaml(s), join(dir, 'dancegate.yaml'));
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.filter((p) => p.startsWith('resolver'));
  }
}

function resolverAccepts(s: ResolverSettings): boolean {
  const options: ResolverOptions = {
    servers: Array.from({ length: s.servers }, (_, i) => ({ host: '127.0.0.1', port: 5300 + i, transport: 'udp' as const })),
    attemptTimeoutMs: s.attemptTimeoutMs,
    totalTimeoutMs: s.totalTimeoutMs,
  };
  try {
    validateResolverOptions(options);
    buildLookup(options, { resolverGate: undefined });
    return true;
  } catch {
    return false;
  }
}

const OK: ResolverSettings = { servers: 1, attemptTimeoutMs: 1, totalTimeoutMs: RESOLVER_LIMITS.totalTimeoutMs.max };
const L = RESOLVER_LIMITS;

describe('resolver bounds: the loader and the resolver agree', () => {
  it.each<[string, ResolverSettings]>([
    ['attemptTimeoutMs at its minimum', { ...OK, attemptTimeoutMs: L.attemptTimeoutMs.min }],
    ['attemptTimeoutMs below its minimum', { ...OK, attemptTimeoutMs: L.attemptTimeoutMs.min - 1 }],
    ['attemptTimeoutMs at its maximum', { ...OK, attemptTimeoutMs: L.attemptTimeoutMs.max, totalTimeoutMs: L.totalTimeoutMs.max }],
    ['attemptTimeoutMs above its maximum', { ...OK, attemptTimeoutMs: L.attemptTimeoutMs.max + 1, totalTimeoutMs: L.totalTimeoutMs.max }],
    ['attemptTimeoutMs not whole', { ...OK, attemptTimeoutMs: 1.5 }],
    ['totalTimeoutMs at its minimum', { ...OK, totalTimeoutMs: L.totalTimeoutMs.min }],
    ['totalTimeoutMs below its minimum', { ...OK, totalTimeoutMs: L.totalTimeoutMs.min - 1 }],
    ['totalTimeoutMs at its maximum', { ...OK, totalTimeoutMs: L.totalTimeoutMs.max }],
    ['totalTimeoutMs above its maximum', { ...OK, totalTimeoutMs: L.totalTimeoutMs.max + 1 }],
    ['totalTimeoutMs 120000 (accepted by config check before)', { ...OK, totalTimeoutMs: 120_000 }],
    ['totalTimeoutMs below attemptTimeoutMs', { ...OK, attemptTimeoutMs: 3000, totalTimeoutMs: 1000 }],
    ['servers at the minimum', { ...OK, servers: L.servers.min }],
    ['servers below the minimum', { ...OK, servers: L.servers.min - 1 }],
    ['servers at the maximum', { ...OK, servers: L.servers.max }],
    ['servers above the maximum', { ...OK, servers: L.servers.max + 1 }],
  ])('%s', async (_label, settings) => {
    const problems = await loaderProblems(settings);
    expect(problems.length === 0, JSON.stringify(problems)).toBe(resolverAccepts(settings));
  });

  it('the bounds are the ones documented', () => {
    expect(RESOLVER_LIMITS).toEqual({ attemptTimeoutMs: { min: 1, max: 60_000 }, totalTimeoutMs: { min: 1, max: 60_000 }, servers: { min: 1, max: 16 } });
  });

  it.each<[string, ResolverSettings, string]>([
    ['totalTimeoutMs: 120000', { ...OK, totalTimeoutMs: 120_000 }, 'resolver.totalTimeoutMs: expected a whole number of milliseconds from 1 to 60000'],
    ['attemptTimeoutMs: 0', { ...OK, attemptTimeoutMs: 0 }, 'resolver.attemptTimeoutMs: expected a whole number of milliseconds from 1 to 60000'],
    ['17 servers', { ...OK, servers: 17 }, 'resolver.servers: expected at most 16 servers'],
  ])('the loader names the key and the range: %s', async (_label, settings, message) => {
    expect(await loaderProblems(settings)).toEqual([message]);
  });
});
