/**
 * A cluster worker: serves the configuration text the primary hands it
 * (never the file), and follows the primary's messages (two-phase reload,
 * status, metrics, unban, log reopening, shutdown) or its disappearance.
 * Signals are the primary's business.
 */
import type { DancegateConfig } from '../config/types.js';
import { errorText, type ConfigSource } from './config-source.js';
import { asPrimaryMessage, type PrimaryMessage, type WorkerMessage } from './ipc.js';
import { createLogger, reopenLog, settleLog } from './logging.js';
import { startProxyProcess } from './proxy-process.js';
import type { PreparedReload } from './running-proxy.js';
import type { ServeIo, Served } from './served.js';
import { StartError } from './start-error.js';
import { firstCallOnly } from './signals.js';

const CONFIG_TIMEOUT_MS = 30_000;
/** A prepared reload the primary never settles (it died) is aborted after this. */
const PREPARED_TIMEOUT_MS = 60_000;

function send(message: WorkerMessage): void {
  if (process.connected) process.send?.(message);
}

/** The configuration in force, from the primary. */
async function configFromPrimary(source: ConfigSource): Promise<{ config: DancegateConfig; generation: number }> {
  const given = await new Promise<Extract<PrimaryMessage, { type: 'dancegate:config' }>>((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      reject(new StartError(`the primary sent no configuration within ${CONFIG_TIMEOUT_MS / 1000} s`));
    }, CONFIG_TIMEOUT_MS);
    const onMessage = (raw: unknown): void => {
      const m = asPrimaryMessage(raw);
      if (m?.type !== 'dancegate:config') return;
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve(m);
    };
    process.on('message', onMessage);
    send({ type: 'dancegate:config-request' });
  });
  return { config: await source.parse(given.text), generation: given.generation };
}

export async function runWorker(source: ConfigSource, version: string, _io: ServeIo): Promise<Served> {
  // Workers follow the primary: its messages, or its disappearance.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => undefined);
  let config: DancegateConfig;
  let firstGeneration: number;
  try {
    ({ config, generation: firstGeneration } = await configFromPrimary(source));
  } catch (err) {
    send({ type: 'dancegate:failed', error: errorText(err) });
    throw err;
  }
  const logger = createLogger(config.log);
  let served: Awaited<ReturnType<typeof startProxyProcess>>;
  try {
    served = await startProxyProcess(config, { role: 'worker', version, logger, generation: firstGeneration });
  } catch (err) {
    // The primary says why, once, for every worker.
    send({ type: 'dancegate:failed', error: errorText(err) });
    await settleLog(logger);
    throw err;
  }
  const { proxy, ledger } = served;
  logger.info({ event: 'start', generation: proxy.generation, listeners: proxy.listeners, admin: null, role: 'worker' }, 'dancegate started');

  let pending: { generation: number; prepared: PreparedReload } | undefined;
  const prepare = async (m: Extract<PrimaryMessage, { type: 'dancegate:prepare' }>): Promise<void> => {
    await pending?.prepared.abort();
    pending = undefined;
    let next: DancegateConfig;
    try {
      next = await source.parse(m.text);
    } catch (err) {
      return send({ type: 'dancegate:prepared', id: m.id, ok: false, error: errorText(err) });
    }
    const prepared = await proxy.prepareReload(next);
    if ('error' in prepared) return send({ type: 'dancegate:prepared', id: m.id, ok: false, error: prepared.error });
    const entry = { generation: m.generation, prepared };
    pending = entry;
    // The primary always answers; if it does not (it died), do not hold the new listeners forever.
    setTimeout(() => {
      if (pending === entry) void entry.prepared.abort().then(() => (pending = undefined));
    }, PREPARED_TIMEOUT_MS).unref();
    send({ type: 'dancegate:prepared', id: m.id, ok: true });
  };
  const commit = (m: Extract<PrimaryMessage, { type: 'dancegate:commit' }>): void => {
    const entry = pending;
    if (entry === undefined || entry.generation !== m.generation) {
      return send({ type: 'dancegate:committed', id: m.id, result: { ok: false, time: new Date().toISOString(), generation: proxy.generation, error: 'no prepared reload for this generation' } });
    }
    pending = undefined;
    const result = ledger.record(entry.prepared.commit(m.generation), { failure: 'reload could not be committed' });
    send({ type: 'dancegate:committed', id: m.id, result });
  };

  const done = new Promise<number>((resolve) => {
    const stop = firstCallOnly((why: string): void => {
      void served.drain(why).then(async (code) => {
        await settleLog(logger);
        resolve(code);
      });
    });
    process.on('message', (raw: unknown) => {
      const m = asPrimaryMessage(raw);
      switch (m?.type) {
        case 'dancegate:prepare':
          return void prepare(m);
        case 'dancegate:commit':
          return commit(m);
        case 'dancegate:abort': {
          const entry = pending;
          pending = undefined;
          if (entry !== undefined) void entry.prepared.abort();
          return;
        }
        case 'dancegate:reopen-log':
          return reopenLog(logger, config.log);
        case 'dancegate:shutdown':
          return stop('primary');
        case 'dancegate:status':
          return void served.readiness().then((ready) => send({ type: 'dancegate:status', id: m.id, status: served.status(), ready }));
        case 'dancegate:metrics':
          return void served.metricsJson().then((metrics) => send({ type: 'dancegate:metrics', id: m.id, metrics }));
        case 'dancegate:unban': {
          const result = served.unban(m.address);
          logger.info({ event: 'unban', address: m.address, ...result }, 'penalty box: unban');
          return send({ type: 'dancegate:unbanned', id: m.id, result });
        }
        default:
          return;
      }
    });
    process.on('disconnect', () => stop('primary gone'));
    send({ type: 'dancegate:listening', listeners: [...proxy.listeners], generation: proxy.generation });
  });
  return { done, listeners: proxy.listeners, admin: undefined };
}
