/**
 * bench/mqtt (issue 14): MQTT through dancegate against straight to the broker, on this machine, loopback only.
 *
 * The broker is Debian's Mosquitto (`/usr/sbin/mosquitto`), one process with two listeners:
 *  - a plain listener on 127.0.0.1, which dancegate forwards to;
 *  - a TLS listener with `cafile`, `certfile`, `keyfile` and `require_certificate true`: the devices straight to
 *    the broker, authenticated by their certificate against the bench CA.
 * dancegate runs as its own process (`node dist/src/cli/main.js serve -c …`, the build `npm run build` made;
 * DANCEGATE_CLI overrides it), `mode: mqtt` (the CONNECT checked: client id = the verified name, username set to
 * it), the native TLS engine, one worker (WORKERS), and admission limits lifted (every device here is 127.0.0.1).
 * DEVICES devices, each with its own ECDSA P-256 key and certificate from the bench CA, published as a TLSA
 * 3 1 1 record (TTL 3600) in a zone signed for real, served by NSD behind a validating Unbound (test/lab):
 * dancegate looks each device up at its first connection and answers later ones from its cache (the warm-up pass
 * connects every device once before anything is timed).
 *
 * The driver is this process: node:tls clients speaking MQTT 3.1.1 with mqtt-packet's generate and parser, each
 * device with its own client certificate. What is measured, every system once per round, round robin, ROUNDS
 * rounds after one warm-up run each, medians reported:
 *  1. connects/s: CONCURRENCY loops, each a new connection (TLS handshake with a client certificate, no session
 *     resumption) + CONNECT + CONNACK, then DISCONNECT and close, devices in turn, for SECONDS;
 *  2. QoS 0 publishes/s: PUBLISHERS kept connections each publishing PAYLOAD_BYTES-byte messages on its own topic
 *     as fast as the socket's backpressure allows (BATCH messages per write), counted by a subscriber on the plain
 *     listener, in its own process (only delivered messages count);
 *  3. QoS 1 publishes/s: the same connections, each with QOS1_WINDOW messages awaiting PUBACK.
 * After each publish run the bench waits for every message written to arrive, and reports any that never did and
 * the broker's own drop count ($SYS/broker/publish/messages/dropped).
 * CPU per connect and per message for dancegate and Mosquitto from /proc/<pid>/stat, and the driver's and the
 * subscriber's own. Before each timed run the 1-minute load average must be at most MAX_LOAD (else waiting in
 * 60 s steps, up to 30 minutes); the CPU that processes other than this bench's used during each run is reported.
 *
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/mqtt.js
 *   (ROUNDS=3 SECONDS=10 DEVICES=200 CONCURRENCY=32 PUBLISHERS=32 BATCH=16 WORKERS=1 MAX_LOAD=1 PARTS=connect,qos0,qos1
 *    SYSTEMS=dancegate,straight)
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { cpus, loadavg, tmpdir, totalmem, userInfo } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { generate, parser, type IPublishPacket, type Packet, type Parser } from 'mqtt-packet';
import { createCertificate, type IssuedCertificate } from '../certs/pki.js';
import { parseCertificateDer } from '../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../src/dane/tlsa.js';
import { freePort, startDnssecLab } from '../test/lab/dnssec-lab.js';
import { stopProcess, waitForTcpPort } from '../test/lab/process.js';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 10);
const DEVICES = Number(process.env.DEVICES ?? 200);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 32);
const PUBLISHERS = Number(process.env.PUBLISHERS ?? 32);
/** QoS 0 messages per socket write (one TLS record of about BATCH x 106 bytes). */
const BATCH = Number(process.env.BATCH ?? 16);
const PAYLOAD_BYTES = 64;
/** QoS 0: socket writes one connection makes in a row while none is held back, before it lets the others run. */
const WRITES_BEFORE_YIELD = 8;
/** QoS 1 messages each publisher keeps awaiting PUBACK. */
const QOS1_WINDOW = 16;
/** Publishing before the counted window starts (connections, TCP windows and the broker's queues settle). */
const PUBLISH_WARM_MS = 1000;
/** Mosquitto's `sys_interval`: how often it publishes its $SYS counters. */
const SYS_INTERVAL_MS = 1000;
const WORKERS = Number(process.env.WORKERS ?? 1);
const MAX_LOAD = Number(process.env.MAX_LOAD ?? 1.0);
const MAX_WAIT_MS = 30 * 60_000;
const LOAD_STEP_MS = 60_000;
const PARTS = new Set((process.env.PARTS ?? 'connect,qos0,qos1').split(','));
/** Which systems: dancegate, straight (default both). */
const SYSTEMS = new Set((process.env.SYSTEMS ?? 'dancegate,straight').split(','));
const CLI = process.env.DANCEGATE_CLI ?? join(import.meta.dirname, '../../dist/src/cli/main.js');
const MOSQUITTO = '/usr/sbin/mosquitto';
const ZONE = 'fleet.test';
const SERVER_NAME = 'mqtt.bench.test';
const TLSA_TTL_SECONDS = 3600;
/** /proc's clock ticks per second (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;
/** How long one connect, or the wait for a close, may take before the run counts it failed. */
const STEP_TIMEOUT_MS = 10_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** The median; the mean of the middle two for an even count. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const half = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[half] ?? NaN) : ((sorted[half - 1] ?? NaN) + (sorted[half] ?? NaN)) / 2;
}
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

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

async function stop(child: ChildProcess): Promise<void> {
  await stopProcess(child);
  started.delete(child);
}

/** The children of `pid`, from every one of its threads. */
async function childrenOf(pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  const out: number[] = [];
  for (const task of tasks) {
    const text = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '');
    out.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

/** A process and all its descendants. */
async function processTree(pid: number): Promise<number[]> {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...(await childrenOf(all[i] as number)));
  return all;
}

/** CPU seconds (user + system) one process has used so far (0 when it is gone). */
async function cpuOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (stat === '') return 0;
  // After the command name (which may hold spaces and parentheses): utime and stime are the 12th and 13th fields.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** RSS of a process and its descendants, bytes. */
async function treeRss(pid: number): Promise<number> {
  let total = 0;
  for (const p of await processTree(pid)) total += Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${p}/status`, 'utf8').catch(() => ''))?.[1] ?? 0) * 1024;
  return total;
}

async function treeCpu(pid: number): Promise<number> {
  let total = 0;
  for (const p of await processTree(pid)) total += await cpuOf(p);
  return total;
}

/** CPU seconds the whole machine has spent in user and system mode so far (/proc/stat, all cores). */
async function machineCpu(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system) / CLOCK_TICKS;
}

/**
 * The load check before a timed run: the 1-minute load average at most MAX_LOAD, else wait in LOAD_STEP_MS
 * steps, up to MAX_WAIT_MS (then measure anyway and say so). Returns the load average the run started at.
 */
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
// The counting subscriber (this file run as `mqtt.js subscriber <port>`, in its own process).

/**
 * The broker's own counters it publishes under $SYS every `sys_interval` (1 s here), newest value and when it came.
 * Only the drop count is used: the broker's received and sent counts lagged the messages by up to seconds here.
 */
const SYS_TOPICS = { dropped: '$SYS/broker/publish/messages/dropped' } as const;
type SysCounter = keyof typeof SYS_TOPICS;
interface SysSample {
  readonly value: number;
  /** Date.now() when it arrived. */
  readonly at: number;
}
interface SubscriberPoll {
  /** PUBLISH packets on telemetry/# received so far. */
  readonly count: number;
  readonly sys: Partial<Record<SysCounter, SysSample>>;
}

/**
 * One plain MQTT session in the subscriber process: CONNECT as `clientId`, SUBSCRIBE to `topic` at QoS 0, every
 * PUBLISH to `onPublish`; `ready` once subscribed. Failures go to the parent as { error }.
 */
function plainSubscription(port: number, clientId: string, topic: string, onPublish: (packet: IPublishPacket) => void, ready: () => void): { end(): void; stopping: boolean } {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  const packets: Parser = parser({ protocolVersion: 4 });
  const state = { stopping: false, end: () => socket.end(generate({ cmd: 'disconnect' })) };
  const fail = (why: string): void => void process.send?.({ error: `subscriber ${clientId}: ${why}` });
  packets.on('packet', (packet: Packet) => {
    if (packet.cmd === 'publish') onPublish(packet);
    else if (packet.cmd === 'connack') {
      if (packet.returnCode !== 0) return fail(`CONNACK return code ${packet.returnCode}`);
      socket.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] }));
    } else if (packet.cmd === 'suback') ready();
  });
  packets.on('error', (err: unknown) => fail(`unreadable MQTT from the broker: ${errorText(err)}`));
  socket.on('data', (chunk: Buffer) => packets.parse(chunk));
  socket.on('error', (err) => fail(err.message));
  socket.on('close', () => {
    if (!state.stopping) fail('the broker closed the connection');
    process.exit(state.stopping ? 0 : 1);
  });
  socket.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 60 }));
  // Within the keepalive: the bench runs for many minutes.
  setInterval(() => socket.write(generate({ cmd: 'pingreq' })), 20_000);
  return state;
}

/**
 * The subscriber process: count PUBLISH packets on telemetry/# (one connection), and keep the broker's $SYS publish
 * counters (a second connection, so that they do not queue behind the telemetry); the parent polls over IPC.
 */
function runSubscriber(port: number): void {
  let count = 0;
  const sys: Partial<Record<SysCounter, SysSample>> = {};
  const sysByTopic = new Map<string, SysCounter>(Object.entries(SYS_TOPICS).map(([k, topic]) => [topic, k as SysCounter]));
  let subscribed = 0;
  const ready = (): void => {
    if (++subscribed === 2) process.send?.({ ready: true });
  };
  const sessions = [
    plainSubscription(port, 'bench-counter', 'telemetry/#', () => count++, ready),
    plainSubscription(
      port,
      'bench-sys',
      SYS_TOPICS.dropped,
      (packet) => {
        const counter = sysByTopic.get(packet.topic);
        if (counter !== undefined) sys[counter] = { value: Number(packet.payload.toString()), at: Date.now() };
      },
      ready,
    ),
  ];
  process.on('message', (message: unknown) => {
    if (message === 'poll') process.send?.({ poll: { count, sys } satisfies SubscriberPoll });
    else if (message === 'stop') {
      for (const session of sessions) {
        session.stopping = true;
        session.end();
      }
    }
  });
  process.on('disconnect', () => process.exit(0));
}

interface Subscriber {
  readonly child: ChildProcess;
  poll(): Promise<SubscriberPoll>;
  count(): Promise<number>;
  stop(): Promise<void>;
}

async function startSubscriber(port: number): Promise<Subscriber> {
  // This same file, by the path it was started with.
  const child = fork(process.argv[1] ?? join(import.meta.dirname, 'mqtt.js'), ['subscriber', String(port)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  started.add(child);
  let failure: string | undefined;
  const waiting: Array<(poll: SubscriberPoll) => void> = [];
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (message: { ready?: boolean; poll?: SubscriberPoll; error?: string }) => {
      if (message.error !== undefined) {
        failure = message.error;
        reject(new Error(message.error));
      } else if (message.ready === true) resolve();
      else if (message.poll !== undefined) waiting.shift()?.(message.poll);
    });
    child.once('exit', (code) => reject(new Error(`the counting subscriber exited (code ${code}) before it had subscribed`)));
  });
  await Promise.race([ready, sleep(10_000).then(() => Promise.reject(new Error('the counting subscriber did not subscribe within 10 s')))]);
  const poll = (): Promise<SubscriberPoll> => {
    if (failure !== undefined) return Promise.reject(new Error(failure));
    return new Promise<SubscriberPoll>((resolve) => {
      waiting.push(resolve);
      child.send('poll');
    });
  };
  return {
    child,
    poll,
    count: async () => (await poll()).count,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.send('stop');
      await Promise.race([once(child, 'exit'), sleep(3000)]);
      await stop(child);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Devices speaking MQTT over node:tls.

interface Device {
  readonly name: string;
  readonly cert: IssuedCertificate;
  /** The device's certificate and key, and the bench CA to verify servers: built once, so a connection costs only its handshake. */
  readonly context: tls.SecureContext;
  readonly topic: string;
}

/** A connected device: CONNACK 0 received. `onPacket` takes every later packet; `afterData` runs after each chunk. */
interface Session {
  readonly device: Device;
  readonly socket: tls.TLSSocket;
  onPacket: (packet: Packet) => void;
  afterData: () => void;
  /** Set once the socket has closed (or failed). */
  closed: boolean;
}

/** Connect `device` to 127.0.0.1:`port` over TLS with its certificate, send CONNECT (MQTT 3.1.1, client id = its name), resolve at CONNACK 0. */
function connectDevice(port: number, device: Device): Promise<Session> {
  return new Promise<Session>((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: SERVER_NAME, secureContext: device.context, ALPNProtocols: ['mqtt'] });
    const packets: Parser = parser({ protocolVersion: 4 });
    let settled = false;
    const session: Session = { device, socket, onPacket: () => undefined, afterData: () => undefined, closed: false };
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(`${device.name} on port ${port}: ${why}`));
    };
    const timer = setTimeout(() => fail(`no CONNACK within ${STEP_TIMEOUT_MS} ms`), STEP_TIMEOUT_MS);
    packets.on('packet', (packet: Packet) => {
      if (settled) return session.onPacket(packet);
      if (packet.cmd !== 'connack') return fail(`expected CONNACK first, got ${packet.cmd}`);
      if (packet.returnCode !== 0) return fail(`CONNACK return code ${packet.returnCode}`);
      settled = true;
      clearTimeout(timer);
      resolve(session);
    });
    packets.on('error', (err: unknown) => {
      fail(`unreadable MQTT: ${errorText(err)}`);
      socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => {
      packets.parse(chunk);
      if (settled) session.afterData();
    });
    socket.on('error', (err) => fail(err.message));
    socket.on('close', () => {
      session.closed = true;
      fail('closed before CONNACK');
    });
    socket.once('secureConnect', () => {
      socket.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: device.name, clean: true, keepalive: 60 }));
    });
  });
}

/** DISCONNECT and close; resolves when the socket has closed (destroyed after STEP_TIMEOUT_MS). */
async function disconnect(session: Session): Promise<void> {
  if (session.closed) return;
  const closed = once(session.socket, 'close');
  session.socket.end(generate({ cmd: 'disconnect' }));
  const timer = setTimeout(() => session.socket.destroy(), STEP_TIMEOUT_MS);
  await closed;
  clearTimeout(timer);
}

/** Resolves at 'drain' or when the socket closes. */
function drained(socket: tls.TLSSocket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Runs.

/** The processes whose CPU a run reports: dancegate (its tree; absent for the straight system), Mosquitto, the subscriber. */
interface Watched {
  readonly dancegate: number | undefined;
  readonly mosquitto: number;
  readonly subscriber: number;
}

interface CpuSnapshot {
  readonly dancegate: number;
  readonly mosquitto: number;
  readonly subscriber: number;
  readonly driver: number;
  readonly ours: number;
  readonly machine: number;
  readonly at: number;
}

async function snapshotCpu(watched: Watched): Promise<CpuSnapshot> {
  const usage = process.cpuUsage();
  return {
    dancegate: watched.dancegate === undefined ? 0 : await treeCpu(watched.dancegate),
    mosquitto: await cpuOf(watched.mosquitto),
    subscriber: await cpuOf(watched.subscriber),
    driver: (usage.user + usage.system) / 1e6,
    ours: await treeCpu(process.pid),
    machine: await machineCpu(),
    at: performance.now(),
  };
}

/** CPU seconds each used between two snapshots; `others`: everything on the machine outside this bench's process tree, per second of the run (cores busy). */
function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): { dancegate: number; mosquitto: number; subscriber: number; driver: number; othersCores: number } {
  const seconds = (b.at - a.at) / 1000;
  return {
    dancegate: b.dancegate - a.dancegate,
    mosquitto: b.mosquitto - a.mosquitto,
    subscriber: b.subscriber - a.subscriber,
    driver: b.driver - a.driver,
    othersCores: Math.max(0, b.machine - a.machine - (b.ours - a.ours)) / seconds,
  };
}

interface RunResult {
  /** Connects or delivered messages per second. */
  readonly rate: number;
  /** QoS 1: PUBACKs per second; connects: the same as rate. */
  readonly acked: number;
  /** Publish runs: messages the broker dropped over the whole run (its $SYS counter); NaN for connects. */
  readonly dropped: number;
  /** Publish runs: dancegate's RSS at the window's end (NaN for the straight system). */
  readonly dancegateRss: number;
  readonly count: number;
  /** Per connect or per delivered message, microseconds. */
  readonly dancegateUs: number;
  readonly mosquittoUs: number;
  readonly driverUs: number;
  readonly subscriberUs: number;
  /** Connect latency ms (TLS + CONNECT + CONNACK); NaN for publish runs. */
  readonly p50: number;
  readonly p99: number;
  readonly load: number;
  readonly othersCores: number;
  /** Failures (connects) or messages written but never delivered (publishes). */
  readonly lost: number;
  readonly note: string;
}

async function connectRun(port: number, devices: readonly Device[], seconds: number, watched: Watched, load: number): Promise<RunResult> {
  let next = 0;
  let connects = 0;
  let failures = 0;
  let lastFailure = '';
  const latencies: number[] = [];
  const before = await snapshotCpu(watched);
  const deadline = performance.now() + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const device = devices[next++ % devices.length] as Device;
      const t0 = performance.now();
      let session: Session;
      try {
        session = await connectDevice(port, device);
      } catch (err) {
        failures++;
        lastFailure = errorText(err);
        continue;
      }
      latencies.push(performance.now() - t0);
      connects++;
      await disconnect(session);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  const after = await snapshotCpu(watched);
  const cpu = cpuBetween(before, after);
  const elapsed = (after.at - before.at) / 1000;
  const us = (s: number): number => (1e6 * s) / connects;
  return {
    rate: connects / elapsed,
    acked: connects / elapsed,
    dropped: NaN,
    dancegateRss: NaN,
    count: connects,
    dancegateUs: us(cpu.dancegate),
    mosquittoUs: us(cpu.mosquitto),
    driverUs: us(cpu.driver),
    subscriberUs: us(cpu.subscriber),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    load,
    othersCores: cpu.othersCores,
    lost: failures,
    note: failures > 0 ? `${failures} failed (last: ${lastFailure})` : '',
  };
}

/** How much one of the broker's $SYS counters grew between two polls (NaN when the broker has not published it). */
function sysDelta(a: SubscriberPoll, b: SubscriberPoll, counter: SysCounter): number {
  return (b.sys[counter]?.value ?? NaN) - (a.sys[counter]?.value ?? NaN);
}

/** Wait until the subscriber's count reaches `target`, or has not moved for `quietMs` (at most `maxMs`); returns the count. */
async function settledCount(subscriber: Subscriber, quietMs = 1000, maxMs = 60_000, target = Infinity): Promise<number> {
  const until = Date.now() + maxMs;
  let last = await subscriber.count();
  let movedAt = Date.now();
  for (;;) {
    if (last >= target) return last;
    await sleep(Math.min(quietMs, 200));
    const now = await subscriber.count();
    if (now !== last) movedAt = Date.now();
    else if (Date.now() - movedAt >= quietMs) return now;
    if (Date.now() > until) return now;
    last = now;
  }
}

async function publishRun(port: number, devices: readonly Device[], qos: 0 | 1, seconds: number, watched: Watched, subscriber: Subscriber, load: number): Promise<RunResult> {
  const sessions = await Promise.all(devices.slice(0, PUBLISHERS).map((d) => connectDevice(port, d)));
  const payload = Buffer.alloc(PAYLOAD_BYTES, 'x');
  let stopping = false;
  let written = 0;
  let acked = 0;
  let writes = 0;
  let drains = 0;
  let protocolErrors = '';
  await settledCount(subscriber, 300);
  const pollStart = await subscriber.poll();

  const qos0 = async (session: Session): Promise<void> => {
    const one = generate({ cmd: 'publish', topic: session.device.topic, payload, qos: 0, retain: false, dup: false });
    const batch = Buffer.concat(Array.from({ length: BATCH }, () => one));
    let sinceYield = 0;
    while (!stopping && !session.closed) {
      const more = session.socket.write(batch);
      written += BATCH;
      writes++;
      if (!more) {
        drains++;
        sinceYield = 0;
        await drained(session.socket);
      } else if (++sinceYield >= WRITES_BEFORE_YIELD) {
        // The kernel took everything so far: let the other connections (and the timers) run.
        sinceYield = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  };
  const qos1 = async (session: Session): Promise<void> => {
    let inFlight = 0;
    let nextId = 1;
    const fill = (): void => {
      if (stopping || session.closed) return;
      const packets: Buffer[] = [];
      for (; inFlight < QOS1_WINDOW; inFlight++) {
        packets.push(generate({ cmd: 'publish', topic: session.device.topic, payload, qos: 1, messageId: nextId, retain: false, dup: false }));
        nextId = (nextId % 65_535) + 1;
      }
      if (packets.length === 0) return;
      written += packets.length;
      session.socket.write(packets.length === 1 ? (packets[0] as Buffer) : Buffer.concat(packets));
    };
    session.onPacket = (packet) => {
      if (packet.cmd === 'puback') {
        inFlight--;
        acked++;
      } else protocolErrors ||= `${session.device.name}: unexpected ${packet.cmd}`;
    };
    session.afterData = fill;
    fill();
    while (!stopping && !session.closed) await sleep(100);
    const until = Date.now() + STEP_TIMEOUT_MS;
    while (inFlight > 0 && !session.closed && Date.now() < until) await sleep(20);
  };

  const publishers = sessions.map((s) => (qos === 0 ? qos0(s) : qos1(s)));
  await sleep(PUBLISH_WARM_MS);
  const p0 = await subscriber.poll();
  const a0 = acked;
  const before = await snapshotCpu(watched);
  await sleep(seconds * 1000);
  const p1 = await subscriber.poll();
  const a1 = acked;
  const after = await snapshotCpu(watched);
  const rss = watched.dancegate === undefined ? NaN : await treeRss(watched.dancegate);
  stopping = true;
  await Promise.all(publishers);
  // What the sockets and the proxy still hold reaches the subscriber (or stops coming: lost).
  await settledCount(subscriber, 3000, 180_000, pollStart.count + written);
  // A $SYS update from after the last message.
  await sleep(SYS_INTERVAL_MS * 1.5);
  const pollFinal = await subscriber.poll();
  const closedEarly = sessions.filter((s) => s.closed).length;
  await Promise.all(sessions.map(disconnect));
  const cpu = cpuBetween(before, after);
  const elapsed = (after.at - before.at) / 1000;
  const delivered = p1.count - p0.count;
  const us = (s: number): number => (1e6 * s) / delivered;
  const lost = written - (pollFinal.count - pollStart.count);
  // The broker's own count of messages it dropped over the whole run ($SYS).
  const dropped = sysDelta(pollStart, pollFinal, 'dropped');
  const notes = [
    qos === 0 ? `${writes} writes, ${drains} waits for drain` : '',
    closedEarly > 0 ? `${closedEarly} publisher connections closed during the run` : '',
    protocolErrors,
    qos === 1 && acked !== written ? `${written - acked} of ${written} never acknowledged` : '',
    lost !== 0 ? `${lost} of ${written} written never delivered` : '',
    dropped > 0 ? `the broker counted ${dropped} dropped` : '',
  ].filter(Boolean);
  return {
    rate: delivered / elapsed,
    acked: (a1 - a0) / elapsed,
    dropped,
    dancegateRss: rss,
    count: delivered,
    dancegateUs: us(cpu.dancegate),
    mosquittoUs: us(cpu.mosquitto),
    driverUs: us(cpu.driver),
    subscriberUs: us(cpu.subscriber),
    p50: NaN,
    p99: NaN,
    load,
    othersCores: cpu.othersCores,
    lost,
    note: notes.join('; '),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Set-up and report.

/** One metric's value from a Prometheus text exposition, summed over the series whose labels include every `labels` pair. */
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

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-mqtt-run-'));
  const out: string[] = [];
  const say = (line: string): void => {
    out.push(line);
    console.log(line);
  };
  const children: ChildProcess[] = [];
  let subscriber: Subscriber | undefined;
  let lab: Awaited<ReturnType<typeof startDnssecLab>> | undefined;
  try {
    const mosquittoVersion = await new Promise<string>((resolve) => {
      const child = spawn(MOSQUITTO, ['-h'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.once('close', () => resolve(/mosquitto version (\S+)/.exec(text)?.[1] ?? '?'));
      child.once('error', () => resolve('not found'));
    });
    say(`bench/mqtt on ${cpus().length}x ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; Mosquitto ${mosquittoVersion}; ${new Date().toISOString()}`);
    say(
      `ROUNDS=${ROUNDS} SECONDS=${SECONDS} DEVICES=${DEVICES} CONCURRENCY=${CONCURRENCY} PUBLISHERS=${PUBLISHERS} BATCH=${BATCH} QOS1_WINDOW=${QOS1_WINDOW} payload ${PAYLOAD_BYTES} B, dancegate workers ${WORKERS}, CLI ${CLI}`,
    );

    // PKI: one CA issues the server certificate (dancegate and Mosquitto present the same one) and every device's.
    const ca = await createCertificate({ commonName: 'bench CA', isCA: true });
    const server = await createCertificate({ commonName: SERVER_NAME, dnsNames: [SERVER_NAME], issuer: ca, extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'ca.pem'), ca.certPem);
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    const devices: Device[] = [];
    for (let i = 0; i < DEVICES; i++) {
      const name = `dev-${String(i).padStart(4, '0')}._device.${ZONE}`;
      const cert = await createCertificate({ commonName: name, dnsNames: [name], issuer: ca });
      devices.push({ name, cert, context: tls.createSecureContext({ cert: cert.certPem, key: cert.keyPem, ca: ca.certPem }), topic: `telemetry/${name}/t` });
    }
    lab = await startDnssecLab([
      {
        origin: ZONE,
        signing: { algorithm: 13 },
        records: devices.map((d) => `${d.name}. ${TLSA_TTL_SECONDS} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(d.cert.der), 3, 1, 1))}`),
      },
    ]);

    // Mosquitto: the plain listener (dancegate's upstream and the counting subscriber's) and the TLS listener.
    const ports = { plain: await freePort(), tls: await freePort(), dancegate: await freePort(), admin: await freePort() };
    await writeFile(
      join(dir, 'mosquitto.conf'),
      [
        'per_listener_settings false',
        'allow_anonymous true',
        'persistence false',
        'log_dest stderr',
        'log_type error',
        'log_type warning',
        'connection_messages false',
        `sys_interval ${SYS_INTERVAL_MS / 1000}`,
        `user ${userInfo().username}`,
        `listener ${ports.plain} 127.0.0.1`,
        `listener ${ports.tls} 127.0.0.1`,
        `cafile ${join(dir, 'ca.pem')}`,
        `certfile ${join(dir, 'server.pem')}`,
        `keyfile ${join(dir, 'server.key')}`,
        'require_certificate true',
        '',
      ].join('\n'),
    );
    const mosquitto = daemon(MOSQUITTO, ['-c', join(dir, 'mosquitto.conf')]);
    children.push(mosquitto);
    await waitForTcpPort(ports.plain, 'Mosquitto plain listener');
    await waitForTcpPort(ports.tls, 'Mosquitto TLS listener');

    await writeFile(
      join(dir, 'dancegate.yaml'),
      `workers: ${WORKERS}
admin: { listen: "127.0.0.1:${ports.admin}" }
log: { level: warn }
resolver:
  servers: [{ address: "127.0.0.1:${lab.resolver.port}" }]
limits:
  newConnectionsPerIp: false
  penaltyBox: false
  handshakes: { maxConcurrent: 100000, maxConcurrentPerIp: 100000, maxTlsHandshakesPerIp: 100000 }
listeners:
  - name: mqtt
    listen: 127.0.0.1:${ports.dancegate}
    mode: mqtt
    alpn: [mqtt]
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }], engine: native }
    routes:
      - upstream: tcp://127.0.0.1:${ports.plain}
        allow: ['*._device.${ZONE}']
`,
    );
    const dancegate = daemon(process.execPath, [CLI, 'serve', '-c', join(dir, 'dancegate.yaml')]);
    children.push(dancegate);
    await waitForTcpPort(ports.dancegate, 'dancegate', 30_000);

    subscriber = await startSubscriber(ports.plain);
    const mosquittoPid = mosquitto.pid as number;
    const subscriberPid = subscriber.child.pid as number;
    const allSystems = [
      {
        name: `dancegate mode: mqtt (native engine, DANE-EE 3 1 1, ${WORKERS} worker) → Mosquitto plain`,
        short: 'dancegate',
        port: ports.dancegate,
        watched: { dancegate: dancegate.pid as number, mosquitto: mosquittoPid, subscriber: subscriberPid },
      },
      {
        name: 'Mosquitto TLS listener straight (require_certificate true)',
        short: 'straight',
        port: ports.tls,
        watched: { dancegate: undefined, mosquitto: mosquittoPid, subscriber: subscriberPid },
      },
    ] as const;
    const systems = allSystems.filter((s) => SYSTEMS.has(s.short));

    // Each system serves a device (one message QoS 1 reaches the subscriber), then every device connects once:
    // dancegate's TLSA cache holds every device from here on. The TLS each system negotiated is reported.
    for (const system of systems) {
      const before = await subscriber.count();
      const session = await connectDevice(system.port, devices[0] as Device);
      const acked = new Promise<void>((resolve) => (session.onPacket = (p) => p.cmd === 'puback' && resolve()));
      session.socket.write(generate({ cmd: 'publish', topic: session.device.topic, payload: Buffer.from('check'), qos: 1, messageId: 1, retain: false, dup: false }));
      await Promise.race([acked, sleep(STEP_TIMEOUT_MS).then(() => Promise.reject(new Error(`${system.name}: no PUBACK`)))]);
      const cipher = session.socket.getCipher();
      say(`${system.name}: ${session.socket.getProtocol() ?? '?'} ${cipher.name}, ALPN ${String(session.socket.alpnProtocol)}`);
      await disconnect(session);
      if ((await settledCount(subscriber, 200)) !== before + 1) throw new Error(`${system.name}: the check message did not reach the subscriber`);
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < devices.length) await disconnect(await connectDevice(system.port, devices[next++] as Device));
        }),
      );
    }
    const metricsBefore = await metrics(ports.admin);
    say(
      `dancegate after the warm-up pass: TLSA lookups past its cache ${metricValue(metricsBefore, 'dancegate_dane_lookups_total')}, cache hits ${metricValue(metricsBefore, 'dancegate_tlsa_cache_total', { result: 'hit' })}`,
    );

    const parts: Array<{ key: string; title: string; unit: string; run: (port: number, watched: Watched, load: number, seconds: number) => Promise<RunResult> }> = [
      { key: 'connect', title: `new connections (TLS + CONNECT + CONNACK, then DISCONNECT), ${CONCURRENCY} at a time`, unit: 'connects/s', run: (p, w, l, s) => connectRun(p, devices, s, w, l) },
      {
        key: 'qos0',
        title: `QoS 0 publishes on ${PUBLISHERS} kept connections, delivered to the subscriber`,
        unit: 'msg/s',
        run: (p, w, l, s) => publishRun(p, devices, 0, s, w, subscriber as Subscriber, l),
      },
      {
        key: 'qos1',
        title: `QoS 1 publishes on ${PUBLISHERS} kept connections, ${QOS1_WINDOW} awaiting PUBACK each`,
        unit: 'msg/s',
        run: (p, w, l, s) => publishRun(p, devices, 1, s, w, subscriber as Subscriber, l),
      },
    ];
    const summaries: string[] = [];
    for (const part of parts.filter((p) => PARTS.has(p.key))) {
      say(`\n${part.title}: ${ROUNDS} rounds of ${SECONDS} s, round robin, after a warm-up run of each`);
      const results = new Map<string, RunResult[]>(systems.map((s) => [s.short, []]));
      for (let round = -1; round < ROUNDS; round++) {
        for (const system of systems) {
          const load = await waitForQuiet(`${part.key} ${system.short} round ${round + 1}`, say);
          const result = await part.run(system.port, system.watched, load, round < 0 ? Math.min(3, SECONDS) : SECONDS);
          const label = round < 0 ? 'warm-up' : `round ${round + 1}`;
          say(
            `  ${label.padEnd(8)} ${system.short.padEnd(10)} ${result.rate.toFixed(0).padStart(7)} ${part.unit}` +
              (part.key === 'qos1' ? ` (PUBACKs ${result.acked.toFixed(0)}/s)` : '') +
              (part.key === 'connect'
                ? `  p50 ${result.p50.toFixed(1)} ms p99 ${result.p99.toFixed(1)} ms`
                : `, broker dropped ${result.dropped}, dancegate RSS ${(result.dancegateRss / 2 ** 20).toFixed(0)} MB`) +
              `  CPU us each: dancegate ${result.dancegateUs.toFixed(1)}, mosquitto ${result.mosquittoUs.toFixed(1)}, driver ${result.driverUs.toFixed(1)}, subscriber ${result.subscriberUs.toFixed(1)}` +
              `  load ${result.load.toFixed(2)}, other processes ${result.othersCores.toFixed(2)} cores${result.note ? `  [${result.note}]` : ''}`,
          );
          if (round >= 0) results.get(system.short)?.push(result);
        }
      }
      const m = (short: string, pick: (r: RunResult) => number): number => median((results.get(short) ?? []).map(pick));
      for (const system of systems) {
        const rs = results.get(system.short) ?? [];
        say(
          `  median  ${system.short.padEnd(10)} ${m(system.short, (r) => r.rate)
            .toFixed(0)
            .padStart(7)} ${part.unit} (runs ${rs.map((r) => r.rate.toFixed(0)).join(', ')})` +
            (part.key === 'qos1' ? `, PUBACKs ${m(system.short, (r) => r.acked).toFixed(0)}/s` : '') +
            (part.key === 'connect'
              ? `, p50 ${m(system.short, (r) => r.p50).toFixed(1)} ms, p99 ${m(system.short, (r) => r.p99).toFixed(1)} ms`
              : `, broker dropped ${rs.map((r) => r.dropped).join(', ')}`) +
            `; CPU us each: dancegate ${m(system.short, (r) => r.dancegateUs).toFixed(1)}, mosquitto ${m(system.short, (r) => r.mosquittoUs).toFixed(1)}, driver ${m(system.short, (r) => r.driverUs).toFixed(1)}, subscriber ${m(system.short, (r) => r.subscriberUs).toFixed(1)}` +
            `; load ${Math.min(...rs.map((r) => r.load)).toFixed(2)}–${Math.max(...rs.map((r) => r.load)).toFixed(2)}, other processes up to ${Math.max(...rs.map((r) => r.othersCores)).toFixed(2)} cores` +
            `; lost/failed ${rs.map((r) => r.lost).join(', ')}`,
        );
      }
      const ratio = m('dancegate', (r) => r.rate) / m('straight', (r) => r.rate);
      const serverCpu = (short: string): number => m(short, (r) => r.dancegateUs + r.mosquittoUs);
      const line =
        `${part.key}: dancegate x${ratio.toFixed(2)} of straight; ` +
        `server CPU per ${part.key === 'connect' ? 'connect' : 'delivered message'} (dancegate + mosquitto) ${serverCpu('dancegate').toFixed(1)} us against ${serverCpu('straight').toFixed(1)} us (x${(serverCpu('dancegate') / serverCpu('straight')).toFixed(2)})`;
      summaries.push(line);
      say(`  ${line}`);
    }
    const metricsAfter = await metrics(ports.admin);
    say(
      `\ndancegate over the whole run: MQTT CONNECTs forwarded ${metricValue(metricsAfter, 'dancegate_mqtt_connects_total', { outcome: 'forwarded' })}, refused ${metricValue(metricsAfter, 'dancegate_mqtt_connects_total', { outcome: 'refused' })}; ` +
        `TLSA lookups past its cache ${metricValue(metricsAfter, 'dancegate_dane_lookups_total')} (${metricValue(metricsBefore, 'dancegate_dane_lookups_total')} of them in the warm-up pass); ` +
        `cache hits ${metricValue(metricsAfter, 'dancegate_tlsa_cache_total', { result: 'hit' })}, misses ${metricValue(metricsAfter, 'dancegate_tlsa_cache_total', { result: 'miss' })}`,
    );
    for (const line of summaries) say(line);
    await writeFile(join(import.meta.dirname, 'last-mqtt.txt'), `${out.join('\n')}\n`);
  } finally {
    await subscriber?.stop().catch(() => undefined);
    await Promise.all(children.map(stop));
    await lab?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'subscriber') runSubscriber(Number(process.argv[3]));
else await main();
