/**
 * Which TLS engine a listener runs, and its server contexts: node:tls, or
 * the native engine (src/tls/), which asks for dane_clientid in its TLS 1.3
 * CertificateRequest and decides inside the handshake. `tls.engine: auto`
 * takes the native engine when it loaded and otherwise node:tls, with the
 * reason; `native` without it is an error (the listener does not start).
 */
import type { ListenerConfig, TlsEngineChoice } from '../config/types.js';
import { SERVER_SIGALGS } from '../config/tls-server-options.js';
import type { NativeBinding, NativeContext } from '../tls/native-binding.js';
import type { NativeEngineLoad } from '../tls/native-engine.js';
import { secureContextsFor, type ServerContext } from './secure-context.js';

export type EngineName = 'node' | 'native';

/** The engine chosen for a listener; `fallback`: why auto did not get the native engine. */
export type ChosenEngine = { readonly name: 'native'; readonly binding: NativeBinding } | { readonly name: 'node'; readonly fallback: string | undefined };

export class TlsEngineError extends Error {}

/**
 * Pure: the listener's choice against what loaded. Throws TlsEngineError when
 * the engine is needed and not there: `tls.engine: native`, or `auto` with a
 * route that only the native engine can serve (strict, or the Certificate
 * extension as its only source), which node:tls would refuse every client of.
 */
export function chooseEngine(listener: Pick<ListenerConfig, 'name' | 'engine' | 'routes'>, load: NativeEngineLoad): ChosenEngine {
  const choice: TlsEngineChoice = listener.engine;
  if (choice === 'node') return { name: 'node', fallback: undefined };
  if (load.ok) return { name: 'native', binding: load.binding };
  if (choice === 'native') throw new TlsEngineError(`listener ${listener.name}: tls.engine is native, but the native TLS engine is unavailable: ${load.reason}`);
  const index = listener.routes.findIndex((r) => r.identity.strict || (r.identity.sources.length === 1 && r.identity.sources[0] === 'certificate-extension'));
  if (index !== -1) {
    throw new TlsEngineError(
      `listener ${listener.name}: routes[${index}] takes names only from the TLS 1.3 Certificate message (draft -13), which needs the native TLS engine, and it is unavailable: ${load.reason}`,
    );
  }
  return { name: 'node', fallback: load.reason };
}

export interface NativeServerContext {
  readonly serverNames: readonly string[];
  readonly context: NativeContext;
}

/** A listener generation's TLS: the engine and one server context per certificate, chosen by SNI. */
export type ListenerTls =
  { readonly engine: 'node'; readonly contexts: readonly ServerContext[] } | { readonly engine: 'native'; readonly binding: NativeBinding; readonly contexts: readonly NativeServerContext[] };

/** The contexts of one generation (certificates may change on reload). Throws when a certificate cannot be used. */
export function listenerTls(chosen: ChosenEngine, listener: Pick<ListenerConfig, 'certificates' | 'minVersion' | 'daneClientIdType'>, alpn: readonly string[] | undefined): ListenerTls {
  if (chosen.name === 'node') return { engine: 'node', contexts: secureContextsFor(listener) };
  const { binding } = chosen;
  const contexts = listener.certificates.map((c) => ({
    serverNames: c.serverNames,
    // The same settings as node:tls's contexts (tls-server-options.ts): no tickets, no renegotiation, these
    // signature algorithms, OpenSSL's own 100 KB bound on the client's Certificate message (the client
    // chain limits judge it further); the engine also keeps no session cache and releases idle buffers.
    context: binding.createContext({
      role: 'server',
      certPem: c.certPem,
      keyPem: c.keyPem,
      extensionType: listener.daneClientIdType,
      minVersion: listener.minVersion,
      maxVersion: 'TLSv1.3',
      alpn,
      sigalgs: SERVER_SIGALGS,
    }),
  }));
  return { engine: 'native', binding, contexts };
}
