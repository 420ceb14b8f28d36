/**
 * What an operator meets, through the built CLI: a port in use is named
 * (listener or admin, at start or on reload) and exits 1; a cluster's
 * counters never go backwards and /readyz stays 200 while a worker is
 * replaced; an upstream failure is logged with the identity; a ban can be
 * lifted on the admin endpoint; a resolver that does not validate DNSSEC
 * (the real lab: Unbound answering for an unsigned zone) refuses the start
 * or makes /readyz 503, in words.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { waitUntil } from '../lab/wait.js';

const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');
const SNI = 'proc.proxy.test';
const A = 'a._device.proc.test';

let dir: string;
let serverCa: IssuedCertificate;
let deviceA: IssuedCertificate;
let stranger: IssuedCertificate;
let backend: http.Server;
let backendPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-process-'));
  serverCa = await createCertificate({ commonName: 'proc CA', isCA: true });
  const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
  deviceA = await createCertificate({ commonName: A, dnsNames: [A] });
  // Same name, other key: refused with no-matching-record (which counts towards the penalty box).
  stranger = await createCertificate({ commonName: A, dnsNames: [A] });
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  await writeFile(join(dir, 'tlsa.txt'), `${A} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(deviceA.der), 3, 1, 1))}\n`);
  backend = http.createServer((req, res) => void res.end(`hello ${req.headers['x-dane-client-id'] ?? 'nobody'}`));
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  backendPort = (backend.address() as net.AddressInfo).port;
});

afterAll(async () => {
  backend?.closeAllConnections();
  await new Promise<void>((r) => (backend ? backend.close(() => r()) : r()));
  await rm(dir, { recursive: true, force: true });
});

interface Options {
  workers?: number;
  httpPort: number;
  adminPort: number;
  upstreamPort?: number;
  extraListener?: string;
  penaltyFailures?: number;
  resolver?: string;
  allow?: string;
}

function configText(o: Options, log: string): string {
  return `workers: ${o.workers ?? 1}
admin: { listen: "127.0.0.1:${o.adminPort}" }
log: { destination: ${log} }
shutdown: { drainTimeoutMs: 2000 }
limits:
  penaltyBox: { failures: ${o.penaltyFailures ?? 20}, windowMs: 60000, banMs: 600000 }
resolver:
${o.resolver ?? '  localTlsaFile: tlsa.txt'}
listeners:
  - name: api
    listen: 127.0.0.1:${o.httpPort}
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstream: http://127.0.0.1:${o.upstreamPort ?? backendPort}
        allow: ['${o.allow ?? '*._device.proc.test'}']
${o.extraListener ?? ''}`;
}

class Instance {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  constructor(
    readonly child: ChildProcess,
    readonly options: Options,
    readonly configFile: string,
    readonly logFile: string,
  ) {
    child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  static async spawn(name: string, options: Partial<Options> = {}): Promise<Instance> {
    const full: Options = { httpPort: options.httpPort ?? (await freePort()), adminPort: options.adminPort ?? (await freePort()), ...options };
    const configFile = join(dir, `${name}.yaml`);
    const logFile = join(dir, `${name}.log`);
    await writeFile(configFile, configText(full, logFile));
    const child = spawn(process.execPath, [CLI, 'serve', '-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    return new Instance(child, full, configFile, logFile);
  }

  static async start(name: string, options: Partial<Options> = {}): Promise<Instance> {
    const instance = await Instance.spawn(name, options);
    const deadline = Date.now() + 20_000;
    while (!(await instance.ready())) {
      if (instance.child.exitCode !== null || Date.now() > deadline) {
        await instance.stop();
        throw new Error(`dancegate did not become ready: ${instance.stderr}`);
      }
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

  admin(path: string, method = 'GET'): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      http
        .request({ host: '127.0.0.1', port: this.options.adminPort, path, method, agent: false }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject)
        .end();
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

  async workerPids(): Promise<number[]> {
    const status = JSON.parse((await this.admin('/status')).body) as { workers: Array<{ pid?: number; error?: string }> };
    return status.workers.flatMap((w) => (w.pid !== undefined && w.error === undefined ? [w.pid] : []));
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

function get(port: number, cert: IssuedCertificate | undefined, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path, servername: SNI, headers: { host: SNI }, ca: serverCa.certPem, cert: cert?.certPem, key: cert?.keyPem, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** A plain TCP server holding a port, as another program would. */
async function occupy(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer((s) => s.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('a port in use', () => {
  it.each([1, 2])(
    'a listener port in use (workers: %d): named, exit 1, no stack trace',
    async (workers) => {
      const taken = await occupy();
      try {
        const dg = await Instance.spawn(`taken-listener-${workers}`, { httpPort: taken.port, workers });
        const code = await dg.exited;
        expect(code, dg.stderr).toBe(1);
        expect(dg.stderr).toContain(`dancegate: listener api: 127.0.0.1:${taken.port} is already in use\n`);
        // Said once, by the process the operator started.
        expect(dg.stderr.split('already in use').length - 1).toBe(1);
        expect(dg.stderr).not.toContain('internal error');
        expect(dg.stderr).not.toMatch(/\n\s+at /);
      } finally {
        await taken.close();
      }
    },
    30_000,
  );

  it.each([1, 2])(
    'the admin port in use (workers: %d): named, exit 1, the listeners closed',
    async (workers) => {
      const taken = await occupy();
      try {
        const httpPort = await freePort();
        const dg = await Instance.spawn(`taken-admin-${workers}`, { adminPort: taken.port, httpPort, workers });
        const code = await dg.exited;
        expect(code, dg.stderr).toBe(1);
        expect(dg.stderr).toContain(`dancegate: admin: 127.0.0.1:${taken.port} is already in use\n`);
        expect(dg.stderr).not.toContain('internal error');
        // Nothing is left serving.
        const probe = net.connect(httpPort, '127.0.0.1');
        const refused = await new Promise<boolean>((resolve) => {
          probe.once('connect', () => resolve(false));
          probe.once('error', () => resolve(true));
        });
        probe.destroy();
        expect(refused).toBe(true);
      } finally {
        await taken.close();
      }
    },
    30_000,
  );

  it.each([1, 2])(
    'a reload whose new listener port is taken (workers: %d) names the listener in the log and in /status',
    async (workers) => {
      const taken = await occupy();
      const dg = await Instance.start(`taken-reload-${workers}`, { workers });
      try {
        const extraListener = `  - name: extra
    listen: 127.0.0.1:${taken.port}
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstream: http://127.0.0.1:${backendPort}
        allow: ['*._device.proc.test']
`;
        await writeFile(dg.configFile, configText({ ...dg.options, extraListener }, dg.logFile));
        dg.child.kill('SIGHUP');
        const expected = `listener extra: 127.0.0.1:${taken.port} is already in use`;
        await waitUntil('the failed reload', async () => (await dg.metric('dancegate_config_reloads_total{result="failure"}')) === 1);
        const status = JSON.parse((await dg.admin('/status')).body) as { generation: number; lastReload: Record<string, unknown> };
        expect(status.generation).toBe(1);
        expect(status.lastReload).toMatchObject({ ok: false, generation: 1, error: expected });
        const line = (await dg.logLines()).find((l) => l.event === 'reload' && l.ok === false);
        expect(line).toMatchObject({ level: 'error', error: expected });
        // The old configuration serves on.
        expect(await get(dg.options.httpPort, deviceA)).toEqual({ status: 200, body: `hello ${A}` });
      } finally {
        await dg.stop();
        await taken.close();
      }
    },
    40_000,
  );
});

describe('workers: 2, a worker killed', () => {
  it('the counters summed on /metrics never decrease, and /readyz stays 200', async () => {
    const dg = await Instance.start('counters', { workers: 2 });
    const SAMPLE = 'dancegate_connections_total{listener="api",outcome="forwarded",reason="authenticated"}';
    const seen: number[] = [];
    const readiness: number[] = [];
    let polling = true;
    const poll = (async (): Promise<void> => {
      while (polling) {
        const [value, ready] = await Promise.all([
          dg.metric(SAMPLE).catch(() => undefined),
          dg.admin('/readyz').then(
            (r) => r.status,
            () => 0,
          ),
        ]);
        if (value !== undefined) seen.push(value);
        readiness.push(ready);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      for (let i = 0; i < 16; i++) expect((await get(dg.options.httpPort, deviceA)).status).toBe(200);
      await waitUntil('both workers counted', async () => (await dg.metric(SAMPLE)) === 16);
      const [victim] = await dg.workerPids();
      process.kill(victim as number, 'SIGKILL');
      await waitUntil(
        'a replacement worker',
        async () => {
          const pids = await dg.workerPids();
          return pids.length === 2 && !pids.includes(victim as number);
        },
        30_000,
      );
      for (let i = 0; i < 6; i++) expect((await get(dg.options.httpPort, deviceA)).status).toBe(200);
      await waitUntil('the later connections counted', async () => (await dg.metric(SAMPLE)) === 22);
      polling = false;
      await poll;
      // The poller's last scrape may have started before the last connections were counted: one more, after it.
      seen.push((await dg.metric(SAMPLE)) as number);
      // The dead worker's share of the 16 stays in the sum.
      expect(seen.at(-1)).toBe(22);
      for (let i = 1; i < seen.length; i++) expect(seen[i], `scrape ${i} of ${JSON.stringify(seen)}`).toBeGreaterThanOrEqual(seen[i - 1] as number);
      expect(readiness.length).toBeGreaterThan(10);
      expect(
        readiness.every((s) => s === 200),
        JSON.stringify(readiness),
      ).toBe(true);
    } finally {
      polling = false;
      await poll;
      expect(await dg.stop()).toBe(0);
    }
  }, 60_000);
});

describe('upstream failures', () => {
  it('a route whose upstream port is closed: 502, and one warn line with the identity', async () => {
    const closed = await freePort();
    const dg = await Instance.start('upstream-down', { upstreamPort: closed });
    try {
      expect((await get(dg.options.httpPort, deviceA)).status).toBe(502);
      await waitUntil('the upstream line', async () => (await dg.logLines()).some((l) => l.event === 'upstream-error'));
      const lines = (await dg.logLines()).filter((l) => l.event === 'upstream-error');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        level: 'warn',
        msg: 'upstream failed',
        listener: 'api',
        upstream: expect.stringContaining(`127.0.0.1:${closed}`),
        identity: A,
        source: expect.stringMatching(/^127\.0\.0\.1(:\d+)?$/),
        error: expect.any(String),
      });
    } finally {
      await dg.stop();
    }
  }, 30_000);
});

describe('lifting a ban', () => {
  it.each([1, 2])(
    'POST /penalty-box/unban?address=127.0.0.1 (workers: %d) lifts it; the address is served again',
    async (workers) => {
      const dg = await Instance.start(`unban-${workers}`, { workers, penaltyFailures: 2 });
      try {
        // Enough refusals that every worker bans 127.0.0.1.
        await waitUntil(
          'a ban',
          async () => {
            await get(dg.options.httpPort, stranger).catch(() => undefined);
            return ((await dg.metric('dancegate_connections_total{listener="api",outcome="refused",reason="penalty-box"}')) ?? 0) > 0;
          },
          20_000,
        );
        for (let i = 0; i < 8; i++) await get(dg.options.httpPort, stranger).catch(() => undefined);
        expect((await dg.admin('/penalty-box/unban?address=127.0.0.1')).status).toBe(405);
        expect(await dg.admin('/penalty-box/unban?address=nope', 'POST')).toEqual({
          status: 400,
          body: `${JSON.stringify({ error: "address: expected an IPv4 or IPv6 address, got 'nope'" }, null, 2)}\n`,
        });
        const answer = await dg.admin('/penalty-box/unban?address=127.0.0.1', 'POST');
        expect(answer.status).toBe(200);
        const body = JSON.parse(answer.body) as Record<string, unknown>;
        expect(body).toMatchObject({ address: '127.0.0.1', key: '127.0.0.1', lifted: true, failures: expect.any(Number) });
        expect(body.detail).toMatch(workers === 1 ? /^lifted the ban of 127\.0\.0\.1 \(\d+ s were left\)/ : /^lifted the ban of 127\.0\.0\.1 in [12] of 2 workers \(\d+ s were left\)/);
        expect(body.bannedForMs).toBeGreaterThan(500_000);
        const refusedBefore = await dg.metric('dancegate_connections_total{listener="api",outcome="refused",reason="penalty-box"}');
        for (let i = 0; i < 6; i++) expect(await get(dg.options.httpPort, deviceA)).toEqual({ status: 200, body: `hello ${A}` });
        expect(await dg.metric('dancegate_connections_total{listener="api",outcome="refused",reason="penalty-box"}')).toBe(refusedBefore);
        // Asked again: nothing left to lift.
        const again = JSON.parse((await dg.admin('/penalty-box/unban?address=127.0.0.1', 'POST')).body) as Record<string, unknown>;
        expect(again).toMatchObject({ lifted: false, bannedForMs: 0, detail: '127.0.0.1 was not banned' });
        expect((await dg.logLines()).some((l) => l.event === 'unban' && l.lifted === true)).toBe(true);
      } finally {
        await dg.stop();
      }
    },
    60_000,
  );
});

describe('a resolver that does not validate DNSSEC (the lab: an unsigned zone)', () => {
  let lab: DnsLab;
  beforeAll(async () => {
    lab = await startDnssecLab([
      { origin: 'signed.test', records: ['www IN A 192.0.2.1'], signing: { algorithm: 13 } },
      { origin: 'plain.test', records: ['www IN A 192.0.2.2'], signing: 'unsigned' },
    ]);
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  });

  const resolverFor = (atStart: 'refuse' | 'warn', name?: string): string =>
    `  servers: [{ address: "127.0.0.1:${lab.resolver.port}" }]
  localTlsaFile: tlsa.txt
  validationProbe: { atStart: ${atStart}${name ? `, name: ${name}` : ''} }`;

  it('atStart refuse: exit 1, "your resolver does not validate DNSSEC" in words', async () => {
    const dg = await Instance.spawn('not-validating-refuse', { resolver: resolverFor('refuse'), allow: '*._device.plain.test' });
    expect(await dg.exited, dg.stderr).toBe(1);
    expect(dg.stderr).toMatch(/^dancegate: your resolver does not validate DNSSEC \(answer for _dancegate-probe\._device\.plain\.test without the AD bit/m);
    expect(dg.stderr).not.toContain('internal error');
  }, 30_000);

  it('atStart warn: starts, logs it, and /readyz is 503 saying so', async () => {
    const dg = await Instance.spawn('not-validating-warn', { resolver: resolverFor('warn'), allow: '*._device.plain.test' });
    try {
      await waitUntil('the admin endpoint', async () => (await dg.admin('/healthz').catch(() => ({ status: 0 }))).status === 200, 20_000);
      const ready = await dg.admin('/readyz');
      expect(ready.status).toBe(503);
      const checks = (JSON.parse(ready.body) as { checks: Record<string, { ok: boolean; detail: string }> }).checks;
      expect(checks.listeners).toEqual({ ok: true, detail: '1 listener(s) bound' });
      expect(checks.resolver?.ok).toBe(false);
      expect(checks.resolver?.detail).toMatch(/^your resolver does not validate DNSSEC \(answer for _dancegate-probe\._device\.plain\.test without the AD bit/);
      expect((await dg.logLines()).find((l) => l.event === 'resolver-check')).toMatchObject({ level: 'warn', ok: false, msg: 'your resolver does not validate DNSSEC' });
    } finally {
      await dg.stop();
    }
  }, 30_000);

  it('a probe name in a signed zone: starts, and /readyz is 200 (a secure denial)', async () => {
    const dg = await Instance.start('validating', { resolver: resolverFor('refuse', '_dancegate-probe.signed.test'), workers: 2 });
    try {
      const ready = JSON.parse((await dg.admin('/readyz')).body) as { checks: Record<string, { ok: boolean; detail: string }> };
      expect(ready.checks.workers).toEqual({ ok: true, detail: '2/2 workers ready' });
      expect(ready.checks.resolver?.detail).toMatch(/^the resolver validates DNSSEC \(secure denial for _dancegate-probe\.signed\.test/);
    } finally {
      expect(await dg.stop()).toBe(0);
    }
  }, 40_000);
});
