/** Stage: the route that serves the ClientHello's SNI name (exact, longest wildcard, default). Pure. */
import type { RouteConfig } from '../../config/types.js';
import type { ClientHelloInfo } from '../../protocol/client-hello.js';
import { selectBySni } from '../../protocol/sni.js';
import { pass, refuse, type StageResult } from './result.js';

export function routeBySni(routes: readonly RouteConfig[], hello: Pick<ClientHelloInfo, 'serverName'>): StageResult<RouteConfig> {
  const route = selectBySni(routes, hello.serverName, false);
  return route === undefined ? refuse('no-route', `no route serves ${hello.serverName ?? '(no SNI)'}`) : pass(route);
}

/** How a route appears in the decision record: its first server name, or 'default'. */
export function routeLabel(route: Pick<RouteConfig, 'serverNames'>): string {
  return route.serverNames[0] ?? 'default';
}
