/**
 * The DNS exchange: ask one question of the configured resolvers, with
 * failover across servers, a per-attempt and a total deadline, UDP answers
 * truncated (TC) fetched again over TCP, and an abort signal. Returns the
 * checked, decoded response or a typed transport failure; what the answer
 * means is the caller's business. Generic: nothing here knows TLSA, so
 * in-process DNSSEC validation can later sit behind the same DnsClient seam.
 */
import { RCODE, type DnsAnswer, type DnsQuestion } from './message.js';
import { DEFAULT_ATTEMPT_TIMEOUT_MS, DEFAULT_TOTAL_TIMEOUT_MS, describeServer, validateResolverOptions, type ResolverOptions, type ResolverServer } from './resolver.js';
import { queryStream, queryUdp, type AttemptResult, type TransportFailureKind } from './transport.js';

export interface DnsResponse extends DnsAnswer {
  /** The server that answered. */
  readonly server: ResolverServer;
  /** describeServer(server), e.g. "udp://127.0.0.1:53". */
  readonly from: string;
  /** Set when the UDP answer was truncated and fetched again over TCP. */
  readonly note?: string;
}

export type ExchangeResult = { readonly ok: true; readonly response: DnsResponse } | { readonly ok: false; readonly kind: TransportFailureKind; readonly detail: string };

/** The seam: anything that answers DNS questions (the exchange below, a fake in tests). */
export interface DnsClient {
  /** Resolves with a response or a failure; rejects only when `signal` aborts. */
  query(question: DnsQuestion, signal?: AbortSignal): Promise<ExchangeResult>;
}

export const TRUNCATED_NOTE = 'UDP answer truncated, retried over TCP';

/** A response that settles the question: the name exists or it does not (whatever the AD bit says). */
const isDefinitive = (r: DnsResponse): boolean => r.rcode === RCODE.NOERROR || r.rcode === RCODE.NXDOMAIN;

/**
 * When no server settled the question, the most telling result is returned:
 * a SERVFAIL (the resolver could not validate or reach the zone) over a
 * protocol violation over any other RCODE or an unreachable server over a timeout.
 */
function rank(o: ExchangeResult): number {
  if (o.ok) return o.response.rcode === RCODE.SERVFAIL ? 4 : 2;
  return o.kind === 'malformed' ? 3 : o.kind === 'server-error' ? 2 : 1;
}

/** Asking the same server again may help after a timeout, an unreachable server or a REFUSED; not after SERVFAIL or garbage. */
function worthRetrying(o: ExchangeResult): boolean {
  if (o.ok) return o.response.rcode !== RCODE.SERVFAIL;
  return o.kind !== 'malformed';
}

export class DnsExchange implements DnsClient {
  private readonly attemptTimeoutMs: number;
  private readonly totalTimeoutMs: number;

  /** Throws ResolverConfigError for a configuration validateResolverOptions refuses. */
  constructor(private readonly options: ResolverOptions) {
    validateResolverOptions(options);
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
    this.totalTimeoutMs = options.totalTimeoutMs ?? DEFAULT_TOTAL_TIMEOUT_MS;
  }

  get servers(): readonly ResolverServer[] {
    return this.options.servers;
  }

  /**
   * Ask each server in order; a server that timed out, could not be reached
   * or refused is asked again in a second round while time remains.
   */
  async query(question: DnsQuestion, signal?: AbortSignal): Promise<ExchangeResult> {
    const deadline = Date.now() + this.totalTimeoutMs;
    const noTime = (): ExchangeResult => ({ ok: false, kind: 'timeout', detail: `no answer within ${this.totalTimeoutMs} ms` });
    let best: ExchangeResult | undefined;
    const retriable = new Set(this.options.servers);
    for (let round = 0; round < 2 && retriable.size > 0; round++) {
      for (const server of this.options.servers) {
        if (!retriable.has(server)) continue;
        const remaining = deadline - Date.now();
        if (remaining <= 0) return best ?? noTime();
        const result = await this.attempt(server, question, Math.min(this.attemptTimeoutMs, remaining), deadline, signal);
        if (result.ok && isDefinitive(result.response)) return result;
        if (!worthRetrying(result)) retriable.delete(server);
        if (best === undefined || rank(result) > rank(best)) best = result;
      }
    }
    return best ?? noTime();
  }

  private async attempt(server: ResolverServer, question: DnsQuestion, timeoutMs: number, deadline: number, signal?: AbortSignal): Promise<ExchangeResult> {
    if (server.transport !== 'udp') return settle(server, await queryStream(server, question, timeoutMs, signal));
    const udp = await queryUdp(server, question, timeoutMs, signal);
    if (udp.kind !== 'truncated') return settle(server, udp);
    const remaining = deadline - Date.now();
    if (remaining <= 0) return { ok: false, kind: 'timeout', detail: `${describeServer(server)}: truncated answer and no time left to retry over TCP` };
    const tcp = await queryStream({ ...server, transport: 'tcp' }, question, Math.min(this.attemptTimeoutMs, remaining), signal);
    return settle(server, tcp, TRUNCATED_NOTE);
  }
}

function settle(server: ResolverServer, r: AttemptResult, note?: string): ExchangeResult {
  if (r.kind === 'answer') {
    const response: DnsResponse = { packet: r.packet, rcode: r.rcode, rcodeName: r.rcodeName, authenticData: r.authenticData, server, from: describeServer(server), ...(note ? { note } : {}) };
    return { ok: true, response };
  }
  // A truncated answer over TCP cannot happen (queryStream reports it as malformed).
  if (r.kind === 'truncated') return { ok: false, kind: 'malformed', detail: `${describeServer(server)}: truncated answer over a stream` };
  return { ok: false, kind: r.kind, detail: note ? `${r.detail} (${note})` : r.detail };
}
