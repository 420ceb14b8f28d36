/**
 * One connection, stage by stage (each stage in stages/, each refusal a
 * catalog reason): inbound PROXY → admit → ClientHello → route → claim
 * (may start the lookup) → handshake → claim from the certificate →
 * authenticate → admit the identity → forwarder. Nothing is read from the
 * client past its ClientHello, or forwarded, before the decision.
 */
import type { Socket } from 'node:net';
import type { ListenerConfig } from '../config/types.js';
import type { Admission } from '../ratelimit/admission.js';
import type { Connection } from './connection.js';
import type { Forwarder } from './forwarder.js';
import { endRaw, endSecured, forward, refuseOrForwardUnauthenticated } from './outcome.js';
import type { ServerContext } from './secure-context.js';
import { admitConnection, admitIdentity } from './stages/admit.js';
import { authenticate } from './stages/authenticate.js';
import { readCertificates } from './stages/certificate.js';
import { claimName, type IdentitySource } from './stages/claim.js';
import { readClientHello } from './stages/client-hello.js';
import { handshake } from './stages/handshake.js';
import { IDENTITY_SOURCES, type NameSource } from './stages/identity-sources.js';
import { readInboundProxy } from './stages/inbound-proxy.js';
import { startLookup, type TlsaLookupSource } from './stages/lookup.js';
import { refuse } from './stages/result.js';
import { routeBySni, routeLabel } from './stages/route.js';

export interface PipelineEnv {
  readonly config: ListenerConfig;
  readonly contexts: readonly ServerContext[];
  readonly forwarder: Forwarder;
  readonly cache: TlsaLookupSource;
  readonly admission: Admission;
  readonly now: () => Date;
  readonly track: Parameters<typeof handshake>[2]['track'];
  /** Where a name may come from (default IDENTITY_SOURCES). */
  readonly sources?: readonly IdentitySource<NameSource>[];
}

export async function runPipeline(c: Connection, raw: Socket, env: PipelineEnv): Promise<void> {
  const { config, forwarder, admission, sources = IDENTITY_SOURCES } = env;
  const proxied = await readInboundProxy(raw, c.clientAddress, config.inboundProxyProtocol, config.clientHelloTimeoutMs);
  if (!proxied.ok) return endRaw(c, raw, proxied);
  if (proxied.value !== undefined) [c.clientAddress, c.clientPort] = [proxied.value.address, proxied.value.port];
  const admitted = admitConnection(admission, c.clientAddress, (why) => c.banned(why));
  if (!admitted.ok) return endRaw(c, raw, admitted);
  c.holdBudget(admitted.value);
  const hello = await readClientHello(raw, config);
  c.phaseDone('clientHello');
  if (!hello.ok) return endRaw(c, raw, hello);
  c.note({ sni: hello.value.serverName });
  const route = routeBySni(config.routes, hello.value);
  if (!route.ok) return endRaw(c, raw, route);
  c.note({ route: routeLabel(route.value) });
  const { allowlist } = route.value;
  const early = claimName(sources, 'client-hello', { hello: hello.value }, allowlist);
  if (early !== undefined) c.note({ nameSource: early.source, claimedName: early.claimedName });
  if (early !== undefined && !early.ok) return endRaw(c, raw, early);
  const earlyLookup = early?.ok ? startLookup(env.cache, early.value.name, c.signal) : undefined;
  const tls = await handshake(c, raw, { hello: hello.value, contexts: env.contexts, alpn: forwarder.alpn, admission, handshakeTimeoutMs: config.handshakeTimeoutMs, track: env.track });
  if (!tls.ok) return tls.socket === undefined ? void raw.destroy() : endSecured(c, tls.socket, tls, forwarder);
  const { socket, presented } = tls.value;
  const context = {
    listener: config,
    route: route.value,
    clientAddress: c.clientAddress,
    clientPort: c.clientPort,
    localAddress: raw.localAddress ?? '0.0.0.0',
    localPort: raw.localPort ?? 0,
    hello: hello.value,
  };
  const certificates = readCertificates(presented);
  if (!certificates.ok) return refuseOrForwardUnauthenticated(c, socket, certificates, forwarder, context);
  const { leaf, chain } = certificates.value;
  const claim = early ??
    claimName(sources, 'handshake', { hello: hello.value, leaf }, allowlist) ?? { ...refuse('no-name', 'no identity source named the client'), source: undefined, claimedName: undefined };
  c.note({ nameSource: claim.source, claimedName: claim.claimedName });
  if (!claim.ok) return refuseOrForwardUnauthenticated(c, socket, claim, forwarder, context);
  const name = claim.value.name;
  const lookup = earlyLookup ?? startLookup(env.cache, name, c.signal);
  const auth = await authenticate({ name, lookup, leaf: [leaf], chain, pkixRoots: config.pkixRoots, now: env.now(), signal: c.signal });
  if (socket.destroyed || (!auth.ok && auth.reason === 'client-closed')) return void c.decide('refused', 'client-closed', 'client went away during verification');
  c.note({ cache: auth.evidence.cache, tlsa: auth.ok ? auth.value.tlsa.join(' ') : undefined });
  c.dnsTook(auth.evidence.dnsMs);
  if (!auth.ok) return refuseOrForwardUnauthenticated(c, socket, auth, forwarder, context);
  const slot = admitIdentity(admission, name);
  if (!slot.ok) return refuseOrForwardUnauthenticated(c, socket, slot, forwarder, context);
  socket.once('close', slot.value);
  if (!c.decide('forwarded', 'authenticated', auth.value.detail)) return void socket.destroy();
  forward(socket, forwarder, { ...context, identity: { name, leaf, tlsa: auth.value.tlsa }, status: 'authenticated' });
}
