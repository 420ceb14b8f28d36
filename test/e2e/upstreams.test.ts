/**
 * Several upstreams per route end to end: a real dancegate (configured from
 * a YAML file, client names pinned in a local TLSA file) in front of Node
 * HTTP backends, curl --http1.1 and Node HTTPS clients with a DANE client
 * certificate. Round-robin alternates exactly; a backend killed while
 * clients send GETs costs them nothing (every request answered 200), is
 * taken out (health event, metrics) and, restarted on its port, readmitted
 * by the active HTTP check and served again; least-requests prefers the idle
 * backend; a POST with a body to a dead upstream is not retried (502) while
 * a bodiless GET is; and a TCP-mode route fails over on connect.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { upstreamAttemptChannel, upstreamHealthChannel, type UpstreamAttemptEvent, type UpstreamHealthEvent } from '../../src/forward/channels.js';
import { ProxyMetrics } from '../../src/metrics/metrics.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort } from '../lab/dnssec-lab.js';
import { waitUntil } from '../lab/wait.js';

const run = promisify(execFile);
const CLIENT = 'client1._device.upstreams.test';
const HOSTS = { rr: 'rr.upstreams.test', least: 'least.upstreams.test', retry: 'retry.upstreams.test', tcp: 'tcp.upstreams.test' } as const;

/** A Node HTTP backend: answers `<name> <method> <path>`; /healthz is the health check; /slow waits until released. */
class Backend {
  /** Requests other than /healthz, as `METHOD path`. */
  readonly hits: string[] = [];
  healthChecks = 0;
  private server: http.Server | undefined;
  private readonly held: http.ServerResponse[] = [];
  port = 0;

  constructor(readonly name: string) {}

  async start(port = 0): Promise<void> {
    const server = http.createServer((req, res) => {
      if (req.url === '/healthz') {
        this.healthChecks++;
        res.end('ok');
        return;
      }
      this.hits.push(`${req.method} ${req.url}`);
      req.resume();
      if (req.url?.startsWith('/slow')) {
        this.held.push(res);
        return;
      }
      // One write: a response is either all out or not started when the backend is killed.
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(`${this.name}\n`)) }).end(`${this.name}\n`);
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
  }

  get pendingSlow(): number {
    return this.held.length;
  }

  releaseSlow(): void {
    for (const res of this.held.splice(0)) res.end(`${this.name} slow\n`);
  }

  /** Gone at once: the port closes and every connection (kept-alive ones from dancegate included) is cut. */
  async kill(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }
}

let dir: string;
let proxy: RunningProxy;
let metrics: ProxyMetrics;
let registry: Registry;
const ports = { api: 0, tcp: 0, dead: 0, tcpDead: 0 };
const backends = { a: new Backend('a'), b: new Backend('b'), c: new Backend('c'), d: new Backend('d'), e: new Backend('e') };
let echo: net.Server;
const echoed: string[] = [];
let clientCert: IssuedCertificate;
let ca: IssuedCertificate;
const attempts: UpstreamAttemptEvent[] = [];
const health: UpstreamHealthEvent[] = [];
const unsubscribe: Array<() => void> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-upstreams-'));
  ca = await createCertificate({ commonName: 'upstreams CA', isCA: true });
  const server = await createCertificate({ commonName: HOSTS.rr, dnsNames: Object.values(HOSTS), issuer: ca, extendedKeyUsage: 'server' });
  clientCert = await createCertificate({ commonName: CLIENT, dnsNames: [CLIENT] });
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  await writeFile(join(dir, 'client.pem'), clientCert.certPem);
  await writeFile(join(dir, 'client.key'), clientCert.keyPem);
  await writeFile(join(dir, 'ca.pem'), ca.certPem);
  await writeFile(join(dir, 'tlsa.txt'), `${CLIENT}. IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(clientCert.der), 3, 1, 1))}\n`);
  for (const b of Object.values(backends)) await b.start();
  echo = net.createServer((s) => {
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      echoed.push(d.toString());
      s.write(d.toString().toUpperCase());
    });
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  ports.api = await freePort();
  ports.tcp = await freePort();
  ports.dead = await freePort();
  ports.tcpDead = await freePort();
  const up = (b: Backend): string => `{ url: "http://127.0.0.1:${b.port}", name: ${b.name} }`;
  await writeFile(
    join(dir, 'dancegate.yaml'),
    `resolver:
  localTlsaFile: tlsa.txt
listeners:
  - name: api
    listen: 127.0.0.1:${ports.api}
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - serverNames: [${HOSTS.rr}]
        upstreams: [${up(backends.a)}, ${up(backends.b)}]
        balance: round-robin
        passiveHealth: { failures: 2, ejectMs: 60000, maxEjectMs: 60000 }
        healthCheck: { type: http, path: /healthz, intervalMs: 200, timeoutMs: 150, healthyThreshold: 2, unhealthyThreshold: 2 }
        retries: 1
        allow: ['*._device.upstreams.test']
      - serverNames: [${HOSTS.least}]
        upstreams: [${up(backends.c)}, ${up(backends.d)}]
        balance: least-requests
        passiveHealth: false
        retries: 0
        allow: ['*._device.upstreams.test']
      - serverNames: [${HOSTS.retry}]
        upstreams: [{ url: "http://127.0.0.1:${ports.dead}", name: dead }, ${up(backends.e)}]
        passiveHealth: false
        retries: 1
        allow: ['*._device.upstreams.test']
  - name: tcp
    listen: 127.0.0.1:${ports.tcp}
    mode: tcp
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstreams: [{ url: "tcp://127.0.0.1:${ports.tcpDead}", name: dead }, { url: "tcp://127.0.0.1:${(echo.address() as net.AddressInfo).port}", name: echo }]
        passiveHealth: false
        retries: 1
        allow: ['*._device.upstreams.test']
`,
  );
  const config = await loadConfig(join(dir, 'dancegate.yaml'));
  registry = new Registry();
  metrics = new ProxyMetrics('test', () => undefined, { registry });
  metrics.knownListeners(config.listeners);
  unsubscribe.push(
    upstreamAttemptChannel.subscribe((e) => {
      if (e.listener === 'api' || e.listener === 'tcp') attempts.push(e);
    }),
    upstreamHealthChannel.subscribe((e) => {
      if (e.listener === 'api' || e.listener === 'tcp') health.push(e);
    }),
  );
  proxy = await startProxy(config, { log: () => undefined });
}, 60_000);

afterAll(async () => {
  for (const u of unsubscribe.splice(0)) u();
  metrics?.close();
  await proxy?.close();
  for (const b of Object.values(backends)) {
    b.releaseSlow();
    await b.kill();
  }
  await new Promise<void>((resolve) => (echo ? echo.close(() => resolve()) : resolve()));
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  attempts.length = 0;
  for (const b of Object.values(backends)) b.hits.length = 0;
});

/** One curl --http1.1 run over one kept-alive connection: each target's status and body, in order. */
async function curl(host: string, targets: readonly string[], extra: readonly string[] = []): Promise<Array<{ status: number; body: string }>> {
  const args = ['-sS', '--max-time', '10', '--http1.1', '--cacert', join(dir, 'ca.pem'), '--resolve', `${host}:${ports.api}:127.0.0.1`];
  args.push('--cert', join(dir, 'client.pem'), '--key', join(dir, 'client.key'), '-w', '<<%{http_code}>>\n', ...extra);
  const { stdout } = await run('curl', [...args, ...targets.map((t) => `https://${host}:${ports.api}${t}`)]);
  return [...stdout.matchAll(/([^]*?)<<(\d{3})>>\n/g)].map((m) => ({ status: Number(m[2]), body: m[1] ?? '' }));
}

/** A Node HTTPS client with its own kept-alive connections. */
function nodeClient(host: string): { get(path: string): Promise<{ status: number; body: string }>; close(): void } {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca.certPem, cert: clientCert.certPem, key: clientCert.keyPem, servername: host });
  return {
    get: (path) =>
      new Promise((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: ports.api, path, agent, headers: { host }, servername: host }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      }),
    close: () => agent.destroy(),
  };
}

async function sample(series: string): Promise<number | undefined> {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('HTTP: two upstreams of one route', () => {
  it('round-robin alternates request by request on one kept-alive connection', async () => {
    const answers = await curl(HOSTS.rr, ['/rr/1', '/rr/2', '/rr/3', '/rr/4', '/rr/5', '/rr/6']);
    expect(answers).toEqual(['a', 'b', 'a', 'b', 'a', 'b'].map((name) => ({ status: 200, body: `${name}\n` })));
    expect(backends.a.hits).toEqual(['GET /rr/1', 'GET /rr/3', 'GET /rr/5']);
    expect(backends.b.hits).toEqual(['GET /rr/2', 'GET /rr/4', 'GET /rr/6']);
    expect(attempts.map((e) => `${e.upstream} ${e.outcome}`)).toEqual(['a ok', 'b ok', 'a ok', 'b ok', 'a ok', 'b ok']);
    // The route's active checks started with its first request, and reach both.
    await waitUntil('health checks on both', () => backends.a.healthChecks > 0 && backends.b.healthChecks > 0);
  });

  it('one killed while curl and Node clients send GETs: every request answered 200, the dead one taken out, then readmitted by the check and served again', async () => {
    expect(await sample('dancegate_upstream_healthy{listener="api",upstream="a"}')).toBe(1);
    const statuses: number[] = [];
    const failures: string[] = [];
    let stop = false;
    const nodeLoop = async (i: number): Promise<void> => {
      const client = nodeClient(HOSTS.rr);
      try {
        for (let n = 0; !stop; n++) {
          try {
            const r = await client.get(`/load/node${i}/${n}`);
            statuses.push(r.status);
            if (r.status !== 200) failures.push(`node${i} ${r.status} ${r.body}`);
          } catch (err) {
            failures.push(`node${i} ${(err as Error).message}`);
          }
        }
      } finally {
        client.close();
      }
    };
    const curlLoop = async (): Promise<void> => {
      for (let n = 0; !stop; n++) {
        try {
          for (const r of await curl(HOSTS.rr, [`/load/curl/${n}/1`, `/load/curl/${n}/2`, `/load/curl/${n}/3`])) {
            statuses.push(r.status);
            if (r.status !== 200) failures.push(`curl ${r.status} ${r.body}`);
          }
        } catch (err) {
          failures.push(`curl ${(err as Error).message}`);
        }
      }
    };
    const loops = [nodeLoop(1), nodeLoop(2), nodeLoop(3), curlLoop()];
    await waitUntil('traffic on both backends', () => backends.a.hits.length >= 10 && backends.b.hits.length >= 10);
    await backends.a.kill();
    const hitsOfBAtKill = backends.b.hits.length;
    await waitUntil('a taken out', () => health.some((h) => h.upstream === 'a' && !h.healthy));
    // Traffic goes on past the ejection.
    await waitUntil('more traffic after the kill', () => backends.b.hits.length >= hitsOfBAtKill + 30);
    stop = true;
    await Promise.all(loops);
    expect(failures).toEqual([]);
    expect(statuses.length).toBeGreaterThanOrEqual(50);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const out = health.filter((h) => h.upstream === 'a');
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ listener: 'api', upstream: 'a', healthy: false });
    expect(out[0]?.detail).toMatch(out[0]?.cause === 'passive' ? /^2 failures in a row; ejected for 60000 ms$/ : /^GET \/healthz: .*; 2 checks failed in a row$/);
    // Every attempt on a after the kill failed; each was followed by one on b that answered.
    expect(attempts.filter((e) => e.upstream === 'a' && e.outcome !== 'ok').length).toBeGreaterThanOrEqual(1);
    expect(await sample('dancegate_upstream_healthy{listener="api",upstream="a"}')).toBe(0);
    expect(await sample('dancegate_upstream_healthy{listener="api",upstream="b"}')).toBe(1);
    const ejections =
      ((await sample('dancegate_upstream_ejections_total{listener="api",upstream="a",cause="passive"}')) ?? 0) +
      ((await sample('dancegate_upstream_ejections_total{listener="api",upstream="a",cause="active"}')) ?? 0);
    expect(ejections).toBe(1);

    // While a is out, nothing is sent its way.
    attempts.length = 0;
    expect((await curl(HOSTS.rr, ['/out/1', '/out/2', '/out/3'])).map((r) => r.body)).toEqual(['b\n', 'b\n', 'b\n']);
    expect(attempts.map((e) => `${e.upstream} ${e.outcome}`)).toEqual(['b ok', 'b ok', 'b ok']);

    // Back on its port: the active check readmits it (the passive ejection would last a minute).
    const port = backends.a.port;
    await backends.a.start(port);
    await waitUntil('a readmitted', () => health.filter((h) => h.upstream === 'a').length === 2, 10_000);
    expect(health.filter((h) => h.upstream === 'a')[1]).toEqual({ listener: 'api', upstream: 'a', healthy: true, cause: 'active', detail: 'GET /healthz: 200; 2 checks passed in a row' });
    expect(await sample('dancegate_upstream_healthy{listener="api",upstream="a"}')).toBe(1);
    backends.a.hits.length = 0;
    backends.b.hits.length = 0;
    const answers = await curl(HOSTS.rr, ['/back/1', '/back/2', '/back/3', '/back/4']);
    expect(answers.every((r) => r.status === 200)).toBe(true);
    expect([backends.a.hits.length, backends.b.hits.length]).toEqual([2, 2]);
  });

  it('least-requests: while one backend holds a request, the idle one gets every new one', async () => {
    const slowClient = nodeClient(HOSTS.least);
    const slow = slowClient.get('/slow');
    await waitUntil('the slow request held by c', () => backends.c.pendingSlow === 1);
    const answers = await curl(HOSTS.least, ['/q/1', '/q/2', '/q/3', '/q/4']);
    expect(answers).toEqual(['d', 'd', 'd', 'd'].map((name) => ({ status: 200, body: `${name}\n` })));
    backends.c.releaseSlow();
    expect(await slow).toEqual({ status: 200, body: 'c slow\n' });
    slowClient.close();
    expect(backends.c.hits).toEqual(['GET /slow']);
    expect(backends.d.hits).toEqual(['GET /q/1', 'GET /q/2', 'GET /q/3', 'GET /q/4']);
    // Both idle again: the order goes on from after d.
    expect((await curl(HOSTS.least, ['/q/5', '/q/6'])).map((r) => r.body)).toEqual(['c\n', 'd\n']);
  });

  it('a POST with a body to a dead upstream is not retried (502); a bodiless GET is retried on the other one', async () => {
    const post = (n: number): Promise<Array<{ status: number; body: string }>> => curl(HOSTS.retry, [`/r/${n}`], ['-X', 'POST', '--data-binary', 'order=1']);
    const get = (n: number): Promise<Array<{ status: number; body: string }>> => curl(HOSTS.retry, [`/r/${n}`]);
    // Round-robin from the first upstream (dead): POST → dead; GET → e; GET → dead, then e; POST → dead.
    expect(await post(1)).toEqual([{ status: 502, body: 'Bad Gateway: the upstream is unavailable\n' }]);
    expect(await get(2)).toEqual([{ status: 200, body: 'e\n' }]);
    expect(await get(3)).toEqual([{ status: 200, body: 'e\n' }]);
    expect(await post(4)).toEqual([{ status: 502, body: 'Bad Gateway: the upstream is unavailable\n' }]);
    expect(attempts.map((e) => `${e.upstream} ${e.outcome}`)).toEqual(['dead connect-failed', 'e ok', 'dead connect-failed', 'e ok', 'dead connect-failed']);
    expect(backends.e.hits).toEqual(['GET /r/2', 'GET /r/3']);
  });
});

describe('TCP: connect failover through dancegate', () => {
  /** A TLS session with the DANE client certificate: send a line, read the echo. */
  async function session(line: string): Promise<string> {
    const socket = tls.connect({ host: '127.0.0.1', port: ports.tcp, servername: HOSTS.tcp, ca: ca.certPem, cert: clientCert.certPem, key: clientCert.keyPem });
    socket.on('error', () => undefined);
    await once(socket, 'secureConnect');
    socket.write(line);
    let text = '';
    await new Promise<void>((resolve) => {
      socket.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.length >= line.length) resolve();
      });
      socket.on('close', () => resolve());
    });
    socket.destroy();
    return text;
  }

  it('the first upstream refuses, the connection goes through to the second; every session does', async () => {
    echoed.length = 0;
    const results = [await session('one\n'), await session('two\n'), await session('three\n')];
    expect(results).toEqual(['ONE\n', 'TWO\n', 'THREE\n']);
    expect(echoed).toEqual(['one\n', 'two\n', 'three\n']);
    // Round-robin goes on after the upstream that served: with passive health off, each session tries the dead one first.
    expect(attempts.map((e) => `${e.listener} ${e.upstream} ${e.outcome}`)).toEqual([
      'tcp dead connect-failed',
      'tcp echo ok',
      'tcp dead connect-failed',
      'tcp echo ok',
      'tcp dead connect-failed',
      'tcp echo ok',
    ]);
    expect(await sample('dancegate_upstream_attempts_total{listener="tcp",upstream="dead",outcome="connect-failed"}')).toBe(3);
    expect(await sample('dancegate_upstream_attempts_total{listener="tcp",upstream="echo",outcome="ok"}')).toBe(3);
  });
});
