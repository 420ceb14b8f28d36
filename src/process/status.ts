/** /status of one serving process (single, or a worker): what runs, with which configuration. */
import type { RouteConfig } from '../config/types.js';
import type { RunningProxy } from './running-proxy.js';

const describeRoute = (r: RouteConfig, proxyHeader: string, rules: number): Record<string, unknown> => ({
  serverNames: r.serverNames.length > 0 ? r.serverNames : ['(default)'],
  upstreams: r.upstreams.targets.map((u) => ({ name: u.name, url: u.url })),
  balance: r.upstreams.balance,
  retries: r.upstreams.retries,
  rules,
  allowlist: r.allowlistSource,
  allowPatterns: r.allowlist.patterns.length,
  identitySources: r.identity.sources,
  strict: r.identity.strict,
  proxyHeader,
});

export function describeProxy(proxy: RunningProxy, version: string, startedAt: string): Record<string, unknown> {
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
        tlsEngine: l.tlsEngine,
        ...(l.tlsEngineFallback === undefined ? {} : { tlsEngineFallback: l.tlsEngineFallback }),
        routes: lc === undefined ? [] : lc.mode === 'tcp' ? lc.routes.map((r) => describeRoute(r, r.proxyHeader.version, 0)) : lc.routes.map((r) => describeRoute(r, 'none', r.rules.length)),
      };
    }),
  };
}
