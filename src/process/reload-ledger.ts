/**
 * The one place a process records the result of a reload: the reload
 * counters (`dancegate_config_reloads_total{result}`,
 * `dancegate_config_last_reload_successful`), the last result (for /status),
 * and the log line. Single process, worker and primary each keep one.
 */
import type { Logger } from 'pino';
import type { ReloadResult } from './running-proxy.js';

/** The reload metrics, as prom-client's Counter and Gauge offer them. */
export interface ReloadCounters {
  readonly reloads: { inc(labels: { result: 'success' | 'failure' }): void };
  readonly lastReloadSuccess: { set(value: number): void };
}

/** What the log line says; defaults fit a single process. */
export interface ReloadWording {
  readonly success?: string;
  readonly failure?: string;
}

export const RELOADED = 'configuration reloaded';
export const REJECTED = 'configuration rejected; the previous one stays in force';

export class ReloadLedger {
  private lastResult: ReloadResult | undefined;

  constructor(
    private readonly logger: Pick<Logger, 'info' | 'error' | 'warn'>,
    private readonly counters: ReloadCounters,
    /** Called after each successful reload (e.g. to start the new listeners' metric series at 0). */
    private readonly onReloaded: () => void = () => undefined,
  ) {}

  /** The last reload's result (undefined: none was tried). */
  get last(): ReloadResult | undefined {
    return this.lastResult;
  }

  /** Record `result`, count it and log it; returns it. */
  record(result: ReloadResult, wording: ReloadWording = {}): ReloadResult {
    this.lastResult = result;
    this.counters.reloads.inc({ result: result.ok ? 'success' : 'failure' });
    this.counters.lastReloadSuccess.set(result.ok ? 1 : 0);
    if (result.ok) this.onReloaded();
    if (result.ok) this.logger.info({ event: 'reload', ok: true, generation: result.generation }, wording.success ?? RELOADED);
    else this.logger.error({ event: 'reload', ok: false, generation: result.generation, error: result.error }, wording.failure ?? REJECTED);
    return result;
  }

  /** A rejected reload: the configuration in force (`generation`) stays. */
  failed(generation: number, error: string, wording: ReloadWording = {}): ReloadResult {
    return this.record({ ok: false, time: new Date().toISOString(), generation, error }, wording);
  }

  /** Settings a reload cannot change: say they wait for a restart. */
  unchanged(settings: readonly string[]): void {
    if (settings.length > 0) this.logger.warn({ event: 'reload', unchanged: settings }, `${settings.join(', ')} take effect only after a restart`);
  }
}
