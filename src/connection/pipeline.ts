/**
 * One connection, stage by stage (each stage in stages/, each refusal a
 * catalog reason): inbound PROXY → admit → ClientHello → route → claim from
 * the ClientHello (may start the lookup) → handshake with verification
 * (claim → authenticate → admit the identity) → forwarder. node:tls verifies
 * once its handshake is over; the native engine verifies while its handshake
 * is paused, so a refusal fails the handshake. Nothing is read from the
 * client past its ClientHello, or forwarded, before the decision.
 */
import type { Socket } from 'node:net';
import type { ListenerConfig, RouteConfig } from '../config/types.js';
import type { ClientHelloInfo } from '../protocol/client-hello.js';
import type { Admission } from '../ratelimit/admission.js';
import type { Connection } from './connection.js';
import type { Forwarder } from './forwarder.js';
import { endRaw, endSecured, forward, refuseOrForwardUnauthenticated } from './outcome.js';
import { admitConnection } from './stages/admit.js';
import { claimName } from './stages/claim.js';
import { readClientHello } from './stages/client-hello.js';
import { handshake, type HandshakeInput } from './stages/handshake.js';
import { askForName, handshakeNative, type VerifiedHandshake } from './stages/handshake-native.js';
import { sourcesOf } from './stages/identity-sources.js';
import { readInboundProxy } from './stages/inbound-proxy.js';
import { startLookup, type TlsaLookupSource } from './stages/lookup.js';
import type { Refusal } from './stages/result.js';
import { alpnAgreed, negotiatedAlpn, routeBySni, routeLabel } from './stages/route.js';
import { verifyShown, type Shown } from './stages/verify-shown.js';
import { watchConnection } from './revalidate.js';
import type { ListenerTls } from './tls-engine.js';
import type { SecureSocket } from '../tls/secure-socket.js';

/** Either engine's handshake: done and verified, or failed (on a secure socket, to be refused there, or before one). */
type Handshaken = { readonly ok: true; readonly value: VerifiedHandshake } | (Refusal & { readonly socket: SecureSocket | undefined });

export interface PipelineEnv {
  readonly config: ListenerConfig;
  readonly tls: ListenerTls;
  readonly forwarder: Forwarder;
  readonly cache: TlsaLookupSource;
  readonly admission: Admission;
  readonly now: () => Date;
  readonly track: HandshakeInput['track'];
}

export async function runPipeline(c: Connection, raw: Socket, env: PipelineEnv): Promise<void> {
  const { config, forwarder, admission } = env;
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
  const alpn = negotiatedAlpn(hello.value.alpn, forwarder.alpn);
  if (alpn !== undefined) c.note({ alpn });
  const protocols = alpnAgreed(hello.value.alpn, forwarder.alpn, alpn);
  if (!protocols.ok) return endRaw(c, raw, protocols);
  const route = routeBySni(config.routes, hello.value, alpn);
  if (!route.ok) return endRaw(c, raw, route);
  c.note({ route: routeLabel(route.value) });
  const sources = sourcesOf(route.value.identity.sources);
  const early = claimName(sources, 'client-hello', { hello: hello.value }, route.value.allowlist);
  if (early !== undefined) c.note({ nameSource: early.source, claimedName: early.claimedName });
  if (early !== undefined && !early.ok) return endRaw(c, raw, early);
  const started = early?.ok ? { claim: early, lookup: startLookup(env.cache, early.value.name, c.signal) } : undefined;
  const onReplaced = (name: string, detail: string): void => c.replaced(name, detail);
  const verifyInput = { route: route.value, sources, hello: hello.value, early: started, cache: env.cache, admission, pkixRoots: config.pkixRoots, now: env.now, onReplaced };
  const verify = (shown: Shown) => verifyShown(c, verifyInput, shown);
  const tls = await secureConnection(c, raw, env, { route: route.value, hello: hello.value, verify });
  if (!tls.ok) return tls.socket === undefined ? undefined : endSecured(c, tls.socket, tls, forwarder);
  const { socket, verdict } = tls.value;
  const context = {
    listener: config,
    route: route.value,
    clientAddress: c.clientAddress,
    clientPort: c.clientPort,
    localAddress: raw.localAddress ?? '0.0.0.0',
    localPort: raw.localPort ?? 0,
    connectionId: c.id,
    hello: hello.value,
  };
  c.note({ alpn: typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : undefined });
  if (socket.destroyed || (!verdict.ok && verdict.reason === 'client-closed')) return void c.decide('refused', 'client-closed', 'client went away during verification');
  if (!verdict.ok) return refuseOrForwardUnauthenticated(c, socket, verdict, forwarder, context);
  const { name, leaf, tlsa, detail, release, confirm, chain, expiresInMs } = verdict.value;
  socket.once('close', release);
  if (!c.decide('forwarded', 'authenticated', detail)) return void socket.destroy();
  // The handshake is complete (the client proved it holds the key): only now may it replace an older connection (newest-wins).
  confirm();
  forward(socket, forwarder, { ...context, identity: { name, leaf, tlsa }, status: 'authenticated' });
  // Revocation and expiry reach the established connection: its name is looked up again when the answer expires.
  const subject = { listener: config.name, connectionId: c.id, name, leaf, chain, pkixRoots: config.pkixRoots, tlsa, expiresInMs };
  watchConnection(socket, subject, { cache: env.cache, config: config.revalidate, now: env.now });
}

/** The handshake on the listener's engine, with the verification inside it (native engine) or after it (node:tls). */
function secureConnection(
  c: Connection,
  raw: Socket,
  env: PipelineEnv,
  at: { readonly route: RouteConfig; readonly hello: ClientHelloInfo; readonly verify: (shown: Shown) => ReturnType<typeof verifyShown> },
): Promise<Handshaken> {
  const { config, forwarder } = env;
  const common = { hello: at.hello, admission: env.admission, handshakeTimeoutMs: config.handshakeTimeoutMs, track: env.track };
  if (env.tls.engine === 'node') return handshakeThenVerify(c, raw, { ...common, contexts: env.tls.contexts, alpn: forwarder.alpn }, at.verify);
  const strict = at.route.identity.strict;
  // A strict route (draft -13) fails every refusal in the handshake; otherwise a forwarder that serves or
  // answers refused clients (HTTP: policy optional, refuseWith403) gets them after it.
  const completeRefused = !strict && (forwarder.forwardsUnauthenticated || forwarder.answersRefusals);
  return handshakeNative(c, raw, {
    ...common,
    binding: env.tls.binding,
    contexts: env.tls.contexts,
    requireCertificate: !completeRefused,
    strict,
    askForName: askForName(at.route, at.hello),
    completeRefused,
    verify: at.verify,
  });
}

/** node:tls: the handshake, then the verification (a refusal is answered on the secure socket, by the forwarder). */
async function handshakeThenVerify(c: Connection, raw: Socket, input: HandshakeInput, verify: (shown: Shown) => ReturnType<typeof verifyShown>): Promise<Handshaken> {
  const tls = await handshake(c, raw, input);
  if (!tls.ok) {
    if (tls.socket === undefined) raw.destroy();
    return tls;
  }
  return { ok: true, value: { socket: tls.value.socket, verdict: await verify({ presented: tls.value.presented }) } };
}
