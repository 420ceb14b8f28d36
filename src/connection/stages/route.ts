/**
 * Stage: the route that serves the connection, from its ClientHello: the
 * ALPN protocol the handshake will choose (ours in our order of preference,
 * the first the client offers, as both TLS engines choose), then the SNI
 * name (exact, longest wildcard, default). A route that names ALPN
 * protocols serves only connections that negotiate one of them, and is
 * chosen before any route without `alpn`; routes without it serve the rest.
 * Pure.
 */
import type { RouteConfig } from '../../config/types.js';
import type { ClientHelloInfo } from '../../protocol/client-hello.js';
import { selectBySni } from '../../protocol/sni.js';
import { pass, refuse, type StageResult } from './result.js';

/** The protocol the handshake will negotiate: the first of ours (most preferred first) that the client offers; undefined: none. */
export function negotiatedAlpn(offered: readonly string[], ours: readonly string[] | undefined): string | undefined {
  return ours?.find((protocol) => offered.includes(protocol));
}

/** RFC 7301: a client that offers ALPN protocols, none of them ours, is refused (no_application_protocol); one that offers none gets none. */
export function alpnAgreed(offered: readonly string[], ours: readonly string[] | undefined, chosen: string | undefined): StageResult<undefined> {
  if (ours === undefined || offered.length === 0 || chosen !== undefined) return pass(undefined);
  const shown = offered
    .slice(0, 8)
    .map((p) => JSON.stringify(p))
    .join(', ');
  return refuse('no-application-protocol', `the client offered ${shown}${offered.length > 8 ? `, … (${offered.length})` : ''}; this listener speaks ${ours.join(', ')}`);
}

export function routeBySni(routes: readonly RouteConfig[], hello: Pick<ClientHelloInfo, 'serverName'>, alpn?: string): StageResult<RouteConfig> {
  const byAlpn =
    alpn === undefined
      ? undefined
      : selectBySni(
          routes.filter((r) => r.alpn?.includes(alpn)),
          hello.serverName,
          false,
        );
  // Per connection: no array is made when no route names ALPN (every HTTP listener, most TCP ones).
  const withoutAlpn = routes.some((r) => r.alpn !== undefined) ? routes.filter((r) => r.alpn === undefined) : routes;
  const route = byAlpn ?? selectBySni(withoutAlpn, hello.serverName, false);
  if (route !== undefined) return pass(route);
  return refuse('no-route', `no route serves ${hello.serverName ?? '(no SNI)'}${alpn === undefined ? '' : ` with ALPN ${alpn}`}`);
}

/** How a route appears in the decision record: its first server name, or 'default'. */
export function routeLabel(route: Pick<RouteConfig, 'serverNames'>): string {
  return route.serverNames[0] ?? 'default';
}
