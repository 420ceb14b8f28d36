/**
 * Every reason a connection is refused (or forwarded unauthenticated), in one
 * catalog. The reason unions, the penalty box's choice, the HTTP status of a
 * refusal, the TLS alert sent before the handshake, the README's table and
 * the metric labels all come from here (test/unit/reasons.test.ts checks the
 * README against it).
 */

/** TLS alert descriptions we send (RFC 8446 §6, RFC 6066 §3). */
export const TLS_ALERTS = {
  handshake_failure: 40,
  internal_error: 80,
  unrecognized_name: 112,
  certificate_required: 116,
  no_application_protocol: 120,
} as const;
export type TlsAlertName = keyof typeof TLS_ALERTS;

export interface ReasonInfo {
  /** May succeed if tried again later: the operator's DNS or capacity, not the client. */
  readonly temporary: boolean;
  /** Counts towards the client address's penalty box: the client's own doing. */
  readonly penalized: boolean;
  /** The HTTP status a refused HTTP client gets (HTTP mode, refuseWith403). */
  readonly http: 403 | 503;
  /** The TLS alert sent when the refusal comes before the handshake, if any. */
  readonly alert: TlsAlertName | undefined;
  /** What happened, in words (the README's table). */
  readonly meaning: string;
}

const refusal = (meaning: string, penalized: boolean, alert?: TlsAlertName): ReasonInfo => ({ temporary: false, penalized, http: 403, alert, meaning });
const temporary = (meaning: string): ReasonInfo => ({ temporary: true, penalized: false, http: 503, alert: undefined, meaning });

/** The catalog, in the order of the connection pipeline. */
export const REASONS = {
  'proxy-header-invalid': refusal('no valid PROXY header from a trusted load balancer (including a PROXY v2 CRC32C mismatch)', true),
  'proxy-header-timeout': refusal('no complete PROXY header within clientHelloTimeoutMs', false),
  'penalty-box': refusal('the address is in the penalty box after repeated failures', false),
  'rate-limited': temporary('the address opened connections faster than its token bucket allows'),
  'handshake-budget': temporary('too many connections between accept and decision, all addresses'),
  'handshake-budget-ip': temporary('too many connections between accept and decision from this address'),
  'client-hello-invalid': refusal('the first bytes are not a well-formed ClientHello', true),
  'client-hello-timeout': refusal('no complete ClientHello within clientHelloTimeoutMs', true),
  'client-closed': refusal('the client closed the connection before the decision', false),
  'no-route': refusal('no route serves the SNI name', false, 'unrecognized_name'),
  'no-application-protocol': refusal("the client offered ALPN protocols, none of them the listener's (RFC 7301)", false, 'no_application_protocol'),
  'invalid-name': refusal('the claimed name is not a valid DNS name', true, 'handshake_failure'),
  'not-allowed': refusal('the claimed name is not on the route allowlist (no DNS query was made)', true, 'handshake_failure'),
  'no-name': refusal('no dane_clientid and no SAN dNSName in the certificate', true),
  'ambiguous-name': refusal('more than one allowlisted SAN dNSName and no dane_clientid to choose', true),
  'handshake-failed': refusal('the TLS handshake failed', true),
  'handshake-timeout': refusal('handshake and verification not done within handshakeTimeoutMs (no penalty when the handshake was done and our lookup was slow)', true),
  'chain-over-limits': refusal('the client chain is over the chain limits; the address is banned', true),
  'no-certificate': refusal('the client presented no certificate', true),
  'dns-no-tlsa': refusal('the name has no TLSA records (NXDOMAIN or NODATA, DNSSEC-validated)', false),
  'dns-insecure': refusal('the answer was not DNSSEC-validated (an unsigned zone, or a resolver that does not validate)', false),
  'dns-bogus': temporary('DNSSEC validation of the answer failed'),
  'dns-timeout': temporary('no answer from the resolver in time'),
  'dns-malformed': temporary('the resolver answer could not be parsed or did not match the question'),
  'dns-server-error': temporary('the resolver answered SERVFAIL, REFUSED or another error'),
  'dns-over-capacity': temporary('the resolver gate is full (queries in flight or queued)'),
  'chain-too-long': refusal('the client chain has more certificates than the verifier accepts', true),
  'no-records': refusal('the TLSA RRset is empty', true),
  'no-usable-records': refusal('no TLSA record has a usage, selector and matching type we support', true),
  'no-matching-record': refusal('no TLSA record matches the presented certificate or chain', true),
  'identity-limit': temporary('the verified name has its maximum of concurrent connections'),
} as const satisfies Record<string, ReasonInfo>;

/** Why a connection was refused (or forwarded unauthenticated under policy optional). */
export type RefusalReason = keyof typeof REASONS;
/** A connection's outcome: authenticated, or the reason it was not. */
export type ConnectionReason = 'authenticated' | RefusalReason;

export const REFUSAL_REASONS = Object.keys(REASONS) as RefusalReason[];

export function reasonInfo(reason: RefusalReason): ReasonInfo {
  return REASONS[reason];
}

/** The alert record byte for a reason refused before the handshake (handshake_failure when the catalog names none). */
export function alertFor(reason: RefusalReason): number {
  return TLS_ALERTS[REASONS[reason].alert ?? 'handshake_failure'];
}

/**
 * Why one HTTP request on an admitted connection was answered by us instead
 * of forwarded: the access log's `refusal`, the request metrics' label and
 * the README's "Request refusal reasons" table.
 */
export const REQUEST_REFUSALS = {
  'bad-request': { status: 400, meaning: 'the request target, Host/:authority or framing is malformed or ambiguous' },
  misdirected: { status: 421, meaning: 'the Host or :authority does not belong to the route the TLS server name chose' },
  'not-implemented': { status: 501, meaning: 'a transfer coding other than chunked (HTTP/1.1), or CONNECT (HTTP/2)' },
  'path-not-allowed': { status: 403, meaning: 'no rule of the route allows this identity (or an unauthenticated client) this path and method' },
  'request-rate-limited': { status: 429, meaning: "the identity's (or, unauthenticated, the address's) request token bucket is empty" },
  'upstream-busy': { status: 503, meaning: 'no upstream connection became free in time, or the client has its share in flight' },
  'upstream-unavailable': { status: 502, meaning: 'no upstream could be reached, or it broke before answering' },
  draining: { status: 503, meaning: 'the listener is shutting down (a new WebSocket tunnel)' },
  'internal-error': { status: 502, meaning: 'the request could not be forwarded (a fault of ours, logged)' },
} as const satisfies Record<string, { readonly status: number; readonly meaning: string }>;
export type RequestRefusal = keyof typeof REQUEST_REFUSALS;
