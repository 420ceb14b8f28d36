/**
 * One structured record per connection decision, and the refusal reason
 * codes the proxy uses (the DANE verifier's codes plus the connection-level
 * ones below). Never carries key material or whole certificates.
 */
import type { VerificationReason } from '../dane/verify.js';
import type { AdmissionReason } from '../ratelimit/admission.js';
import type { NameSource } from './identity.js';

export type ConnectionReason =
  | VerificationReason
  | 'authenticated'
  | 'client-hello-invalid'
  | 'client-hello-timeout'
  | 'client-closed'
  | 'proxy-header-invalid'
  | 'proxy-header-timeout'
  | 'no-route'
  | 'handshake-failed'
  | 'handshake-timeout'
  | 'ambiguous-name'
  | 'no-name'
  | AdmissionReason;

export interface DecisionRecord {
  readonly time: string;
  readonly listener: string;
  readonly route: string | undefined;
  readonly source: string;
  readonly sni: string | undefined;
  readonly tlsVersion: string | undefined;
  readonly claimedName: string | undefined;
  readonly nameSource: NameSource | undefined;
  /** 'forwarded' (authenticated, or unauthenticated under policy optional) or 'refused'. */
  readonly outcome: 'forwarded' | 'refused';
  readonly reason: ConnectionReason;
  readonly detail: string;
  readonly tlsa: string | undefined;
  readonly cache: string | undefined;
  readonly durationsMs: { readonly clientHello?: number; readonly handshake?: number; readonly dns?: number; readonly total: number };
}

export type DecisionSink = (record: DecisionRecord) => void;

/** Default sink: one JSON line per decision on stdout. */
export const jsonLineSink: DecisionSink = (record) => {
  process.stdout.write(`${JSON.stringify(record)}\n`);
};

/** The parts of a pino logger a decision sink needs. */
export interface DecisionLogger {
  info(fields: object, message: string): void;
}

/**
 * Decisions as structured log lines through a pino logger: pino adds the
 * timestamp and level; every field of the record follows, under the message
 * "connection decision".
 */
export function loggerSink(logger: DecisionLogger): DecisionSink {
  return (record) => {
    const { time: _time, ...fields } = record;
    logger.info(fields, 'connection decision');
  };
}
