/**
 * One listener: accept, (inbound PROXY header,) peek the ClientHello,
 * allowlist before lookup, TLS handshake with requestCert, our own DANE
 * decision, then hand the connection to HTTP or TCP forwarding. Nothing is
 * forwarded before the decision.
 */
import type { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { TlsaCache } from '../lookup/cache.js';
import { CertificateParseError, parseTlsPeerCertificate, type ParsedCertificate } from '../dane/certificate.js';
import { MAX_CHAIN_LENGTH } from '../dane/match.js';
import { TEMPORARY_REASONS, verifyClient, type VerificationReason } from './verify.js';
import { SERVER_SECURE_OPTIONS, SERVER_SIGALGS } from '../config/tls-server-options.js';
import type { ListenerConfig, RouteConfig } from '../config/types.js';
import { PENALIZED_REASONS, type Admission } from '../ratelimit/admission.js';
import { chainLimitViolation, flightViolation, presentedChain } from './client-chain.js';
import { parseClientHello, type ClientHelloInfo } from '../protocol/client-hello.js';
import type { ConnectionReason, DecisionRecord, DecisionSink } from './decision-log.js';
import { HttpForwarder } from '../forward/http-forward.js';
import { nameFromCertificate, nameFromExtension, type ClaimedName } from './identity.js';
import { fatalAlertRecord, peekSocket } from './peek.js';
import { parseProxyHeader, type ProxyAddresses } from '../protocol/proxy-protocol.js';
import { selectBySni } from '../protocol/sni.js';
import { forwardTcp } from '../forward/tcp-forward.js';
import type { ConnectionContext } from './forwarder.js';

/** Hooks for metrics about forwarding (all optional). */
export interface ForwardingObserver {
  upstreamConnected?(listener: string, seconds: number): void;
  upstreamFailed?(listener: string): void;
  bytesRelayed?(listener: string, fromClient: number, toClient: number): void;
}

export interface ListenerDependencies {
  readonly cache: Pick<TlsaCache, 'lookup'>;
  readonly log: DecisionSink;
  readonly admission: Admission;
  readonly observer?: ForwardingObserver;
  readonly now?: () => Date;
}

/**
 * What one connection runs on, fixed when it is accepted: a reload swaps in
 * a new generation for new connections while established ones keep theirs.
 */
interface Generation {
  readonly config: ListenerConfig;
  readonly deps: ListenerDependencies;
  readonly contexts: Array<{ serverNames: readonly string[]; context: tls.SecureContext }>;
  readonly http: HttpForwarder | undefined;
  readonly now: () => Date;
  /**
   * Connections accepted under this generation and not yet closed, counted
   * from the accept (ClientHello, handshake and lookup included), since each
   * is handed to this generation's forwarder whenever its decision comes.
   */
  open: number;
}

function generationFor(config: ListenerConfig, deps: ListenerDependencies): Generation {
  return {
    config,
    deps,
    contexts: secureContextFor(config),
    http: config.mode === 'http' ? new HttpForwarder(config.http, config.idleTimeoutMs, deps.observer, config.name) : undefined,
    now: deps.now ?? (() => new Date()),
    open: 0,
  };
}

/** A bare-bones TLS server context id: required for session resumption with requestCert (see the shared notes). */
const SESSION_ID_CONTEXT = 'dancegate';

function secureContextFor(listener: ListenerConfig): Array<{ serverNames: readonly string[]; context: tls.SecureContext }> {
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

/** Penalty-box weight of a failed or stalled handshake after `bytes` of client flight: 1, plus 1 per 4 KB. */
const FLIGHT_PENALTY_BYTES = 4096;
function flightPenalty(bytes: number): number {
  return 1 + Math.floor(Math.max(0, bytes) / FLIGHT_PENALTY_BYTES);
}

function inCidrs(address: string, cidrs: readonly string[]): boolean {
  const list = new net.BlockList();
  for (const cidr of cidrs) {
    const [ip, bits] = cidr.split('/') as [string, string | undefined];
    const type = net.isIPv6(ip) ? 'ipv6' : 'ipv4';
    list.addSubnet(ip, Number(bits ?? (type === 'ipv6' ? 128 : 32)), type);
  }
  const plain = address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
  return list.check(plain, net.isIPv6(plain) ? 'ipv6' : 'ipv4');
}

/**
 * The certificates the client sent, leaf first, as it sent them (read once
 * at the end of the handshake, see presentedChain), at most one more than
 * the verifier accepts. Details are parsed only if a check needs them.
 */
function peerChain(presented: readonly X509Certificate[]): ParsedCertificate[] {
  return presented.slice(0, MAX_CHAIN_LENGTH + 1).map((cert) => parseTlsPeerCertificate({ raw: cert.raw }));
}

export class DaneListener {
  private server: net.Server | undefined;
  private current: Generation;
  /** Earlier generations with connections left; their forwarder is closed when the last one ends. */
  private readonly retired = new Set<Generation>();
  /** Raw client sockets (each connection's lifetime). */
  private readonly connections = new Set<net.Socket>();
  private readonly sockets = new Set<net.Socket>();

  constructor(config: ListenerConfig, deps: ListenerDependencies) {
    this.current = generationFor(config, deps);
  }

  get config(): ListenerConfig {
    return this.current.config;
  }

  /** Connections open now (accepted and not yet closed). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Use a new configuration (same name, address and mode) for new
   * connections; established ones keep the generation they started with.
   * Builds everything first and throws (changing nothing) if the new
   * certificates cannot be loaded; `apply` switches over, `discard` drops it.
   */
  prepareUpdate(config: ListenerConfig, deps: ListenerDependencies): { apply(): void; discard(): void } {
    const next = generationFor(config, deps);
    return {
      apply: () => {
        const previous = this.current;
        this.current = next;
        this.retired.add(previous);
        this.closeIfDone(previous);
      },
      // An aborted reload: the forwarder built for it never served anything.
      discard: () => next.http?.close(),
    };
  }

  /** Close a retired generation's forwarder once no connection accepted under it is left. */
  private closeIfDone(generation: Generation): void {
    if (generation.open > 0 || !this.retired.delete(generation)) return;
    generation.http?.close();
  }

  async start(): Promise<{ host: string; port: number }> {
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
      const generation = this.current;
      generation.open++;
      this.sockets.add(socket);
      this.connections.add(socket);
      socket.once('close', () => {
        this.sockets.delete(socket);
        this.connections.delete(socket);
        generation.open--;
        this.closeIfDone(generation);
        if (this.connections.size === 0) for (const waiter of this.drainWaiters.splice(0)) waiter();
      });
      socket.on('error', () => undefined);
      this.handle(socket, generation).catch((err: unknown) => {
        // A bug must cost one connection, never the process.
        process.emitWarning(`dancegate: listener ${generation.config.name}: connection handler failed: ${err instanceof Error ? err.message : String(err)}`);
        socket.destroy();
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.port, this.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as net.AddressInfo;
    return { host: address.address, port: address.port };
  }

  private readonly drainWaiters: Array<() => void> = [];

  /** Stop accepting new connections; established ones continue. */
  async stopAccepting(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Graceful stop: no new connections; idle HTTP keep-alive connections are
   * closed and busy ones answer with `Connection: close`; wait until every
   * connection has ended or `deadlineMs` passes, then close the rest.
   * Resolves true when every connection ended by itself.
   */
  async drain(deadlineMs: number): Promise<boolean> {
    const stopped = this.stopAccepting();
    for (const generation of [this.current, ...this.retired]) generation.http?.startDraining();
    const clean = await new Promise<boolean>((resolve) => {
      if (this.connections.size === 0) return resolve(true);
      const timer = setTimeout(() => resolve(false), deadlineMs);
      this.drainWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    await this.close();
    await stopped;
    return clean;
  }

  /** Stop accepting and close every connection now. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    for (const generation of [this.current, ...this.retired]) generation.http?.close();
    this.retired.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(raw: net.Socket, generation: Generation): Promise<void> {
    const t0 = performance.now();
    const { config, deps, http } = generation;
    let clientAddress = raw.remoteAddress ?? 'unknown';
    let clientPort = raw.remotePort ?? 0;
    const base: { -readonly [K in keyof DecisionRecord]?: DecisionRecord[K] } = {};
    let decided = false;
    // Penalty-box failures a refusal counts for: a handshake that failed or stalled after the client sent part of a
    // chain counts one more per FLIGHT_PENALTY_BYTES sent (OpenSSL verified what it could of it).
    let penaltyWeight = 1;
    // The handshake budget this connection holds until its decision (or its end).
    let releaseBudget: () => void = () => undefined;
    // Its TLS handshake slot (or place in the queue for one) until the handshake ends, its decision, or its end.
    let releaseTls: () => void = () => undefined;
    raw.once('close', () => {
      releaseTls();
      releaseBudget();
    });
    // Set when this connection's chain is over limits: it bans its own address, and records its own reason.
    let overLimits: string | undefined;
    // One decision record per connection, whatever happens after it.
    const record = (outcome: DecisionRecord['outcome'], reason: ConnectionReason, detail: string, extra: Partial<DecisionRecord> = {}): void => {
      if (decided) return;
      decided = true;
      // The failure first: should it ban the address, the slots released below go to none of its waiting connections.
      if (outcome === 'refused' && PENALIZED_REASONS.has(reason) && penaltyWeight > 0) deps.admission.recordFailure(clientAddress, penaltyWeight);
      releaseTls();
      releaseBudget();
      deps.log({
        time: generation.now().toISOString(),
        listener: config.name,
        route: undefined,
        source: `${clientAddress}:${clientPort}`,
        sni: undefined,
        tlsVersion: undefined,
        claimedName: undefined,
        nameSource: undefined,
        tlsa: undefined,
        cache: undefined,
        ...base,
        ...extra,
        outcome,
        reason,
        detail,
        durationsMs: { ...(base.durationsMs ?? {}), ...(extra.durationsMs ?? {}), total: Math.round(performance.now() - t0) },
      });
    };
    const refuseRaw = (reason: ConnectionReason, detail: string, alert?: number): void => {
      record('refused', reason, detail);
      if (alert !== undefined && !raw.destroyed) raw.end(fatalAlertRecord(alert));
      else raw.destroy();
      raw.setTimeout(1000, () => raw.destroy());
    };

    // Inbound PROXY protocol, only from trusted load balancers (which must send it).
    const inbound = config.inboundProxyProtocol;
    if (inbound && inCidrs(clientAddress, inbound.trustedCidrs)) {
      const proxied = await peekSocket<{ addresses: ProxyAddresses | undefined; version: 1 | 2 }>(
        raw,
        (buffered) => {
          const parsed = parseProxyHeader(buffered);
          if (parsed.status === 'incomplete') return { status: 'incomplete' };
          if (parsed.status === 'not-proxy') return { status: 'invalid', reason: 'a PROXY protocol header is required from this address' };
          if (parsed.status === 'invalid') return { status: 'invalid', reason: parsed.reason };
          return { status: 'complete', value: { addresses: parsed.header.addresses, version: parsed.version }, consumed: parsed.headerBytes };
        },
        { maxBytes: 4096 + 16, timeoutMs: config.clientHelloTimeoutMs, unshiftAll: false },
      );
      if (proxied.status === 'timeout') return refuseRaw('proxy-header-timeout', 'no complete PROXY header in time');
      if (proxied.status === 'closed') return refuseRaw('client-closed', 'closed before the PROXY header');
      if (proxied.status === 'invalid') return refuseRaw('proxy-header-invalid', proxied.reason);
      const wantVersion = inbound.versions;
      if (wantVersion !== 'any' && `v${proxied.value.version}` !== wantVersion) {
        return refuseRaw('proxy-header-invalid', `PROXY v${proxied.value.version} received, ${wantVersion} required`);
      }
      if (proxied.value.addresses) {
        clientAddress = proxied.value.addresses.sourceAddress;
        clientPort = proxied.value.addresses.sourcePort;
      }
    }

    // Admission by the original client address: penalty box, rate, handshake budget. Until its decision,
    // this connection ends if its address is banned by another connection (a chain over limits).
    const current: { tls?: tls.TLSSocket } = {};
    const onBanned = (why: string): void => {
      if (overLimits !== undefined) return;
      record('refused', 'penalty-box', why);
      (current.tls ?? raw).destroy();
    };
    const admitted = deps.admission.admitConnection(clientAddress, onBanned);
    if (!admitted.ok) return refuseRaw(admitted.reason, admitted.detail);
    releaseBudget = admitted.release;
    if (raw.destroyed) releaseBudget();

    // 1. The ClientHello, read by us and handed unchanged to node:tls.
    const peeked = await peekSocket<ClientHelloInfo>(
      raw,
      (buffered) => {
        const parsed = parseClientHello(buffered, { daneClientIdType: config.daneClientIdType, maxBytes: config.maxClientHelloBytes });
        if (parsed.status === 'complete') return { status: 'complete', value: parsed.hello, consumed: parsed.hello.recordBytes };
        return parsed;
      },
      { maxBytes: config.maxClientHelloBytes + 5, timeoutMs: config.clientHelloTimeoutMs, unshiftAll: true },
    );
    const clientHelloMs = Math.round(performance.now() - t0);
    base.durationsMs = { clientHello: clientHelloMs, total: 0 };
    if (peeked.status === 'timeout') return refuseRaw('client-hello-timeout', `no complete ClientHello within ${config.clientHelloTimeoutMs} ms`);
    if (peeked.status === 'closed') return refuseRaw('client-closed', 'closed before a complete ClientHello');
    if (peeked.status === 'invalid') return refuseRaw('client-hello-invalid', peeked.reason);
    const hello = peeked.value;
    base.sni = hello.serverName;

    // 2. Route by SNI.
    const route = selectBySni(config.routes, hello.serverName, false);
    if (route === undefined) return refuseRaw('no-route', `no route serves ${hello.serverName ?? '(no SNI)'}`, 112);
    base.route = route.serverNames[0] ?? 'default';

    // 3. Allowlist before lookup; start the lookup now so it runs during the handshake.
    let claimed: ClaimedName | undefined;
    let lookupStarted: number | undefined;
    const abort = new AbortController();
    if (hello.daneClientId.present && hello.daneClientId.name !== '') {
      claimed = nameFromExtension(hello.daneClientId.name, route.allowlist);
      base.nameSource = 'extension';
      base.claimedName = claimed.ok ? claimed.name : hello.daneClientId.name.slice(0, 253);
      if (!claimed.ok) return refuseRaw(claimed.reason, claimed.detail, 40);
      lookupStarted = performance.now();
      deps.cache.lookup(claimed.name, abort.signal).catch(() => undefined);
    }

    // 4. Our own deadline for handshake + verification, from here. First a TLS handshake slot: OpenSSL verifies a
    // client chain inside the handshake, before anything else can judge it, so at most maxTlsHandshakesPerIp
    // connections of an address are there at once. The others wait, FIFO, the raw socket paused and their
    // ClientHello not yet handed to node:tls; if the address is banned meanwhile they end without reaching TLS.
    let onDeadline = (): void => {
      // Waiting is our queue's doing, not the client's: no penalty-box weight.
      penaltyWeight = 0;
      record('refused', 'handshake-timeout', `no TLS handshake slot within ${config.handshakeTimeoutMs} ms: ${deps.admission.maxTlsHandshakesPerIp} connections from ${clientAddress} in the handshake (limits.handshakes.maxTlsHandshakesPerIp)`);
      raw.destroy();
    };
    const deadline = setTimeout(() => onDeadline(), config.handshakeTimeoutMs);
    raw.once('close', () => abort.abort(new Error('client disconnected')));
    if (raw.destroyed) {
      clearTimeout(deadline);
      record('refused', 'client-closed', 'closed before the TLS handshake');
      return;
    }
    const granted = await new Promise<boolean>((resolve) => {
      raw.once('close', () => resolve(false));
      releaseTls = deps.admission.enterTlsPhase(clientAddress, () => resolve(true), onBanned).release;
    });
    if (!granted || decided || raw.destroyed) {
      clearTimeout(deadline);
      record('refused', 'client-closed', 'closed while waiting for a TLS handshake slot');
      releaseTls();
      return;
    }

    // 5. The handshake.
    const contextEntry = selectBySni(generation.contexts, hello.serverName, true);
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: contextEntry?.context,
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: config.mode === 'http' ? ['http/1.1'] : undefined,
    });
    // Kept as a second line of defence; what stops renegotiation is SSL_OP_NO_RENEGOTIATION (tls-server-options.ts).
    socket.disableRenegotiation();
    current.tls = socket;
    this.sockets.add(socket);
    // Bytes the client sends after its ClientHello until the handshake ends (its Certificate flight, mostly):
    // the only measure node:tls gives of what OpenSSL had to verify when a handshake fails or stalls.
    const readBeforeFlight = raw.bytesRead - raw.readableLength + hello.recordBytes;
    const limits = deps.admission.clientChain;
    // A chain over limits: refused, and the address goes to the penalty box with every other connection it has in handshake
    // (or waiting for it). The ban comes first, so that the slot this connection releases goes to none of them.
    const chainOverLimits = (detail: string): void => {
      if (decided) return;
      overLimits = detail;
      clearTimeout(deadline);
      deps.admission.banAddress(clientAddress, `ended: ${clientAddress} sent a client chain over limits on another connection`);
      record('refused', 'chain-over-limits', detail);
    };
    socket.once('close', () => {
      this.sockets.delete(socket);
      abort.abort(new Error('client disconnected'));
    });
    onDeadline = (): void => {
      // A handshake that never finished: judge what the client sent of its flight. A finished one waited on DNS: weight 1.
      const sent = secure ? 0 : raw.bytesRead - readBeforeFlight;
      const flight = flightViolation(sent, limits.maxFlightBytes);
      if (flight !== undefined) {
        chainOverLimits(`${flight}, then stalled`);
      } else {
        penaltyWeight = flightPenalty(sent);
        record('refused', 'handshake-timeout', `handshake and verification not done within ${config.handshakeTimeoutMs} ms`);
      }
      socket.destroy();
    };
    let secure = false;
    // The raw socket allows half-close (for TCP mode); a client that sends FIN before the handshake is done is gone.
    socket.once('end', () => {
      if (!secure) socket.destroy();
    });
    socket.on('error', (err: Error) => {
      if (!secure) {
        clearTimeout(deadline);
        const sent = raw.bytesRead - readBeforeFlight;
        const flight = flightViolation(sent, limits.maxFlightBytes);
        if (flight !== undefined) {
          chainOverLimits(`${flight}, then failed: ${err.message.slice(0, 100)}`);
        } else {
          penaltyWeight = flightPenalty(sent);
          record('refused', 'handshake-failed', err.message.slice(0, 200));
        }
      }
      socket.destroy();
    });
    raw.resume();
    let presented: X509Certificate[] = [];
    await new Promise<void>((resolve) => {
      socket.once('secure', () => {
        secure = true;
        base.tlsVersion = socket.getProtocol() ?? undefined;
        // Judged here, synchronously, before OpenSSL reads another connection's flight: a ban now spares
        // the verification of chains this address has sent on its other connections.
        presented = presentedChain(socket, limits.maxCertificates);
        const violation = flightViolation(raw.bytesRead - readBeforeFlight, limits.maxFlightBytes) ?? chainLimitViolation(presented, limits.maxCertificates);
        if (violation !== undefined) chainOverLimits(violation);
        // The TLS handshake is over (OpenSSL verifies nothing more: no renegotiation): the next connection of this address may start its own.
        releaseTls();
        resolve();
      });
      socket.once('close', () => resolve());
    });
    if (!secure) {
      clearTimeout(deadline);
      record('refused', 'client-closed', 'closed during the TLS handshake');
      return;
    }
    const handshakeMs = Math.round(performance.now() - t0 - clientHelloMs);
    base.durationsMs = { clientHello: clientHelloMs, handshake: handshakeMs, total: 0 };
    // Nothing is read from the client until the decision.
    socket.pause();
    if (overLimits !== undefined) {
      if (http && config.http.refuseWith403) http.refuse(socket, 'chain-over-limits', false);
      else socket.destroy();
      return;
    }

    const refuse = (reason: ConnectionReason, detail: string, extra: Partial<DecisionRecord> = {}): void => {
      clearTimeout(deadline);
      if (config.policy === 'optional' && http) {
        record('forwarded', reason, `unauthenticated: ${detail}`, extra);
        this.forward(generation, socket, { route, hello, clientAddress, clientPort, raw, identity: undefined, status: reason });
        return;
      }
      record('refused', reason, detail, extra);
      if (http && config.http.refuseWith403) http.refuse(socket, reason, TEMPORARY_REASONS.has(reason as VerificationReason));
      else socket.destroy();
    };

    // 6. Our own verification, on every connection (resumed ones included).
    // The leaf alone first (from the chain read at the end of the handshake); the whole chain only if a record needs it.
    let chain: ParsedCertificate[];
    const peer = presented[0];
    try {
      chain = peer ? [parseTlsPeerCertificate({ raw: peer.raw })] : [];
    } catch (err) {
      return refuse('no-matching-record', `unparseable client certificate: ${(err as Error).message}`);
    }
    const leaf = chain[0];
    if (leaf === undefined) return refuse('no-certificate', 'the client presented no certificate');
    if (claimed === undefined) {
      claimed = nameFromCertificate(leaf.dnsNames, route.allowlist);
      base.nameSource = 'certificate';
      if (!claimed.ok) return refuse(claimed.reason, claimed.detail);
      base.claimedName = claimed.name;
      lookupStarted = performance.now();
    }
    if (!claimed.ok) return;
    const name = claimed.name;
    const verify = (withChain: readonly ParsedCertificate[]): ReturnType<typeof verifyClient> =>
      verifyClient({
        claimedName: name,
        chain: withChain,
        cache: deps.cache,
        allowlist: route.allowlist,
        pkixRoots: config.pkixRoots,
        now: generation.now(),
        signal: abort.signal,
      });
    const result = await verify(chain)
      .then((first) => {
        // DANE-TA and PKIX records look at the issuers: match again with the chain the client sent (the lookup is cached now).
        const needsChain = first.lookup?.kind === 'secure' && first.lookup.records.some((r) => r.usage !== 3);
        if (first.authenticated || !needsChain || socket.destroyed) return first;
        chain = peerChain(presented);
        return verify(chain);
      })
      .catch((err: unknown) => {
        if (socket.destroyed) return undefined;
        // A leaf that OpenSSL read but whose details cannot be parsed, or (not expected) a cache failure: fail closed with a reason.
        return { failed: err instanceof Error ? err.message : String(err), certificate: err instanceof CertificateParseError };
      });
    if (result !== undefined && 'failed' in result) {
      return refuse(result.certificate ? 'no-matching-record' : 'dns-server-error', `verification failed: ${result.failed}`);
    }
    if (result === undefined) {
      clearTimeout(deadline);
      record('refused', 'client-closed', 'client went away during verification');
      return;
    }
    if (socket.destroyed) {
      clearTimeout(deadline);
      record('refused', 'client-closed', 'client went away during verification');
      return;
    }
    const dnsMs = Math.round(performance.now() - (lookupStarted ?? performance.now()));
    const matched = result.decision?.matched?.record;
    const tlsa = matched ? ([matched.usage, matched.selector, matched.matchingType] as const) : undefined;
    const extra: Partial<DecisionRecord> = {
      cache: result.cache,
      tlsa: tlsa?.join(' '),
      durationsMs: { clientHello: clientHelloMs, handshake: handshakeMs, dns: dnsMs, total: 0 },
    };
    if (!result.authenticated || tlsa === undefined) return refuse(result.reason, result.detail, extra);
    const identitySlot = deps.admission.admitIdentity(name);
    if (!identitySlot.ok) return refuse(identitySlot.reason, identitySlot.detail, extra);
    socket.once('close', identitySlot.release);
    clearTimeout(deadline);
    record('forwarded', 'authenticated', result.detail, extra);
    this.forward(generation, socket, { route, hello, clientAddress, clientPort, raw, identity: { name, leaf, tlsa }, status: 'authenticated' });
  }

  private forward(
    generation: Generation,
    socket: tls.TLSSocket,
    c: {
      route: RouteConfig;
      hello: ClientHelloInfo;
      clientAddress: string;
      clientPort: number;
      raw: net.Socket;
      identity: ConnectionContext['identity'];
      status: ConnectionReason;
    },
  ): void {
    const context: ConnectionContext = {
      listener: generation.config,
      route: c.route,
      clientAddress: c.clientAddress,
      clientPort: c.clientPort,
      localAddress: c.raw.localAddress ?? '0.0.0.0',
      localPort: c.raw.localPort ?? 0,
      hello: c.hello,
      identity: c.identity,
      status: c.status,
    };
    socket.setTimeout(generation.config.idleTimeoutMs, () => socket.destroy());
    const maxLifetimeMs = generation.config.maxLifetimeMs;
    if (maxLifetimeMs !== undefined) {
      const lifetime = setTimeout(() => socket.destroy(), maxLifetimeMs);
      lifetime.unref();
      socket.once('close', () => clearTimeout(lifetime));
    }
    if (generation.http) generation.http.accept(socket, context);
    else forwardTcp(socket, context, generation.deps.observer);
  }
}
