/**
 * The pipeline end to end on one listener, with fakes where the network
 * would be (a TLSA source that counts lookups, a forwarder that records
 * what it is handed) and a real TLS client on 127.0.0.1.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../../certs/pki.js';
import { loadConfig } from '../../../src/config/load.js';
import type { ListenerConfig } from '../../../src/config/types.js';
import type { DecisionRecord } from '../../../src/connection/decision-log.js';
import type { ConnectionContext, Forwarder } from '../../../src/connection/forwarder.js';
import { DaneListener } from '../../../src/connection/listener.js';
import { parseCertificateDer } from '../../../src/dane/certificate.js';
import { tlsaRecordForCertificate } from '../../../src/dane/tlsa.js';
import type { CachedLookup } from '../../../src/lookup/cache.js';
import type { LookupOutcome } from '../../../src/lookup/tlsa-answer.js';
import { Admission } from '../../../src/ratelimit/admission.js';
import type { RefusalReason } from '../../../src/reasons.js';
import { waitUntil } from '../../lab/wait.js';

const SNI = 'api.pipeline.test';
const NAME = 'meter1._device.pipeline.test';

describe('the pipeline on a listener', () => {
  let dir: string;
  let config: ListenerConfig;
  let serverCa: IssuedCertificate;
  let intermediate: IssuedCertificate;
  let leaf: IssuedCertificate;
  const listeners: DaneListener[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-pipeline-'));
    serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
    const root = await createCertificate({ commonName: 'fleet root', isCA: true });
    intermediate = await createCertificate({ commonName: 'fleet intermediate', isCA: true, issuer: root });
    leaf = await createCertificate({ commonName: NAME, dnsNames: [NAME], issuer: intermediate });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:
  servers: [{ address: "127.0.0.1:53" }]
listeners:
  - name: pipe
    listen: 127.0.0.1:0
    mode: tcp
    tls:
      certificates: [{ certFile: server.pem, keyFile: server.key }]
    routes:
      - upstream: tcp://127.0.0.1:9
        allow: ['*._device.pipeline.test']
`,
    );
    const loaded = await loadConfig(join(dir, 'dancegate.yaml'));
    config = loaded.listeners[0] as ListenerConfig;
  }, 60_000);

  afterAll(async () => {
    for (const l of listeners) await l.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(outcome: () => LookupOutcome | 'never', admission: Admission, overrides: { handshakeTimeoutMs?: number } = {}) {
    const lookups: string[] = [];
    const decisions: DecisionRecord[] = [];
    const accepted: ConnectionContext[] = [];
    const refused: RefusalReason[] = [];
    const cache = {
      lookup: async (name: string, signal?: AbortSignal): Promise<CachedLookup> => {
        lookups.push(name);
        const answer = outcome();
        // A resolver that never answers: the lookup ends only when the connection's signal aborts it.
        if (answer === 'never') return new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
        return { outcome: answer, cache: lookups.length === 1 ? 'miss' : 'hit', expiresInMs: 60_000 };
      },
    };
    const forwarder: Forwarder = {
      alpn: undefined,
      forwardsUnauthenticated: false,
      answersRefusals: true,
      accept: (socket, context) => {
        accepted.push(context);
        socket.end('ok');
      },
      refuse: (socket, reason) => {
        refused.push(reason);
        socket.destroy();
      },
      drain: () => undefined,
      close: () => undefined,
    };
    const listener = new DaneListener({ ...config, ...overrides }, { cache, log: (d) => decisions.push(d), admission, forwarders: () => forwarder });
    listeners.push(listener);
    const { port } = await listener.start();
    return { port, lookups, decisions, accepted, refused };
  }

  async function connect(port: number): Promise<void> {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: SNI, ca: serverCa.certPem, cert: leaf.certPem + intermediate.certPem, key: leaf.keyPem });
    socket.on('error', () => undefined);
    socket.resume();
    await new Promise((resolve) => socket.once('close', resolve));
  }

  const admission = (failures: number): Admission =>
    new Admission({
      handshakes: { maxConcurrent: 100, maxConcurrentPerIp: 10 },
      newConnectionsPerIp: undefined,
      penaltyBox: { failures, windowMs: 60_000, banMs: 60_000 },
      maxConnectionsPerIdentity: undefined,
      trackedAddresses: 100,
    });

  it('a DANE-TA client: one lookup per connection, the first a cache miss, the DNS time the lookup only', async () => {
    const record = tlsaRecordForCertificate(parseCertificateDer(intermediate.der), 2, 0, 1);
    const run = await start(() => ({ kind: 'secure', records: [record], ttl: 300, detail: 'AD=1' }), admission(20));
    await connect(run.port);
    await waitUntil('the first decision', () => run.decisions.length === 1);
    await connect(run.port);
    await waitUntil('the second decision', () => run.decisions.length === 2);
    expect(run.lookups).toEqual([NAME, NAME]);
    expect(run.decisions.map((d) => [d.outcome, d.reason, d.cache, d.tlsa, d.nameSource, d.claimedName])).toEqual([
      ['forwarded', 'authenticated', 'miss', '2 0 1', 'san', NAME],
      ['forwarded', 'authenticated', 'hit', '2 0 1', 'san', NAME],
    ]);
    expect(run.decisions[0]?.durationsMs).toEqual({ clientHello: expect.any(Number), handshake: expect.any(Number), dns: expect.any(Number), total: expect.any(Number) });
    expect(run.accepted.map((c) => [c.identity?.name, c.identity?.tlsa, c.status, c.route.serverNames])).toEqual([
      [NAME, [2, 0, 1], 'authenticated', []],
      [NAME, [2, 0, 1], 'authenticated', []],
    ]);
  }, 30_000);

  it('a TLSA lookup slower than handshakeTimeoutMs after the handshake never bans the address (penalty box of 1 failure)', async () => {
    const run = await start(() => 'never', admission(1), { handshakeTimeoutMs: 400 });
    for (let i = 0; i < 3; i++) {
      await connect(run.port);
      await waitUntil(`decision ${i + 1}`, () => run.decisions.length === i + 1);
    }
    expect(run.decisions.map((d) => [d.outcome, d.reason, d.detail])).toEqual(
      Array.from({ length: 3 }, () => ['refused', 'handshake-timeout', 'handshake done, but the TLSA lookup and verification not done within 400 ms']),
    );
    expect(run.lookups).toEqual([NAME, NAME, NAME]);
    // The deadline ended each one while it waited on our lookup (native engine: inside the paused handshake): none was served.
    expect(run.accepted).toEqual([]);
  }, 30_000);

  it('dns-insecure refusals never ban the address (penalty box of 1 failure)', async () => {
    const run = await start(() => ({ kind: 'insecure', records: [], ttl: 60, detail: 'AD=0' }), admission(1));
    for (let i = 0; i < 3; i++) {
      await connect(run.port);
      await waitUntil(`decision ${i + 1}`, () => run.decisions.length === i + 1);
    }
    expect(run.decisions.map((d) => d.reason)).toEqual(['dns-insecure', 'dns-insecure', 'dns-insecure']);
    expect(run.refused).toEqual(['dns-insecure', 'dns-insecure', 'dns-insecure']);
  }, 30_000);

  it('a name not allowed is penalised: with a penalty box of 1 failure the next connection meets the box', async () => {
    const other = await createCertificate({ commonName: 'x.other.test', dnsNames: ['x.other.test'] });
    const run = await start(() => ({ kind: 'insecure', records: [], ttl: 60, detail: 'AD=0' }), admission(1));
    for (let i = 0; i < 2; i++) {
      const socket = tls.connect({ host: '127.0.0.1', port: run.port, servername: SNI, ca: serverCa.certPem, cert: other.certPem, key: other.keyPem });
      socket.on('error', () => undefined);
      socket.resume();
      await new Promise((resolve) => socket.once('close', resolve));
      await waitUntil(`decision ${i + 1}`, () => run.decisions.length === i + 1);
    }
    expect(run.decisions.map((d) => d.reason)).toEqual(['not-allowed', 'penalty-box']);
    expect(run.lookups).toEqual([]);
  }, 30_000);
});
