/**
 * The running proxy: one shared TLSA cache and resolver, one DaneListener
 * per configured listener.
 */
import { TlsaCache } from '../dane/cache.js';
import { LocalFirstResolver } from '../dane/local-resolver.js';
import { DnsTlsaResolver, type TlsaResolver } from '../dane/resolver.js';
import type { DancegateConfig } from '../config/types.js';
import { jsonLineSink, type DecisionSink } from './decision-log.js';
import { DaneListener } from './listener.js';

export function resolverFor(config: DancegateConfig): TlsaResolver {
  const r = config.resolver;
  const dns =
    r.servers.length > 0
      ? new DnsTlsaResolver({
          servers: r.servers,
          attemptTimeoutMs: r.attemptTimeoutMs,
          totalTimeoutMs: r.totalTimeoutMs,
          allowRemotePlainResolver: r.allowRemotePlainResolver,
        })
      : undefined;
  if (r.localTlsa !== undefined) return new LocalFirstResolver(r.localTlsa, r.localTlsaFile ?? 'local TLSA', dns);
  if (dns === undefined) throw new Error('resolver: no servers and no local TLSA file');
  return dns;
}

export interface RunningProxy {
  readonly listeners: ReadonlyArray<{ readonly name: string; readonly host: string; readonly port: number; readonly mode: string }>;
  close(): Promise<void>;
}

export async function startProxy(config: DancegateConfig, options: { log?: DecisionSink; resolver?: TlsaResolver } = {}): Promise<RunningProxy> {
  const cache = new TlsaCache(options.resolver ?? resolverFor(config), config.resolver.cache);
  const log = options.log ?? jsonLineSink;
  const started: Array<{ listener: DaneListener; host: string; port: number }> = [];
  try {
    for (const listenerConfig of config.listeners) {
      const listener = new DaneListener(listenerConfig, { cache, log });
      const address = await listener.start();
      started.push({ listener, ...address });
    }
  } catch (err) {
    await Promise.all(started.map((s) => s.listener.close()));
    throw err;
  }
  return {
    listeners: started.map((s) => ({ name: s.listener.config.name, host: s.host, port: s.port, mode: s.listener.config.mode })),
    async close() {
      await Promise.all(started.map((s) => s.listener.close()));
    },
  };
}
