/**
 * One process serving a configuration: the running proxy with its metrics,
 * reload ledger, readiness, status, unban and drain. The single process
 * and each cluster worker are this plus their own signals or messages.
 */
import type { Logger } from 'pino';
import type { DancegateConfig } from '../config/types.js';
import { loggerSink } from '../connection/decision-log.js';
import type { Readiness } from '../metrics/admin-server.js';
import { ProxyMetrics, processMetrics } from '../metrics/metrics.js';
import { register } from 'prom-client';
import type { MetricFamily, UnbanResult } from './ipc.js';
import { ReloadLedger } from './reload-ledger.js';
import type { Check } from './resolver-check.js';
import { startProxy, type ListenerAddress, type RunningProxy } from './running-proxy.js';
import { describeProxy } from './status.js';
import { logUpstreamErrors } from './upstream-log.js';
import { logHttpRequests } from './access-log.js';
import { logSessions } from './session-log.js';

export interface ProxyProcess {
  readonly proxy: RunningProxy;
  readonly ledger: ReloadLedger;
  readiness(): Promise<Readiness>;
  status(): Record<string, unknown>;
  unban(address: string): UnbanResult;
  /** Prometheus text of this process. */
  metricsText(): Promise<{ contentType: string; body: string }>;
  /** This process's metrics as prom-client JSON (what a worker hands the primary). */
  metricsJson(): Promise<MetricFamily[]>;
  /** Drain up to the configured deadline, stop logging upstream failures and requests; resolves with the exit code (0 clean, 1 cut). */
  drain(why: string): Promise<number>;
}

export interface ProxyProcessOptions {
  readonly role: 'single' | 'worker';
  readonly version: string;
  readonly logger: Logger;
  /** The generation number of `config` (a worker started after reloads); default 1. */
  readonly generation?: number;
  /** The resolver check of /readyz; none in a worker (the primary asks). */
  readonly resolverCheck?: () => Promise<Check>;
}

export async function startProxyProcess(config: DancegateConfig, options: ProxyProcessOptions): Promise<ProxyProcess> {
  const { logger } = options;
  const startedAt = new Date().toISOString();
  // The gauges read the proxy once it exists.
  const live: { proxy?: RunningProxy } = {};
  const metrics = processMetrics(options.version, {
    gateStats: () => live.proxy?.gate?.stats(),
    handshakesInProgress: () => live.proxy?.admission.handshakesInProgress ?? 0,
    openConnections: () => live.proxy?.openConnections ?? 0,
    generation: () => live.proxy?.generation ?? 0,
  });
  const stopUpstreamErrorLog = logUpstreamErrors(logger);
  const stopAccessLog = logHttpRequests(logger);
  const stopSessionLog = logSessions(logger);
  const stopForwarderLogs = (): void => {
    stopUpstreamErrorLog();
    stopAccessLog();
    stopSessionLog();
  };
  let proxy: RunningProxy;
  try {
    proxy = await startProxy(config, { log: loggerSink(logger), generation: options.generation ?? 1 });
    metrics.knownListeners(config.listeners);
    metrics.tlsEngines(proxy.listeners);
    logEngineFallbacks(logger, proxy.listeners);
  } catch (err) {
    stopForwarderLogs();
    throw err;
  }
  live.proxy = proxy;
  const ledger = new ReloadLedger(logger, metrics, () => {
    metrics.knownListeners(proxy.config.listeners);
    metrics.tlsEngines(proxy.listeners);
    logEngineFallbacks(logger, proxy.listeners);
  });
  let draining = false;

  return {
    proxy,
    ledger,
    async readiness(): Promise<Readiness> {
      const listeners = { ok: !draining && proxy.listeners.length > 0, detail: draining ? 'draining' : `${proxy.listeners.length} listener(s) bound` };
      if (options.resolverCheck === undefined) return { ready: listeners.ok, checks: { listeners } };
      const resolver = await options.resolverCheck();
      return { ready: listeners.ok && resolver.ok, checks: { listeners, resolver } };
    },
    status: () => ({ ...describeProxy(proxy, options.version, startedAt), lastReload: ledger.last ?? proxy.lastReload ?? null, role: options.role }),
    unban: (address) => proxy.admission.unban(address),
    metricsText: async () => ({ contentType: ProxyMetrics.contentType, body: await ProxyMetrics.text() }),
    // prom-client's JSON is plain data (the collect functions do not cross IPC).
    metricsJson: async () => (await register.getMetricsAsJSON()) as unknown as MetricFamily[],
    async drain(why: string): Promise<number> {
      draining = true;
      logger.info({ event: 'shutdown', signal: why, openConnections: proxy.openConnections, deadlineMs: proxy.config.shutdown.drainTimeoutMs }, 'draining');
      const clean = await proxy.drain(proxy.config.shutdown.drainTimeoutMs);
      stopForwarderLogs();
      logger.info({ event: 'shutdown', clean }, clean ? 'drained cleanly' : 'drain deadline passed; remaining connections were closed');
      return clean ? 0 : 1;
    },
  };
}

/** tls.engine auto on node:tls: say why, once per start or reload (a draft -13 client is then known by its SAN only). */
function logEngineFallbacks(logger: Logger, listeners: readonly ListenerAddress[]): void {
  for (const l of listeners) {
    if (l.tlsEngineFallback === undefined) continue;
    logger.warn(
      { event: 'tls-engine', listener: l.name, engine: 'node', reason: l.tlsEngineFallback },
      `listener ${l.name}: the native TLS engine is unavailable (${l.tlsEngineFallback}); using node:tls, which cannot ask for dane_clientid in the TLS 1.3 Certificate message`,
    );
  }
}
