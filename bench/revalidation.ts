/**
 * bench/revalidation (issue 14): what revalidating idle authenticated connections costs dancegate.
 *
 * One dancegate process (`workers: 1`, `node dist/src/cli/main.js serve -c …`, the build `npm run build` made;
 * DANCEGATE_CLI overrides it), a TCP-mode listener on the native TLS engine forwarding to an echo upstream in its
 * own process. This process opens CONNECTIONS mutual-TLS connections to it (node:tls, CONNECTIONS / DEVICES per
 * device name, each device with its own ECDSA P-256 key published as a TLSA 3 1 1 record with a TTL of
 * TLSA_TTL_SECONDS in a zone signed for real, served by NSD behind a validating Unbound from test/lab), checks each
 * forwards a byte, then holds them idle for WINDOW_SECONDS and measures, once per configuration:
 *  - `revalidate: off`;
 *  - `revalidate: { mode: ttl, floorSeconds: 5, ceilingSeconds: 5, jitterSeconds: 5 }`: each connection checked
 *    again every 5–10 s, WINDOW_SECONDS / 7.5 times on average.
 * Reported for each: dancegate's CPU seconds over the window (/proc/<pid>/stat, and by thread), its revalidations
 * by outcome (dancegate_revalidations_total from its /metrics, read only before and after the window: a scrape costs
 * it tens of ms with thousands of sockets open), TLSA lookups past its cache and its cache's hit / miss / coalesced
 * counts, the TLSA queries Unbound received (its query log), Unbound's CPU, every connection still up and still
 * forwarding at the end. Memory: dancegate's RSS with every connection held, and its live JS heap (after a full
 * collection: a heap snapshot taken on SIGUSR2, whose size is then read from /metrics) just before and just after
 * the window. The window's growth over its lookups past the cache is what each lookup leaves behind; the rest of
 * the difference between the two configurations, over CONNECTIONS, is what watching a connection holds.
 *
 * Descriptors: dancegate holds two per connection (client and upstream) and this machine's hard limit is 20,000
 * per process, so one process holds at most 9,9xx connections: CONNECTIONS defaults to 9,900.
 *
 * Before each configuration's run the 1-minute load average must be at most MAX_LOAD (else waiting in 60 s steps,
 * up to 30 minutes); the CPU that processes other than this bench's used during the window is reported.
 *
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/revalidation.js
 *   (CONNECTIONS=9900 DEVICES=1000 WINDOW_SECONDS=60 MODES=off,ttl MAX_LOAD=1 HEAP_SNAPSHOT=1 KEEP_SNAPSHOTS= DANCEGATE_NODE_FLAGS=)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { createCertificate } from '../certs/pki.js';
import { parseCertificateDer } from '../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../src/dane/tlsa.js';
import { freePort, startDnssecLab } from '../test/lab/dnssec-lab.js';
import { stopProcess, waitForTcpPort } from '../test/lab/process.js';

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 9900);
const DEVICES = Number(process.env.DEVICES ?? 1000);
const WINDOW_SECONDS = Number(process.env.WINDOW_SECONDS ?? 60);
const MODES = (process.env.MODES ?? 'off,ttl').split(',') as Array<'off' | 'ttl'>;
const MAX_LOAD = Number(process.env.MAX_LOAD ?? 1.0);
const HEAP_SNAPSHOT = process.env.HEAP_SNAPSHOT !== '0';
/** A directory to keep the heap snapshots in (default: deleted once read). */
const KEEP_SNAPSHOTS = process.env.KEEP_SNAPSHOTS;
const MAX_WAIT_MS = 30 * 60_000;
const LOAD_STEP_MS = 60_000;
const TLSA_TTL_SECONDS = 5;
const REVALIDATE_TTL = { mode: 'ttl', floorSeconds: 5, ceilingSeconds: 5, jitterSeconds: 5 } as const;
/** Connections opened at a time while the held set is built. */
const OPEN_CONCURRENCY = 32;
/** How many times one connection is tried before the run gives up on it. */
const OPEN_ATTEMPTS = 3;
/** How long dancegate may take to stop (SIGTERM) before it is killed. */
const STOP_GRACE_MS = 30_000;
/** After the heap snapshot before the window: the revalidations it delayed catch up before the window starts. */
const SETTLE_AFTER_SNAPSHOT_MS = 5000;
/** More node flags for dancegate, e.g. DANCEGATE_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof" (space-separated). */
const NODE_FLAGS = (process.env.DANCEGATE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const CLI = process.env.DANCEGATE_CLI ?? join(import.meta.dirname, '../../dist/src/cli/main.js');
const ZONE = 'fleet.test';
const SERVER_NAME = 'gate.bench.test';
/** /proc's clock ticks per second (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;
const OUTCOMES = ['kept', 'revoked', 'expired', 'failed', 'unverifiable'] as const;
/** dancegate_dane_lookups_total's outcomes (src/metrics/metrics.ts). */
const LOOKUP_OUTCOMES = ['secure', 'no-tlsa', 'insecure', 'bogus', 'timeout', 'malformed', 'server-error', 'over-capacity'] as const;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

// ---------------------------------------------------------------------------------------------------------------
// Processes and /proc.

/** Every daemon this run started, killed by its id if the run dies before stopping them. */
const started = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of started) child.kill('SIGKILL');
});

function daemon(command: string, args: readonly string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  child.once('exit', (code, signal) => {
    started.delete(child);
    if (code !== 0 && code !== null) process.stderr.write(`${command} exited with code ${code}: ${err}\n`);
    else if (signal !== null && signal !== 'SIGTERM') process.stderr.write(`${command} ended by ${signal}: ${err}\n`);
  });
  started.add(child);
  return child;
}

async function childrenOf(pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  const out: number[] = [];
  for (const task of tasks) {
    const text = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '');
    out.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

async function processTree(pid: number): Promise<number[]> {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...(await childrenOf(all[i] as number)));
  return all;
}

/** CPU seconds (user + system) one process has used so far (0 when it is gone). */
async function cpuOf(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (text === '') return 0;
  // After the command name (which may hold spaces and parentheses): utime and stime are the 12th and 13th fields.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Per thread of `pid`: its name (comm) and user and system CPU seconds so far. */
async function threadsCpu(pid: number): Promise<Map<string, { name: string; user: number; system: number }>> {
  const out = new Map<string, { name: string; user: number; system: number }>();
  for (const task of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const text = await readFile(`/proc/${pid}/task/${task}/stat`, 'utf8').catch(() => '');
    if (text === '') continue;
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    out.set(task, { name: text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')), user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS });
  }
  return out;
}

/**
 * CPU between two threadsCpu readings of process `pid`: its main thread (the event loop: JavaScript, and the GC work
 * done there), then the other threads summed by name (V8's GC helpers, libuv's pool…), largest first.
 */
function threadCpuText(pid: number, before: Awaited<ReturnType<typeof threadsCpu>>, after: Awaited<ReturnType<typeof threadsCpu>>): string {
  const byName = new Map<string, { user: number; system: number }>();
  for (const [tid, a] of after) {
    const b = before.get(tid) ?? { user: 0, system: 0 };
    const name = tid === String(pid) ? 'main thread' : `other threads (${a.name})`;
    const sum = byName.get(name) ?? { user: 0, system: 0 };
    byName.set(name, { user: sum.user + a.user - b.user, system: sum.system + a.system - b.system });
  }
  return [...byName]
    .filter(([, c]) => c.user + c.system > 0)
    .sort((x, y) => y[1].user + y[1].system - (x[1].user + x[1].system))
    .map(([name, c]) => `${name} ${c.user.toFixed(2)} user + ${c.system.toFixed(2)} system`)
    .join(', ');
}

async function treeCpu(pid: number): Promise<number> {
  let total = 0;
  for (const p of await processTree(pid)) total += await cpuOf(p);
  return total;
}

async function machineCpu(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system) / CLOCK_TICKS;
}

async function rssOf(pid: number): Promise<number> {
  return Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
}

async function descriptorsOf(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

async function descriptorLimitOf(pid: number): Promise<number> {
  return Number(/Max open files\s+(\d+)/.exec(await readFile(`/proc/${pid}/limits`, 'utf8'))?.[1]);
}

/** The first process in this bench's tree whose command line starts with `prefix`. */
async function ourProcessNamed(prefix: string): Promise<number | undefined> {
  for (const pid of await processTree(process.pid)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.startsWith(prefix)) return pid;
  }
  return undefined;
}

async function waitForQuiet(what: string, say: (line: string) => void): Promise<number> {
  const since = Date.now();
  for (;;) {
    const load = loadavg()[0] ?? NaN;
    if (load <= MAX_LOAD) return load;
    if (Date.now() - since >= MAX_WAIT_MS) {
      say(`  load average ${load.toFixed(2)} still above ${MAX_LOAD} after ${MAX_WAIT_MS / 60_000} minutes of waiting: measuring ${what} anyway`);
      return load;
    }
    console.log(`  load average ${load.toFixed(2)} > ${MAX_LOAD} before ${what}: waiting ${LOAD_STEP_MS / 1000} s`);
    await sleep(LOAD_STEP_MS);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// dancegate's /metrics.

function metricValue(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

async function metrics(adminPort: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  if (!response.ok) throw new Error(`dancegate /metrics answered ${response.status}`);
  return response.text();
}

interface Counters {
  readonly revalidations: Readonly<Record<(typeof OUTCOMES)[number], number>>;
  readonly lookups: number;
  /** Lookups past the cache by outcome (secure, timeout, over-capacity, …). */
  readonly lookupOutcomes: Readonly<Record<string, number>>;
  readonly hit: number;
  readonly miss: number;
  readonly coalesced: number;
  readonly heapUsed: number;
  /** When it was read (epoch ms). */
  readonly at: number;
}

function countersOf(text: string): Counters {
  const revalidations = Object.fromEntries(OUTCOMES.map((o) => [o, metricValue(text, 'dancegate_revalidations_total', { outcome: o })])) as Counters['revalidations'];
  return {
    revalidations,
    lookups: metricValue(text, 'dancegate_dane_lookups_total'),
    lookupOutcomes: Object.fromEntries(LOOKUP_OUTCOMES.map((o) => [o, metricValue(text, 'dancegate_dane_lookups_total', { outcome: o })])),
    hit: metricValue(text, 'dancegate_tlsa_cache_total', { result: 'hit' }),
    miss: metricValue(text, 'dancegate_tlsa_cache_total', { result: 'miss' }),
    coalesced: metricValue(text, 'dancegate_tlsa_cache_total', { result: 'coalesced' }),
    heapUsed: metricValue(text, 'nodejs_heap_size_used_bytes'),
    at: Date.now(),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The held connections.

interface Device {
  readonly name: string;
  readonly context: tls.SecureContext;
}

interface Held {
  readonly sockets: tls.TLSSocket[];
  /** Sockets that closed after they were up. */
  closed: number;
  readonly failures: string[];
}

/** One mutual-TLS connection as `device`, up once a byte written came back through dancegate and the echo upstream. */
function openOne(port: number, device: Device, held: Held): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: SERVER_NAME, secureContext: device.context });
    let up = false;
    const timer = setTimeout(() => socket.destroy(new Error('not up within 20 s')), 20_000);
    socket.once('secureConnect', () => socket.write('x'));
    socket.once('data', () => {
      up = true;
      clearTimeout(timer);
      held.sockets.push(socket);
      resolve();
    });
    socket.on('error', (err) => {
      if (!up) reject(new Error(`${device.name}: ${err.message}`));
    });
    socket.once('close', () => {
      clearTimeout(timer);
      if (up) held.closed++;
      else reject(new Error(`${device.name}: closed before its byte came back`));
    });
  });
}

async function openAll(port: number, devices: readonly Device[], held: Held): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: OPEN_CONCURRENCY }, async () => {
      while (next < CONNECTIONS) {
        const device = devices[next++ % devices.length] as Device;
        for (let attempt = 1; ; attempt++) {
          try {
            await openOne(port, device, held);
            break;
          } catch (err) {
            held.failures.push(errorText(err));
            if (attempt >= OPEN_ATTEMPTS) throw new Error(`${device.name}: no connection after ${OPEN_ATTEMPTS} attempts: ${errorText(err)}`);
          }
        }
      }
    }),
  );
}

/** Every held socket writes a byte and must get it back: how many did within `timeoutMs`. */
async function stillForwarding(held: Held, timeoutMs = 60_000): Promise<number> {
  let ok = 0;
  const one = (socket: tls.TLSSocket): Promise<void> =>
    new Promise((resolve) => {
      if (socket.destroyed) return resolve();
      const timer = setTimeout(resolve, timeoutMs);
      socket.once('data', () => {
        ok++;
        clearTimeout(timer);
        resolve();
      });
      socket.write('y');
    });
  for (let i = 0; i < held.sockets.length; i += 500) await Promise.all(held.sockets.slice(i, i + 500).map(one));
  return ok;
}

/**
 * The live JS heap a V8 heap snapshot file records: the sum of its nodes' self sizes, read as a stream (the file is
 * hundreds of MB with thousands of connections held). The header names the node fields; the "nodes" array follows.
 */
async function liveBytesOfSnapshot(file: string): Promise<number> {
  const stream = createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 });
  let header = '';
  let fields = 0;
  let sizeField = -1;
  let inNodes = false;
  let index = 0;
  let digits = '';
  let total = 0;
  const take = (): void => {
    if (digits === '') return;
    if (index % fields === sizeField) total += Number(digits);
    index++;
    digits = '';
  };
  for await (const chunk of stream as AsyncIterable<string>) {
    let text = chunk;
    if (!inNodes) {
      header += text;
      const at = header.indexOf('"nodes":[');
      if (at === -1) {
        if (header.length > 1 << 20) throw new Error(`${file}: no "nodes" array in the first MB`);
        continue;
      }
      // {"snapshot":{"meta":{"node_fields":[...],...},...},\n"nodes":[ ...
      const meta = JSON.parse(`${header.slice(0, header.lastIndexOf(',', at))}}`) as { snapshot: { meta: { node_fields: string[] } } };
      fields = meta.snapshot.meta.node_fields.length;
      sizeField = meta.snapshot.meta.node_fields.indexOf('self_size');
      if (fields === 0 || sizeField === -1) throw new Error(`${file}: no self_size among the node fields`);
      inNodes = true;
      text = header.slice(at + '"nodes":['.length);
      header = '';
    }
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 48 && c <= 57) digits += text[i];
      else if (c === 93 /* ] */) {
        take();
        stream.destroy();
        return total;
      } else take();
    }
  }
  throw new Error(`${file}: the "nodes" array does not end`);
}

/** What afterFullGc read: the live JS heap (from the snapshot) and dancegate's counters just before it. */
interface GcReading {
  readonly liveBytes: number;
  readonly counters: Counters;
}

/**
 * Make dancegate write a heap snapshot (a full garbage collection first) and sum the live heap it records; its
 * counters are read just before the signal, so the TLSA lookups made so far go with that heap. (Its
 * nodejs_heap_size_used_bytes afterwards would not do: the revalidations the snapshot delayed run first and leave
 * garbage behind.)
 */
async function afterFullGc(child: ChildProcess, dir: string, adminPort: number, keepAs: string): Promise<GcReading> {
  const before = new Set(await readdir(dir));
  const counters = countersOf(await metrics(adminPort));
  child.kill('SIGUSR2');
  const deadline = Date.now() + 180_000;
  let file: string | undefined;
  for (;;) {
    if (Date.now() > deadline) throw new Error('dancegate wrote no complete heap snapshot within 180 s');
    await sleep(1000);
    file ??= (await readdir(dir)).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    // dancegate writes the snapshot on its main thread: once it answers /metrics again, the file is complete.
    if (
      file !== undefined &&
      (await metrics(adminPort).then(
        () => true,
        () => false,
      ))
    )
      break;
  }
  const path = join(dir, file);
  const liveBytes = await liveBytesOfSnapshot(path);
  if (KEEP_SNAPSHOTS !== undefined) await rename(path, join(KEEP_SNAPSHOTS, `${keepAs}.heapsnapshot`));
  else await rm(path, { force: true });
  return { liveBytes, counters };
}

// ---------------------------------------------------------------------------------------------------------------

interface ModeResult {
  readonly mode: 'off' | 'ttl';
  readonly load: number;
  readonly openSeconds: number;
  readonly openFailures: number;
  readonly descriptors: number;
  readonly rssEmpty: number;
  readonly rssHeld: number;
  /** JS heap used at the window's end (no collection forced). */
  readonly heapAtEnd: number;
  /** dancegate's counters (live heap, TLSA lookups so far) after a full GC before and after the window; undefined with HEAP_SNAPSHOT=0. */
  readonly gcStart: GcReading | undefined;
  readonly gcEnd: GcReading | undefined;
  /** dancegate's CPU over the window by thread. */
  readonly threads: string;
  readonly cpu: number;
  readonly unboundCpu: number;
  readonly othersCores: number;
  readonly seconds: number;
  readonly delta: Counters;
  readonly queries: number;
  readonly queriedNames: number;
  /** Held connections that closed during the window, and since they were opened. */
  readonly closed: number;
  readonly closedSinceOpened: number;
  readonly forwarding: number;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-revalidation-run-'));
  const out: string[] = [];
  const say = (line: string): void => {
    out.push(line);
    console.log(line);
  };
  let lab: Awaited<ReturnType<typeof startDnssecLab>> | undefined;
  const children: ChildProcess[] = [];
  try {
    say(`bench/revalidation on ${cpus().length}x ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; ${new Date().toISOString()}`);
    say(`CONNECTIONS=${CONNECTIONS} DEVICES=${DEVICES} WINDOW_SECONDS=${WINDOW_SECONDS} TLSA TTL ${TLSA_TTL_SECONDS} s; CLI ${CLI}`);
    const ca = await createCertificate({ commonName: 'bench CA', isCA: true });
    const server = await createCertificate({ commonName: SERVER_NAME, dnsNames: [SERVER_NAME], issuer: ca, extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    const devices: Device[] = [];
    const records: string[] = [];
    for (let i = 0; i < DEVICES; i++) {
      const name = `dev-${String(i).padStart(4, '0')}._device.${ZONE}`;
      const cert = await createCertificate({ commonName: name, dnsNames: [name], issuer: ca });
      devices.push({ name, context: tls.createSecureContext({ cert: cert.certPem, key: cert.keyPem, ca: ca.certPem }) });
      records.push(`${name}. ${TLSA_TTL_SECONDS} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(cert.der), 3, 1, 1))}`);
    }
    lab = await startDnssecLab([{ origin: ZONE, signing: { algorithm: 13 }, records }]);
    const unbound = await ourProcessNamed('unbound');
    if (unbound === undefined) throw new Error("cannot find the lab's Unbound among this bench's processes");

    const echoPort = await freePort();
    const echo = daemon(process.execPath, ['-e', `require('net').createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen(${echoPort}, '127.0.0.1')`]);
    children.push(echo);
    await waitForTcpPort(echoPort, 'echo upstream');

    const results: ModeResult[] = [];
    for (const mode of MODES) {
      const load = await waitForQuiet(`revalidate ${mode}`, say);
      const port = await freePort();
      const adminPort = await freePort();
      const revalidate =
        mode === 'off' ? 'off' : `{ mode: ttl, floorSeconds: ${REVALIDATE_TTL.floorSeconds}, ceilingSeconds: ${REVALIDATE_TTL.ceilingSeconds}, jitterSeconds: ${REVALIDATE_TTL.jitterSeconds} }`;
      await writeFile(
        join(dir, `dancegate-${mode}.yaml`),
        `workers: 1
admin: { listen: "127.0.0.1:${adminPort}" }
log: { level: warn }
resolver:
  servers: [{ address: "127.0.0.1:${lab.resolver.port}" }]
limits:
  newConnectionsPerIp: false
  penaltyBox: false
  handshakes: { maxConcurrent: 100000, maxConcurrentPerIp: 100000, maxTlsHandshakesPerIp: 100000 }
listeners:
  - name: idle
    listen: 127.0.0.1:${port}
    mode: tcp
    revalidate: ${revalidate}
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }], engine: native }
    routes:
      - upstream: tcp://127.0.0.1:${echoPort}
        allow: ['*._device.${ZONE}']
`,
      );
      const snapshots = join(dir, `snapshots-${mode}`);
      await mkdir(snapshots, { recursive: true });
      const nodeFlags = [...(HEAP_SNAPSHOT ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapshots}`] : []), ...NODE_FLAGS];
      const dancegate = daemon(process.execPath, [...nodeFlags, CLI, 'serve', '-c', join(dir, `dancegate-${mode}.yaml`)]);
      const pid = dancegate.pid as number;
      const held: Held = { sockets: [], closed: 0, failures: [] };
      try {
        await waitForTcpPort(port, `dancegate (revalidate ${mode})`, 30_000);
        await sleep(1000);
        const limit = await descriptorLimitOf(pid);
        const baseDescriptors = await descriptorsOf(pid);
        if (baseDescriptors + 2 * CONNECTIONS > limit) {
          throw new Error(`dancegate holds ${baseDescriptors} descriptors and may hold ${limit}: ${CONNECTIONS} connections need ${2 * CONNECTIONS} more (lower CONNECTIONS)`);
        }
        const rssEmpty = await rssOf(pid);
        const t0 = performance.now();
        await openAll(port, devices, held);
        const openSeconds = (performance.now() - t0) / 1000;
        const descriptors = await descriptorsOf(pid);
        await sleep(3000);
        const rssHeld = await rssOf(pid);
        // The live heap with every connection held, before the window (the snapshot blocks dancegate a few seconds:
        // the revalidations due meanwhile run late, before the window starts).
        const gcStart = HEAP_SNAPSHOT ? await afterFullGc(dancegate, snapshots, adminPort, `revalidate-${mode}-start`) : undefined;
        if (HEAP_SNAPSHOT) await sleep(SETTLE_AFTER_SNAPSHOT_MS);

        // The window: nothing but the held connections (and, with ttl, their revalidation).
        await lab.resetQueryLog();
        const loadAtWindow = loadavg()[0] ?? NaN;
        const m0 = countersOf(await metrics(adminPort));
        const closedBefore = held.closed;
        const [cpu0, unbound0, machine0, ours0] = [await cpuOf(pid), await cpuOf(unbound), await machineCpu(), await treeCpu(process.pid)];
        const w0 = performance.now();
        const threads0 = await threadsCpu(pid);
        // Nothing but /proc during the window: a /metrics scrape costs dancegate tens of ms with thousands of sockets open.
        await sleep(WINDOW_SECONDS * 1000);
        const [cpu1, unbound1, machine1, ours1] = [await cpuOf(pid), await cpuOf(unbound), await machineCpu(), await treeCpu(process.pid)];
        const threads = threadCpuText(pid, threads0, await threadsCpu(pid));
        const seconds = (performance.now() - w0) / 1000;
        const m1 = countersOf(await metrics(adminPort));
        const queries = (await lab.clientQueries()).filter((q) => q.type === 'TLSA');
        const closed = held.closed - closedBefore;

        const forwarding = await stillForwarding(held);
        const gcEnd = HEAP_SNAPSHOT ? await afterFullGc(dancegate, snapshots, adminPort, `revalidate-${mode}-end`) : undefined;
        const delta: Counters = {
          revalidations: Object.fromEntries(OUTCOMES.map((o) => [o, m1.revalidations[o] - m0.revalidations[o]])) as Counters['revalidations'],
          lookups: m1.lookups - m0.lookups,
          lookupOutcomes: Object.fromEntries(LOOKUP_OUTCOMES.map((o) => [o, (m1.lookupOutcomes[o] ?? 0) - (m0.lookupOutcomes[o] ?? 0)])),
          hit: m1.hit - m0.hit,
          miss: m1.miss - m0.miss,
          coalesced: m1.coalesced - m0.coalesced,
          heapUsed: NaN,
          at: m1.at,
        };
        const result: ModeResult = {
          mode,
          load: Math.max(load, loadAtWindow),
          openSeconds,
          openFailures: held.failures.length,
          descriptors,
          rssEmpty,
          rssHeld,
          heapAtEnd: m1.heapUsed,
          threads,
          gcStart,
          gcEnd,
          cpu: cpu1 - cpu0,
          unboundCpu: unbound1 - unbound0,
          othersCores: Math.max(0, machine1 - machine0 - (ours1 - ours0)) / seconds,
          seconds,
          delta,
          queries: queries.length,
          queriedNames: new Set(queries.map((q) => q.name)).size,
          closed,
          closedSinceOpened: held.closed,
          forwarding,
        };
        results.push(result);
        const r = delta.revalidations;
        say(
          `\nrevalidate ${mode}: ${held.sockets.length} connections held (${DEVICES} names, ${(held.sockets.length / DEVICES).toFixed(1)} each), opened in ${openSeconds.toFixed(1)} s` +
            ` (${held.failures.length} failed attempts${held.failures.length > 0 ? `, first: ${held.failures[0]}` : ''}); dancegate descriptors ${descriptors} of ${limit}`,
        );
        say(`  load average ${load.toFixed(2)} before the run, ${loadAtWindow.toFixed(2)} at the window; other processes used ${result.othersCores.toFixed(2)} cores during it`);
        say(
          `  RSS ${mb(rssEmpty)} MB empty → ${mb(rssHeld)} MB held (${((rssHeld - rssEmpty) / held.sockets.length / 1024).toFixed(1)} KB per connection); ` +
            `JS heap used at the window's end ${mb(result.heapAtEnd)} MB`,
        );
        if (gcStart !== undefined && gcEnd !== undefined) {
          const grown = gcEnd.liveBytes - gcStart.liveBytes;
          const lookups = gcEnd.counters.lookups - gcStart.counters.lookups;
          say(
            `  live JS heap (heap snapshot, after a full GC): ${mb(gcStart.liveBytes)} MB before the window (${gcStart.counters.lookups} TLSA lookups past the cache since start), ${mb(gcEnd.liveBytes)} MB after it (${gcEnd.counters.lookups}): ` +
              `${grown >= 0 ? '+' : ''}${mb(grown)} MB${lookups > 0 ? `, ${(grown / lookups).toFixed(0)} bytes per lookup past the cache` : ''}`,
          );
        }
        say(
          `  over ${seconds.toFixed(1)} s: dancegate CPU ${result.cpu.toFixed(2)} s; revalidations kept ${r.kept}, revoked ${r.revoked}, expired ${r.expired}, failed ${r.failed}, unverifiable ${r.unverifiable}` +
            ` (${(r.kept / held.sockets.length).toFixed(2)} per connection, ${(r.kept / seconds).toFixed(0)}/s)`,
        );
        say(`  dancegate's CPU by thread: ${threads}`);
        say(
          `  TLSA lookups past dancegate's cache ${delta.lookups} (${Object.entries(delta.lookupOutcomes)
            .filter(([, n]) => n > 0)
            .map(([o, n]) => `${o} ${n}`)
            .join(
              ', ',
            )}); cache hit ${delta.hit}, miss ${delta.miss}, coalesced ${delta.coalesced}; Unbound received ${result.queries} TLSA queries for ${result.queriedNames} names, used ${result.unboundCpu.toFixed(2)} s CPU`,
        );
        say(`  connections closed during the window ${closed} (since opened: ${held.closed}); still forwarding a byte at the end: ${forwarding} of ${held.sockets.length}`);
      } finally {
        for (const socket of held.sockets) socket.destroy();
        // Draining 9,900 connections on SIGTERM takes dancegate longer than stopProcess's default 3 s.
        await stopProcess(dancegate, STOP_GRACE_MS);
        started.delete(dancegate);
        // Let the echo upstream see its sockets close before the next configuration.
        await sleep(3000);
      }
    }

    const off = results.find((r) => r.mode === 'off');
    const ttl = results.find((r) => r.mode === 'ttl');
    if (off !== undefined && ttl !== undefined) {
      const done = ttl.delta.revalidations.kept + ttl.delta.revalidations.failed + ttl.delta.revalidations.revoked + ttl.delta.revalidations.expired + ttl.delta.revalidations.unverifiable;
      const n = CONNECTIONS;
      say(
        `\nsummary: ${done} revalidations in ${ttl.seconds.toFixed(0)} s (${(done / n).toFixed(2)} per connection; ${ttl.delta.revalidations.kept} kept); ` +
          `dancegate CPU ${ttl.cpu.toFixed(2)} s against ${off.cpu.toFixed(2)} s with revalidate off: ${((1000 * ttl.cpu) / done).toFixed(3)} s per 1,000 revalidations, ${((1000 * (ttl.cpu - off.cpu)) / done).toFixed(3)} s net of the idle run`,
      );
      say(
        `  DNS: ${ttl.queries} TLSA queries to Unbound for ${ttl.queriedNames} names (${(ttl.queries / done).toFixed(3)} per revalidation, ${(ttl.queries / (DEVICES * (ttl.seconds / TLSA_TTL_SECONDS))).toFixed(2)} per name per TTL); with revalidate off: ${off.queries}`,
      );
      say(
        `  RSS with every connection held, before any heap snapshot: ${mb(ttl.rssHeld)} MB against ${mb(off.rssHeld)} MB (${((ttl.rssHeld - off.rssHeld) / n / 1024).toFixed(2)} KB per connection; ` +
          `after a snapshot RSS is not comparable: writing one leaves hundreds of MB mapped)`,
      );
      if (ttl.gcStart !== undefined && ttl.gcEnd !== undefined && off.gcStart !== undefined) {
        // The live heap grows with the lookups past the cache (the window's growth over its lookups), the rest is per connection.
        const perLookup = (ttl.gcEnd.liveBytes - ttl.gcStart.liveBytes) / (ttl.gcEnd.counters.lookups - ttl.gcStart.counters.lookups);
        const extraLookups = ttl.gcStart.counters.lookups - off.gcStart.counters.lookups;
        const perConnection = (ttl.gcStart.liveBytes - off.gcStart.liveBytes - perLookup * extraLookups) / n;
        const perHour = ((ttl.gcEnd.liveBytes - ttl.gcStart.liveBytes) / (ttl.gcEnd.counters.at - ttl.gcStart.counters.at)) * 3600_000;
        say(
          `  live JS heap before the window: ${mb(ttl.gcStart.liveBytes)} MB against ${mb(off.gcStart.liveBytes)} MB with revalidate off (${extraLookups} more lookups past the cache by then); ` +
            `it grows ${perLookup.toFixed(0)} bytes per lookup past the cache (${mb(perHour)} MB per hour at this rate), so ${perConnection.toFixed(0)} bytes per connection are the watch itself`,
        );
      }
    }
    await writeFile(join(import.meta.dirname, 'last-revalidation.txt'), `${out.join('\n')}\n`);
  } finally {
    await Promise.all(
      children.map(async (c) => {
        await stopProcess(c);
        started.delete(c);
      }),
    );
    await lab?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
