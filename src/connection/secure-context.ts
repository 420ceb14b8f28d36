/** The TLS server contexts of a listener, one per certificate, chosen by SNI. */
import * as tls from 'node:tls';
import { SERVER_SECURE_OPTIONS, SERVER_SIGALGS } from '../config/tls-server-options.js';
import type { ListenerConfig } from '../config/types.js';

export interface ServerContext {
  readonly serverNames: readonly string[];
  readonly context: tls.SecureContext;
}

/** A bare-bones TLS server context id: required for session resumption with requestCert. */
const SESSION_ID_CONTEXT = 'dancegate';

export function secureContextsFor(listener: Pick<ListenerConfig, 'certificates' | 'minVersion'>): ServerContext[] {
  return listener.certificates.map((c) => {
    // No session tickets: a resumed session shows only the leaf certificate, so a DANE-TA client could
    // not be verified again; and no server-side session cache is kept, so no resumption at all.
    // No renegotiation (OpenSSL refuses it: disableRenegotiation() does nothing on our sockets); see tls-server-options.ts.
    const context = tls.createSecureContext({ cert: c.certPem, key: c.keyPem, minVersion: listener.minVersion, secureOptions: SERVER_SECURE_OPTIONS, sigalgs: SERVER_SIGALGS });
    // node:tls sets this only on contexts of a listening tls.Server; we build our own, so set it here.
    // `context.context` is the native SecureContext (typed `any` by @types/node).
    (context.context as { setSessionIdContext(id: string): void }).setSessionIdContext(SESSION_ID_CONTEXT);
    return { serverNames: c.serverNames, context };
  });
}
