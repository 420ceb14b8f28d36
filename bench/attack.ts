/**
 * bench/attack: does dancegate keep serving legitimate clients while
 * hostile ones try to pin its resolver and handshake capacity?
 *
 * For each of "gate on" (the defaults) and "gate off" (limits.resolverGate
 * disabled), on loopback only, bounded in count and time:
 *   - the real lab: NSD + Unbound, a signed zone with the legitimate
 *     clients' TLSA records, and an allowlisted zone slow.test whose
 *     authoritative server is black-holed (test/lab/silent-dns.ts);
 *   - dancegate in its own process (its RSS and event-loop delay are read
 *     over IPC);
 *   - baseline: legitimate clients alone (cold then warm cache, TLS 1.2
 *     and 1.3 alternating);
 *   - attack: HOSTILE connections each claiming a different slow.test name
 *     in a TLS 1.2 ClientHello and never finishing the handshake, from 100
 *     loopback addresses, plus TRICKLERS sending their ClientHello a byte
 *     every 100 ms and HOLDERS that connect and send nothing; while they
 *     hold, legitimate clients run again (new cold names, then warm).
 * It prints success rates, p50/p99 latency against the baseline, queries
 * Unbound received, dancegate's RSS and event-loop delay, gate counters.
 *
 *   npm run bench:attack            (HOSTILE=2000 TRICKLERS=200 HOLDERS=200 LEGIT=60)
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as https from 'node:https';
import * as net from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createCertificate, type IssuedCertificate } from '../certs/pki.js';
import { parseCertificateDer } from '../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../src/dane/tlsa.js';
import { stallingTls12Hello } from '../test/lab/client-hello-builder.js';
import { freePort, startDnssecLab } from '../test/lab/dnssec-lab.js';
import { startSilentDns } from '../test/lab/silent-dns.js';

const HOSTILE = Number(process.env.HOSTILE ?? 2000);
const TRICKLERS = Number(process.env.TRICKLERS ?? 200);
const HOLDERS = Number(process.env.HOLDERS ?? 200);
const LEGIT = Number(process.env.LEGIT ?? 60);
const LEGIT_CONCURRENCY = 8;
const SNI = 'api.bench.test';
const HOSTILE_ADDRESSES = 100;

interface LegitClient {
  readonly name: string;
  readonly cert: IssuedCertificate;
}

interface Sample {
  readonly ok: boolean;
  readonly ms: number;
  readonly why?: string;
}

interface ProxyStats {
  rssMb: number;
  peakRssMb: number;
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  gate?: { inFlight: number; queued: number; refused: { queueFull: number; zoneQueueFull: number; waitExpired: number }; cancelled: number };
  handshakesInProgress: number;
  decisions: Array<{ outcome: string; reason: string; count: number }>;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function legitRequest(port: number, ca: string, client: LegitClient, tls13: boolean): Promise<Sample> {
  const t0 = performance.now();
  const version = tls13 ? 'TLSv1.3' : 'TLSv1.2';
  return new Promise((resolve) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        servername: SNI,
        path: '/',
        headers: { host: SNI },
        ca,
        cert: client.cert.certPem,
        key: client.cert.keyPem,
        minVersion: version,
        maxVersion: version,
        agent: false,
        timeout: 15_000,
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => {
          const ok = res.statusCode === 200 && body === `hello ${client.name}`;
          resolve({ ok, ms: performance.now() - t0, why: ok ? undefined : `${res.statusCode} ${body.trim().slice(0, 80)}` });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ ok: false, ms: performance.now() - t0, why: err.message }));
    req.end();
  });
}

async function legitBatch(port: number, ca: string, clients: readonly LegitClient[]): Promise<Sample[]> {
  const samples: Sample[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: LEGIT_CONCURRENCY }, async () => {
      while (next < clients.length) {
        const i = next++;
        samples.push(await legitRequest(port, ca, clients[i] as LegitClient, i % 2 === 0));
      }
    }),
  );
  return samples;
}

/** The hostile load; resolves once every connection is open and has sent what it sends first. */
async function startHostile(port: number): Promise<{ stop(): void; connected: number }> {
  const sockets: net.Socket[] = [];
  const timers: NodeJS.Timeout[] = [];
  const open = (i: number): Promise<net.Socket | undefined> =>
    new Promise((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.1.${(i % HOSTILE_ADDRESSES) + 1}` });
      socket.on('error', () => resolve(undefined));
      socket.on('data', () => undefined);
      socket.once('connect', () => {
        sockets.push(socket);
        resolve(socket);
      });
    });
  let connected = 0;
  const batch = 200;
  for (let start = 0; start < HOSTILE; start += batch) {
    const opened = await Promise.all(Array.from({ length: Math.min(batch, HOSTILE - start) }, (_, k) => open(start + k)));
    opened.forEach((s, k) => {
      if (!s) return;
      connected++;
      s.write(stallingTls12Hello(SNI, `h${start + k}.slow.test`));
    });
  }
  for (let i = 0; i < TRICKLERS; i++) {
    const s = await open(HOSTILE + i);
    if (!s) continue;
    connected++;
    const hello = stallingTls12Hello(SNI, `t${i}.slow.test`);
    let sent = 0;
    const timer = setInterval(() => {
      if (sent >= hello.length || s.destroyed) return clearInterval(timer);
      s.write(hello.subarray(sent, sent + 1));
      sent++;
    }, 100);
    timers.push(timer);
  }
  for (let i = 0; i < HOLDERS; i++) if (await open(HOSTILE + TRICKLERS + i)) connected++;
  return {
    connected,
    stop() {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
    },
  };
}

function ask<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve) => {
    const onMessage = (m: { type: string }): void => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      resolve(m as T);
    };
    child.on('message', onMessage);
    child.send({ type });
  });
}

interface RunResult {
  readonly mode: string;
  readonly baseline: { readonly cold: Sample[]; readonly warm: Sample[] };
  readonly underAttack: { readonly cold: Sample[]; readonly warm: Sample[] };
  readonly hostileConnected: number;
  readonly unboundQueries: { total: number; slow: number; legit: number };
  readonly stats: ProxyStats;
  readonly failures: string[];
}

async function runMode(
  mode: 'gate on' | 'gate off',
  clients: { warmup: LegitClient[]; a: LegitClient[]; b: LegitClient[] },
  serverCert: IssuedCertificate,
  serverCa: IssuedCertificate,
): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-bench-'));
  const blackHole = await startSilentDns('drop');
  const all = [...clients.a, ...clients.b];
  const zoneClients = [...clients.warmup, ...all];
  const lab = await startDnssecLab(
    [
      {
        origin: 'fleet.test',
        signing: { algorithm: 13 },
        records: zoneClients.map((c) => `${c.name.replace(/\.fleet\.test$/, '')} 300 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(c.cert.der), 3, 1, 1))}`),
      },
    ],
    { extraStubZones: [{ name: 'slow.test', host: blackHole.host, port: blackHole.port }] },
  );
  const backend = (await import('node:http')).createServer((req, res) => res.end(`hello ${req.headers['x-dane-client-id'] ?? 'nobody'}`));
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  await writeFile(join(dir, 'server.pem'), serverCert.certPem);
  await writeFile(join(dir, 'server.key'), serverCert.keyPem);
  const port = await freePort();
  await writeFile(
    join(dir, 'dancegate.yaml'),
    `resolver:
  servers: [{ address: "127.0.0.1:${lab.resolver.port}" }]
limits:
  resolverGate: { enabled: ${mode === 'gate on'} }
listeners:
  - name: bench
    listen: 127.0.0.1:${port}
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstream: http://127.0.0.1:${(backend.address() as net.AddressInfo).port}
        allow: ['*._device.fleet.test', '*.slow.test']
`,
  );
  const child = fork(join(import.meta.dirname, 'attack-proxy.js'), [join(dir, 'dancegate.yaml')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`proxy exited with ${code}`)));
    });
    // Warm-up (not measured): JIT, TLS contexts, the first resolver sockets.
    await legitBatch(port, serverCa.certPem, clients.warmup);
    const baseline = { cold: await legitBatch(port, serverCa.certPem, clients.a), warm: await legitBatch(port, serverCa.certPem, clients.a) };

    await lab.resetQueryLog();
    const hostile = await startHostile(port);
    await ask(child, 'reset');
    // Let the hostile lookups reach the gate (or, without it, Unbound).
    await new Promise((r) => setTimeout(r, 500));
    const underAttack = { cold: await legitBatch(port, serverCa.certPem, clients.b), warm: await legitBatch(port, serverCa.certPem, all) };
    const stats = await ask<ProxyStats & { type: string }>(child, 'stats');
    const queries = await lab.clientQueries();
    hostile.stop();
    const failures = [...baseline.cold, ...baseline.warm, ...underAttack.cold, ...underAttack.warm].filter((s) => !s.ok).map((s) => s.why ?? '?');
    return {
      mode,
      baseline,
      underAttack,
      hostileConnected: hostile.connected,
      unboundQueries: { total: queries.length, slow: queries.filter((q) => q.name.endsWith('slow.test')).length, legit: queries.filter((q) => q.name.endsWith('fleet.test')).length },
      stats,
      failures,
    };
  } finally {
    child.send({ type: 'stop' });
    await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
    backend.close();
    await lab.stop();
    await blackHole.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function describeRun(r: RunResult): Record<string, string> {
  const ok = (s: Sample[]): string => `${s.filter((x) => x.ok).length}/${s.length} (${((100 * s.filter((x) => x.ok).length) / s.length).toFixed(1)} %)`;
  const pct = (s: Sample[], p: number): number =>
    percentile(
      s.filter((x) => x.ok).map((x) => x.ms),
      p,
    );
  const compare = (kind: 'cold' | 'warm', p: number): string =>
    `${pct(r.baseline[kind], p).toFixed(1)} / ${pct(r.underAttack[kind], p).toFixed(1)} (x${(pct(r.underAttack[kind], p) / pct(r.baseline[kind], p)).toFixed(2)})`;
  const refused = (reason: string): number => r.stats.decisions.filter((d) => d.reason === reason).reduce((n, d) => n + d.count, 0);
  return {
    'hostile connections open': String(r.hostileConnected),
    'legit success, baseline': ok([...r.baseline.cold, ...r.baseline.warm]),
    'legit success, under attack': ok([...r.underAttack.cold, ...r.underAttack.warm]),
    'cold-cache p50 ms, baseline / attack': compare('cold', 50),
    'cold-cache p99 ms, baseline / attack': compare('cold', 99),
    'warm-cache p50 ms, baseline / attack': compare('warm', 50),
    'warm-cache p99 ms, baseline / attack': compare('warm', 99),
    'queries to Unbound during attack (slow / legit)': `${r.unboundQueries.total} (${r.unboundQueries.slow} / ${r.unboundQueries.legit})`,
    'gate: refused zone-queue-full / queue-full / wait-expired': r.stats.gate
      ? `${r.stats.gate.refused.zoneQueueFull} / ${r.stats.gate.refused.queueFull} / ${r.stats.gate.refused.waitExpired}`
      : '(gate off)',
    'handshakes held at the end': String(r.stats.handshakesInProgress),
    'dancegate RSS MB (peak)': `${r.stats.rssMb.toFixed(0)} (${r.stats.peakRssMb.toFixed(0)})`,
    'event-loop delay ms p50 / p99 / max': `${r.stats.eventLoopDelayMs.p50.toFixed(1)} / ${r.stats.eventLoopDelayMs.p99.toFixed(1)} / ${r.stats.eventLoopDelayMs.max.toFixed(1)}`,
    'refusals dns-over-capacity / dns-timeout': `${refused('dns-over-capacity')} / ${refused('dns-timeout')}`,
    'legit failure reasons': [...new Set(r.failures)].slice(0, 3).join('; ') || '-',
  };
}

async function main(): Promise<void> {
  const started = performance.now();
  console.log(
    `bench/attack: HOSTILE=${HOSTILE} TRICKLERS=${TRICKLERS} HOLDERS=${HOLDERS} LEGIT=${LEGIT} on ${cpus().length}x ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`,
  );
  const serverCa = await createCertificate({ commonName: 'bench CA', isCA: true });
  const serverCert = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
  const make = async (prefix: string, count = LEGIT): Promise<LegitClient[]> =>
    Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const name = `${prefix}${i}._device.fleet.test`;
        return { name, cert: await createCertificate({ commonName: name, dnsNames: [name] }) };
      }),
    );
  const clients = { warmup: await make('w', 16), a: await make('a'), b: await make('b') };
  const results: RunResult[] = [];
  for (const mode of ['gate on', 'gate off'] as const) {
    results.push(await runMode(mode, clients, serverCert, serverCa));
    console.error(`  ${mode}: done`);
  }
  const rows = results.map(describeRun);
  const keys = Object.keys(rows[0] ?? {});
  const width = Math.max(...keys.map((k) => k.length));
  console.log(`\n${''.padEnd(width)} | ${results.map((r) => r.mode.padEnd(34)).join(' | ')}`);
  for (const key of keys) console.log(`${key.padEnd(width)} | ${rows.map((row) => (row[key] ?? '').padEnd(34)).join(' | ')}`);
  console.log(`\nwall time ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

await main();
