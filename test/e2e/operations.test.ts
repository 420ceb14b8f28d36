/**
 * dancegate as operators run it: the built CLI as a child process, with a
 * real Node backend, real TLS clients and the admin endpoints. Metrics are
 * scraped and checked sample by sample; SIGHUP reloads (valid and invalid)
 * while an established TCP session keeps flowing; SIGTERM drains an
 * in-flight request; two workers serve and their counters add up; decision
 * log lines are checked field by field.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { waitUntil } from '../lab/wait.js';
import { freePort } from '../lab/dnssec-lab.js';

const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');
const SNI = 'ops.proxy.test';
const A = 'a._device.ops.test';
const B = 'b._device.ops.test';

interface Fixture {
  dir: string;
  serverCa: IssuedCertificate;
  certs: Record<'a' | 'b' | 'stranger' | 'outsider', IssuedCertificate>;
  backend: http.Server;
  backendPort: number;
  echo: net.Server;
  echoPort: number;
}

let fx: Fixture;

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-ops-'));
  const serverCa = await createCertificate({ commonName: 'ops CA', isCA: true });
  const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
  const certs = {
    a: await createCertificate({ commonName: A, dnsNames: [A] }),
    b: await createCertificate({ commonName: B, dnsNames: [B] }),
    stranger: await createCertificate({ commonName: A, dnsNames: [A] }),
    outsider: await createCertificate({ commonName: 'x.other.test', dnsNames: ['x.other.test'] }),
  };
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  const rr = (name: string, c: IssuedCertificate): string => `${name} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(c.der), 3, 1, 1))}`;
  await writeFile(join(dir, 'tlsa.txt'), `${rr(A, certs.a)}\n${rr(B, certs.b)}\n`);
  // An HTTP backend: /slow answers after 1.5 s.
  const backend = http.createServer((req, res) => {
    const answer = (): void => void res.end(`hello ${req.headers['x-dane-client-id'] ?? 'nobody'}`);
    if (req.url === '/slow') setTimeout(answer, 1500);
    else answer();
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  // A TCP echo backend.
  const echo = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  fx = {
    dir,
    serverCa,
    certs,
    backend,
    backendPort: (backend.address() as net.AddressInfo).port,
    echo,
    echoPort: (echo.address() as net.AddressInfo).port,
  };
});

afterAll(async () => {
  fx.backend.closeAllConnections();
  await new Promise<void>((r) => fx.backend.close(() => r()));
  await new Promise<void>((r) => fx.echo.close(() => r()));
  await rm(fx.dir, { recursive: true, force: true });
});

interface Ports {
  http: number;
  tcp: number;
  admin: number;
}

function configText(ports: Ports, options: { allow?: string; workers?: number; log: string; drainMs?: number; watch?: boolean }): string {
  return `workers: ${options.workers ?? 1}
reload: { watch: ${options.watch ?? false} }
admin: { listen: "127.0.0.1:${ports.admin}" }
log: { destination: ${options.log} }
shutdown: { drainTimeoutMs: ${options.drainMs ?? 10000} }
resolver:
  localTlsaFile: tlsa.txt
listeners:
  - name: api
    listen: 127.0.0.1:${ports.http}
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstream: http://127.0.0.1:${fx.backendPort}
        allow: [${options.allow ?? "'*._device.ops.test'"}]
  - name: mqtt
    listen: 127.0.0.1:${ports.tcp}
    mode: tcp
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstream: tcp://127.0.0.1:${fx.echoPort}
        allow: [${options.allow ?? "'*._device.ops.test'"}]
`;
}

class Instance {
  stdout = '';
  stderr = '';
  constructor(
    readonly child: ChildProcess,
    readonly ports: Ports,
    readonly configFile: string,
    readonly logFile: string,
  ) {
    child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  static async start(name: string, options: { allow?: string; workers?: number; drainMs?: number; watch?: boolean } = {}): Promise<Instance> {
    const ports = { http: await freePort(), tcp: await freePort(), admin: await freePort() };
    const configFile = join(fx.dir, `${name}.yaml`);
    const logFile = join(fx.dir, `${name}.log`);
    await writeFile(configFile, configText(ports, { ...options, log: logFile }));
    const child = spawn(process.execPath, [CLI, 'serve', '-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const instance = new Instance(child, ports, configFile, logFile);
    const deadline = Date.now() + 20_000;
    while (!(await instance.ready())) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`dancegate did not become ready: ${instance.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return instance;
  }

  async ready(): Promise<boolean> {
    try {
      return (await this.admin('/readyz')).status === 200;
    } catch {
      return false;
    }
  }

  admin(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: this.ports.admin, path, agent: false }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
  }

  async metric(sample: string): Promise<number | undefined> {
    const { body } = await this.admin('/metrics');
    const line = body.split('\n').find((l) => l.startsWith(`${sample} `));
    return line === undefined ? undefined : Number(line.slice(sample.length + 1));
  }

  async logLines(): Promise<Array<Record<string, unknown>>> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const [code] = (await once(this.child, 'exit')) as [number | null];
    return code;
  }
}

function get(port: number, cert: IssuedCertificate | undefined, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path, servername: SNI, headers: { host: SNI }, ca: fx.serverCa.certPem, cert: cert?.certPem, key: cert?.keyPem, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

import { byEngine } from '../lab/engine.js';

describe('one process', () => {
  let dg: Instance;
  beforeAll(async () => {
    dg = await Instance.start('single');
  }, 30_000);
  afterAll(async () => {
    await dg?.stop();
  });

  it('admin: /healthz, /readyz and /status', async () => {
    expect(await dg.admin('/healthz')).toEqual({ status: 200, body: 'ok\n' });
    const ready = await dg.admin('/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({
      ready: true,
      checks: { listeners: { ok: true, detail: '2 listener(s) bound' }, resolver: { ok: true, detail: 'no DNS resolver configured (local TLSA file only)' } },
    });
    const status = JSON.parse((await dg.admin('/status')).body) as Record<string, unknown>;
    expect(status).toMatchObject({ role: 'single', configFile: dg.configFile, generation: 1, lastReload: null });
    const ALL_SOURCES = ['certificate-extension', 'clienthello-extension', 'san'];
    // The child process inherits DANCEGATE_NATIVE, so it runs the engine this test process would.
    const ENGINE_STATUS = byEngine<Record<string, string>>({ native: { tlsEngine: 'native' }, node: { tlsEngine: 'node', tlsEngineFallback: expect.any(String) as string } });
    expect(status.listeners).toEqual([
      {
        name: 'api',
        mode: 'http',
        address: `127.0.0.1:${dg.ports.http}`,
        policy: 'required',
        revalidate: { mode: 'ttl', floorMs: 30000, ceilingMs: 3600000, jitterMs: 30000, graceMs: 300000 },
        tcpKeepAlive: { initialDelayMs: 60000 },
        routes: [
          {
            serverNames: ['(default)'],
            upstreams: [{ name: `127.0.0.1:${fx.backendPort}`, url: `http://127.0.0.1:${fx.backendPort}` }],
            balance: 'round-robin',
            retries: 1,
            rules: 0,
            allowlist: 'listeners[0].routes[0].allow',
            allowPatterns: 1,
            proxyHeader: 'none',
            identitySources: ALL_SOURCES,
            strict: false,
            alpn: null,
            binding: 'none',
          },
        ],
        ...ENGINE_STATUS,
      },
      {
        name: 'mqtt',
        mode: 'tcp',
        address: `127.0.0.1:${dg.ports.tcp}`,
        policy: 'required',
        revalidate: { mode: 'ttl', floorMs: 30000, ceilingMs: 3600000, jitterMs: 30000, graceMs: 300000 },
        tcpKeepAlive: { initialDelayMs: 60000 },
        protocol: 'tcp',
        alpn: null,
        routes: [
          {
            serverNames: ['(default)'],
            upstreams: [{ name: `127.0.0.1:${fx.echoPort}`, url: `tcp://127.0.0.1:${fx.echoPort}` }],
            balance: 'round-robin',
            retries: 1,
            rules: 0,
            allowlist: 'listeners[1].routes[0].allow',
            allowPatterns: 1,
            proxyHeader: 'none',
            identitySources: ALL_SOURCES,
            strict: false,
            alpn: null,
            binding: 'none',
          },
        ],
        ...ENGINE_STATUS,
      },
    ]);
    expect((await dg.admin('/nope')).status).toBe(404);
  });

  it('/metrics after real connections: exact samples', async () => {
    expect(await get(dg.ports.http, fx.certs.a)).toEqual({ status: 200, body: `hello ${A}` });
    expect(await get(dg.ports.http, fx.certs.a)).toEqual({ status: 200, body: `hello ${A}` });
    expect((await get(dg.ports.http, fx.certs.stranger)).status).toBe(403);
    expect((await get(dg.ports.http, fx.certs.outsider)).status).toBe(403);
    expect((await get(dg.ports.http, undefined)).status).toBe(403);
    const m = (s: string): Promise<number | undefined> => dg.metric(s);
    expect(await m('dancegate_connections_total{listener="api",outcome="forwarded",reason="authenticated"}')).toBe(2);
    expect(await m('dancegate_connections_total{listener="api",outcome="refused",reason="no-matching-record"}')).toBe(1);
    expect(await m('dancegate_connections_total{listener="api",outcome="refused",reason="not-allowed"}')).toBe(1);
    expect(await m('dancegate_connections_total{listener="api",outcome="refused",reason="no-certificate"}')).toBe(1);
    expect(await m('dancegate_tls_handshakes_total{listener="api",result="completed",tls_version="TLSv1.3"}')).toBe(5);
    // The cache: a miss for the first lookup of A, hits afterwards (B never asked).
    expect(await m('dancegate_tlsa_cache_total{result="miss"}')).toBe(1);
    expect(await m('dancegate_tlsa_cache_total{result="hit"}')).toBe(2);
    expect(await m('dancegate_dane_lookups_total{outcome="secure"}')).toBe(1);
    expect(await m('dancegate_handshake_seconds_count{listener="api"}')).toBe(5);
    expect(await m('dancegate_dane_decision_seconds_count{listener="api"}')).toBe(3);
    expect(await m('dancegate_upstream_connect_seconds_count{listener="api"}')).toBeGreaterThanOrEqual(1);
    expect(await m('dancegate_config_generation')).toBe(1);
    expect(await m('dancegate_handshakes_in_progress')).toBe(0);
    const { body } = await dg.admin('/metrics');
    expect(body).toMatch(/^dancegate_build_info\{version="\d+\.\d+\.\d+",node="v\d+\.\d+\.\d+"\} 1$/m);
    // No client name or address ever appears as a label value: the only address is the upstream's configured name.
    expect(body).not.toContain(A);
    expect(body.replaceAll(`upstream="127.0.0.1:${fx.backendPort}"`, '').replaceAll(`upstream="127.0.0.1:${fx.echoPort}"`, '')).not.toContain('127.0.0.1:');
    // Node's process metrics under prom-client's standard names, never dancegate_process_process_*.
    expect(body).toMatch(/^process_cpu_seconds_total \d/m);
    expect(body).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(body).not.toContain('dancegate_process_');
    expect(body).not.toMatch(/^# TYPE \w+_total gauge$/m);
    // Series start at 0 before the first such connection.
    expect(await m('dancegate_connections_total{listener="api",outcome="refused",reason="dns-bogus"}')).toBe(0);
    expect(await m('dancegate_dane_lookups_total{outcome="bogus"}')).toBe(0);
  });

  it('decision log lines, field by field, one per refusal reason', async () => {
    await waitUntil('the log file', async () => (await dg.logLines()).filter((l) => l.msg === 'connection decision').length >= 5);
    const decisions = (await dg.logLines()).filter((l) => l.msg === 'connection decision');
    const byReason = (reason: string): Record<string, unknown> | undefined => decisions.find((d) => d.reason === reason);
    const common = {
      level: 'info',
      pid: dg.child.pid,
      msg: 'connection decision',
      connectionId: expect.stringMatching(/^[0-9a-z]+-[0-9a-z]+$/),
      listener: 'api',
      route: 'default',
      sni: SNI,
      tlsVersion: 'TLSv1.3',
    };
    expect(byReason('no-matching-record')).toEqual({
      ...common,
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      source: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      claimedName: A,
      nameSource: 'san',
      outcome: 'refused',
      reason: 'no-matching-record',
      detail: 'no-matching-record: record 1 ee-mismatch',
      cache: 'hit',
      durationsMs: { clientHello: expect.any(Number), handshake: expect.any(Number), dns: expect.any(Number), total: expect.any(Number) },
    });
    expect(byReason('not-allowed')).toEqual({
      ...common,
      time: expect.any(String),
      source: expect.any(String),
      nameSource: 'san',
      outcome: 'refused',
      reason: 'not-allowed',
      detail: 'no SAN dNSName of the certificate is on the allowlist (x.other.test)',
      durationsMs: { clientHello: expect.any(Number), handshake: expect.any(Number), total: expect.any(Number) },
    });
    expect(byReason('no-certificate')).toEqual({
      ...common,
      time: expect.any(String),
      source: expect.any(String),
      outcome: 'refused',
      reason: 'no-certificate',
      detail: 'the client presented no certificate',
      durationsMs: { clientHello: expect.any(Number), handshake: expect.any(Number), total: expect.any(Number) },
    });
    expect(byReason('authenticated')).toMatchObject({ ...common, claimedName: A, nameSource: 'san', outcome: 'forwarded', tlsa: '3 1 1', detail: 'record 1 of 1 matched' });
    // Garbage instead of a ClientHello.
    const raw = net.connect(dg.ports.http, '127.0.0.1');
    raw.on('error', () => undefined);
    await once(raw, 'connect');
    raw.end('GET / HTTP/1.1\r\n\r\n');
    await waitUntil('the invalid-hello line', async () => (await dg.logLines()).some((l) => l.reason === 'client-hello-invalid'));
    expect((await dg.logLines()).find((l) => l.reason === 'client-hello-invalid')).toEqual({
      level: 'info',
      time: expect.any(String),
      pid: dg.child.pid,
      msg: 'connection decision',
      connectionId: expect.stringMatching(/^[0-9a-z]+-[0-9a-z]+$/),
      listener: 'api',
      source: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      outcome: 'refused',
      reason: 'client-hello-invalid',
      detail: 'plain HTTP request on a TLS port',
      durationsMs: { clientHello: expect.any(Number), total: expect.any(Number) },
    });
    // Never a key or a certificate.
    const text = await readFile(dg.logFile, 'utf8');
    expect(text).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
  });
});

describe('reload', () => {
  let dg: Instance;
  beforeAll(async () => {
    dg = await Instance.start('reload');
  }, 30_000);
  afterAll(async () => {
    await dg?.stop();
  });

  it('SIGHUP with a changed allowlist changes decisions for new connections while an established TCP session keeps flowing', async () => {
    const session = tls.connect({ port: dg.ports.tcp, host: '127.0.0.1', servername: SNI, ca: fx.serverCa.certPem, cert: fx.certs.b.certPem, key: fx.certs.b.keyPem });
    let echoed = '';
    session.on('data', (d: Buffer) => (echoed += d.toString()));
    await once(session, 'secureConnect');
    session.write('before\n');
    await waitUntil('the first echo', async () => echoed === 'before\n');

    await writeFile(dg.configFile, configText(dg.ports, { allow: `'${A}'`, log: dg.logFile }));
    dg.child.kill('SIGHUP');
    await waitUntil('generation 2', async () => (await dg.metric('dancegate_config_generation')) === 2);

    // The established session of B, no longer allowed, goes on.
    session.write('after\n');
    await waitUntil('the second echo', async () => echoed === 'before\nafter\n');
    // New connections follow the new allowlist.
    expect((await get(dg.ports.http, fx.certs.b)).status).toBe(403);
    expect(await get(dg.ports.http, fx.certs.a)).toEqual({ status: 200, body: `hello ${A}` });
    const status = JSON.parse((await dg.admin('/status')).body) as { generation: number; lastReload: { ok: boolean; generation: number } };
    expect(status.generation).toBe(2);
    expect(status.lastReload).toMatchObject({ ok: true, generation: 2 });
    expect(await dg.metric('dancegate_config_reloads_total{result="success"}')).toBe(1);
    session.end();
  });

  it('an invalid configuration on SIGHUP is rejected as a whole; the old one keeps working', async () => {
    await writeFile(dg.configFile, `${configText(dg.ports, { allow: `'${B}'`, log: dg.logFile })}bogus: true\n`);
    dg.child.kill('SIGHUP');
    await waitUntil('the failure to be counted', async () => (await dg.metric('dancegate_config_reloads_total{result="failure"}')) === 1);
    expect(await dg.metric('dancegate_config_last_reload_successful')).toBe(0);
    expect(await dg.metric('dancegate_config_generation')).toBe(2);
    // Still the allowlist of generation 2: A allowed, B refused.
    expect((await get(dg.ports.http, fx.certs.a)).status).toBe(200);
    expect((await get(dg.ports.http, fx.certs.b)).status).toBe(403);
    const status = JSON.parse((await dg.admin('/status')).body) as { lastReload: { ok: boolean; error: string } };
    expect(status.lastReload).toMatchObject({ ok: false, error: '(top level): Unrecognized key: "bogus"' });
    const errorLine = (await dg.logLines()).find((l) => l.event === 'reload' && l.ok === false);
    expect(errorLine).toMatchObject({ level: 'error', error: '(top level): Unrecognized key: "bogus"', msg: 'configuration rejected; the previous one stays in force' });
  });
});

describe('reload on file change (reload.watch)', () => {
  it('replacing the file (write elsewhere, rename over it) reloads', async () => {
    const dg = await Instance.start('watched', { watch: true });
    try {
      expect((await get(dg.ports.http, fx.certs.b)).status).toBe(200);
      const temporary = `${dg.configFile}.new`;
      await writeFile(temporary, configText(dg.ports, { allow: `'${A}'`, log: dg.logFile, watch: true }));
      await rename(temporary, dg.configFile);
      await waitUntil('generation 2', async () => (await dg.metric('dancegate_config_generation')) === 2);
      expect((await get(dg.ports.http, fx.certs.b)).status).toBe(403);
    } finally {
      await dg.stop();
    }
  }, 30_000);
});

describe('graceful shutdown', () => {
  it('SIGTERM lets an in-flight HTTP request finish, refuses new connections, and exits 0', async () => {
    const dg = await Instance.start('drain');
    const inFlight = get(dg.ports.http, fx.certs.a, '/slow');
    await waitUntil('the request to be in flight', async () => (await dg.metric('dancegate_open_connections')) === 1);
    dg.child.kill('SIGTERM');
    await waitUntil('the listener to close', async () => {
      const probe = net.connect(dg.ports.http, '127.0.0.1');
      const refused = await new Promise<boolean>((resolve) => {
        probe.once('connect', () => resolve(false));
        probe.once('error', () => resolve(true));
      });
      probe.destroy();
      return refused;
    });
    expect(await inFlight).toEqual({ status: 200, body: `hello ${A}` });
    const [code] = (await once(dg.child, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect((await dg.logLines()).find((l) => l.event === 'shutdown' && 'clean' in l)).toMatchObject({ clean: true, msg: 'drained cleanly' });
  }, 30_000);

  it('a connection still open at the deadline is cut, and the exit code says so', async () => {
    const dg = await Instance.start('cut', { drainMs: 300 });
    const session = tls.connect({ port: dg.ports.tcp, host: '127.0.0.1', servername: SNI, ca: fx.serverCa.certPem, cert: fx.certs.a.certPem, key: fx.certs.a.keyPem });
    session.on('error', () => undefined);
    await once(session, 'secureConnect');
    session.write('hold\n');
    await once(session, 'data');
    dg.child.kill('SIGTERM');
    await once(session, 'close');
    const [code] = (await once(dg.child, 'exit')) as [number | null];
    expect(code).toBe(1);
  }, 30_000);
});

describe('workers: 2, reloads', () => {
  let dg: Instance;
  beforeAll(async () => {
    dg = await Instance.start('cluster-reload', { workers: 2 });
  }, 30_000);
  afterAll(async () => {
    await dg?.stop();
  });

  const workerStatuses = async (): Promise<Array<{ pid: number; generation: number }>> =>
    (JSON.parse((await dg.admin('/status')).body) as { workers: Array<{ pid: number; generation: number }> }).workers;

  it('/healthz counts the workers that are up', async () => {
    expect(await dg.admin('/healthz')).toEqual({ status: 200, body: '2 worker(s) up\n' });
    expect(await dg.metric('dancegate_workers_ready')).toBe(2);
  });

  it('a valid SIGHUP switches every worker to the same new generation', async () => {
    await writeFile(dg.configFile, configText(dg.ports, { allow: `'${A}'`, workers: 2, log: dg.logFile }));
    dg.child.kill('SIGHUP');
    await waitUntil('the reload to be counted', async () => (await dg.metric('dancegate_config_reloads_total{result="success"}')) === 1);
    expect((await workerStatuses()).map((w) => w.generation)).toEqual([2, 2]);
    expect(await dg.metric('dancegate_config_generation')).toBe(2);
    expect(await dg.metric('dancegate_config_last_reload_successful')).toBe(1);
    // Several connections, so that both workers answer: all follow the new allowlist.
    for (let i = 0; i < 6; i++) {
      expect((await get(dg.ports.http, fx.certs.b)).status).toBe(403);
      expect((await get(dg.ports.http, fx.certs.a)).status).toBe(200);
    }
    const reloadLines = (await dg.logLines()).filter((l) => l.event === 'reload' && l.ok === true && l.msg === 'configuration reloaded');
    expect(new Set(reloadLines.map((l) => l.pid)).size).toBe(2);
  });

  it('an invalid file is rejected by the primary and counted; a worker restarted afterwards runs the configuration in force, not the file', async () => {
    await writeFile(dg.configFile, `${configText(dg.ports, { allow: `'${B}'`, workers: 2, log: dg.logFile })}bogus: true\n`);
    dg.child.kill('SIGHUP');
    await waitUntil('the failure to be counted', async () => (await dg.metric('dancegate_config_reloads_total{result="failure"}')) === 1);
    expect(await dg.metric('dancegate_config_last_reload_successful')).toBe(0);
    const status = JSON.parse((await dg.admin('/status')).body) as { generation: number; lastReload: { ok: boolean; error: string } };
    expect(status.generation).toBe(2);
    expect(status.lastReload).toMatchObject({ ok: false, error: '(top level): Unrecognized key: "bogus"' });

    // The invalid file is still on disk. A worker that dies is replaced from the text in force.
    const [victim] = await workerStatuses();
    process.kill(victim?.pid as number, 'SIGKILL');
    await waitUntil(
      'a replacement worker, ready',
      async () => {
        const workers = await workerStatuses().catch(() => []);
        return workers.length === 2 && workers.every((w) => w.pid !== victim?.pid) && (await dg.ready());
      },
      30_000,
    );
    expect((await workerStatuses()).map((w) => w.generation)).toEqual([2, 2]);
    expect(await dg.metric('dancegate_worker_restarts_total')).toBe(1);
    for (let i = 0; i < 6; i++) {
      expect((await get(dg.ports.http, fx.certs.a)).status).toBe(200);
      expect((await get(dg.ports.http, fx.certs.b)).status).toBe(403);
    }
  }, 45_000);
});

describe('workers: 2', () => {
  it('both workers serve, and the aggregated counters add up', async () => {
    const dg = await Instance.start('workers', { workers: 2 });
    try {
      const requests = 24;
      for (let i = 0; i < requests; i++) expect((await get(dg.ports.http, fx.certs.a)).status).toBe(200);
      expect(await dg.metric('dancegate_connections_total{listener="api",outcome="forwarded",reason="authenticated"}')).toBe(requests);
      await waitUntil('the decision lines', async () => (await dg.logLines()).filter((l) => l.msg === 'connection decision').length === requests);
      const pids = new Set((await dg.logLines()).filter((l) => l.msg === 'connection decision').map((l) => l.pid));
      expect(pids.size).toBe(2);
      expect(pids.has(dg.child.pid)).toBe(false);
      const status = JSON.parse((await dg.admin('/status')).body) as { role: string; workers: Array<{ pid: number; role: string }> };
      expect(status.role).toBe('primary');
      expect(status.workers.map((w) => w.role)).toEqual(['worker', 'worker']);
      expect(new Set(status.workers.map((w) => w.pid))).toEqual(pids);

      // A worker that dies is replaced, and the service goes on.
      const victim = [...pids][0] as number;
      process.kill(victim, 'SIGKILL');
      await waitUntil(
        'a replacement worker',
        async () => {
          const s = JSON.parse((await dg.admin('/status')).body) as { workers: Array<{ pid?: number }> };
          return s.workers.length === 2 && s.workers.every((w) => w.pid !== undefined && w.pid !== victim);
        },
        30_000,
      );
      expect((await get(dg.ports.http, fx.certs.a)).status).toBe(200);
      expect((await dg.logLines()).some((l) => l.event === 'worker-exit' && l.workerPid === victim && l.signal === 'SIGKILL')).toBe(true);
    } finally {
      const exitCode = await dg.stop();
      // On failure, say what the processes logged about themselves.
      const events = (await dg.logLines()).filter((l) => l.msg !== 'connection decision');
      expect(exitCode, `${JSON.stringify(events)}\n${dg.stderr}`).toBe(0);
    }
  }, 60_000);
});
