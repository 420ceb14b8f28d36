/**
 * bench/compare: dancegate against nginx and HAProxy as mTLS front proxies,
 * on this machine, loopback only, ECDSA P-256 everywhere, the same plain
 * HTTP backend (an nginx returning "ok") behind every proxy.
 *
 *  1. New mTLS handshakes per second: `openssl s_time -new -www /` with a
 *     client certificate, PARALLEL processes, RUNS runs of SECONDS each, the
 *     median reported; for dancegate on the native TLS engine
 *     (`tls.engine: native`: DANE-EE warm cache, TLSA cache off so every
 *     connection asks Unbound, and the same path without DANE for the DANE
 *     overhead ratio), dancegate on node:tls (`tls.engine: node`, DANE-EE
 *     warm cache), nginx (ssl_verify_client on) and HAProxy (verify
 *     required), all with as many workers/threads as cores; Node's own floor
 *     (bench/node-floor.ts). s_time sends no dane_clientid: on both engines
 *     the client is named by its certificate's SAN (the native engine still
 *     pauses the handshake for the decision). Systems are measured round
 *     robin, with the server's CPU per handshake from /proc. Also the
 *     OpenSSL crypto bound for the same handshake from `openssl speed`.
 *  2. HTTP/1.1 request throughput and latency over kept-alive mTLS
 *     connections with ApacheBench (`ab -k -c 32 -E`), ROUNDS rounds with the
 *     systems round robin, and ab against a TLS endpoint that does no
 *     proxying, to show ab is not the bottleneck; the server's CPU per
 *     request from /proc; issue 13's Done-when ratios (against nginx and the
 *     bare Node http.request forwarder, p99 against nginx's). dancegate runs
 *     without an access log, as nginx here (`access_log off`), and once more
 *     with its access log on, written to a file.
 *  3. DANE decision latency per connection (verifyClient through the cache
 *     and the real resolver), warm and cold, p50/p99.
 *  4. Memory per idle authenticated connection: CONNECTIONS TCP-mode
 *     connections held open; dancegate's RSS before and after, on each
 *     engine in turn, and a bare node:tls server's (the floor).
 *  5. HTTP/2 request throughput and latency with h2load (`-c 32 -m 10`, one
 *     thread) over mTLS: dancegate with ALPN h2 on each engine, nginx
 *     (http2, ssl_verify_client on), HAProxy (alpn h2, verify required),
 *     and nginx answering itself over h2 (h2load's ceiling); ROUNDS rounds,
 *     p50/p99 from h2load's per-request log. h2load has no client
 *     certificate option: bench/h2load-client-cert.c, preloaded, gives it
 *     one (built here with cc), so every system does its client
 *     authentication as in part 2.
 *
 * Only the systems SYSTEMS selects, for the parts PARTS selects, are started.
 *
 *   npm run bench:compare     (PARALLEL=16 RUNS=3 SECONDS=5 CONNECTIONS=10000 ROUNDS=3 H2_REQUESTS=40000)
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { createCertificate } from '../certs/pki.js';
import { TlsaCache } from '../src/lookup/cache.js';
import { parseCertificateDer } from '../src/dane/certificate.js';
import { DnsTlsaResolver } from '../src/lookup/tlsa-query.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../src/dane/tlsa.js';
import { verifyClient } from '../src/connection/verify.js';
import { loadNativeEngine } from '../src/tls/native-engine.js';
import { freePort, startDnssecLab } from '../test/lab/dnssec-lab.js';
import { stopProcess, waitForTcpPort } from '../test/lab/process.js';

const run = promisify(execFile);
const PARALLEL = Number(process.env.PARALLEL ?? 16);
const RUNS = Number(process.env.RUNS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 5);
/**
 * Idle connections for the memory figure. dancegate holds two descriptors per
 * connection (client and upstream) and this machine's hard descriptor limit
 * is 20,000 per process, so dancegate runs one worker per core here and its
 * RSS is the sum over its processes.
 */
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 10_000);
/** Which parts to run, e.g. PARTS=1,2 (default all). */
const PARTS = new Set((process.env.PARTS ?? '1,2,3,4,5').split(',').map(Number));
/** Rounds of the throughput parts (2 and 5), every system once per round, round robin; figures are the medians. */
const ROUNDS = Number(process.env.ROUNDS ?? 3);
/** ab per run (part 2). */
const H1_REQUESTS = 20_000;
/** h2load per run (part 5): requests, connections, concurrent streams per connection. */
const H2_REQUESTS = Number(process.env.H2_REQUESTS ?? 40_000);
const H2_CLIENTS = 32;
const H2_STREAMS = 10;
/** Issue 13's Done-when targets. */
const TARGET_VS_NGINX = 0.35;
const TARGET_VS_NODE_FORWARDER = 1.5;
const TARGET_P99_VS_NGINX = 3;
/**
 * Idle upstream connections each nginx worker keeps. h2load keeps H2_CLIENTS x H2_STREAMS requests in flight: with
 * fewer kept, nginx would close and reopen an upstream connection for every request past that many.
 */
const NGINX_UPSTREAM_KEEPALIVE = Math.max(64, H2_CLIENTS * H2_STREAMS);
/** Which systems, by the start of their names, e.g. SYSTEMS=dancegate,nginx or SYSTEMS="dancegate native" (default all). */
const SYSTEMS = (process.env.SYSTEMS ?? 'dancegate,nginx,haproxy,node').split(',');
const CORES = availableParallelism();
/** /proc's clock ticks per second (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;
const CLIENT = 'client1._device.bench.test';
const CLI = join(import.meta.dirname, '../src/cli/main.js');
/**
 * BASELINE=/path/to/an/older/checkout (built with `npm run build`) adds that
 * build's dancegate, on the warm-cache configuration, as one more system of
 * the same run: before/after figures from one machine state.
 */
const BASELINE = process.env.BASELINE;

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};

function daemon(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
  child.once('exit', (code) => {
    if (code !== 0 && code !== null) process.stderr.write(`${command} exited ${code}: ${err}\n`);
  });
  started.add(child);
  return child;
}

/** Every daemon this run started, killed if the run dies before stopping them. */
const started = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of started) child.kill('SIGKILL');
});

/** A process and its children (cluster workers, nginx workers). */
async function processTree(pid: number): Promise<number[]> {
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...children];
}

/** CPU seconds (user + system) a process tree has used so far. */
async function cpuSeconds(pid: number): Promise<number> {
  let ticks = 0;
  for (const p of await processTree(pid)) {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = await readFile(`/proc/${p}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS;
}

/**
 * nginx workers that outlived their master: earlier runs left the backend's
 * workers running after the master was stopped. Their ids are taken while
 * the master still runs; after it has stopped, each one still alive and still
 * an nginx worker is killed by its id.
 */
async function nginxWorkersOf(masters: ChildProcess[]): Promise<number[]> {
  const workers: number[] = [];
  for (const master of masters) {
    if (master.pid === undefined || master.exitCode !== null || master.signalCode !== null) continue;
    workers.push(...(await processTree(master.pid).catch(() => [master.pid as number])).slice(1));
  }
  return workers;
}
async function killOrphanedNginxWorkers(workers: number[]): Promise<number> {
  let killed = 0;
  for (const pid of workers) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.startsWith('nginx: worker')) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed++;
    } catch {
      // Gone in between.
    }
  }
  return killed;
}

/** RSS of a process tree, summed. */
async function rssOf(pid: number): Promise<number> {
  let total = 0;
  for (const p of await processTree(pid)) total += Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${p}/status`, 'utf8'))?.[1]) * 1024;
  return total;
}

/** Handshakes per second (PARALLEL s_time processes for SECONDS, summed) and the server's CPU ms per handshake. */
async function handshakeRate(port: number, pid: number, dir: string): Promise<{ rate: number; cpuMs: number }> {
  let connections = 0;
  const one = async (): Promise<number> => {
    const { stdout } = await run(
      'openssl',
      ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-www', '/', '-time', String(SECONDS), '-cert', join(dir, 'client.pem'), '-key', join(dir, 'client.key'), '-CAfile', join(dir, 'ca.pem')],
      { timeout: (SECONDS + 30) * 1000 },
    );
    const m = /(\d+) connections in ([\d.]+) real seconds/.exec(stdout);
    if (!m) throw new Error(`s_time said: ${stdout.slice(-500)}`);
    connections += Number(m[1]);
    return Number(m[1]) / Number(m[2]);
  };
  const cpuBefore = await cpuSeconds(pid);
  const rates = await Promise.all(Array.from({ length: PARALLEL }, one));
  const cpu = (await cpuSeconds(pid)) - cpuBefore;
  return { rate: rates.reduce((a, b) => a + b, 0), cpuMs: (1000 * cpu) / connections };
}

/**
 * One request with the client certificate must come back 200 "ok": s_time
 * counts a connection whose handshake completed even when the server then
 * refuses the client (a TLS 1.3 refusal arrives on the first read), so a
 * system that refuses everyone would otherwise post a fine handshake rate.
 */
async function checkServes(name: string, port: number, dir: string): Promise<void> {
  const [cert, key] = await Promise.all([readFile(join(dir, 'client.pem')), readFile(join(dir, 'client.key'))]);
  const answer = await new Promise<string>((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/', servername: 'bench.test', headers: { host: 'bench.test' }, cert, key, rejectUnauthorized: false, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(`${res.statusCode ?? '?'} ${body}`));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('no answer in 10 s')));
  }).catch((err: Error) => `error: ${err.message}`);
  if (answer !== '200 ok') throw new Error(`${name} (port ${port}) does not serve the bench client: ${answer}`);
}

/** One throughput run: requests/s, latency p50/p99 in ms, and the server's CPU per request in microseconds (NaN when not measured). */
interface Throughput {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuUs: number;
}

/** A load run with the server's CPU (its process tree, from /proc) over it, per request. */
async function withServerCpu(pid: number | undefined, requests: number, load: () => Promise<Omit<Throughput, 'cpuUs'>>): Promise<Throughput> {
  const before = pid === undefined ? NaN : await cpuSeconds(pid);
  const result = await load();
  const after = pid === undefined ? NaN : await cpuSeconds(pid);
  return { ...result, cpuUs: (1e6 * (after - before)) / requests };
}

/** ApacheBench over kept-alive mTLS: requests/s and p50/p99 ms (ab reports whole milliseconds). */
async function throughput(port: number, dir: string, requests = H1_REQUESTS): Promise<Omit<Throughput, 'cpuUs'>> {
  const { stdout } = await run('ab', ['-q', '-k', '-n', String(requests), '-c', '32', '-E', join(dir, 'client-with-key.pem'), '-H', 'Host: bench.test', `https://127.0.0.1:${port}/`], {
    timeout: 120_000,
    // A refusing server makes ab print two lines per attempt: keep them all, the error says the first.
    maxBuffer: 256 * 2 ** 20,
  });
  const rps = Number(/Requests per second:\s+([\d.]+)/.exec(stdout)?.[1]);
  const p50 = Number(/\s50%\s+(\d+)/.exec(stdout)?.[1]);
  const p99 = Number(/\s99%\s+(\d+)/.exec(stdout)?.[1]);
  const failed = Number(/Failed requests:\s+(\d+)/.exec(stdout)?.[1]);
  const non2xx = Number(/Non-2xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  if (failed > 0 || non2xx > 0) throw new Error(`ab: ${failed} failed, ${non2xx} non-2xx on port ${port}`);
  return { rps, p50, p99 };
}

/** Build the preloaded shim that gives h2load the bench client's certificate (bench/h2load-client-cert.c). */
async function buildH2loadShim(dir: string): Promise<string> {
  const source = join(import.meta.dirname, '../../bench/h2load-client-cert.c');
  const shim = join(dir, 'h2load-client-cert.so');
  await run('cc', ['-shared', '-fPIC', '-O2', '-o', shim, source, '-ldl']).catch((err: Error) => {
    throw new Error(`cannot build ${source} (h2load has no client certificate option; part 5 needs a C compiler): ${err.message}`);
  });
  return shim;
}

let h2loadRuns = 0;
/**
 * h2load over mTLS, HTTP/2 only: requests/s and p50/p99 ms from its
 * per-request log. Every request must be a 2xx over h2 (a system that did not
 * take the client certificate answers 400 or fails the handshake).
 */
async function h2Throughput(port: number, dir: string, shim: string, requests = H2_REQUESTS): Promise<Omit<Throughput, 'cpuUs'>> {
  // h2load appends to its log: a new file per run.
  const log = join(dir, `h2load-${++h2loadRuns}.log`);
  const args = ['-n', String(requests), '-c', String(H2_CLIENTS), '-m', String(H2_STREAMS), '-t', '1', '-H', ':authority: bench.test', '--log-file', log, `https://127.0.0.1:${port}/`];
  const env = { ...process.env, LD_PRELOAD: shim, CLIENT_CERT_FILE: join(dir, 'client.pem'), CLIENT_KEY_FILE: join(dir, 'client.key') };
  const { stdout } = await run('h2load', args, { env, timeout: 300_000, maxBuffer: 16 * 2 ** 20 });
  const protocol = /Application protocol: (\S+)/.exec(stdout)?.[1];
  const counts = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(stdout);
  const ok = Number(/status codes: (\d+) 2xx/.exec(stdout)?.[1]);
  if (protocol !== 'h2' || counts === null || Number(counts[3]) !== requests || ok !== requests) {
    throw new Error(`h2load on port ${port}: protocol ${protocol ?? 'none'}, ${counts?.[0] ?? 'no counts'}, ${ok} 2xx: ${stdout.slice(-600)}`);
  }
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(stdout)?.[1]);
  // Columns: start (us since the epoch), status, microseconds to the end of the response.
  const latencies = (await readFile(log, 'utf8'))
    .trim()
    .split('\n')
    .map((line) => Number(line.split('\t')[2]) / 1000);
  await rm(log, { force: true });
  return { rps, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

const verdict = (met: boolean): string => (met ? 'met' : 'MISSED');
const ratio = (a: number | undefined, b: number | undefined): number => (a ?? NaN) / (b ?? NaN);
/** The median, the mean of the middle two for an even count (`median` takes the upper one). */
const middle = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const half = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[half] ?? NaN) : ((sorted[half - 1] ?? NaN) + (sorted[half] ?? NaN)) / 2;
};
/** Medians of ROUNDS runs, each figure on its own, and the runs. */
function summary(results: readonly Throughput[]): Throughput & { readonly runs: string } {
  return {
    rps: middle(results.map((r) => r.rps)),
    p50: middle(results.map((r) => r.p50)),
    p99: middle(results.map((r) => r.p99)),
    cpuUs: middle(results.map((r) => r.cpuUs)),
    runs: results.map((r) => `${r.rps.toFixed(0)}/${r.p99.toFixed(r.p99 < 10 ? 1 : 0)}`).join(', '),
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-compare-'));
  const children: ChildProcess[] = [];
  const out: string[] = [];
  const say = (line: string): void => {
    out.push(line);
    console.log(line);
  };
  try {
    const versions = {
      node: process.version,
      openssl: (await run('openssl', ['version'])).stdout.trim(),
      nginx: (await run('nginx', ['-v'])).stderr.trim(),
      haproxy: (await run('haproxy', ['-v'])).stdout.split('\n')[0] ?? '',
    };
    say(`bench/compare on ${CORES}x ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; ${Object.values(versions).join('; ')}`);
    // The native systems run `tls.engine: native`, which refuses to start without the addon: say which one up front.
    const native = loadNativeEngine();
    if (!native.ok) throw new Error(`the native TLS engine does not load here (${native.reason}); build it with \`node native/tls-engine/build.mjs\``);
    say(
      `native TLS engine: ${native.path} on Node's ${native.openssl}; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    say(`PARALLEL=${PARALLEL} RUNS=${RUNS} SECONDS=${SECONDS} CONNECTIONS=${CONNECTIONS}`);

    // PKI: one CA for everything, ECDSA P-256.
    const ca = await createCertificate({ commonName: 'bench CA', isCA: true });
    const server = await createCertificate({ commonName: 'bench.test', dnsNames: ['bench.test'], issuer: ca, extendedKeyUsage: 'server' });
    const client = await createCertificate({ commonName: CLIENT, dnsNames: [CLIENT], issuer: ca, extendedKeyUsage: 'client' });
    await writeFile(join(dir, 'ca.pem'), ca.certPem);
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'server-combined.pem'), server.certPem + server.keyPem);
    await writeFile(join(dir, 'client.pem'), client.certPem);
    await writeFile(join(dir, 'client.key'), client.keyPem);
    await writeFile(join(dir, 'client-with-key.pem'), client.certPem + client.keyPem);

    const lab = await startDnssecLab([
      { origin: 'bench.test', signing: { algorithm: 13 }, records: [`client1._device 300 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(client.der), 3, 1, 1))}`] },
    ]);
    const ports = {
      backend: await freePort(),
      tlsOnly: await freePort(),
      tlsOnlyH2: await freePort(),
      nginx: await freePort(),
      nginxH2: await freePort(),
      haproxy: await freePort(),
      haproxyH2: await freePort(),
      dgWarm: await freePort(),
      dgWarmLog: await freePort(),
      dgCold: await freePort(),
      dgNoDane: await freePort(),
      dgNodeWarm: await freePort(),
      nodeFloor: await freePort(),
      nodeProxy: await freePort(),
      dgBaseline: await freePort(),
      dgTcpNative: await freePort(),
      dgTcpNode: await freePort(),
      echo: await freePort(),
    };

    // nginx 1.25.1 made HTTP/2 a directive (`http2 on`) and deprecated the listen parameter older ones need.
    const [major = 0, minor = 0, patch = 0] = (/nginx\/(\d+)\.(\d+)\.(\d+)/.exec(versions.nginx) ?? []).slice(1).map(Number);
    const http2Directive = major > 1 || (major === 1 && (minor > 25 || (minor === 25 && patch >= 1)));
    const listenH2 = (port: number): string => (http2Directive ? `listen 127.0.0.1:${port} ssl; http2 on;` : `listen 127.0.0.1:${port} ssl http2;`);

    // Backend and the two C proxies. The backend (and the TLS endpoints that show ab's and h2load's ceilings) runs in
    // an nginx of its own, so that the proxy nginx's CPU figures hold only its own work.
    const startNginx = async (name: string, httpBlock: string): Promise<ChildProcess> => {
      await writeFile(
        join(dir, `${name}.conf`),
        `worker_processes ${CORES};
pid ${dir}/${name}.pid;
error_log ${dir}/${name}-error.log warn;
daemon off;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 100000;
${httpBlock}}
`,
      );
      return daemon('nginx', ['-c', join(dir, `${name}.conf`), '-e', join(dir, `${name}-error.log`)]);
    };
    const nginxProxy = (listen: string): string => `  server {
    ${listen}
    ssl_certificate ${dir}/server.pem; ssl_certificate_key ${dir}/server.key;
    ssl_client_certificate ${dir}/ca.pem; ssl_verify_client on;
    ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
`;
    const nginx = await startNginx(
      'nginx',
      `  upstream backend { server 127.0.0.1:${ports.backend}; keepalive ${NGINX_UPSTREAM_KEEPALIVE}; }\n${nginxProxy(`listen 127.0.0.1:${ports.nginx} ssl;`)}${nginxProxy(listenH2(ports.nginxH2))}`,
    );
    const answersItself = (listen: string): string => `  server {
    ${listen}
    ssl_certificate ${dir}/server.pem; ssl_certificate_key ${dir}/server.key;
    location / { return 200 "ok"; }
  }
`;
    children.push(
      nginx,
      await startNginx(
        'backend',
        `  server { listen 127.0.0.1:${ports.backend}; location / { return 200 "ok"; } }\n${answersItself(`listen 127.0.0.1:${ports.tlsOnly} ssl;`)}${answersItself(listenH2(ports.tlsOnlyH2))}`,
      ),
    );
    await writeFile(
      join(dir, 'haproxy.cfg'),
      `global
  nbthread ${CORES}
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend mtls
  bind 127.0.0.1:${ports.haproxy} ssl crt ${dir}/server-combined.pem ca-file ${dir}/ca.pem verify required no-tls-tickets
  default_backend b
frontend mtls_h2
  bind 127.0.0.1:${ports.haproxyH2} ssl crt ${dir}/server-combined.pem ca-file ${dir}/ca.pem verify required no-tls-tickets alpn h2,http/1.1
  default_backend b
backend b
  http-reuse always
  server s 127.0.0.1:${ports.backend}
`,
    );
    const haproxy = daemon('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]);
    children.push(haproxy);
    for (const key of ['backend', 'tlsOnly', 'tlsOnlyH2', 'nginx', 'nginxH2', 'haproxy', 'haproxyH2'] as const) await waitForTcpPort(ports[key], `${key} (port ${ports[key]})`);

    // Per-address limits off: every load generator here is one address. `engine` is the listener's
    // tls.engine; 'baseline' is an older build's configuration, without the keys it does not know
    // (maxTlsHandshakesPerIp, tls.engine, http.alpn, http.accessLog). HTTP listeners offer h2 and http/1.1
    // (ab offers no ALPN, so it gets HTTP/1.1) and keep no access log, as nginx here, unless `accessLogFile`; the cap on
    // one client's upstream requests is off too (h2load's one identity keeps H2_CLIENTS x H2_STREAMS in flight).
    type Engine = 'native' | 'node' | 'baseline';
    interface DancegateOptions {
      readonly withoutDane?: boolean;
      /** The access log on, with the rest of the log (level info), to this file. */
      readonly accessLogFile?: string;
    }
    const dancegateConfig = (port: number, cacheTtl: number, mode: 'http' | 'tcp', workers: number | 'auto', engine: Engine, options: DancegateOptions = {}): string => {
      const baseline = engine === 'baseline';
      const { withoutDane = false, accessLogFile } = options;
      const http = mode === 'http' && !baseline ? `    http: { alpn: [h2, http/1.1], upstreamMaxPerClient: 65536, accessLog: ${accessLogFile === undefined ? 'false' : '{ enabled: true }'} }\n` : '';
      return `workers: ${workers}
admin: false
log: { level: ${accessLogFile === undefined ? 'warn' : `info, destination: ${JSON.stringify(accessLogFile)}`} }
resolver:
  servers: [{ address: "127.0.0.1:${lab.resolver.port}" }]
  cache: { maxPositiveTtlSeconds: ${cacheTtl} }
limits:
  newConnectionsPerIp: false
  penaltyBox: false
  handshakes: { maxConcurrent: 100000, maxConcurrentPerIp: 100000${baseline ? '' : ', maxTlsHandshakesPerIp: 100000'} }
listeners:
  - name: bench
    listen: 127.0.0.1:${port}
    mode: ${mode}
${withoutDane ? '    policy: optional\n' : ''}${http}    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }]${baseline ? '' : `, engine: ${engine}`} }
    routes:
      - upstream: ${mode === 'http' ? `http://127.0.0.1:${ports.backend}` : `tcp://127.0.0.1:${ports.echo}`}
        allow: ['${withoutDane ? 'nobody.bench.test' : '*._device.bench.test'}']
`;
    };

    /** A server the systems below measure, started only when a selected system needs it. */
    interface Instance {
      readonly port: number;
      readonly spawnIt: () => ChildProcess;
      readonly waitMs: number;
      child?: ChildProcess;
    }
    const running = (port: number, child: ChildProcess): Instance => ({ port, spawnIt: () => child, waitMs: 15_000, child });
    const dancegateInstance = async (port: number, file: string, yaml: string, cli = CLI, waitMs = 15_000): Promise<Instance> => {
      await writeFile(join(dir, file), yaml);
      return { port, spawnIt: () => daemon(process.execPath, [cli, 'serve', '-c', join(dir, file)]), waitMs };
    };
    const accessLogFile = join(dir, 'dancegate-access.log');
    const dgWarm = await dancegateInstance(ports.dgWarm, 'dg-warm.yaml', dancegateConfig(ports.dgWarm, 300, 'http', 'auto', 'native'));
    const dgWarmLog = await dancegateInstance(ports.dgWarmLog, 'dg-warm-log.yaml', dancegateConfig(ports.dgWarmLog, 300, 'http', 'auto', 'native', { accessLogFile }));
    const dgCold = await dancegateInstance(ports.dgCold, 'dg-cold.yaml', dancegateConfig(ports.dgCold, 0, 'http', 'auto', 'native'));
    const dgNodeWarm = await dancegateInstance(ports.dgNodeWarm, 'dg-node-warm.yaml', dancegateConfig(ports.dgNodeWarm, 300, 'http', 'auto', 'node'));
    // dancegate's own mTLS path without DANE: policy optional and a route whose allowlist does not hold
    // the client's name, so every connection is forwarded unauthenticated with no lookup and no match.
    const dgNoDane = await dancegateInstance(ports.dgNoDane, 'dg-no-dane.yaml', dancegateConfig(ports.dgNoDane, 300, 'http', 'auto', 'native', { withoutDane: true }));
    const baselineName = `dancegate ${CORES} workers, DANE-EE warm cache, BASELINE build (${BASELINE ?? ''})`;
    const dgBaseline =
      BASELINE === undefined
        ? undefined
        : await dancegateInstance(ports.dgBaseline, 'dg-baseline.yaml', dancegateConfig(ports.dgBaseline, 300, 'http', 'auto', 'baseline'), join(BASELINE, 'dist/src/cli/main.js'), 60_000);
    // Node's own floor (bench/node-floor.ts): node:https with requestCert on every core, answering "ok"
    // itself, and the same forwarding each request with http.request: nothing of dancegate.
    const nodeFloor = (mode: 'self' | 'proxy', port: number): Instance => ({
      port,
      spawnIt: () => daemon(process.execPath, [join(import.meta.dirname, 'node-floor.js'), mode, String(port), join(dir, 'server.pem'), join(dir, 'server.key'), String(CORES), String(ports.backend)]),
      waitMs: 15_000,
    });
    const nodeSelf = nodeFloor('self', ports.nodeFloor);
    const nodeProxy = nodeFloor('proxy', ports.nodeProxy);

    const dane = `dancegate native ${CORES} workers, DANE-EE warm cache`;
    const daneLog = `${dane}, access log on (to a file)`;
    const daneNode = `dancegate node:tls ${CORES} workers, DANE-EE warm cache`;
    const withoutDane = `dancegate native ${CORES} workers, same path without DANE`;
    const nginxName = `nginx ${CORES} workers, ssl_verify_client on`;
    const nodeProxyName = `node:https ${CORES} workers, requestCert, http.request`;
    const dane2 = `${dane}, h2`;
    const daneLog2 = `${daneLog}, h2`;
    const daneNode2 = `${daneNode}, h2`;
    const nginx2 = `${nginxName}, http2`;
    /** Who is measured, on which instance, in which parts (1 handshakes, 2 HTTP/1.1 requests, 5 HTTP/2 requests). */
    const systems: Array<{ readonly name: string; readonly instance: Instance; readonly parts: readonly number[] }> = [
      { name: dane, instance: dgWarm, parts: [1, 2] },
      { name: daneLog, instance: dgWarmLog, parts: [2] },
      { name: daneNode, instance: dgNodeWarm, parts: [1, 2] },
      { name: `dancegate native ${CORES} workers, TLSA cache off`, instance: dgCold, parts: [1, 2] },
      { name: nginxName, instance: running(ports.nginx, nginx), parts: [1, 2] },
      { name: `HAProxy ${CORES} threads, verify required`, instance: running(ports.haproxy, haproxy), parts: [1, 2] },
      { name: withoutDane, instance: dgNoDane, parts: [1, 2] },
      { name: `node:https ${CORES} workers, requestCert, answers itself`, instance: nodeSelf, parts: [1, 2] },
      { name: nodeProxyName, instance: nodeProxy, parts: [1, 2] },
      { name: dane2, instance: dgWarm, parts: [5] },
      { name: daneLog2, instance: dgWarmLog, parts: [5] },
      { name: daneNode2, instance: dgNodeWarm, parts: [5] },
      { name: nginx2, instance: running(ports.nginxH2, nginx), parts: [5] },
      { name: `HAProxy ${CORES} threads, verify required, alpn h2`, instance: running(ports.haproxyH2, haproxy), parts: [5] },
    ];
    if (dgBaseline !== undefined) systems.push({ name: baselineName, instance: dgBaseline, parts: [1, 2] });
    const chosen = systems.filter(({ name, parts }) => SYSTEMS.some((s) => name.toLowerCase().startsWith(s)) && parts.some((p) => PARTS.has(p)));
    const inPart = (part: number): typeof chosen => (PARTS.has(part) ? chosen.filter((s) => s.parts.includes(part)) : []);
    for (const instance of new Set(chosen.map((s) => s.instance))) {
      if (instance.child === undefined) {
        instance.child = instance.spawnIt();
        children.push(instance.child);
      }
    }
    for (const { name, instance } of chosen) await waitForTcpPort(instance.port, `${name} (port ${instance.port})`, instance.waitMs);
    for (const { name, instance } of [...inPart(1), ...inPart(2)]) await checkServes(name, instance.port, dir);
    const pidOf = (instance: Instance): number => instance.child?.pid as number;

    // 1. Handshakes.
    const handshakes = new Map<string, number>();
    const cpuPerHandshake = new Map<string, number>();
    // Round robin: run i of every system before run i+1 of any, so drift on this shared machine hits all alike.
    const runs = new Map<string, Array<{ rate: number; cpuMs: number }>>(inPart(1).map(({ name }) => [name, []]));
    for (let i = -1; i < (PARTS.has(1) ? RUNS : -1); i++) {
      for (const { name, instance } of inPart(1)) {
        const result = await handshakeRate(instance.port, pidOf(instance), dir);
        if (i >= 0) runs.get(name)?.push(result); // run -1 is the warm-up
      }
    }
    for (const [name, results] of runs) {
      const rates = results.map((r) => r.rate);
      const cpu = results.map((r) => r.cpuMs);
      handshakes.set(name, median(rates));
      cpuPerHandshake.set(name, median(cpu));
      say(
        `handshakes/s  ${name.padEnd(56)} ${median(rates).toFixed(0).padStart(6)}  (runs: ${rates.map((r) => r.toFixed(0)).join(', ')}); server CPU ${median(cpu).toFixed(2)} ms per handshake (${cpu.map((c) => c.toFixed(2)).join(', ')})`,
      );
    }
    for (const { name } of inPart(1)) {
      say(
        `  against nginx: ${name.padEnd(56)} rate x${((handshakes.get(name) ?? NaN) / (handshakes.get(nginxName) ?? NaN)).toFixed(2)}, handshakes per CPU second x${((cpuPerHandshake.get(nginxName) ?? NaN) / (cpuPerHandshake.get(name) ?? NaN)).toFixed(2)}`,
      );
    }
    if (handshakes.has(dane) && handshakes.has(daneNode)) {
      say(
        `native engine against node:tls, DANE-EE warm cache: rate x${((handshakes.get(dane) as number) / (handshakes.get(daneNode) as number)).toFixed(2)}, server CPU per handshake x${((cpuPerHandshake.get(dane) as number) / (cpuPerHandshake.get(daneNode) as number)).toFixed(2)}`,
      );
    }
    if (handshakes.has(dane) && handshakes.has(withoutDane)) {
      const rateCost = 1 - (handshakes.get(dane) as number) / (handshakes.get(withoutDane) as number);
      const cpuCost = (cpuPerHandshake.get(dane) as number) / (cpuPerHandshake.get(withoutDane) as number) - 1;
      say(
        `DANE overhead, warm cache, against dancegate's own path without DANE: ${(100 * rateCost).toFixed(1)} % of the handshake rate, ${(100 * cpuCost).toFixed(1)} % more server CPU per handshake`,
      );
    }

    // The crypto bound: what one full handshake needs from OpenSSL, both sides on these cores.
    if (PARTS.has(1)) {
      const speed = (await run('openssl', ['speed', '-seconds', '2', '-multi', String(CORES), 'ecdsap256', 'ecdhx25519'], { timeout: 120_000 })).stdout;
      const ecdsa = /256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)/.exec(speed);
      const ecdh = /253 bits ecdh \(X25519\)\s+[\d.]+s\s+([\d.]+)/.exec(speed);
      if (ecdsa && ecdh) {
        const sign = 1 / Number(ecdsa[1]);
        const verify = 1 / Number(ecdsa[2]);
        const dh = 1 / Number(ecdh[1]);
        // Server: 1 sign, 2 verifies (CertificateVerify, client certificate); client: 1 sign, 2 verifies; each: keygen + derive.
        const perHandshake = 2 * sign + 4 * verify + 4 * dh;
        say(`crypto bound (openssl speed, ${CORES} cores, client and server sides together): ${(1 / perHandshake).toFixed(0)} handshakes/s`);
      }
    }

    // 2. HTTP/1.1 throughput over kept-alive connections, ROUNDS rounds round robin, after one short warm-up run each.
    const h1 = new Map<string, Throughput & { readonly runs: string }>();
    if (PARTS.has(2)) {
      const results = new Map<string, Throughput[]>(inPart(2).map(({ name }) => [name, []]));
      const ceiling: Throughput[] = [];
      for (const { instance } of inPart(2)) await throughput(instance.port, dir, 2000);
      for (let round = 0; round < ROUNDS; round++) {
        ceiling.push(await withServerCpu(undefined, H1_REQUESTS, () => throughput(ports.tlsOnly, dir)));
        for (const { name, instance } of inPart(2)) results.get(name)?.push(await withServerCpu(pidOf(instance), H1_REQUESTS, () => throughput(instance.port, dir)));
      }
      const top = summary(ceiling);
      say(`ab -k -c 32 (kept-alive), ${ROUNDS} rounds of ${H1_REQUESTS} requests; plain TLS endpoint without proxying: ${top.rps.toFixed(0)} req/s (ab's own ceiling; runs ${top.runs})`);
      for (const [name, r] of results) {
        const s = summary(r);
        h1.set(name, s);
        say(`req/s  ${name.padEnd(78)} ${s.rps.toFixed(0).padStart(6)}  (runs, req/s / p99 ms: ${s.runs})  p50 ${s.p50} ms  p99 ${s.p99} ms  server CPU ${s.cpuUs.toFixed(0)} us per request`);
      }
      const nginxH1 = h1.get(nginxName);
      const forwarder = h1.get(nodeProxyName);
      for (const name of [dane, daneNode]) {
        const d = h1.get(name);
        if (d === undefined || nginxH1 === undefined) continue;
        const vsNginx = d.rps / nginxH1.rps;
        const vsForwarder = ratio(d.rps, forwarder?.rps);
        say(
          `Done when (issue 13), HTTP/1.1 kept-alive, ${name}: x${vsNginx.toFixed(2)} of nginx's requests/s (target ≥ x${TARGET_VS_NGINX}: ${verdict(vsNginx >= TARGET_VS_NGINX)}); ` +
            `x${vsForwarder.toFixed(2)} of the bare Node http.request forwarder's (target ≥ x${TARGET_VS_NODE_FORWARDER}: ${forwarder === undefined ? 'not measured' : verdict(vsForwarder >= TARGET_VS_NODE_FORWARDER)}); ` +
            `p99 ${d.p99} ms against nginx's ${nginxH1.p99} ms (target ≤ x${TARGET_P99_VS_NGINX}: ${verdict(d.p99 <= TARGET_P99_VS_NGINX * nginxH1.p99)})`,
        );
      }
    }

    // 5. HTTP/2 throughput with h2load, the same way.
    const h2 = new Map<string, Throughput & { readonly runs: string }>();
    if (PARTS.has(5)) {
      const shim = await buildH2loadShim(dir);
      const results = new Map<string, Throughput[]>(inPart(5).map(({ name }) => [name, []]));
      const ceiling: Throughput[] = [];
      for (const { instance } of inPart(5)) await h2Throughput(instance.port, dir, shim, 2000);
      for (let round = 0; round < ROUNDS; round++) {
        ceiling.push(await withServerCpu(undefined, H2_REQUESTS, () => h2Throughput(ports.tlsOnlyH2, dir, shim)));
        for (const { name, instance } of inPart(5)) results.get(name)?.push(await withServerCpu(pidOf(instance), H2_REQUESTS, () => h2Throughput(instance.port, dir, shim)));
      }
      const top = summary(ceiling);
      say(
        `h2load -c ${H2_CLIENTS} -m ${H2_STREAMS} -t 1 over mTLS (client certificate by bench/h2load-client-cert.c), ${ROUNDS} rounds of ${H2_REQUESTS} requests; nginx answering itself over h2: ${top.rps.toFixed(0)} req/s (h2load's own ceiling; runs ${top.runs})`,
      );
      for (const [name, r] of results) {
        const s = summary(r);
        h2.set(name, s);
        say(
          `h2 req/s  ${name.padEnd(78)} ${s.rps.toFixed(0).padStart(6)}  (runs, req/s / p99 ms: ${s.runs})  p50 ${s.p50.toFixed(1)} ms  p99 ${s.p99.toFixed(1)} ms  server CPU ${s.cpuUs.toFixed(0)} us per request`,
        );
      }
      const nginxH2 = h2.get(nginx2);
      for (const name of [dane2, daneNode2]) {
        const d = h2.get(name);
        if (d === undefined || nginxH2 === undefined) continue;
        const vsNginx = d.rps / nginxH2.rps;
        say(
          `Done when (issue 13), HTTP/2, ${name}: x${vsNginx.toFixed(2)} of nginx's requests/s (goal ≥ x${TARGET_VS_NGINX}: ${verdict(vsNginx >= TARGET_VS_NGINX)}); p99 ${d.p99.toFixed(1)} ms against nginx's ${nginxH2.p99.toFixed(1)} ms (x${(d.p99 / nginxH2.p99).toFixed(2)})`,
        );
      }
    }

    // What the access log cost, and that it wrote one line per request (plus the connection decision lines).
    for (const [results, on, off] of [
      [h1, daneLog, dane],
      [h2, daneLog2, dane2],
    ] as const) {
      const logged = results.get(on);
      const plain = results.get(off);
      if (logged !== undefined && plain !== undefined) {
        say(`access log on (to a file) against off, ${off}: requests/s x${(logged.rps / plain.rps).toFixed(2)}, server CPU per request x${(logged.cpuUs / plain.cpuUs).toFixed(2)}`);
      }
    }
    if (h1.has(daneLog) || h2.has(daneLog2)) {
      const text = await readFile(accessLogFile, 'utf8').catch(() => '');
      const lines = text.split('\n').filter((line) => line.length > 0);
      const requests = lines.filter((line) => line.includes('"event":"request"')).length;
      say(`  the access log: ${((await stat(accessLogFile).catch(() => ({ size: 0 }))).size / 2 ** 20).toFixed(1)} MB, ${lines.length} lines, ${requests} of them "event":"request"`);
    }

    // 3. DANE decision latency (verifyClient through the cache and the real resolver).
    if (PARTS.has(3)) {
      const chain = [parseCertificateDer(client.der)];
      const resolver = new DnsTlsaResolver({ servers: [{ host: '127.0.0.1', port: lab.resolver.port, transport: 'udp' }] });
      const decide = async (cache: TlsaCache): Promise<number> => {
        const t0 = performance.now();
        const r = await verifyClient({ claimedName: CLIENT, chain, cache });
        if (!r.authenticated) throw new Error(`not authenticated: ${r.reason}`);
        return performance.now() - t0;
      };
      const warmCache = new TlsaCache(resolver);
      await decide(warmCache);
      const warm: number[] = [];
      for (let i = 0; i < 2000; i++) warm.push(await decide(warmCache));
      const cold: number[] = [];
      for (let i = 0; i < 300; i++) cold.push(await decide(new TlsaCache(resolver)));
      say(`DANE decision, warm cache: p50 ${percentile(warm, 50).toFixed(3)} ms  p99 ${percentile(warm, 99).toFixed(3)} ms`);
      say(`DANE decision, cold cache (query to Unbound, which has it cached): p50 ${percentile(cold, 50).toFixed(3)} ms  p99 ${percentile(cold, 99).toFixed(3)} ms`);
    }

    // 4. Memory per idle authenticated TCP-mode connection (RSS summed over the primary and its workers).
    if (PARTS.has(4)) {
      // The echo upstream in its own process: this one holds the client sockets.
      const echo = daemon(process.execPath, ['-e', `require('net').createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen(${ports.echo}, '127.0.0.1')`]);
      children.push(echo);
      await waitForTcpPort(ports.echo);
      /** Open CONNECTIONS idle mutual-TLS connections to `port` (after 50 to warm up); the server's RSS growth per connection. */
      const bytesPerConnection = async (port: number, pid: number): Promise<{ perConnection: number; before: number; after: number }> => {
        const sockets: tls.TLSSocket[] = [];
        const openOne = (): Promise<void> =>
          new Promise((resolve, reject) => {
            const s = tls.connect({ port, host: '127.0.0.1', servername: 'bench.test', ca: ca.certPem, cert: client.certPem, key: client.keyPem });
            s.once('secureConnect', () => {
              s.write('x');
              s.once('data', () => resolve());
            });
            s.once('error', reject);
            sockets.push(s);
          });
        try {
          for (let i = 0; i < 50; i++) await openOne();
          await new Promise((r) => setTimeout(r, 1000));
          const before = await rssOf(pid);
          for (let done = 0; done < CONNECTIONS; done += 100) await Promise.all(Array.from({ length: Math.min(100, CONNECTIONS - done) }, openOne));
          await new Promise((r) => setTimeout(r, 2000));
          const after = await rssOf(pid);
          return { perConnection: (after - before) / CONNECTIONS, before, after };
        } finally {
          for (const s of sockets) s.destroy();
        }
      };
      // One engine at a time, each proxy stopped before the next starts: the descriptors (two per
      // connection) and the echo upstream's sockets are freed in between.
      for (const [engine, port] of [
        ['native', ports.dgTcpNative],
        ['node', ports.dgTcpNode],
      ] as const) {
        await writeFile(join(dir, `dg-tcp-${engine}.yaml`), dancegateConfig(port, 300, 'tcp', CORES, engine));
        const tcpProxy = daemon(process.execPath, [CLI, 'serve', '-c', join(dir, `dg-tcp-${engine}.yaml`)]);
        await waitForTcpPort(port);
        try {
          const proxied = await bytesPerConnection(port, tcpProxy.pid as number);
          say(
            `idle authenticated TCP-mode connections, tls.engine: ${engine}: ${CONNECTIONS} (each with its upstream connection); dancegate (${CORES} workers) RSS ${(proxied.before / 2 ** 20).toFixed(0)} MB → ${(proxied.after / 2 ** 20).toFixed(0)} MB: ${(proxied.perConnection / 1024).toFixed(1)} KB per connection`,
          );
        } finally {
          await stopProcess(tcpProxy);
          started.delete(tcpProxy);
        }
        // Let the echo upstream see its sockets close before the next count.
        await new Promise((r) => setTimeout(r, 2000));
      }

      // The floor: a bare node:tls echo server (requestCert, no proxying, no upstream), same client, same count.
      const floorPort = await freePort();
      const floorScript = `const tls = require('tls'), fs = require('fs');
      tls.createServer({ cert: fs.readFileSync(${JSON.stringify(join(dir, 'server.pem'))}), key: fs.readFileSync(${JSON.stringify(join(dir, 'server.key'))}), requestCert: true, rejectUnauthorized: false },
        (s) => { s.on('error', () => {}); s.on('data', (d) => s.write(d)); }).listen(${floorPort}, '127.0.0.1');`;
      const floor = daemon(process.execPath, ['-e', floorScript]);
      children.push(floor);
      await waitForTcpPort(floorPort);
      const bare = await bytesPerConnection(floorPort, floor.pid as number);
      say(`the floor, a bare node:tls server holding ${CONNECTIONS} idle mutual-TLS connections (one socket each): ${(bare.perConnection / 1024).toFixed(1)} KB per connection`);
    }
    await lab.stop();
    await writeFile(join(import.meta.dirname, 'last-compare.txt'), `${out.join('\n')}\n`);
  } finally {
    const workers = await nginxWorkersOf(children.filter((c) => c.spawnfile === 'nginx'));
    await Promise.all(children.map(stopProcess));
    await new Promise((r) => setTimeout(r, 500));
    const orphans = await killOrphanedNginxWorkers(workers);
    if (orphans > 0) console.log(`killed ${orphans} nginx workers that outlived their master`);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
