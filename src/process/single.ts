/**
 * `serve` as one process: the proxy, the admin endpoints, and the signals
 * (SIGHUP reopens the log and reloads; SIGTERM/SIGINT drain). Exit code 0 =
 * clean drain, 1 = connections had to be cut at the deadline.
 */
import type { Logger } from 'pino';
import { createLogger, reopenLog, settleLog, startLogged } from './logging.js';
import type { AdminServer } from '../metrics/admin-server.js';
import { startAdmin } from './admin.js';
import { errorText, fixedSettingsChanged, type ConfigSource } from './config-source.js';
import { startProxyProcess } from './proxy-process.js';
import { checkResolverAtStart, resolverReadiness, type Probe } from './resolver-check.js';
import type { ServeIo, Served } from './served.js';
import { describeUnban } from './unban.js';
import type { DancegateConfig } from '../config/types.js';
import { firstCallOnly, onStopAndHangup } from './signals.js';
import { validationAtStart } from './validation.js';

export async function runSingle(source: ConfigSource, config: DancegateConfig, version: string, io: ServeIo, probe: Probe): Promise<Served> {
  const logger = createLogger(config.log);
  return startLogged(logger, errorText, () => serveSingle(logger, source, config, version, io, probe));
}

async function serveSingle(logger: Logger, source: ConfigSource, config: DancegateConfig, version: string, io: ServeIo, probe: Probe): Promise<Served> {
  await checkResolverAtStart(config, probe, logger, validationAtStart(config));
  const served = await startProxyProcess(config, { role: 'single', version, logger, resolverCheck: resolverReadiness(() => served.proxy.config, probe) });
  const { proxy, ledger } = served;

  let admin: AdminServer | undefined;
  if (config.admin) {
    try {
      admin = await startAdmin(config.admin, {
        metrics: () => served.metricsText(),
        readiness: () => served.readiness(),
        status: async () => served.status(),
        unban: async (address) => {
          const answer = describeUnban(address, [served.unban(address)]);
          logger.info({ event: 'unban', ...answer }, answer.detail);
          return answer;
        },
      });
    } catch (err) {
      // Never leave the listeners serving behind a failed start.
      await proxy.close();
      throw err;
    }
  }
  logger.info({ event: 'start', generation: proxy.generation, listeners: proxy.listeners, admin: admin ? `${admin.host}:${admin.port}` : null, role: 'single' }, 'dancegate started');
  for (const l of proxy.listeners) io.stderr.write(`dancegate: listener ${l.name} (${l.mode}) on ${l.host}:${l.port}, config ${config.source}, generation ${proxy.generation}\n`);
  if (admin) io.stderr.write(`dancegate: admin on http://${admin.host}:${admin.port}/ (metrics, healthz, readyz, status)\n`);

  const reloadOnce = async (): Promise<void> => {
    let next: DancegateConfig;
    try {
      next = (await source.read()).config;
    } catch (err) {
      ledger.failed(proxy.generation, errorText(err));
      return;
    }
    const fixed = fixedSettingsChanged(config, next);
    const result = ledger.record(await proxy.reload(next));
    if (result.ok) ledger.unchanged(fixed);
  };
  // One reload at a time: a second SIGHUP waits for the first.
  let reloading: Promise<void> = Promise.resolve();
  const reload = (): void => {
    reloading = reloading.then(reloadOnce, reloadOnce);
  };

  const done = new Promise<number>((resolve) => {
    const stop = firstCallOnly((why: string): void => {
      void served.drain(why).then(async (code) => {
        await admin?.close();
        await settleLog(logger);
        resolve(code);
      });
    });
    onStopAndHangup(stop, () => {
      reopenLog(logger, config.log);
      reload();
    });
    if (config.watchConfig) source.watch(reload, logger);
  });
  return { done, listeners: proxy.listeners, admin: admin ? { host: admin.host, port: admin.port } : undefined };
}
