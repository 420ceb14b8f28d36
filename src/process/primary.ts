/**
 * The cluster primary (`workers: N`): forks N workers sharing the
 * listeners, restarts a worker that dies, serves the admin endpoints with
 * metrics aggregated across workers (counters kept across worker deaths),
 * and forwards reload, unban and shutdown.
 *
 * The primary holds the text of the configuration in force and hands it to
 * every worker it starts (a restarted worker never reads a file that was
 * rejected, or edited but not yet reloaded); a reload is two-phase: every
 * worker prepares the new text, then all commit or all abort.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { DancegateConfig } from '../config/types.js';
import type { AdminServer, Readiness } from '../metrics/admin-server.js';
import { startAdmin } from './admin.js';
import { errorText, fixedSettingsChanged, type ConfigSource, type ConfigText } from './config-source.js';
import { askAll, asWorkerMessage, isNoAnswer, type MetricFamily, type WorkerChannel } from './ipc.js';
import type { Logger } from 'pino';
import { createLogger, reopenLog, settleLog, startLogged } from './logging.js';
import { ReloadLedger } from './reload-ledger.js';
import { checkResolverAtStart, resolverReadiness, type Probe } from './resolver-check.js';
import type { ListenerAddress } from './running-proxy.js';
import type { ServeIo, Served } from './served.js';
import { StartError } from './start-error.js';
import { describeUnban } from './unban.js';
import { onStopAndHangup } from './signals.js';
import { validationAtStart } from './validation.js';
import { WorkerCounters } from './worker-counters.js';

/** Metric families the primary owns in a cluster (a reload is one cluster-wide event); workers' copies are dropped. */
const PRIMARY_FAMILIES = new Set(['dancegate_config_reloads_total', 'dancegate_config_last_reload_successful']);
const METRICS_TIMEOUT_MS = 3_000;
const STATUS_TIMEOUT_MS = 2_000;
const PREPARE_TIMEOUT_MS = 30_000;
const COMMIT_TIMEOUT_MS = 10_000;

/** The primary's own metrics. */
function primaryMetrics(readyCount: () => number): { registry: Registry; reloads: Counter<'result'>; lastReloadSuccess: Gauge; restarts: Counter } {
  const registry = new Registry();
  const reloads = new Counter({ name: 'dancegate_config_reloads_total', help: 'Configuration reloads by result (success, failure)', labelNames: ['result'] as const, registers: [registry] });
  const lastReloadSuccess = new Gauge({ name: 'dancegate_config_last_reload_successful', help: '1 if the last reload succeeded (or none was tried), 0 if it was rejected', registers: [registry] });
  lastReloadSuccess.set(1);
  reloads.inc({ result: 'success' }, 0);
  reloads.inc({ result: 'failure' }, 0);
  const restarts = new Counter({ name: 'dancegate_worker_restarts_total', help: 'Workers that died and were replaced', registers: [registry] });
  new Gauge({
    name: 'dancegate_workers_ready',
    help: 'Workers with their listeners bound, answering the primary',
    registers: [registry],
    collect() {
      this.set(readyCount());
    },
  });
  return { registry, reloads, lastReloadSuccess, restarts };
}

export async function runPrimary(source: ConfigSource, version: string, io: ServeIo, probe: Probe): Promise<Served> {
  const initial = await source.read();
  const logger = createLogger(initial.config.log);
  return startLogged(logger, errorText, () => servePrimary(logger, initial, source, version, io, probe));
}

async function servePrimary(logger: Logger, initial: ConfigText, source: ConfigSource, version: string, io: ServeIo, probe: Probe): Promise<Served> {
  const config = initial.config;
  // The configuration in force: its text is what every worker gets, at start and when restarted.
  let accepted = { text: initial.text, config, generation: 1 };
  await checkResolverAtStart(config, probe, logger, validationAtStart(config));
  const startedAt = new Date().toISOString();
  const workers = new Set<Worker>();
  /** Workers that have bound their listeners and answer messages. */
  const ready = new Set<Worker>();
  const metrics = primaryMetrics(() => ready.size);
  const ledger = new ReloadLedger(logger, metrics);
  const counters = new WorkerCounters();
  const resolverCheck = resolverReadiness(() => accepted.config, probe);
  let shuttingDown = false;
  let starting = true;
  /** Why a worker could not start (its own words), for the start-up error. */
  let startFailure: string | undefined;
  const restartTimers = new Set<NodeJS.Timeout>();
  let listeners: readonly ListenerAddress[] = [];
  /** The reload in progress (reloads run one at a time; a starting worker waits for it). */
  let reloading: Promise<void> = Promise.resolve();
  // Workers accept connections themselves (the kernel spreads them); with Node's default round-robin
  // the primary would accept every connection and pass it over IPC, which halves the handshake rate.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: process.argv[1] ?? '', args: ['serve', '-c', source.path], silent: false });

  let restarts = 0;
  /** Start a worker; resolves true once it listens, false if it exits first. */
  const fork = (): Promise<boolean> =>
    new Promise((resolve) => {
      const forkedAt = Date.now();
      const worker = cluster.fork({ DANCEGATE_WORKER: '1' });
      workers.add(worker);
      counters.add(worker.id);
      let failure: string | undefined;
      worker.on('error', (err: Error) => logger.error({ event: 'worker-error', workerPid: worker.process.pid, error: err.message }, 'worker channel error'));
      worker.on('disconnect', () => ready.delete(worker));
      worker.on('message', (raw: unknown) => {
        const m = asWorkerMessage(raw);
        if (m?.type === 'dancegate:config-request') {
          void reloading.then(() => {
            if (worker.isConnected()) worker.send({ type: 'dancegate:config', text: accepted.text, generation: accepted.generation });
          });
        } else if (m?.type === 'dancegate:listening') {
          listeners = m.listeners;
          ready.add(worker);
          // A worker that became ready during shutdown is told at once.
          if (shuttingDown && worker.isConnected()) worker.send({ type: 'dancegate:shutdown' });
          resolve(true);
        } else if (m?.type === 'dancegate:failed') {
          failure = m.error;
          startFailure ??= m.error;
        }
      });
      worker.once('exit', (code, signal) => {
        workers.delete(worker);
        ready.delete(worker);
        counters.retire(worker.id);
        resolve(false);
        if (shuttingDown || starting) return;
        // A worker that ran for a minute was not crash-looping: start the back-off afresh.
        if (Date.now() - forkedAt > 60_000) restarts = 0;
        restarts++;
        metrics.restarts.inc();
        logger.error({ event: 'worker-exit', workerPid: worker.process.pid, code, signal, restarts, error: failure }, 'worker died; starting a new one');
        const timer = setTimeout(
          () => {
            restartTimers.delete(timer);
            if (!shuttingDown) void fork();
          },
          Math.min(5_000, 250 * restarts),
        );
        restartTimers.add(timer);
      });
    });

  const stopWorkers = async (): Promise<number[]> => {
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();
    const exits = [...workers].map((w) => new Promise<number>((r) => w.once('exit', (code) => r(code ?? 1))));
    // Ready workers drain; one still starting gets the message as soon as it is ready.
    for (const w of ready) if (w.isConnected()) w.send({ type: 'dancegate:shutdown' });
    return Promise.all(exits);
  };
  const readyWorkers = (): WorkerChannel[] => [...ready];

  const started = await Promise.all(Array.from({ length: config.workers }, fork));
  starting = false;
  if (!started.every(Boolean)) {
    shuttingDown = true;
    await stopWorkers();
    await settleLog(logger);
    throw new StartError(startFailure ?? `${started.filter((ok) => !ok).length} of ${config.workers} workers exited before their listeners were up (their log says why)`);
  }

  const readiness = async (): Promise<Readiness> => {
    const [replies, resolver] = await Promise.all([askAll(readyWorkers(), { type: 'dancegate:status' }, STATUS_TIMEOUT_MS), resolverCheck()]);
    const readyCount = replies.filter((r) => !isNoAnswer(r) && r.ready.ready).length;
    // Ready while one worker serves every listener: a worker being replaced does not take the whole instance out.
    const serving = { ok: !shuttingDown && readyCount > 0, detail: shuttingDown ? 'draining' : `${readyCount}/${config.workers} workers ready` };
    return { ready: serving.ok && resolver.ok, checks: { workers: serving, resolver } };
  };

  let admin: AdminServer | undefined;
  try {
    admin = config.admin
      ? await startAdmin(config.admin, {
          metrics: async () => {
            const targets = [...ready];
            // Partial results rather than none: a worker that does not answer stands in with its last counters.
            const replies = await askAll(targets, { type: 'dancegate:metrics' }, METRICS_TIMEOUT_MS);
            const answers = new Map<number, MetricFamily[]>();
            replies.forEach((r, i) => {
              const worker = targets[i];
              if (worker !== undefined && !isNoAnswer(r))
                answers.set(
                  worker.id,
                  r.metrics.filter((m) => !PRIMARY_FAMILIES.has(m.name)),
                );
            });
            const merged = AggregatorRegistry.aggregate([...counters.scrape(answers), await metrics.registry.getMetricsAsJSON()]);
            return { contentType: merged.contentType, body: await merged.metrics() };
          },
          readiness,
          status: async () => {
            const targets = readyWorkers();
            const replies = await askAll(targets, { type: 'dancegate:status' }, STATUS_TIMEOUT_MS);
            const workerStatus = replies.map((r, i) => (isNoAnswer(r) ? { pid: targets[i]?.process.pid, error: r.error } : r.status));
            return { version, pid: process.pid, role: 'primary', startedAt, configFile: config.source, generation: accepted.generation, lastReload: ledger.last ?? null, workers: workerStatus };
          },
          health: () => (ready.size > 0 ? { ok: true, detail: `${ready.size} worker(s) up` } : { ok: false, detail: 'no worker is up' }),
          unban: async (address) => {
            const targets = readyWorkers();
            const replies = await askAll(targets, { type: 'dancegate:unban', address }, STATUS_TIMEOUT_MS);
            const results = replies.flatMap((r) => (isNoAnswer(r) ? [] : [r.result]));
            const unanswered = replies.flatMap((r) => (isNoAnswer(r) ? [r.error] : []));
            const answer = describeUnban(address, results, unanswered);
            logger.info({ event: 'unban', ...answer }, answer.detail);
            return answer;
          },
        })
      : undefined;
  } catch (err) {
    shuttingDown = true;
    await stopWorkers();
    throw err;
  }
  for (const l of listeners)
    io.stderr.write(`dancegate: listener ${l.name} (${l.mode}) on ${l.host}:${l.port}, config ${config.source}, generation ${accepted.generation}, ${config.workers} workers\n`);
  if (admin) io.stderr.write(`dancegate: admin on http://${admin.host}:${admin.port}/ (metrics, healthz, readyz, status)\n`);
  logger.info({ event: 'start', role: 'primary', workers: config.workers, listeners, admin: admin ? `${admin.host}:${admin.port}` : null }, 'dancegate started');

  const reloadOnce = async (): Promise<void> => {
    const generation = accepted.generation;
    let next: { text: string; config: DancegateConfig };
    try {
      // Validated here, so an invalid file never reaches a worker.
      next = await source.read();
    } catch (err) {
      ledger.failed(generation, errorText(err));
      return;
    }
    ledger.unchanged(fixedSettingsChanged(config, next.config));
    // Phase 1: every worker builds the new generation without switching.
    const targets = readyWorkers();
    const nextGeneration = generation + 1;
    const prepared = await askAll(targets, { type: 'dancegate:prepare', text: next.text, generation: nextGeneration }, PREPARE_TIMEOUT_MS);
    const refused = prepared.find((r) => isNoAnswer(r) || !r.ok);
    if (refused !== undefined) {
      for (const w of targets) if (w.isConnected()) w.send({ type: 'dancegate:abort', generation: nextGeneration });
      const error = 'error' in refused ? refused.error : 'a worker did not prepare the new configuration';
      ledger.failed(generation, error, { failure: 'reload refused by a worker; no worker switched' });
      return;
    }
    // Phase 2: all switch. A worker started from now on gets the new text.
    accepted = { text: next.text, config: next.config, generation: nextGeneration };
    const committed = await askAll(targets, { type: 'dancegate:commit', generation: nextGeneration }, COMMIT_TIMEOUT_MS);
    const lost = committed.flatMap((r) => (isNoAnswer(r) ? [r.error] : r.result.ok ? [] : [r.result.error ?? 'not committed']));
    if (lost.length > 0) logger.error({ event: 'reload', errors: lost }, 'a worker did not commit (it is replaced with the new configuration if it died)');
    ledger.record({ ok: true, time: new Date().toISOString(), generation: nextGeneration }, { success: 'configuration reloaded in every worker' });
  };
  const reload = (): Promise<void> => {
    reloading = reloading.then(reloadOnce, reloadOnce);
    return reloading;
  };
  if (config.watchConfig) source.watch(() => void reload(), logger);

  const done = new Promise<number>((resolve) => {
    const stop = (why: string): void => {
      if (shuttingDown) return;
      shuttingDown = true;
      logger.info({ event: 'shutdown', signal: why }, 'draining every worker');
      void stopWorkers().then(async (codes) => {
        await admin?.close();
        const code = codes.every((c) => c === 0) ? 0 : 1;
        logger.info({ event: 'shutdown', clean: code === 0 }, code === 0 ? 'every worker drained cleanly' : 'a worker had to cut connections');
        await settleLog(logger);
        resolve(code);
      });
    };
    onStopAndHangup(stop, () => {
      reopenLog(logger, config.log);
      for (const w of ready) if (w.isConnected()) w.send({ type: 'dancegate:reopen-log' });
      void reload();
    });
  });
  return { done, listeners, admin: admin ? { host: admin.host, port: admin.port } : undefined };
}
