/**
 * What a TLS handshake that failed, stalled or ended tells about the client
 * chain (see client-chain.ts): over the limits (the address is banned), or
 * an ordinary failure whose penalty-box weight grows with the flight the
 * client sent (OpenSSL verified what it could of it). Pure.
 */
import { chainLimitViolation, flightViolation, type ChainEntry } from '../client-chain.js';

/** Penalty-box weight of a failed or stalled handshake after `bytes` of client flight: 1, plus 1 per 4 KB. */
export const FLIGHT_PENALTY_BYTES = 4096;
export function flightPenalty(bytes: number): number {
  return 1 + Math.floor(Math.max(0, bytes) / FLIGHT_PENALTY_BYTES);
}

export type HandshakeJudgement =
  { readonly reason: 'chain-over-limits'; readonly detail: string } | { readonly reason: 'handshake-failed' | 'handshake-timeout'; readonly detail: string; readonly weight: number };

export interface ChainLimits {
  readonly maxCertificates: number;
  readonly maxFlightBytes: number;
}

/** Characters of a TLS error message quoted in a detail. */
const ERROR_CHARS = 200;
const ERROR_CHARS_OVER_LIMITS = 100;

/** The handshake failed after the client sent `sent` bytes past its ClientHello. */
export function judgeHandshakeError(sent: number, maxFlightBytes: number, message: string): HandshakeJudgement {
  const flight = flightViolation(sent, maxFlightBytes);
  if (flight !== undefined) return { reason: 'chain-over-limits', detail: `${flight}, then failed: ${message.slice(0, ERROR_CHARS_OVER_LIMITS)}` };
  return { reason: 'handshake-failed', detail: message.slice(0, ERROR_CHARS), weight: flightPenalty(sent) };
}

/** The deadline passed after the client sent `sent` bytes past its ClientHello (0 when the handshake was over: waiting on DNS). */
export function judgeStall(sent: number, maxFlightBytes: number, timeoutMs: number): HandshakeJudgement {
  const flight = flightViolation(sent, maxFlightBytes);
  if (flight !== undefined) return { reason: 'chain-over-limits', detail: `${flight}, then stalled` };
  return { reason: 'handshake-timeout', detail: `handshake and verification not done within ${timeoutMs} ms`, weight: flightPenalty(sent) };
}

/**
 * The deadline passed after the handshake was over: the client was waiting
 * for our TLSA lookup (a slow resolver or authoritative server), which is
 * not the client's doing: no penalty-box weight (a DNS outcome never
 * penalises, and a slow zone must not get a carrier-NAT address banned).
 */
export function judgeVerificationTimeout(timeoutMs: number): HandshakeJudgement {
  return { reason: 'handshake-timeout', detail: `handshake done, but the TLSA lookup and verification not done within ${timeoutMs} ms`, weight: 0 };
}

/** The handshake ended: why the flight or the presented chain is over the limits, or undefined. */
export function judgeSecured(sent: number, presented: readonly ChainEntry[], limits: ChainLimits): string | undefined {
  return flightViolation(sent, limits.maxFlightBytes) ?? chainLimitViolation(presented, limits.maxCertificates);
}
