/**
 * `dancegate serve`: the proxy as a process. One process, or with
 * `workers: N` a node:cluster primary that forks N workers sharing the
 * listeners, restarts a worker that dies, serves the admin endpoints with
 * metrics aggregated across workers, and forwards reload and shutdown.
 *
 * Signals (to the single process or the primary): SIGHUP reloads the
 * configuration file (all or nothing; an invalid file leaves the old
 * configuration in force); SIGTERM/SIGINT drain gracefully up to
 * `shutdown.drainTimeoutMs`. Exit code 0 = clean drain, 1 = connections had
 * to be cut at the deadline.
 */
import cluster, { type Worker } from 'node:cluster';
import { watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { ConfigError, loadConfig } from '../config/load.js';
import type { DancegateConfig } from '../config/types.js';
import { DnsTlsaResolver } from '../dane/resolver.js';
import { startAdminServer, type AdminServer, type Readiness } from '../metrics/admin-server.js';
import { ProxyMetrics, processMetrics } from '../metrics/metrics.js';
import { loggerSink } from '../proxy/decision-log.js';
import { startProxy, type ReloadResult, type RunningProxy } from '../proxy/proxy.js';
import { createLogger } from './logging.js';

export interface ServeIo {
  readonly stderr: { write(text: string): unknown };
}

export interface Served {
  /** Resolves with the exit code once stopped. */
  readonly done: Promise<number>;
  /** Where the listeners and the admin endpoints are (after start). */
  readonly listeners: ReadonlyArray<{ name: string; host: string; port: number; mode: string }>;
  readonly admin: { host: string; port: number } | undefined;
}

/** The readiness probe name: `.invalid` is answered locally by validating resolvers (RFC 6761), so any reply proves the resolver answers. */
const READINESS_PROBE_NAME = 'dancegate-readiness-probe.invalid';
const READINESS_CACHE_MS = 5_000;

/** Is the configured resolver answering? Cached briefly so /readyz stays cheap. */
function resolverProbe(getConfig: () => DancegateConfig): () => Promise<{ ok: boolean; detail: string }> {
  let last: { at: number; result: { ok: boolean; detail: string } } | undefined;
  return async () => {
    if (last && Date.now() - last.at < READINESS_CACHE_MS) return last.result;
    const r = getConfig().resolver;
    let result: { ok: boolean; detail: string };
    if (r.servers.length === 0) result = { ok: true, detail: 'no DNS resolver configured (local TLSA file only)' };
    else {
      const outcome = await new DnsTlsaResolver({ servers: r.servers, attemptTimeoutMs: r.attemptTimeoutMs, totalTimeoutMs: r.totalTimeoutMs, allowRemotePlainResolver: r.allowRemotePlainResolver }).lookup(READINESS_PROBE_NAME);
      const ok = outcome.kind !== 'timeout' && outcome.kind !== 'server-error';
      result = { ok, detail: ok ? `answered (${outcome.kind})` : outcome.detail };
    }
    last = { at: Date.now(), result };
    return result;
  };
}

function describeConfig(proxy: RunningProxy, version: string, startedAt: string): object {
  const c = proxy.config;
  return {
    version,
    pid: process.pid,
    startedAt,
    configFile: c.source,
    generation: proxy.generation,
    lastReload: proxy.lastReload ?? null,
    openConnections: proxy.openConnections,
    handshakesInProgress: proxy.admission.handshakesInProgress,
    resolverGate: proxy.gate?.stats() ?? null,
    listeners: proxy.listeners.map((l) => {
      const lc = c.listeners.find((x) => x.name === l.name);
      return {
        name: l.name,
        mode: l.mode,
        address: `${l.host}:${l.port}`,
        policy: lc?.policy,
        routes: (lc?.routes ?? []).map((r) => ({
          serverNames: r.serverNames.length > 0 ? r.serverNames : ['(default)'],
          upstream: r.upstream.url,
          allowlist: r.allowlistSource,
          allowPatterns: r.allowlist.patterns.length,
          proxyHeader: r.proxyHeader.version,
        })),
      };
    }),
  };
}

async function reloadFrom(path: string, proxy: RunningProxy, logger: Logger, metrics: ProxyMetrics): Promise<ReloadResult> {
  let next: DancegateConfig;
  try {
    next = await loadConfig(path);
  } catch (err) {
    const error = err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message;
    const result: ReloadResult = { ok: false, time: new Date().toISOString(), generation: proxy.generation, error };
    metrics.reloads.inc({ result: 'failure' });
    metrics.lastReloadSuccess.set(0);
    logger.error({ event: 'reload', ok: false, generation: proxy.generation, error }, 'configuration rejected; the previous one stays in force');
    return result;
  }
  const result = await proxy.reload(next);
  metrics.reloads.inc({ result: result.ok ? 'success' : 'failure' });
  metrics.lastReloadSuccess.set(result.ok ? 1 : 0);
  if (result.ok) logger.info({ event: 'reload', ok: true, generation: result.generation }, 'configuration reloaded');
  else logger.error({ event: 'reload', ok: false, generation: result.generation, error: result.error }, 'configuration rejected; the previous one stays in force');
  return result;
}

/** One process serving the configuration: the single-process mode, and each cluster worker. */
async function runProxyProcess(config: DancegateConfig, version: string, io: ServeIo, role: 'single' | 'worker'): Promise<Served> {
  const logger = createLogger(config.log);
  const startedAt = new Date().toISOString();
  // The gauges read the proxy once it exists.
  const live: { proxy?: RunningProxy } = {};
  const metrics = processMetrics(version, {
    gateStats: () => live.proxy?.gate?.stats(),
    handshakesInProgress: () => live.proxy?.admission.handshakesInProgress ?? 0,
    openConnections: () => live.proxy?.openConnections ?? 0,
    generation: () => live.proxy?.generation ?? 0,
  });
  // prom-client answers the primary's metric requests only once an AggregatorRegistry exists in the worker.
  if (role === 'worker') new AggregatorRegistry();
  const proxy = await startProxy(config, { log: loggerSink(logger), metrics });
  live.proxy = proxy;
  let failedReload: ReloadResult | undefined;
  const lastReload = (): ReloadResult | undefined => {
    const ok = proxy.lastReload;
    if (failedReload && (!ok || failedReload.time > ok.time)) return failedReload;
    return ok;
  };
  const reload = async (): Promise<ReloadResult> => {
    const result = await reloadFrom(config.source, proxy, logger, metrics);
    failedReload = result.ok ? undefined : result;
    return result;
  };
  const probe = resolverProbe(() => proxy.config);
  let draining = false;
  const readiness = async (): Promise<Readiness> => {
    const resolver = await probe();
    const listeners = { ok: !draining && proxy.listeners.length > 0, detail: draining ? 'draining' : `${proxy.listeners.length} listener(s) bound` };
    return { ready: listeners.ok && resolver.ok, checks: { listeners, resolver } };
  };
  const status = (): object => ({ ...describeConfig(proxy, version, startedAt), lastReload: lastReload() ?? null, role });

  let admin: AdminServer | undefined;
  if (role === 'single' && config.admin) {
    admin = await startAdminServer(config.admin.host, config.admin.port, {
      metrics: async () => ({ contentType: ProxyMetrics.contentType, body: await ProxyMetrics.text() }),
      readiness,
      status: async () => status(),
    });
  }
  logger.info({ event: 'start', generation: proxy.generation, listeners: proxy.listeners, admin: admin ? `${admin.host}:${admin.port}` : null, role }, 'dancegate started');
  if (role === 'single') {
    for (const l of proxy.listeners) io.stderr.write(`dancegate: listener ${l.name} (${l.mode}) on ${l.host}:${l.port}, config ${config.source}, generation ${proxy.generation}\n`);
    if (admin) io.stderr.write(`dancegate: admin on http://${admin.host}:${admin.port}/ (metrics, healthz, readyz, status)\n`);
  }

  const drainAndStop = async (why: string): Promise<number> => {
    draining = true;
    logger.info({ event: 'shutdown', signal: why, openConnections: proxy.openConnections, deadlineMs: proxy.config.shutdown.drainTimeoutMs }, 'draining');
    const clean = await proxy.drain(proxy.config.shutdown.drainTimeoutMs);
    await admin?.close();
    logger.info({ event: 'shutdown', clean }, clean ? 'drained cleanly' : 'drain deadline passed; remaining connections were closed');
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    return clean ? 0 : 1;
  };

  const done = new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      void drainAndStop(why).then(resolve);
    };
    if (role === 'single') {
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGHUP', () => void reload());
      if (config.watchConfig) {
        // Watch the directory, not the file: editors and config managers replace the file (a new inode).
        let timer: NodeJS.Timeout | undefined;
        watch(dirname(config.source), (_event, file) => {
          if (file !== null && file !== basename(config.source)) return;
          clearTimeout(timer);
          timer = setTimeout(() => void reload(), 300);
        }).unref();
      }
    } else {
      // Workers follow the primary: its messages, or its disappearance.
      process.on('SIGTERM', () => undefined);
      process.on('SIGINT', () => undefined);
      process.on('SIGHUP', () => undefined);
      process.on('message', (m: { type?: string; id?: number }) => {
        if (m.type === 'dancegate:reload') void reload().then((r) => process.send?.({ type: 'dancegate:reloaded', id: m.id, result: r }));
        else if (m.type === 'dancegate:shutdown') stop('primary');
        else if (m.type === 'dancegate:status') void readiness().then((ready) => process.send?.({ type: 'dancegate:status', id: m.id, status: status(), ready }));
      });
      process.on('disconnect', () => stop('primary gone'));
      process.send?.({ type: 'dancegate:listening', listeners: proxy.listeners, generation: proxy.generation });
    }
  });
  return { done, listeners: proxy.listeners, admin: admin ? { host: admin.host, port: admin.port } : undefined };
}

interface WorkerReply {
  type: string;
  id?: number;
  status?: object;
  ready?: Readiness;
  result?: ReloadResult;
  listeners?: Array<{ name: string; host: string; port: number; mode: string }>;
}

/** The cluster primary: forks, restarts, aggregates, forwards. */
async function runPrimary(configPath: string, config: DancegateConfig, version: string, io: ServeIo): Promise<Served> {
  const logger = createLogger(config.log);
  const aggregator = new AggregatorRegistry();
  const startedAt = new Date().toISOString();
  let shuttingDown = false;
  let generation = 1;
  let lastReload: ReloadResult | undefined;
  let nextId = 1;
  const workers = new Set<Worker>();
  /** Workers that have bound their listeners and answer messages. */
  const ready = new Set<Worker>();
  let listeners: Array<{ name: string; host: string; port: number; mode: string }> = [];
  // Workers accept connections themselves (the kernel spreads them); with Node's default round-robin
  // the primary would accept every connection and pass it over IPC, which halves the handshake rate.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: process.argv[1] ?? '', args: ['serve', '-c', configPath], silent: false });

  let restarts = 0;
  const fork = (): Promise<void> =>
    new Promise((resolve) => {
      const worker = cluster.fork({ DANCEGATE_WORKER: '1' });
      workers.add(worker);
      worker.on('message', (m: WorkerReply) => {
        if (m.type === 'dancegate:listening') {
          listeners = m.listeners ?? listeners;
          ready.add(worker);
          // A worker that became ready during shutdown is told at once.
          if (shuttingDown) worker.send({ type: 'dancegate:shutdown' });
          resolve();
        }
      });
      worker.once('exit', (code, signal) => {
        workers.delete(worker);
        ready.delete(worker);
        resolve();
        if (shuttingDown) return;
        restarts++;
        logger.error({ event: 'worker-exit', workerPid: worker.process.pid, code, signal, restarts }, 'worker died; starting a new one');
        setTimeout(() => void fork(), Math.min(5_000, 250 * restarts)).unref();
      });
    });

  const ask = <T extends WorkerReply>(type: string, timeoutMs = 5_000): Promise<T[]> =>
    Promise.all(
      [...ready].map(
        (worker) =>
          new Promise<T>((resolve) => {
            const id = nextId++;
            const finish = (reply: T): void => {
              clearTimeout(timer);
              worker.off('message', onMessage);
              worker.off('exit', onExit);
              resolve(reply);
            };
            const timer = setTimeout(() => finish({ type: 'timeout', id } as T), timeoutMs);
            const onMessage = (m: T): void => {
              if (m.id === id) finish(m);
            };
            // A worker that dies meanwhile will not answer.
            const onExit = (): void => finish({ type: 'exited', id } as T);
            worker.on('message', onMessage);
            worker.once('exit', onExit);
            if (worker.isConnected()) worker.send({ type, id });
            else finish({ type: 'exited', id } as T);
          }),
      ),
    );

  await Promise.all(Array.from({ length: config.workers }, fork));
  const admin = config.admin
    ? await startAdminServer(config.admin.host, config.admin.port, {
        metrics: async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() }),
        readiness: async () => {
          const replies = await ask<WorkerReply>('dancegate:status');
          const ok = replies.length === config.workers && replies.every((r) => r.ready?.ready === true);
          // (a worker still starting after a restart is not counted: not ready)
          return {
            ready: !shuttingDown && ok,
            checks: { workers: { ok, detail: `${replies.filter((r) => r.ready?.ready).length}/${config.workers} workers ready` } },
          };
        },
        status: async () => {
          const replies = await ask<WorkerReply>('dancegate:status');
          return { version, pid: process.pid, role: 'primary', startedAt, configFile: config.source, generation, lastReload: lastReload ?? null, workers: replies.map((r) => r.status ?? { error: 'no answer' }) };
        },
      })
    : undefined;
  for (const l of listeners) io.stderr.write(`dancegate: listener ${l.name} (${l.mode}) on ${l.host}:${l.port}, config ${config.source}, generation ${generation}, ${config.workers} workers\n`);
  if (admin) io.stderr.write(`dancegate: admin on http://${admin.host}:${admin.port}/ (metrics, healthz, readyz, status)\n`);
  logger.info({ event: 'start', role: 'primary', workers: config.workers, listeners, admin: admin ? `${admin.host}:${admin.port}` : null }, 'dancegate started');

  const reload = async (): Promise<void> => {
    const time = new Date().toISOString();
    try {
      // Validate once here, so an invalid file never reaches a worker.
      await loadConfig(configPath);
    } catch (err) {
      const error = err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message;
      lastReload = { ok: false, time, generation, error };
      logger.error({ event: 'reload', ok: false, error }, 'configuration rejected; the previous one stays in force');
      return;
    }
    const replies = await ask<WorkerReply>('dancegate:reload');
    const failed = replies.find((r) => r.result?.ok !== true);
    if (failed) {
      lastReload = { ok: false, time, generation, error: failed.result?.error ?? 'a worker did not answer' };
      logger.error({ event: 'reload', ok: false, error: lastReload.error }, 'reload failed in a worker');
      return;
    }
    generation++;
    lastReload = { ok: true, time, generation };
    logger.info({ event: 'reload', ok: true, generation }, 'configuration reloaded in every worker');
  };

  const done = new Promise<number>((resolve) => {
    const stop = (why: string): void => {
      if (shuttingDown) return;
      shuttingDown = true;
      logger.info({ event: 'shutdown', signal: why }, 'draining every worker');
      // Ready workers drain; one still starting gets the message as soon as it is ready.
      const exits = [...workers].map((w) => new Promise<number>((r) => w.once('exit', (code) => r(code ?? 1))));
      for (const w of ready) w.send({ type: 'dancegate:shutdown' });
      void Promise.all(exits).then(async (codes) => {
        await admin?.close();
        const code = codes.every((c) => c === 0) ? 0 : 1;
        logger.info({ event: 'shutdown', clean: code === 0 }, code === 0 ? 'every worker drained cleanly' : 'a worker had to cut connections');
        await new Promise<void>((r) => logger.flush(() => r()));
        resolve(code);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void reload());
  });
  return { done, listeners, admin: admin ? { host: admin.host, port: admin.port } : undefined };
}

/** Serve `configPath` (already validated as `config`) as this process's role requires. */
export async function serve(configPath: string, config: DancegateConfig, version: string, io: ServeIo): Promise<Served> {
  if (cluster.isWorker) return runProxyProcess(config, version, io, 'worker');
  if (config.workers > 1) return runPrimary(configPath, config, version, io);
  return runProxyProcess(config, version, io, 'single');
}
