/**
 * The RADSEC filter of one connection: state only, no sockets. The forwarder hands it every chunk
 * read from the peer (`fromClient`) and from the RADIUS server (`fromServer`), and writes the
 * returned `out` buffers, in order, on the other side.
 *
 * Both directions are framed by the RADIUS Length field (RFC 6613 §2.6.4). A partial packet is
 * kept until the rest arrives, in one buffer of the length its header announces, so it never holds
 * more than `maxPacketBytes`; a Length under 20 or over `maxPacketBytes` is fatal.
 *
 * Client → server: each packet goes through `rewriteRequest` (src/protocol/radius.ts): the
 * identity attribute (the verified DANE name) replaces any copy the peer sent, and the packet is
 * signed again. For each Accounting-Request passed on, the two Request Authenticators (the peer's
 * and the one dancegate computed) are remembered under its Identifier — one slot per Identifier, so
 * at most 256 — and the server's Accounting-Response with that Identifier is re-signed for the peer.
 * Any other request with that Identifier empties the slot: the server answers the latest request
 * with an Identifier (a RADIUS/TLS peer never retransmits on the same connection, RFC 6613 §2.6.1,
 * and the one-byte Identifier allows 256 outstanding requests per connection, §2.6.5).
 *
 * Server → client: an Accounting-Response whose Identifier has a slot is re-signed; every other
 * packet is passed untouched (Access-Accept and the like need nothing: the Access-Request kept its
 * Request Authenticator, and the secret is the same on both sides).
 *
 * What a bad packet does, following RFC 6613 §2.6.4 (RADIUS over TCP must "silently discard and
 * close the connection" where RADIUS over UDP would silently discard):
 *  - fatal (`fatal` is set: close the connection): a bad Length field, a malformed packet, a
 *    request whose Message-Authenticator or Accounting Request Authenticator does not verify, a
 *    Status-Server without a Message-Authenticator, an Accounting-Response from the server whose
 *    Response Authenticator does not verify against the request dancegate sent;
 *  - dropped with a 'refused' event, the connection kept, up to MAX_DROPPED_CLIENT_PACKETS per
 *    connection, then fatal (RFC 6613 lets a well-formed but
 *    unexpected packet be discarded without closing): a code the peer may not send (Access-Accept,
 *    CoA-Request, an unknown code…), a Vendor-Specific of the identity's vendor whose
 *    sub-attributes do not parse, a rewritten packet that would exceed `maxPacketBytes`.
 * Once fatal, the filter stays so: later calls return no bytes and the same `fatal` reason. The
 * `out` of the fatal step holds the packets decided before the bad one (safe to write).
 */
import {
  buildIdentityAttribute,
  framePacket,
  RADIUS_CODE,
  RADIUS_HEADER_BYTES,
  RADIUS_MAX_PACKET_BYTES,
  resignAccountingResponse,
  rewriteRequest,
  type IdentityAttribute,
  type RadiusSecret,
} from '../protocol/radius.js';

export interface RadsecFilterOptions {
  /** The RFC 6614 shared secret, used both to check the peer's packets and to sign ours. */
  readonly secret: RadiusSecret;
  readonly identity: IdentityAttribute;
  /** The verified DANE name of the peer. */
  readonly name: string;
  /** Largest packet accepted in either direction (and largest rewritten packet): 20 to 65535. */
  readonly maxPacketBytes: number;
}

export type RadsecEventKind = 'rewritten' | 'passed' | 'refused' | 'stripped';

export interface RadsecEvent {
  readonly kind: RadsecEventKind;
  readonly code: number;
  readonly identifier: number;
  /** For 'refused' (why) and 'stripped' (how many copies). */
  readonly reason?: string;
}

export interface FilterStep {
  /** Bytes to write on the other side, in order. */
  readonly out: Buffer[];
  readonly events: RadsecEvent[];
  /** Set when the connection must be closed (see the module comment). */
  readonly fatal?: string;
}

/**
 * Well-formed packets a peer may have dropped (a code it may not send, a malformed Vendor-Specific of our
 * vendor, an identity attribute on a packet passed untouched, a rewrite over the size limit) before its
 * connection is closed: each drop is a log line, so a peer must not be able to write them without end.
 */
export const MAX_DROPPED_CLIENT_PACKETS = 16;

/** One slot per RADIUS Identifier. */
export const MAX_OUTSTANDING_ACCOUNTING_REQUESTS = 256;

interface OutstandingAccounting {
  readonly ours: Buffer;
  readonly client: Buffer;
}

type AssemblerStep = { readonly packets: Buffer[]; readonly invalid?: { readonly reason: string; readonly code: number; readonly identifier: number } };

/**
 * Cuts a byte stream into RADIUS packets. A partial packet waits in a buffer of exactly the length
 * its header announced (at most maxBytes), filled as bytes come: linear in the bytes received,
 * whatever the chunk sizes.
 */
class PacketAssembler {
  private readonly header = Buffer.alloc(4);
  private headerFilled = 0;
  private body: Buffer | undefined;
  private bodyFilled = 0;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): AssemblerStep {
    const packets: Buffer[] = [];
    let o = 0;
    while (o < chunk.length) {
      if (this.body !== undefined) {
        const n = Math.min(this.body.length - this.bodyFilled, chunk.length - o);
        chunk.copy(this.body, this.bodyFilled, o, o + n);
        this.bodyFilled += n;
        o += n;
        if (this.bodyFilled === this.body.length) {
          packets.push(this.body);
          this.body = undefined;
          this.bodyFilled = 0;
        }
        continue;
      }
      if (this.headerFilled > 0) {
        const n = Math.min(4 - this.headerFilled, chunk.length - o);
        chunk.copy(this.header, this.headerFilled, o, o + n);
        this.headerFilled += n;
        o += n;
        if (this.headerFilled < 4) continue;
        const invalid = this.start(this.header);
        if (invalid !== undefined) return { packets, invalid };
        this.headerFilled = 0;
        continue;
      }
      // At a packet boundary: whole packets are cut straight out of the chunk.
      const rest = chunk.subarray(o);
      const frame = framePacket(rest, this.maxBytes);
      if (frame === 'incomplete') {
        if (rest.length < 4) {
          rest.copy(this.header, 0);
          this.headerFilled = rest.length;
          o = chunk.length;
        } else {
          const invalid = this.start(rest);
          if (invalid !== undefined) return { packets, invalid }; // unreachable: framePacket checked the length
        }
        o = chunk.length; // the rest is all in the partial packet now
        continue;
      }
      if (frame.status === 'invalid') return { packets, invalid: { reason: frame.reason, code: rest[0] ?? 0, identifier: rest[1] ?? 0 } };
      packets.push(Buffer.from(frame.bytes));
      o += frame.bytes.length;
    }
    return { packets };
  }

  /** Starts a packet from its first bytes (at least 4, at most one packet's worth). */
  private start(first: Buffer): AssemblerStep['invalid'] {
    const frame = framePacket(first.subarray(0, 4), this.maxBytes);
    if (frame !== 'incomplete' && frame.status === 'invalid') return { reason: frame.reason, code: first[0] ?? 0, identifier: first[1] ?? 0 };
    const length = first.readUInt16BE(2);
    this.body = Buffer.allocUnsafe(length);
    const n = Math.min(first.length, length);
    first.copy(this.body, 0, 0, n);
    this.bodyFilled = n;
    return undefined;
  }
}

export class RadsecFilter {
  private readonly options: RadsecFilterOptions;
  private readonly clientFrames: PacketAssembler;
  private readonly serverFrames: PacketAssembler;
  private readonly outstanding: Array<OutstandingAccounting | undefined> = new Array<OutstandingAccounting | undefined>(MAX_OUTSTANDING_ACCOUNTING_REQUESTS).fill(undefined);
  private outstandingCount = 0;
  private fatalReason: string | undefined;
  /** Well-formed packets from the peer dropped so far: past MAX_DROPPED_CLIENT_PACKETS the connection is closed (each drop is a log line). */
  private dropped = 0;

  /** Throws RangeError for an unusable option (empty secret, identity attribute, a name that does not fit, maxPacketBytes). */
  constructor(options: RadsecFilterOptions) {
    const secretLength = typeof options.secret === 'string' ? Buffer.byteLength(options.secret, 'utf8') : options.secret.length;
    if (secretLength === 0) throw new RangeError('RADSEC shared secret must not be empty');
    buildIdentityAttribute(options.identity, options.name); // throws for an unusable attribute or a name that does not fit
    const max = options.maxPacketBytes;
    if (!Number.isInteger(max) || max < RADIUS_HEADER_BYTES || max > RADIUS_MAX_PACKET_BYTES) {
      throw new RangeError(`maxPacketBytes must be an integer from ${RADIUS_HEADER_BYTES} to ${RADIUS_MAX_PACKET_BYTES}, got ${String(max)}`);
    }
    this.options = { secret: options.secret, identity: options.identity, name: options.name, maxPacketBytes: max };
    this.clientFrames = new PacketAssembler(max);
    this.serverFrames = new PacketAssembler(max);
  }

  /** Accounting-Requests passed on whose Accounting-Response has not come back yet. */
  get outstandingAccountingRequests(): number {
    return this.outstandingCount;
  }

  /** Bytes read from the RADSEC peer; `out` goes to the server. */
  fromClient(chunk: Buffer): FilterStep {
    if (this.fatalReason !== undefined) return { out: [], events: [], fatal: this.fatalReason };
    const out: Buffer[] = [];
    const events: RadsecEvent[] = [];
    const framed = this.clientFrames.push(chunk);
    for (const packet of framed.packets) {
      const fatal = this.clientPacket(packet, out, events);
      if (fatal !== undefined) return this.fail(out, events, fatal);
    }
    if (framed.invalid !== undefined) {
      const { code, identifier, reason } = framed.invalid;
      events.push({ kind: 'refused', code, identifier, reason });
      return this.fail(out, events, `client: ${reason}`);
    }
    return { out, events };
  }

  /** Bytes read from the RADIUS server; `out` goes to the peer. */
  fromServer(chunk: Buffer): FilterStep {
    if (this.fatalReason !== undefined) return { out: [], events: [], fatal: this.fatalReason };
    const out: Buffer[] = [];
    const events: RadsecEvent[] = [];
    const framed = this.serverFrames.push(chunk);
    for (const packet of framed.packets) {
      const fatal = this.serverPacket(packet, out, events);
      if (fatal !== undefined) return this.fail(out, events, fatal);
    }
    if (framed.invalid !== undefined) {
      const { code, identifier, reason } = framed.invalid;
      events.push({ kind: 'refused', code, identifier, reason });
      return this.fail(out, events, `server: ${reason}`);
    }
    return { out, events };
  }

  private fail(out: Buffer[], events: RadsecEvent[], reason: string): FilterStep {
    this.fatalReason = reason;
    this.outstanding.fill(undefined);
    this.outstandingCount = 0;
    return { out, events, fatal: reason };
  }

  private setOutstanding(identifier: number, entry: OutstandingAccounting | undefined): void {
    const had = this.outstanding[identifier] !== undefined;
    this.outstanding[identifier] = entry;
    this.outstandingCount += (entry !== undefined ? 1 : 0) - (had ? 1 : 0);
  }

  /** Handles one whole packet from the peer; returns a fatal reason, or undefined. */
  private clientPacket(packet: Buffer, out: Buffer[], events: RadsecEvent[]): string | undefined {
    const code = packet[0] ?? 0;
    const identifier = packet[1] ?? 0;
    const result = rewriteRequest(packet, this.options);
    if (!result.ok) {
      events.push({ kind: 'refused', code, identifier, reason: result.reason });
      if (result.problem !== 'refused') return `client: ${result.reason}`;
      this.dropped++;
      return this.dropped > MAX_DROPPED_CLIENT_PACKETS ? `client: more than ${MAX_DROPPED_CLIENT_PACKETS} packets refused on this connection` : undefined;
    }
    if (result.removedCopies > 0) {
      events.push({ kind: 'stripped', code, identifier, reason: `removed ${result.removedCopies} cop${result.removedCopies === 1 ? 'y' : 'ies'} of the identity attribute sent by the client` });
    }
    events.push({ kind: result.kind, code, identifier });
    out.push(result.bytes);
    if (code === RADIUS_CODE.ACCOUNTING_REQUEST && result.originalAuthenticator !== undefined) {
      this.setOutstanding(identifier, { ours: Buffer.from(result.bytes.subarray(4, RADIUS_HEADER_BYTES)), client: result.originalAuthenticator });
    } else if (code === RADIUS_CODE.ACCESS_REQUEST || code === RADIUS_CODE.STATUS_SERVER) {
      this.setOutstanding(identifier, undefined); // the server's next answer with this Identifier is for this request
    }
    return undefined;
  }

  /** Handles one whole packet from the server; returns a fatal reason, or undefined. */
  private serverPacket(packet: Buffer, out: Buffer[], events: RadsecEvent[]): string | undefined {
    const code = packet[0] ?? 0;
    const identifier = packet[1] ?? 0;
    const entry = code === RADIUS_CODE.ACCOUNTING_RESPONSE ? this.outstanding[identifier] : undefined;
    if (entry === undefined) {
      events.push({ kind: 'passed', code, identifier });
      out.push(packet);
      return undefined;
    }
    const result = resignAccountingResponse(packet, { secret: this.options.secret, ourRequestAuthenticator: entry.ours, clientRequestAuthenticator: entry.client });
    this.setOutstanding(identifier, undefined);
    if (!result.ok) {
      events.push({ kind: 'refused', code, identifier, reason: result.reason });
      return `server: ${result.reason}`;
    }
    events.push({ kind: 'rewritten', code, identifier });
    out.push(result.bytes);
    return undefined;
  }
}
