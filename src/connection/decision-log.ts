/**
 * One structured record per connection decision. Its reason is a catalog
 * reason (src/reasons.ts) or 'authenticated'. Never carries key material or
 * whole certificates, and every text field is bounded before it is written
 * (see DECISION_FIELD_LIMITS).
 */
import type { ConnectionReason } from '../reasons.js';
import type { NameSource } from './stages/identity-sources.js';
import { boundText } from './log-bounds.js';

export type { ConnectionReason } from '../reasons.js';

export interface DecisionRecord {
  readonly time: string;
  /** Also on the connection's access-log lines. */
  readonly connectionId: string;
  readonly listener: string;
  readonly route: string | undefined;
  readonly source: string;
  readonly sni: string | undefined;
  readonly tlsVersion: string | undefined;
  readonly claimedName: string | undefined;
  readonly nameSource: NameSource | undefined;
  /** The ALPN protocol negotiated (or, for a connection refused in its handshake, the one it would have had); absent: none. */
  readonly alpn?: string | undefined;
  /** 'forwarded' (authenticated, or unauthenticated under policy optional) or 'refused'. */
  readonly outcome: 'forwarded' | 'refused';
  readonly reason: ConnectionReason;
  readonly detail: string;
  readonly tlsa: string | undefined;
  readonly cache: string | undefined;
  readonly durationsMs: { readonly clientHello?: number; readonly handshake?: number; readonly dns?: number; readonly total: number };
}

export type DecisionSink = (record: DecisionRecord) => void;

type TextField = { [K in keyof DecisionRecord]-?: NonNullable<DecisionRecord[K]> extends string ? K : never }[keyof DecisionRecord];

/**
 * The most UTF-8 bytes of each text field a log line carries; longer text is
 * cut and ends with `…(+N bytes)` within the limit; unprintable characters
 * are escaped. Names are at most 253 bytes when valid, so 253 keeps every
 * valid one whole; `detail` (the reason in words, which may quote client
 * input) gets 1 KiB. Every limit leaves room for the marker (22 bytes at
 * most). With the fixed fields a JSON line stays under 4 KiB whatever the
 * client sends.
 */
export const DECISION_FIELD_LIMITS: Readonly<Record<TextField, number>> = {
  time: 64,
  connectionId: 64,
  listener: 64,
  route: 253,
  source: 64,
  sni: 253,
  tlsVersion: 32,
  claimedName: 253,
  nameSource: 32,
  alpn: 255,
  outcome: 32,
  reason: 64,
  detail: 1024,
  tlsa: 32,
  cache: 64,
};

/** `record` with every text field bounded (DECISION_FIELD_LIMITS); numbers are kept, unknown fields dropped. */
export function boundDecisionRecord(record: DecisionRecord): DecisionRecord {
  const text = <T extends string | undefined>(field: TextField, value: T): T => (typeof value === 'string' ? boundText(value, DECISION_FIELD_LIMITS[field]) : value) as T;
  const d = record.durationsMs;
  const ms = (n: number | undefined): number | undefined => (typeof n === 'number' && Number.isFinite(n) ? n : undefined);
  return {
    time: text('time', record.time),
    connectionId: text('connectionId', record.connectionId),
    listener: text('listener', record.listener),
    route: text('route', record.route),
    source: text('source', record.source),
    sni: text('sni', record.sni),
    tlsVersion: text('tlsVersion', record.tlsVersion),
    claimedName: text('claimedName', record.claimedName),
    nameSource: text('nameSource', record.nameSource),
    ...(record.alpn !== undefined && { alpn: text('alpn', record.alpn) }),
    outcome: text('outcome', record.outcome),
    reason: text('reason', record.reason),
    detail: text('detail', record.detail),
    tlsa: text('tlsa', record.tlsa),
    cache: text('cache', record.cache),
    durationsMs: {
      ...(ms(d?.clientHello) !== undefined && { clientHello: ms(d?.clientHello) }),
      ...(ms(d?.handshake) !== undefined && { handshake: ms(d?.handshake) }),
      ...(ms(d?.dns) !== undefined && { dns: ms(d?.dns) }),
      total: ms(d?.total) ?? 0,
    },
  };
}

/** Default sink: one JSON line per decision on stdout, every field bounded. */
export const jsonLineSink: DecisionSink = (record) => {
  process.stdout.write(`${JSON.stringify(boundDecisionRecord(record))}\n`);
};

/** The parts of a pino logger a decision sink needs. */
export interface DecisionLogger {
  info(fields: object, message: string): void;
}

/**
 * Decisions as structured log lines through a pino logger: pino adds the
 * timestamp and level; every field of the record follows (bounded), under the
 * message "connection decision".
 */
export function loggerSink(logger: DecisionLogger): DecisionSink {
  return (record) => {
    const { time: _time, ...fields } = boundDecisionRecord(record);
    logger.info(fields, 'connection decision');
  };
}
