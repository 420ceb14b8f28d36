/**
 * `dancegate serve`: the proxy as a process. One process, or with
 * `workers: N` a node:cluster primary that forks N workers sharing the
 * listeners, restarts a worker that dies, serves the admin endpoints with
 * metrics aggregated across workers, and forwards reload and shutdown.
 *
 * Signals (to the single process or the primary): SIGHUP reopens a log
 * file and reloads the configuration file (all or nothing, across every
 * worker; an invalid file leaves the old configuration in force);
 * SIGTERM/SIGINT drain gracefully up to `shutdown.drainTimeoutMs`. Exit code
 * 0 = clean drain, 1 = connections had to be cut at the deadline.
 *
 * In a cluster the primary holds the text of the configuration in force and
 * hands it to every worker it starts (a restarted worker never reads a file
 * that was rejected, or edited but not yet reloaded); a reload is two-phase:
 * every worker prepares the new text, then all commit or all abort.
 */
import cluster, { type Worker } from 'node:cluster';
import { createHash } from 'node:crypto';
import { watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve as resolvePath } from 'node:path';
import type { Logger } from 'pino';
import { AggregatorRegistry, Counter, Gauge, Registry, register } from 'prom-client';
import { ConfigError, parseConfigText, readConfigText } from '../config/load.js';
import type { DancegateConfig } from '../config/types.js';
import { DnsTlsaResolver } from '../dns/resolver.js';
import { startAdminServer, type AdminServer, type Readiness } from '../metrics/admin-server.js';
import { ProxyMetrics, processMetrics } from '../metrics/metrics.js';
import { loggerSink } from '../connection/decision-log.js';
import { startProxy, type PreparedReload, type ReloadResult, type RunningProxy } from '../process/running-proxy.js';
import { createLogger, reopenLog } from './logging.js';

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

const errorText = (err: unknown): string => (err instanceof ConfigError ? err.problems.join('; ') : err instanceof Error ? err.message : String(err));

/** Settings read once at start: a reload cannot change them, so it says so. */
function fixedSettingsChanged(current: DancegateConfig, next: DancegateConfig): string[] {
  const changed: string[] = [];
  if (current.workers !== next.workers) changed.push('workers');
  if (JSON.stringify(current.admin) !== JSON.stringify(next.admin)) changed.push('admin');
  if (JSON.stringify(current.log) !== JSON.stringify(next.log)) changed.push('log');
  if (current.watchConfig !== next.watchConfig) changed.push('watchConfig');
  return changed;
}

/**
 * Call `onChange` when the configuration file's content changes. Watches the
 * directory, and compares a digest of the content: editors replace the file
 * (a new inode), and Kubernetes swaps a `..data` symlink without an event
 * naming the file. The files the configuration names (certificates,
 * allowlists, local TLSA) are not watched: SIGHUP reloads those.
 */
function watchConfigFile(path: string, onChange: () => void, logger: Logger): void {
  const digest = async (): Promise<string | undefined> => {
    try {
      return createHash('sha256').update(await readFile(path)).digest('hex');
    } catch {
      return undefined;
    }
  };
  let last: string | undefined;
  void digest().then((d) => (last = d));
  let timer: NodeJS.Timeout | undefined;
  try {
    watch(dirname(path), () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        void digest().then((d) => {
          if (d === undefined || d === last) return;
          last = d;
          onChange();
        });
      }, 300);
    }).unref();
  } catch (err) {
    logger.error({ event: 'watch', error: errorText(err) }, 'cannot watch the configuration file; SIGHUP still reloads');
  }
}

async function reloadFrom(path: string, proxy: RunningProxy, logger: Logger, metrics: ProxyMetrics): Promise<ReloadResult> {
  let next: DancegateConfig;
  try {
    const { source, text } = await readConfigText(path);
    next = await parseConfigText(text, source);
  } catch (err) {
    const error = errorText(err);
    const result: ReloadResult = { ok: false, time: new Date().toISOString(), generation: proxy.generation, error };
    metrics.reloads.inc({ result: 'failure' });
    metrics.lastReloadSuccess.set(0);
    logger.error({ event: 'reload', ok: false, generation: proxy.generation, error }, 'configuration rejected; the previous one stays in force');
    return result;
  }
  const fixed = fixedSettingsChanged(proxy.config, next);
  const result = await proxy.reload(next);
  metrics.reloads.inc({ result: result.ok ? 'success' : 'failure' });
  metrics.lastReloadSuccess.set(result.ok ? 1 : 0);
  if (result.ok) logger.info({ event: 'reload', ok: true, generation: result.generation }, 'configuration reloaded');
  else logger.error({ event: 'reload', ok: false, generation: result.generation, error: result.error }, 'configuration rejected; the previous one stays in force');
  if (result.ok && fixed.length > 0) logger.warn({ event: 'reload', unchanged: fixed }, `${fixed.join(', ')} take effect only after a restart`);
  return result;
}

/** Messages between the primary and its workers. */
interface WorkerMessage {
  type: string;
  id?: number;
  text?: string;
  generation?: number;
  ok?: boolean;
  error?: string;
  status?: object;
  ready?: Readiness;
  result?: ReloadResult;
  metrics?: object[];
  listeners?: Array<{ name: string; host: string; port: number; mode: string }>;
}

/** A worker's configuration: the text the primary holds (never read from disk by the worker itself). */
async function configFromPrimary(configPath: string): Promise<{ config: DancegateConfig; generation: number }> {
  const reply = await new Promise<WorkerMessage>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the primary sent no configuration within 30 s')), 30_000);
    const onMessage = (m: WorkerMessage): void => {
      if (m.type !== 'dancegate:config') return;
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve(m);
    };
    process.on('message', onMessage);
    process.send?.({ type: 'dancegate:config-request' });
  });
  return { config: await parseConfigText(reply.text ?? '', resolvePath(configPath)), generation: reply.generation ?? 1 };
}

/** One process serving the configuration: the single-process mode, and each cluster worker. */
async function runProxyProcess(config: DancegateConfig, version: string, io: ServeIo, role: 'single' | 'worker', firstGeneration = 1): Promise<Served> {
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
  const proxy = await startProxy(config, { log: loggerSink(logger), metrics, generation: firstGeneration });
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
    try {
      admin = await startAdminServer(config.admin.host, config.admin.port, {
        metrics: async () => ({ contentType: ProxyMetrics.contentType, body: await ProxyMetrics.text() }),
        readiness,
        status: async () => status(),
      });
    } catch (err) {
      // Never leave the listeners serving behind a failed start.
      await proxy.close();
      throw new Error(`admin listener ${config.admin.host}:${config.admin.port}: ${errorText(err)}`);
    }
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
      process.on('SIGHUP', () => {
        reopenLog(logger, config.log);
        void reload();
      });
      if (config.watchConfig) watchConfigFile(config.source, () => void reload(), logger);
    } else {
      // Workers follow the primary: its messages, or its disappearance.
      process.on('SIGTERM', () => undefined);
      process.on('SIGINT', () => undefined);
      process.on('SIGHUP', () => undefined);
      let pending: { generation: number; prepared: PreparedReload } | undefined;
      const reply = (message: WorkerMessage): void => {
        if (process.connected) process.send?.(message);
      };
      const prepare = async (m: WorkerMessage): Promise<void> => {
        await pending?.prepared.abort();
        pending = undefined;
        let next: DancegateConfig;
        try {
          next = await parseConfigText(m.text ?? '', config.source);
        } catch (err) {
          return reply({ type: 'dancegate:prepared', id: m.id, ok: false, error: errorText(err) });
        }
        const prepared = await proxy.prepareReload(next);
        if ('error' in prepared) return reply({ type: 'dancegate:prepared', id: m.id, ok: false, error: prepared.error });
        const entry = { generation: m.generation ?? 0, prepared };
        pending = entry;
        // The primary always answers; if it does not (it died), do not hold the new listeners forever.
        setTimeout(() => {
          if (pending === entry) void entry.prepared.abort().then(() => (pending = undefined));
        }, 60_000).unref();
        reply({ type: 'dancegate:prepared', id: m.id, ok: true });
      };
      const commit = (m: WorkerMessage): void => {
        const entry = pending;
        if (entry === undefined || entry.generation !== m.generation) {
          return reply({ type: 'dancegate:committed', id: m.id, result: { ok: false, time: new Date().toISOString(), generation: proxy.generation, error: 'no prepared reload for this generation' } });
        }
        pending = undefined;
        const result = entry.prepared.commit(m.generation);
        metrics.reloads.inc({ result: result.ok ? 'success' : 'failure' });
        metrics.lastReloadSuccess.set(result.ok ? 1 : 0);
        failedReload = result.ok ? undefined : result;
        logger.info({ event: 'reload', ok: result.ok, generation: result.generation, error: result.error }, result.ok ? 'configuration reloaded' : 'reload could not be committed');
        reply({ type: 'dancegate:committed', id: m.id, result });
      };
      process.on('message', (m: WorkerMessage) => {
        if (m.type === 'dancegate:prepare') void prepare(m);
        else if (m.type === 'dancegate:commit') commit(m);
        else if (m.type === 'dancegate:abort') {
          const entry = pending;
          pending = undefined;
          if (entry !== undefined) void entry.prepared.abort();
        } else if (m.type === 'dancegate:reopen-log') reopenLog(logger, config.log);
        else if (m.type === 'dancegate:shutdown') stop('primary');
        else if (m.type === 'dancegate:status') void readiness().then((ready) => reply({ type: 'dancegate:status', id: m.id, status: status(), ready }));
        else if (m.type === 'dancegate:metrics') void register.getMetricsAsJSON().then((json) => reply({ type: 'dancegate:metrics', id: m.id, metrics: json }));
      });
      process.on('disconnect', () => stop('primary gone'));
      reply({ type: 'dancegate:listening', listeners: [...proxy.listeners], generation: proxy.generation });
    }
  });
  return { done, listeners: proxy.listeners, admin: admin ? { host: admin.host, port: admin.port } : undefined };
}

/** Metric families the primary owns in a cluster (a reload is one cluster-wide event); workers' copies are dropped. */
const PRIMARY_FAMILIES = new Set(['dancegate_config_reloads_total', 'dancegate_config_last_reload_successful']);

/** The cluster primary: forks, restarts, aggregates, forwards. */
async function runPrimary(configPath: string, version: string, io: ServeIo): Promise<Served> {
  // The text in force: what every worker gets, at start and when restarted.
  const initial = await readConfigText(configPath);
  const config = await parseConfigText(initial.text, initial.source);
  let accepted = { text: initial.text, generation: 1 };
  const logger = createLogger(config.log);
  const startedAt = new Date().toISOString();
  const primaryRegistry = new Registry();
  const reloads = new Counter({ name: 'dancegate_config_reloads_total', help: 'Configuration reloads by result (success, failure)', labelNames: ['result'] as const, registers: [primaryRegistry] });
  const lastReloadSuccess = new Gauge({ name: 'dancegate_config_last_reload_successful', help: '1 if the last reload succeeded (or none was tried), 0 if it was rejected', registers: [primaryRegistry] });
  lastReloadSuccess.set(1);
  const restartsTotal = new Counter({ name: 'dancegate_worker_restarts_total', help: 'Workers that died and were replaced', registers: [primaryRegistry] });
  let shuttingDown = false;
  let starting = true;
  let lastReload: ReloadResult | undefined;
  let nextId = 1;
  const workers = new Set<Worker>();
  /** Workers that have bound their listeners and answer messages. */
  const ready = new Set<Worker>();
  new Gauge({
    name: 'dancegate_workers_ready',
    help: 'Workers with their listeners bound, answering the primary',
    registers: [primaryRegistry],
    collect() {
      this.set(ready.size);
    },
  });
  const restartTimers = new Set<NodeJS.Timeout>();
  let listeners: Array<{ name: string; host: string; port: number; mode: string }> = [];
  /** The reload in progress (reloads run one at a time; a starting worker waits for it). */
  let reloading: Promise<void> = Promise.resolve();
  // Workers accept connections themselves (the kernel spreads them); with Node's default round-robin
  // the primary would accept every connection and pass it over IPC, which halves the handshake rate.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: process.argv[1] ?? '', args: ['serve', '-c', configPath], silent: false });

  let restarts = 0;
  /** Start a worker; resolves true once it listens, false if it exits first. */
  const fork = (): Promise<boolean> =>
    new Promise((resolve) => {
      const forkedAt = Date.now();
      const worker = cluster.fork({ DANCEGATE_WORKER: '1' });
      workers.add(worker);
      worker.on('error', (err: Error) => logger.error({ event: 'worker-error', workerPid: worker.process.pid, error: err.message }, 'worker channel error'));
      worker.on('disconnect', () => ready.delete(worker));
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'dancegate:config-request') {
          void reloading.then(() => {
            if (worker.isConnected()) worker.send({ type: 'dancegate:config', text: accepted.text, generation: accepted.generation });
          });
        } else if (m.type === 'dancegate:listening') {
          listeners = m.listeners ?? listeners;
          ready.add(worker);
          // A worker that became ready during shutdown is told at once.
          if (shuttingDown && worker.isConnected()) worker.send({ type: 'dancegate:shutdown' });
          resolve(true);
        }
      });
      worker.once('exit', (code, signal) => {
        workers.delete(worker);
        ready.delete(worker);
        resolve(false);
        if (shuttingDown || starting) return;
        // A worker that ran for a minute was not crash-looping: start the back-off afresh.
        if (Date.now() - forkedAt > 60_000) restarts = 0;
        restarts++;
        restartsTotal.inc();
        logger.error({ event: 'worker-exit', workerPid: worker.process.pid, code, signal, restarts }, 'worker died; starting a new one');
        const timer = setTimeout(() => {
          restartTimers.delete(timer);
          if (!shuttingDown) void fork();
        }, Math.min(5_000, 250 * restarts));
        restartTimers.add(timer);
      });
    });

  /** Send `type` to each target and collect its answer (or a timeout/exited stand-in). */
  const ask = (type: string, extra: Partial<WorkerMessage> = {}, timeoutMs = 5_000, targets: readonly Worker[] = [...ready]): Promise<WorkerMessage[]> =>
    Promise.all(
      targets.map(
        (worker) =>
          new Promise<WorkerMessage>((resolve) => {
            const id = nextId++;
            const finish = (reply: WorkerMessage): void => {
              clearTimeout(timer);
              worker.off('message', onMessage);
              worker.off('exit', onExit);
              resolve(reply);
            };
            const timer = setTimeout(() => finish({ type: 'timeout', id, error: `worker ${worker.process.pid} did not answer within ${timeoutMs} ms` }), timeoutMs);
            const onMessage = (m: WorkerMessage): void => {
              if (m.id === id) finish(m);
            };
            // A worker that dies meanwhile will not answer.
            const onExit = (): void => finish({ type: 'exited', id, error: `worker ${worker.process.pid} exited` });
            worker.on('message', onMessage);
            worker.once('exit', onExit);
            if (worker.isConnected()) worker.send({ ...extra, type, id });
            else finish({ type: 'exited', id, error: `worker ${worker.process.pid} is gone` });
          }),
      ),
    );

  const stopWorkers = async (): Promise<number[]> => {
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();
    const exits = [...workers].map((w) => new Promise<number>((r) => w.once('exit', (code) => r(code ?? 1))));
    // Ready workers drain; one still starting gets the message as soon as it is ready.
    for (const w of ready) if (w.isConnected()) w.send({ type: 'dancegate:shutdown' });
    return Promise.all(exits);
  };

  const started = await Promise.all(Array.from({ length: config.workers }, fork));
  starting = false;
  if (!started.every(Boolean)) {
    shuttingDown = true;
    await stopWorkers();
    throw new Error(`${started.filter((ok) => !ok).length} of ${config.workers} workers exited before their listeners were up (their log says why)`);
  }
  let admin: AdminServer | undefined;
  try {
    admin = config.admin
      ? await startAdminServer(config.admin.host, config.admin.port, {
          metrics: async () => {
            // Partial results rather than none: a worker still starting does not answer yet.
            const replies = await ask('dancegate:metrics', {}, 3_000);
            const perWorker = replies.flatMap((r) => (r.metrics ? [r.metrics.filter((m) => !PRIMARY_FAMILIES.has((m as { name: string }).name))] : []));
            const merged = AggregatorRegistry.aggregate([...perWorker, await primaryRegistry.getMetricsAsJSON()]);
            return { contentType: merged.contentType, body: await merged.metrics() };
          },
          readiness: async () => {
            const replies = await ask('dancegate:status');
            const readyCount = replies.filter((r) => r.ready?.ready === true).length;
            // (a worker still starting after a restart is not counted: not ready)
            const ok = readyCount === config.workers;
            return { ready: !shuttingDown && ok, checks: { workers: { ok, detail: `${readyCount}/${config.workers} workers ready` } } };
          },
          status: async () => {
            const replies = await ask('dancegate:status');
            return { version, pid: process.pid, role: 'primary', startedAt, configFile: config.source, generation: accepted.generation, lastReload: lastReload ?? null, workers: replies.map((r) => r.status ?? { error: r.error ?? 'no answer' }) };
          },
          health: () => (ready.size > 0 ? { ok: true, detail: `${ready.size} worker(s) up` } : { ok: false, detail: 'no worker is up' }),
        })
      : undefined;
  } catch (err) {
    shuttingDown = true;
    await stopWorkers();
    throw new Error(`admin listener ${config.admin?.host}:${config.admin?.port}: ${errorText(err)}`);
  }
  for (const l of listeners) io.stderr.write(`dancegate: listener ${l.name} (${l.mode}) on ${l.host}:${l.port}, config ${config.source}, generation ${accepted.generation}, ${config.workers} workers\n`);
  if (admin) io.stderr.write(`dancegate: admin on http://${admin.host}:${admin.port}/ (metrics, healthz, readyz, status)\n`);
  logger.info({ event: 'start', role: 'primary', workers: config.workers, listeners, admin: admin ? `${admin.host}:${admin.port}` : null }, 'dancegate started');

  const reloadOnce = async (): Promise<void> => {
    const time = new Date().toISOString();
    const generation = accepted.generation;
    const fail = (error: string, message: string): void => {
      lastReload = { ok: false, time, generation, error };
      reloads.inc({ result: 'failure' });
      lastReloadSuccess.set(0);
      logger.error({ event: 'reload', ok: false, generation, error }, message);
    };
    let text: string;
    try {
      // Validated here, so an invalid file never reaches a worker.
      const read = await readConfigText(configPath);
      text = read.text;
      const fixed = fixedSettingsChanged(config, await parseConfigText(text, read.source));
      if (fixed.length > 0) logger.warn({ event: 'reload', unchanged: fixed }, `${fixed.join(', ')} take effect only after a restart`);
    } catch (err) {
      return fail(errorText(err), 'configuration rejected; the previous one stays in force');
    }
    // Phase 1: every worker builds the new generation without switching.
    const targets = [...ready];
    const nextGeneration = generation + 1;
    const prepared = await ask('dancegate:prepare', { text, generation: nextGeneration }, 30_000, targets);
    const refused = prepared.find((r) => r.type !== 'dancegate:prepared' || r.ok !== true);
    if (refused) {
      for (const w of targets) if (w.isConnected()) w.send({ type: 'dancegate:abort', generation: nextGeneration });
      return fail(refused.error ?? 'a worker did not prepare the new configuration', 'reload refused by a worker; no worker switched');
    }
    // Phase 2: all switch. A worker started from now on gets the new text.
    accepted = { text, generation: nextGeneration };
    const committed = await ask('dancegate:commit', { generation: nextGeneration }, 10_000, targets);
    const lost = committed.filter((r) => r.result?.ok !== true);
    if (lost.length > 0) logger.error({ event: 'reload', errors: lost.map((r) => r.error ?? r.result?.error) }, 'a worker did not commit (it is replaced with the new configuration if it died)');
    lastReload = { ok: true, time, generation: nextGeneration };
    reloads.inc({ result: 'success' });
    lastReloadSuccess.set(1);
    logger.info({ event: 'reload', ok: true, generation: nextGeneration }, 'configuration reloaded in every worker');
  };
  const reload = (): Promise<void> => {
    reloading = reloading.then(reloadOnce, reloadOnce);
    return reloading;
  };
  if (config.watchConfig) watchConfigFile(config.source, () => void reload(), logger);

  const done = new Promise<number>((resolve) => {
    const stop = (why: string): void => {
      if (shuttingDown) return;
      shuttingDown = true;
      logger.info({ event: 'shutdown', signal: why }, 'draining every worker');
      void stopWorkers().then(async (codes) => {
        await admin?.close();
        const code = codes.every((c) => c === 0) ? 0 : 1;
        logger.info({ event: 'shutdown', clean: code === 0 }, code === 0 ? 'every worker drained cleanly' : 'a worker had to cut connections');
        await new Promise<void>((r) => logger.flush(() => r()));
        resolve(code);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      reopenLog(logger, config.log);
      for (const w of ready) if (w.isConnected()) w.send({ type: 'dancegate:reopen-log' });
      void reload();
    });
  });
  return { done, listeners, admin: admin ? { host: admin.host, port: admin.port } : undefined };
}

/**
 * Serve `configPath`. `config` is its validated content (single process);
 * a cluster primary reads the file itself (it keeps the text), and a worker
 * gets the text from the primary.
 */
export async function serve(configPath: string, config: DancegateConfig | undefined, version: string, io: ServeIo): Promise<Served> {
  if (cluster.isWorker) {
    const fromPrimary = await configFromPrimary(configPath);
    return runProxyProcess(fromPrimary.config, version, io, 'worker', fromPrimary.generation);
  }
  if (config === undefined) throw new Error('serve: no configuration');
  if (config.workers > 1) return runPrimary(configPath, version, io);
  return runProxyProcess(config, version, io, 'single');
}
