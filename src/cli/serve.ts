/**
 * `dancegate serve`: which serving process this is, and its wiring. One
 * process (src/process/single.ts), or with `workers: N` a node:cluster
 * primary (primary.ts) and its workers (worker.ts). Signals, reloads, exit
 * codes: see those files and the README's Operations section.
 */
import cluster from 'node:cluster';
import type { DancegateConfig } from '../config/types.js';
import { ConfigSource } from '../process/config-source.js';
import { runPrimary } from '../process/primary.js';
import type { ServeIo, Served } from '../process/served.js';
import { runSingle } from '../process/single.js';
import { probeResolver } from '../process/validation.js';
import { runWorker } from '../process/worker.js';

export type { ServeIo, Served } from '../process/served.js';
export { StartError } from '../process/start-error.js';

/**
 * Serve `configPath`. `config` is its validated content (single process);
 * a cluster primary reads the file itself (it keeps the text), and a worker
 * gets the text from the primary. Throws StartError for what an operator
 * can fix (a port in use, a resolver that does not validate).
 */
export async function serve(configPath: string, config: DancegateConfig | undefined, version: string, io: ServeIo): Promise<Served> {
  const source = new ConfigSource(configPath);
  if (cluster.isWorker) return runWorker(source, version, io);
  if (config === undefined) throw new Error('serve: no configuration');
  if (config.workers > 1) return runPrimary(source, version, io, probeResolver);
  return runSingle(source, config, version, io, probeResolver);
}
