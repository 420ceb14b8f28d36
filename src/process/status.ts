/** /status of one serving process (single, or a worker): what runs, with which configuration. */
import type { ListenerConfig, ProtocolBinding, RouteConfig } from '../config/types.js';
import type { RunningProxy } from './running-proxy.js';

/** A route's binding as /status shows it (never the RADIUS secret). */
const describeBinding = (b: ProtocolBinding): Record<string, unknown> | string => {
  if (b.kind === 'mqtt') return { protocol: 'mqtt', clientId: b.mqtt.clientId, username: b.mqtt.username, password: b.mqtt.password };
  if (b.kind === 'radius') return { protocol: 'radius', identityAttribute: b.radius.identityAttribute, maxPacketBytes: b.radius.maxPacketBytes };
  return 'none';
};

const describeRoute = (r: RouteConfig, proxyHeader: string, rules: number, binding: ProtocolBinding = { kind: 'none' }): Record<string, unknown> => ({
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
  alpn: r.alpn ?? null,
  binding: describeBinding(binding),
});

/** What a listener's configuration adds to its /status entry. */
const describeListenerConfig = (lc: ListenerConfig | undefined): Record<string, unknown> => {
  if (lc === undefined) return { routes: [] };
  const common = { revalidate: lc.revalidate, tcpKeepAlive: lc.tcpKeepAlive ?? false };
  if (lc.mode === 'http') return { ...common, routes: lc.routes.map((r) => describeRoute(r, 'none', r.rules.length)) };
  return { ...common, protocol: lc.protocol, alpn: lc.alpn ?? null, routes: lc.routes.map((r) => describeRoute(r, r.proxyHeader.version, 0, r.binding)) };
};

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
        ...describeListenerConfig(lc),
      };
    }),
  };
}
