/**
 * The per-connection RADSEC filter (src/forward/radsec-filter.ts): framing of both directions
 * (whole, split, byte by byte), the rewrite of the peer's requests, the re-signing of the server's
 * Accounting-Responses, and which bad packets are dropped and which close the connection
 * (RFC 6613 §2.6.4). Packets and signatures are built here with the test's own small helpers.
 */
import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_DROPPED_CLIENT_PACKETS, MAX_OUTSTANDING_ACCOUNTING_REQUESTS, RadsecFilter, type FilterStep, type RadsecEvent, type RadsecFilterOptions } from '../../src/forward/radsec-filter.js';
import { DEFAULT_IDENTITY_ATTRIBUTE } from '../../src/protocol/radius.js';

const SECRET = 'radsec';
const NAME = 'nas1.nas.radsec.example';
const OPTIONS: RadsecFilterOptions = { secret: SECRET, identity: DEFAULT_IDENTITY_ATTRIBUTE, name: NAME, maxPacketBytes: 4096 };
const ZERO16 = Buffer.alloc(16);
const AUTH = Buffer.from('00112233445566778899aabbccddeeff', 'hex');

const md5 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
};
const attr = (type: number, value: Buffer | string): Buffer => {
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([Buffer.from([type, 2 + v.length]), v]);
};
const ours = (name: string): Buffer => attr(26, Buffer.concat([Buffer.from([0, 0, 0x7e, 0xd9]), attr(1, name)]));
const maZero = (): Buffer => attr(80, ZERO16);

function pkt(code: number, identifier: number, authenticator: Buffer, attrs: Buffer[], forcedLength?: number): Buffer {
  const body = Buffer.concat(attrs);
  const head = Buffer.from([code, identifier, 0, 0]);
  head.writeUInt16BE(forcedLength ?? 20 + body.length, 2);
  return Buffer.concat([head, authenticator, body]);
}

/** Fills the Message-Authenticator (found by walking the attributes) over `basis`. */
function withMa(packet: Buffer, secret: string, basis: Buffer): Buffer {
  const out = Buffer.from(packet);
  let at = -1;
  for (let o = 20; o < out.length; o += out[o + 1] ?? 1) if (out[o] === 80) at = o + 2;
  const copy = Buffer.from(out);
  basis.copy(copy, 4);
  copy.fill(0, at, at + 16);
  createHmac('md5', secret).update(copy).digest().copy(out, at);
  return out;
}

const accessRequest = (identifier: number, attrs: Buffer[] = [attr(1, 'nemo')]): Buffer => withMa(pkt(1, identifier, AUTH, [maZero(), ...attrs]), SECRET, AUTH);
const statusServer = (identifier: number): Buffer => withMa(pkt(12, identifier, AUTH, [maZero()]), SECRET, AUTH);

function accountingRequest(identifier: number, attrs: Buffer[] = [attr(40, Buffer.from([0, 0, 0, 1])), attr(44, `session-${identifier}`)]): Buffer {
  const out = pkt(4, identifier, ZERO16, attrs);
  md5(out.subarray(0, 4), ZERO16, out.subarray(20), Buffer.from(SECRET)).copy(out, 4);
  return out;
}

function accountingResponse(identifier: number, requestAuthenticator: Buffer, secret = SECRET, attrs: Buffer[] = [maZero()]): Buffer {
  let out = pkt(5, identifier, requestAuthenticator, attrs);
  if (attrs.some((a) => a[0] === 80)) out = withMa(out, secret, requestAuthenticator);
  md5(out.subarray(0, 4), requestAuthenticator, out.subarray(20), Buffer.from(secret)).copy(out, 4);
  return out;
}

interface Fed {
  readonly out: Buffer;
  readonly packets: number;
  readonly events: RadsecEvent[];
  readonly fatal: string | undefined;
}

/** Feeds chunks on one side and joins what comes out. */
function feed(filter: RadsecFilter, side: 'client' | 'server', chunks: Buffer[]): Fed {
  const out: Buffer[] = [];
  const events: RadsecEvent[] = [];
  let fatal: string | undefined;
  for (const chunk of chunks) {
    const step: FilterStep = side === 'client' ? filter.fromClient(chunk) : filter.fromServer(chunk);
    out.push(...step.out);
    events.push(...step.events);
    fatal ??= step.fatal;
  }
  return { out: Buffer.concat(out), packets: out.length, events, fatal };
}

const bytewise = (b: Buffer): Buffer[] => Array.from(b, (x) => Buffer.from([x]));

describe('RadsecFilter options', () => {
  it.each<[string, Partial<RadsecFilterOptions>, string]>([
    ['an empty secret', { secret: '' }, 'RADSEC shared secret must not be empty'],
    ['an empty byte secret', { secret: Buffer.alloc(0) }, 'RADSEC shared secret must not be empty'],
    ['a name that does not fit', { name: 'x'.repeat(248) }, 'identity name is 248 bytes: a Vendor-Specific sub-attribute holds at most 247'],
    [
      'a bad identity attribute',
      { identity: { kind: 'attribute', type: 26 } },
      'identity attribute: type 26 cannot carry the identity: Vendor-Specific (26) is a container: use { vendorId, vendorType }',
    ],
    ['maxPacketBytes 19', { maxPacketBytes: 19 }, 'maxPacketBytes must be an integer from 20 to 65535, got 19'],
    ['maxPacketBytes 65536', { maxPacketBytes: 65536 }, 'maxPacketBytes must be an integer from 20 to 65535, got 65536'],
  ])('refuses %s', (_what, change, message) => {
    expect(() => new RadsecFilter({ ...OPTIONS, ...change })).toThrow(message);
  });
});

describe('RadsecFilter: client → server', () => {
  it('rewrites an Access-Request, reporting removed copies', () => {
    const filter = new RadsecFilter(OPTIONS);
    const step = filter.fromClient(accessRequest(7, [attr(1, 'nemo'), ours('forged.example')]));
    expect(step.fatal).toBeUndefined();
    expect(step.events).toEqual([
      { kind: 'stripped', code: 1, identifier: 7, reason: 'removed 1 copy of the identity attribute sent by the client' },
      { kind: 'rewritten', code: 1, identifier: 7 },
    ]);
    expect(step.out).toEqual([withMa(pkt(1, 7, AUTH, [maZero(), attr(1, 'nemo'), ours(NAME)]), SECRET, AUTH)]);
  });

  const mixed = (): Buffer =>
    Buffer.concat([
      accessRequest(1),
      statusServer(2),
      pkt(2, 3, AUTH, []), // an Access-Accept from the client: dropped, connection kept
      accountingRequest(4),
      pkt(44, 5, AUTH, []), // a CoA-ACK: passed
      accessRequest(6, [ours('a'), ours('b')]),
    ]);
  const MIXED_EVENTS: RadsecEvent[] = [
    { kind: 'rewritten', code: 1, identifier: 1 },
    { kind: 'passed', code: 12, identifier: 2 },
    { kind: 'refused', code: 2, identifier: 3, reason: 'Access-Accept id 3: this code is not accepted from a RADSEC client' },
    { kind: 'rewritten', code: 4, identifier: 4 },
    { kind: 'passed', code: 44, identifier: 5 },
    { kind: 'stripped', code: 1, identifier: 6, reason: 'removed 2 copies of the identity attribute sent by the client' },
    { kind: 'rewritten', code: 1, identifier: 6 },
  ];

  it('handles a stream of packets in one chunk, in order', () => {
    const filter = new RadsecFilter(OPTIONS);
    const fed = feed(filter, 'client', [mixed()]);
    expect(fed.events).toEqual(MIXED_EVENTS);
    expect(fed.packets).toBe(5);
    expect(fed.fatal).toBeUndefined();
    expect(filter.outstandingAccountingRequests).toBe(1);
  });

  it('gives the same bytes and events fed one byte at a time, and for any split', () => {
    const whole = feed(new RadsecFilter(OPTIONS), 'client', [mixed()]);
    const byByte = feed(new RadsecFilter(OPTIONS), 'client', bytewise(mixed()));
    expect(byByte.out).toEqual(whole.out);
    expect(byByte.events).toEqual(whole.events);
    fc.assert(
      fc.property(fc.array(fc.nat({ max: mixed().length }), { maxLength: 12 }), (cuts) => {
        const all = mixed();
        const points = [0, ...[...cuts].sort((a, b) => a - b), all.length];
        const chunks = points.slice(1).map((end, i) => all.subarray(points[i], end));
        const split = feed(new RadsecFilter(OPTIONS), 'client', chunks);
        expect(split.out).toEqual(whole.out);
        expect(split.events).toEqual(whole.events);
      }),
      { numRuns: 200 },
    );
  });

  it('drops a request whose rewrite would be too big, and goes on', () => {
    const filter = new RadsecFilter({ ...OPTIONS, maxPacketBytes: 100 });
    const big = accessRequest(8, [attr(1, 'x'.repeat(40))]); // 80 bytes; rewritten 80 + 31 = 111
    const fed = feed(filter, 'client', [Buffer.concat([big, accessRequest(9, [])])]);
    expect(fed.events).toEqual([
      { kind: 'refused', code: 1, identifier: 8, reason: 'Access-Request id 8: the rewritten packet would be 111 bytes, over the 100-byte limit' },
      { kind: 'rewritten', code: 1, identifier: 9 },
    ]);
    expect(fed.fatal).toBeUndefined();
  });

  it('drops a request with a malformed Vendor-Specific of our vendor (fail closed), and goes on', () => {
    const bad = accessRequest(10, [attr(26, Buffer.from([0, 0, 0x7e, 0xd9, 1, 1]))]);
    const fed = feed(new RadsecFilter(OPTIONS), 'client', [bad, accessRequest(11)]);
    expect(fed.events.map((e) => [e.kind, e.identifier])).toEqual([
      ['refused', 10],
      ['rewritten', 11],
    ]);
    expect(fed.packets).toBe(1);
  });

  it.each([
    ['a Message-Authenticator that does not verify', withMa(pkt(1, 2, AUTH, [maZero()]), 'other', AUTH), 'Access-Request id 2: Message-Authenticator does not verify with the shared secret'],
    [
      'a wrong Accounting Request Authenticator',
      pkt(4, 2, AUTH, [attr(40, Buffer.from([0, 0, 0, 1]))]),
      'Accounting-Request id 2: Request Authenticator does not verify with the shared secret (RFC 2866)',
    ],
    ['a Status-Server without Message-Authenticator', pkt(12, 2, AUTH, []), 'Status-Server id 2: no Message-Authenticator (RFC 5997 requires one)'],
    ['an attribute of length 1', pkt(1, 2, AUTH, [Buffer.from([1, 1])]), 'attribute 1 at offset 20 has Length 1 (an attribute is at least 2 bytes)'],
  ])('closes on %s, after writing what came before', (_what, bad, reason) => {
    const filter = new RadsecFilter(OPTIONS);
    const step = filter.fromClient(Buffer.concat([accessRequest(1), bad, accessRequest(3)]));
    expect(step.out).toHaveLength(1);
    expect(step.events).toEqual([
      { kind: 'rewritten', code: 1, identifier: 1 },
      { kind: 'refused', code: bad[0], identifier: 2, reason },
    ]);
    expect(step.fatal).toBe(`client: ${reason}`);
    expect(filter.fromClient(accessRequest(4))).toEqual({ out: [], events: [], fatal: `client: ${reason}` });
    expect(filter.fromServer(pkt(2, 4, AUTH, []))).toEqual({ out: [], events: [], fatal: `client: ${reason}` });
  });

  it.each([
    ['a Length under 20', Buffer.from([1, 9, 0, 19]), 'RADIUS Length field is 19, less than the 20-byte header'],
    ['a Length over maxPacketBytes', Buffer.from([1, 9, 0x10, 0x01]), 'RADIUS Length field is 4097, over the 4096-byte limit'],
  ])('closes on %s as soon as the header is in, byte by byte too', (_what, header, reason) => {
    const whole = new RadsecFilter(OPTIONS).fromClient(Buffer.concat([accessRequest(1), header]));
    expect(whole.out).toHaveLength(1);
    expect(whole.events.at(-1)).toEqual({ kind: 'refused', code: 1, identifier: 9, reason });
    expect(whole.fatal).toBe(`client: ${reason}`);
    const split = feed(new RadsecFilter(OPTIONS), 'client', bytewise(Buffer.concat([accessRequest(1), header])));
    expect(split.fatal).toBe(`client: ${reason}`);
    expect(split.events).toEqual(whole.events);
  });

  it('keeps a partial packet (bounded by its announced Length) until the rest comes', () => {
    const filter = new RadsecFilter({ ...OPTIONS, maxPacketBytes: 200 });
    const packet = accessRequest(12, [attr(1, 'y'.repeat(100))]);
    expect(filter.fromClient(packet.subarray(0, 3))).toEqual({ out: [], events: [] });
    expect(filter.fromClient(packet.subarray(3, 90))).toEqual({ out: [], events: [] });
    const last = filter.fromClient(packet.subarray(90));
    expect(last.events).toEqual([{ kind: 'rewritten', code: 1, identifier: 12 }]);
  });
});

describe('RadsecFilter: accounting round trip and server → client', () => {
  it('re-signs the Accounting-Response against the client authenticator', () => {
    const filter = new RadsecFilter(OPTIONS);
    const request = accountingRequest(24, [attr(40, Buffer.from([0, 0, 0, 1])), ours('forged')]);
    const up = filter.fromClient(request);
    expect(up.events.map((e) => e.kind)).toEqual(['stripped', 'rewritten']);
    const sent = up.out[0] ?? Buffer.alloc(0);
    const ourAuth = Buffer.from(sent.subarray(4, 20));
    expect(ourAuth).toEqual(md5(sent.subarray(0, 4), ZERO16, sent.subarray(20), Buffer.from(SECRET)));
    expect(filter.outstandingAccountingRequests).toBe(1);

    const down = filter.fromServer(accountingResponse(24, ourAuth));
    expect(down.events).toEqual([{ kind: 'rewritten', code: 5, identifier: 24 }]);
    expect(down.out).toEqual([accountingResponse(24, request.subarray(4, 20))]);
    expect(filter.outstandingAccountingRequests).toBe(0);
    // A second answer with that Identifier is not ours to re-sign: passed untouched.
    const again = accountingResponse(24, ourAuth);
    expect(filter.fromServer(again)).toEqual({ out: [again], events: [{ kind: 'passed', code: 5, identifier: 24 }] });
  });

  it('closes when the server signs over anything but what dancegate sent', () => {
    const filter = new RadsecFilter(OPTIONS);
    const request = accountingRequest(25);
    filter.fromClient(request);
    const step = filter.fromServer(accountingResponse(25, request.subarray(4, 20)));
    expect(step.out).toEqual([]);
    expect(step.events).toEqual([
      { kind: 'refused', code: 5, identifier: 25, reason: 'Accounting-Response id 25: Response Authenticator does not verify against the Accounting-Request dancegate sent' },
    ]);
    expect(step.fatal).toBe('server: Accounting-Response id 25: Response Authenticator does not verify against the Accounting-Request dancegate sent');
    expect(filter.outstandingAccountingRequests).toBe(0);
  });

  it('passes other server packets untouched, framed byte by byte too', () => {
    const accept = withMa(pkt(2, 1, AUTH, [maZero(), attr(18, 'welcome')]), SECRET, AUTH);
    const coa = pkt(43, 2, AUTH, [attr(1, 'nemo')]);
    const stray = accountingResponse(3, AUTH);
    const stream = Buffer.concat([accept, coa, stray]);
    const whole = feed(new RadsecFilter(OPTIONS), 'server', [stream]);
    expect(whole.out).toEqual(stream);
    expect(whole.events).toEqual([
      { kind: 'passed', code: 2, identifier: 1 },
      { kind: 'passed', code: 43, identifier: 2 },
      { kind: 'passed', code: 5, identifier: 3 },
    ]);
    const byByte = feed(new RadsecFilter(OPTIONS), 'server', bytewise(stream));
    expect(byByte.out).toEqual(stream);
    expect(byByte.events).toEqual(whole.events);
  });

  it('round trip byte by byte in both directions gives the same bytes', () => {
    const run = (split: boolean): Buffer[] => {
      const filter = new RadsecFilter(OPTIONS);
      const requests = Buffer.concat([accountingRequest(30), accessRequest(31), accountingRequest(32)]);
      const up = feed(filter, 'client', split ? bytewise(requests) : [requests]);
      const first = up.out.subarray(0, up.out.readUInt16BE(2));
      const third = up.out.subarray(up.out.length - first.length);
      const answers = Buffer.concat([accountingResponse(32, Buffer.from(third.subarray(4, 20))), accountingResponse(30, Buffer.from(first.subarray(4, 20)))]);
      const down = feed(filter, 'server', split ? bytewise(answers) : [answers]);
      expect(down.fatal).toBeUndefined();
      expect(down.events.map((e) => e.kind)).toEqual(['rewritten', 'rewritten']);
      return [up.out, down.out];
    };
    const [upWhole, downWhole] = run(false);
    const [upSplit, downSplit] = run(true);
    expect(upSplit).toEqual(upWhole);
    expect(downSplit).toEqual(downWhole);
    expect(downWhole).toEqual(Buffer.concat([accountingResponse(32, accountingRequest(32).subarray(4, 20)), accountingResponse(30, accountingRequest(30).subarray(4, 20))]));
  });

  it('forgets an Accounting-Request when another request reuses its Identifier', () => {
    const filter = new RadsecFilter(OPTIONS);
    filter.fromClient(accountingRequest(40));
    expect(filter.outstandingAccountingRequests).toBe(1);
    filter.fromClient(statusServer(40));
    expect(filter.outstandingAccountingRequests).toBe(0);
    const answer = accountingResponse(40, AUTH); // e.g. the Status-Server's answer on an accounting server
    expect(filter.fromServer(answer)).toEqual({ out: [answer], events: [{ kind: 'passed', code: 5, identifier: 40 }] });
  });

  it(`remembers at most ${MAX_OUTSTANDING_ACCOUNTING_REQUESTS} Accounting-Requests, one per Identifier`, () => {
    const filter = new RadsecFilter(OPTIONS);
    for (let i = 0; i < 300; i++) filter.fromClient(accountingRequest(i % 256));
    expect(filter.outstandingAccountingRequests).toBe(256);
  });

  it('closes on bad framing from the server', () => {
    const filter = new RadsecFilter({ ...OPTIONS, maxPacketBytes: 100 });
    const step = filter.fromServer(Buffer.concat([pkt(2, 1, AUTH, []), Buffer.from([2, 2, 0, 101])]));
    expect(step.out).toEqual([pkt(2, 1, AUTH, [])]);
    expect(step.fatal).toBe('server: RADIUS Length field is 101, over the 100-byte limit');
    expect(step.events.at(-1)).toEqual({ kind: 'refused', code: 2, identifier: 2, reason: 'RADIUS Length field is 101, over the 100-byte limit' });
  });

  it('never throws on random bytes from either side', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 80 }), { maxLength: 6 }), fc.boolean(), (chunks, server) => {
        const filter = new RadsecFilter({ ...OPTIONS, maxPacketBytes: 200 });
        for (const c of chunks) {
          const step = server ? filter.fromServer(Buffer.from(c)) : filter.fromClient(Buffer.from(c));
          for (const b of step.out) expect(b.readUInt16BE(2)).toBe(b.length);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('review findings (issue 14)', () => {
  it('a Status-Server or CoA-ACK carrying the identity attribute is dropped, not passed untouched', () => {
    const filter = new RadsecFilter(OPTIONS);
    const status = withMa(pkt(12, 3, AUTH, [maZero(), ours('nas2.nas.radsec.example')]), SECRET, AUTH);
    const coaAck = pkt(44, 4, AUTH, [ours('nas2.nas.radsec.example')]);
    const fed = feed(filter, 'client', [status, coaAck, statusServer(5)]);
    expect(fed.out).toEqual(statusServer(5));
    expect([fed.fatal, fed.events]).toEqual([
      undefined,
      [
        { kind: 'refused', code: 12, identifier: 3, reason: 'Status-Server id 3: carries the identity attribute, which only dancegate sets (a packet passed untouched cannot have it removed)' },
        { kind: 'refused', code: 44, identifier: 4, reason: 'CoA-ACK id 4: carries the identity attribute, which only dancegate sets (a packet passed untouched cannot have it removed)' },
        { kind: 'passed', code: 12, identifier: 5 },
      ],
    ]);
  });

  it(`more than ${MAX_DROPPED_CLIENT_PACKETS} dropped packets close the connection (each drop is a log line)`, () => {
    const filter = new RadsecFilter(OPTIONS);
    const unknown = (id: number): Buffer => pkt(99, id, AUTH, []);
    const first = feed(
      filter,
      'client',
      Array.from({ length: MAX_DROPPED_CLIENT_PACKETS }, (_, i) => unknown(i)),
    );
    expect([first.fatal, first.events.length]).toEqual([undefined, MAX_DROPPED_CLIENT_PACKETS]);
    const last = feed(filter, 'client', [unknown(200), accessRequest(201)]);
    expect([last.fatal, last.packets]).toEqual([`client: more than ${MAX_DROPPED_CLIENT_PACKETS} packets refused on this connection`, 0]);
  });
});
