/**
 * One connection's state from accept to decision: its client address (the
 * TCP peer's, or an inbound PROXY header's), the decision record's fields
 * as the stages find them, the timings, the handshake budget and TLS slot it
 * holds, the deadline, the abort signal of its lookup, and the penalty-box
 * weight of a refusal. The decision is made exactly once: it penalises the
 * address (when the catalog says the reason is the client's doing), then
 * releases what the connection held, then emits the record (the log sink
 * and the decision channel). No socket I/O here beyond destroying the
 * connection's current socket when another connection bans its address.
 */
import { performance } from 'node:perf_hooks';
import type { Admission } from '../ratelimit/admission.js';
import { REASONS, type ConnectionReason } from '../reasons.js';
import { connectionReplacedChannel, decisionChannel } from './channels.js';
import { boundDecisionRecord, type DecisionRecord, type DecisionSink } from './decision-log.js';

export interface ConnectionEnv {
  readonly listener: string;
  readonly admission: Pick<Admission, 'recordFailure' | 'banAddress'>;
  readonly log: DecisionSink;
  readonly now: () => Date;
  /** Milliseconds, monotonic (performance.now by default). */
  readonly clock?: () => number;
}

type RecordFields = Pick<DecisionRecord, 'route' | 'sni' | 'tlsVersion' | 'claimedName' | 'nameSource' | 'alpn' | 'tlsa' | 'cache'>;
type Phase = 'clientHello' | 'handshake';

/** The socket a connection is ended through: destroyed, or (once established) ended with a TLS close_notify. */
export interface ClosableSocket {
  destroy(): void;
  end?(): void;
}

/** How long a replaced connection may take to close after its close_notify. */
const REPLACED_FLUSH_MS = 2_000;

/** Connections opened by this process so far: the id's counter. */
let opened = 0;
/** The process's part of a connection id: its pid and start time, so ids differ across workers and restarts. */
const ID_PREFIX = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

export class Connection {
  /** Unique within the process's life: on the decision line and on every access-log line of the connection. */
  readonly id = `${ID_PREFIX}-${(++opened).toString(36)}`;
  clientAddress: string;
  clientPort: number;
  /** Aborted when the client goes away: stops its lookup (and the waiting for it). */
  readonly abort = new AbortController();
  /**
   * Penalty-box failures a refusal counts for: a handshake that failed or stalled after the client sent part of a
   * chain counts one more per FLIGHT_PENALTY_BYTES sent (OpenSSL verified what it could of it); 0 when the refusal
   * is our own doing (waiting in our queue) or the address was banned for it already.
   */
  penaltyWeight = 1;
  private readonly clock: () => number;
  private readonly t0: number;
  private readonly fields: { -readonly [K in keyof RecordFields]?: RecordFields[K] } = {};
  private readonly durations: { clientHello?: number; handshake?: number; dns?: number } = {};
  private decidedAs: DecisionRecord | undefined;
  private releaseBudget: () => void = () => undefined;
  private releaseTls: () => void = () => undefined;
  private deadline: NodeJS.Timeout | undefined;
  private onDeadline: () => void = () => undefined;
  /** Set when this connection banned its own address (a chain over limits): the ban's notice to it is not its reason. */
  private bannedItself = false;
  private socket: ClosableSocket | undefined;

  constructor(
    private readonly env: ConnectionEnv,
    peer: { readonly address: string; readonly port: number },
  ) {
    this.clientAddress = peer.address;
    this.clientPort = peer.port;
    this.clock = env.clock ?? (() => performance.now());
    this.t0 = this.clock();
  }

  get decided(): boolean {
    return this.decidedAs !== undefined;
  }

  /** The record, once decided (for tests and the listener). */
  get decision(): DecisionRecord | undefined {
    return this.decidedAs;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** The socket a ban from another connection ends (the raw one, then the TLS one). */
  useSocket(socket: ClosableSocket): void {
    this.socket = socket;
  }

  /** Record fields found by a stage. */
  note(fields: Partial<RecordFields>): void {
    Object.assign(this.fields, fields);
  }

  /** The end of a phase: the ClientHello's duration counts from the accept, the handshake's from the ClientHello. */
  phaseDone(phase: Phase): void {
    const elapsed = this.clock() - this.t0;
    this.durations[phase] = Math.round(phase === 'clientHello' ? elapsed : elapsed - (this.durations.clientHello ?? 0));
  }

  /** The DNS time of the record: the lookup's own duration. */
  dnsTook(ms: number | undefined): void {
    if (ms !== undefined) this.durations.dns = Math.round(ms);
  }

  holdBudget(release: () => void): void {
    this.releaseBudget = once(release);
  }

  holdTlsSlot(release: () => void): void {
    this.releaseTls = once(release);
  }

  /** The TLS handshake is over (or will not happen): the next connection of this address may start its own. */
  releaseTlsSlot(): void {
    this.releaseTls();
  }

  /** Our own deadline for handshake and verification; `onExpiry` says what expiry means now (see expiryMeans). */
  startDeadline(ms: number, onExpiry: () => void): void {
    this.onDeadline = onExpiry;
    this.deadline = setTimeout(() => this.onDeadline(), ms);
  }

  expiryMeans(onExpiry: () => void): void {
    this.onDeadline = onExpiry;
  }

  /** Another connection banned this one's address while it was undecided: refused, and its socket ended. */
  banned(detail: string): void {
    if (this.bannedItself) return;
    this.decide('refused', 'penalty-box', detail);
    this.socket?.destroy();
  }

  /**
   * This connection's chain is over limits: its address goes to the penalty box with every other connection it has
   * between accept and decision. The ban comes first, so that the slots this one releases go to none of them.
   */
  overLimits(detail: string): void {
    if (this.decided) return;
    this.bannedItself = true;
    this.penaltyWeight = 0;
    this.env.admission.banAddress(this.clientAddress, `ended: ${this.clientAddress} sent a client chain over limits on another connection`);
    this.decide('refused', 'chain-over-limits', detail);
  }

  /** The decision, once: false (and nothing done) when the connection was decided already. */
  decide(outcome: DecisionRecord['outcome'], reason: ConnectionReason, detail: string): boolean {
    if (this.decidedAs !== undefined) return false;
    clearTimeout(this.deadline);
    // Bounded once, here, for every consumer (the log sink and the decision channel).
    this.decidedAs = boundDecisionRecord(this.record(outcome, reason, detail));
    // The failure first: should it ban the address, the slots released below go to none of its waiting connections.
    if (outcome === 'refused') this.penalise(reason);
    this.releaseTls();
    this.releaseBudget();
    this.emit(this.decidedAs);
    return true;
  }

  /**
   * A newer connection of the same verified name took this one's slot (maxConnectionsPerIdentity, newest-wins):
   * closed with a TLS close_notify (destroyed if it does not go within REPLACED_FLUSH_MS). Only established
   * connections are replaced: a slot is confirmed after the decision (ratelimit/identity-slots.ts).
   */
  replaced(identity: string, detail: string): void {
    connectionReplacedChannel.publish({ listener: this.env.listener, connectionId: this.id, identity, detail });
    const socket = this.socket;
    if (socket === undefined) return;
    if (socket.end === undefined) return socket.destroy();
    socket.end();
    setTimeout(() => socket.destroy(), REPLACED_FLUSH_MS).unref();
  }

  /** The client went away: release everything, stop the lookup. */
  closed(): void {
    clearTimeout(this.deadline);
    this.releaseTls();
    this.releaseBudget();
    this.abort.abort(new Error('client disconnected'));
  }

  private penalise(reason: ConnectionReason): void {
    if (reason === 'authenticated' || !REASONS[reason].penalized || this.penaltyWeight <= 0) return;
    this.env.admission.recordFailure(this.clientAddress, this.penaltyWeight);
  }

  private emit(record: DecisionRecord): void {
    this.env.log(record);
    decisionChannel.publish(record);
  }

  private record(outcome: DecisionRecord['outcome'], reason: ConnectionReason, detail: string): DecisionRecord {
    const f = this.fields;
    return {
      time: this.env.now().toISOString(),
      connectionId: this.id,
      listener: this.env.listener,
      route: f.route,
      source: `${this.clientAddress}:${this.clientPort}`,
      sni: f.sni,
      tlsVersion: f.tlsVersion,
      claimedName: f.claimedName,
      nameSource: f.nameSource,
      ...(f.alpn !== undefined && { alpn: f.alpn }),
      tlsa: f.tlsa,
      cache: f.cache,
      outcome,
      reason,
      detail,
      durationsMs: { ...this.durations, total: Math.round(this.clock() - this.t0) },
    };
  }
}

function once(release: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    release();
  };
}
