/**
 * The generic DNS exchange (src/dns/) against scripted DNS servers on
 * loopback: the replies a real resolver cannot be made to give on demand
 * (spoofed IDs, truncation, SERVFAIL from one server only, silence).
 */
import { once } from 'node:events';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { DnsExchange, TRUNCATED_NOTE } from '../../src/dns/exchange.js';
import type { ResolverServer } from '../../src/dns/resolver.js';

type Reply = Buffer | 'drop';
/** What a scripted server sends for a query: any number of datagrams / one stream reply. */
type Script = (query: dnsPacket.DecodedPacket, transport: 'udp' | 'tcp') => Reply[];

interface Scripted {
  readonly server: ResolverServer;
  readonly seen: Array<{ transport: 'udp' | 'tcp'; query: dnsPacket.DecodedPacket }>;
  stop(): Promise<void>;
}

const running: Scripted[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

function reply(query: dnsPacket.DecodedPacket, spec: { rcode?: number; ad?: boolean; tc?: boolean; id?: number; qname?: string } = {}): Buffer {
  let flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (spec.rcode ?? 0);
  if (spec.ad ?? true) flags |= dnsPacket.AUTHENTIC_DATA;
  if (spec.tc) flags |= dnsPacket.TRUNCATED_RESPONSE;
  const q = query.questions?.[0] ?? { type: 'A' as const, name: 'x.test', class: 'IN' as const };
  return dnsPacket.encode({
    type: 'response',
    id: spec.id ?? query.id,
    flags,
    questions: [{ ...q, name: spec.qname ?? q.name }],
    answers: [],
  });
}

/** A DNS server on 127.0.0.1 (UDP and TCP on one port) answering by `script`. */
async function scripted(script: Script, transport: ResolverServer['transport'] = 'udp'): Promise<Scripted> {
  const tcp = net.createServer();
  tcp.listen(0, '127.0.0.1');
  await once(tcp, 'listening');
  const port = (tcp.address() as net.AddressInfo).port;
  const udp = dgram.createSocket('udp4');
  udp.bind(port, '127.0.0.1');
  await once(udp, 'listening');
  const seen: Scripted['seen'] = [];
  const sockets = new Set<net.Socket>();
  udp.on('message', (msg, rinfo) => {
    const query = dnsPacket.decode(msg);
    seen.push({ transport: 'udp', query });
    for (const r of script(query, 'udp')) if (r !== 'drop') udp.send(r, rinfo.port, rinfo.address);
  });
  tcp.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2 || buf.length < buf.readUInt16BE(0) + 2) return;
      const query = dnsPacket.decode(buf.subarray(2, buf.readUInt16BE(0) + 2));
      seen.push({ transport: 'tcp', query });
      for (const r of script(query, 'tcp')) {
        if (r === 'drop') continue;
        const framed = Buffer.alloc(2);
        framed.writeUInt16BE(r.length, 0);
        socket.write(Buffer.concat([framed, r]));
      }
    });
  });
  const s: Scripted = {
    server: { host: '127.0.0.1', port, transport },
    seen,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      await new Promise<void>((resolve) => udp.close(() => resolve()));
    },
  };
  running.push(s);
  return s;
}

const A_QUESTION = { name: 'host.example.test', type: 'A' as const };
const TLSA_QUESTION = { name: '_443._tcp.example.test', type: 'TLSA' as const, dnssecOk: true };

describe('DnsExchange', () => {
  it('asks the question it is given (type, DO, AD, CD bits) and returns the decoded answer with its server', async () => {
    const s = await scripted((q) => [reply(q)]);
    for (const [question, expected] of [
      [A_QUESTION, { type: 'A', ad: false, cd: false, do: false }],
      [TLSA_QUESTION, { type: 'TLSA', ad: true, cd: false, do: true }],
      [
        { ...A_QUESTION, dnssecOk: true, checkingDisabled: true, authenticData: false },
        { type: 'A', ad: false, cd: true, do: true },
      ],
    ] as const) {
      const result = await new DnsExchange({ servers: [s.server] }).query(question);
      expect(result.ok && { rcode: result.response.rcodeName, ad: result.response.authenticData, from: result.response.from }).toEqual({
        rcode: 'NOERROR',
        ad: true,
        from: `udp://127.0.0.1:${s.server.port}`,
      });
      const q = s.seen.at(-1)?.query as dnsPacket.DecodedPacket;
      const opt = q.additionals?.find((rr) => rr.type === 'OPT');
      expect({ type: q.questions?.[0]?.type, ad: q.flag_ad, cd: q.flag_cd, do: opt?.type === 'OPT' && opt.flag_do }).toEqual(expected);
    }
  });

  it('ignores a UDP reply with another ID or question and takes the real one', async () => {
    const s = await scripted((q) => [reply(q, { id: ((q.id ?? 0) + 1) % 65536 }), reply(q, { qname: 'evil.example.test' }), reply(q, { rcode: 3 })]);
    const result = await new DnsExchange({ servers: [s.server] }).query(A_QUESTION);
    expect(result.ok && result.response.rcodeName).toBe('NXDOMAIN');
  });

  it('asks again over TCP when the UDP answer is truncated, and says so', async () => {
    const s = await scripted((q, transport) => [reply(q, { tc: transport === 'udp' })]);
    const result = await new DnsExchange({ servers: [s.server] }).query(A_QUESTION);
    expect(result.ok && { note: result.response.note, rcode: result.response.rcodeName }).toEqual({ note: TRUNCATED_NOTE, rcode: 'NOERROR' });
    expect(s.seen.map((x) => x.transport)).toEqual(['udp', 'tcp']);
  });

  it('reassembles a TCP answer sent one byte at a time (the length prefix split too)', async () => {
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      socket.on('error', () => undefined);
      socket.once('data', async (chunk: Buffer) => {
        const query = dnsPacket.decode(chunk.subarray(2, chunk.readUInt16BE(0) + 2));
        const r = reply(query, { rcode: 3 });
        const framed = Buffer.concat([Buffer.from([r.length >> 8, r.length & 0xff]), r]);
        for (const byte of framed) {
          if (socket.destroyed) return;
          socket.write(Buffer.from([byte]));
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const port = (server.address() as net.AddressInfo).port;
      const result = await new DnsExchange({ servers: [{ host: '127.0.0.1', port, transport: 'tcp' }] }).query(A_QUESTION);
      expect(result.ok && { rcode: result.response.rcodeName, from: result.response.from }).toEqual({ rcode: 'NXDOMAIN', from: `tcp://127.0.0.1:${port}` });
    } finally {
      server.close();
    }
  });

  it('fails over after SERVFAIL and does not ask that server again', async () => {
    const bad = await scripted((q) => [reply(q, { rcode: 2, ad: false })]);
    const good = await scripted((q) => [reply(q)]);
    const result = await new DnsExchange({ servers: [bad.server, good.server] }).query(A_QUESTION);
    expect(result.ok && result.response.from).toBe(`udp://127.0.0.1:${good.server.port}`);
    expect([bad.seen.length, good.seen.length]).toEqual([1, 1]);
  });

  it('returns the most telling failure: SERVFAIL over REFUSED over silence; retries only the retriable servers', async () => {
    const silent = await scripted(() => ['drop']);
    const refusing = await scripted((q) => [reply(q, { rcode: 5, ad: false })]);
    const failing = await scripted((q) => [reply(q, { rcode: 2, ad: false })]);
    const result = await new DnsExchange({ servers: [silent.server, refusing.server, failing.server], attemptTimeoutMs: 100, totalTimeoutMs: 2000 }).query(A_QUESTION);
    expect(result.ok && { rcode: result.response.rcodeName, from: result.response.from }).toEqual({ rcode: 'SERVFAIL', from: `udp://127.0.0.1:${failing.server.port}` });
    // Two rounds for the silent and the refusing server, one for the one that answered SERVFAIL.
    expect([silent.seen.length, refusing.seen.length, failing.seen.length]).toEqual([2, 2, 1]);
  });

  it('REFUSED beats silence when nothing better comes', async () => {
    const silent = await scripted(() => ['drop']);
    const refusing = await scripted((q) => [reply(q, { rcode: 5, ad: false })]);
    const result = await new DnsExchange({ servers: [silent.server, refusing.server], attemptTimeoutMs: 100, totalTimeoutMs: 2000 }).query(A_QUESTION);
    expect(result.ok && result.response.rcodeName).toBe('REFUSED');
  });

  it('keeps the total deadline across servers and rounds', async () => {
    const a = await scripted(() => ['drop']);
    const b = await scripted(() => ['drop']);
    const started = Date.now();
    const result = await new DnsExchange({ servers: [a.server, b.server], attemptTimeoutMs: 200, totalTimeoutMs: 500 }).query(A_QUESTION);
    const elapsed = Date.now() - started;
    // Equally telling failures: the first is reported.
    expect(result).toEqual({ ok: false, kind: 'timeout', detail: `no answer from udp://127.0.0.1:${a.server.port} within 200 ms` });
    expect(elapsed).toBeGreaterThanOrEqual(490);
    expect(elapsed).toBeLessThan(900);
    expect([a.seen.length, b.seen.length]).toEqual([2, 1]);
  });

  it('rejects with the reason when the signal aborts, and stops asking', async () => {
    const s = await scripted(() => ['drop']);
    const controller = new AbortController();
    const pending = new DnsExchange({ servers: [s.server], attemptTimeoutMs: 5000, totalTimeoutMs: 10_000 }).query(A_QUESTION, controller.signal);
    setTimeout(() => controller.abort(new Error('caller went away')), 50);
    await expect(pending).rejects.toThrow('caller went away');
    expect(s.seen.length).toBe(1);
  });

  it.each<[string, (q: dnsPacket.DecodedPacket) => Buffer, string]>([
    ['a reply with another ID', (q) => reply(q, { id: ((q.id ?? 0) + 1) % 65536 }), 'response ID does not match the query'],
    ['a truncated reply', (q) => reply(q, { tc: true }), 'TC bit set on a stream transport'],
    ['a reply for another name', (q) => reply(q, { qname: 'evil.example.test' }), 'response question does not echo the query'],
  ])("over TCP, %s is malformed (the connection is the server's)", async (_label, bad, detail) => {
    const s = await scripted((q) => [bad(q)], 'tcp');
    const result = await new DnsExchange({ servers: [s.server], attemptTimeoutMs: 1000, totalTimeoutMs: 2000 }).query(A_QUESTION);
    expect(result).toEqual({ ok: false, kind: 'malformed', detail });
    // Malformed is not retried in the second round.
    expect(s.seen.length).toBe(1);
  });

  it('a server that refuses the connection is a server error naming it', async () => {
    const s = await scripted(() => []);
    await s.stop();
    running.splice(running.indexOf(s), 1);
    const result = await new DnsExchange({ servers: [{ ...s.server, transport: 'tcp' }], attemptTimeoutMs: 500, totalTimeoutMs: 1000 }).query(A_QUESTION);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.kind).toBe('server-error');
    expect(!result.ok && result.detail).toMatch(new RegExp(`^tcp://127\\.0\\.0\\.1:${s.server.port}: connect ECONNREFUSED`));
  });

  it('refuses a configuration the resolver limits refuse', () => {
    expect(() => new DnsExchange({ servers: [] })).toThrow('resolver: at least one server is required');
    expect(() => new DnsExchange({ servers: [{ host: '127.0.0.1', port: 53, transport: 'udp' }], totalTimeoutMs: 60_001 })).toThrow(
      'resolver totalTimeoutMs: must be a number of milliseconds from 1 to 60000',
    );
  });
});
