/**
 * Issue 13 security review, the four attacks that were fixed, sent again as
 * bytes to the built dancegate (the CLI as a child process, HTTP mode with
 * h2 and http/1.1, a local TLSA file, metrics and a JSON log file) in front
 * of real backends:
 *  1. an HTTP/2 :method in lower or mixed case ('delete', 'Delete') where a
 *     rule names DELETE is refused (400), never forwarded (backends upper-case
 *     it and would delete);
 *  2. a client that resets its HTTP/2 stream aborts the upstream request at
 *     once (a slow GET's upstream request closes within a second), and reset
 *     uploads never count against an upstream's health (no ejection) nor reach
 *     it as a whole request (a chunked body cut mid-way stays cut);
 *  3. an HTTP/1.1 upstream's trailers that node:http2 refuses to send
 *     (HTTP2-Settings, a repeated ETag) are left out instead of throwing
 *     after our code returned: the process stays up, allowed trailers pass;
 *  4. an HTTP/2 :path with raw bytes 0x80-0xFF (an HPACK literal) is refused
 *     (400) before an HTTP/1.1 upstream's parser can read it its own way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { freePort } from '../lab/dnssec-lab.js';
import { clientStart, dataFrame, FLAG, FRAME, getFields, H2_ERROR, headerBlock, headersFrame, recordFrames, rstStreamFrame, statusOf, type FrameLog } from '../lab/h2-frames.js';
import { stopProcess } from '../lab/process.js';
import { waitUntil } from '../lab/wait.js';

const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');
const HOST = {
  rules: 'rules.review.test',
  slow: 'slow.review.test',
  pair: 'pair.review.test',
  trailers: 'trailers.review.test',
  paths: 'paths.review.test',
  upload: 'upload.review.test',
  big: 'big.review.test',
} as const;
const DEV = 'dev-1._device.review.test';
const OPS = 'ops-1._device.review.test';
const PATH_NOT_ALLOWED_BODY = 'Forbidden: this identity may not use this path and method (path-not-allowed)\n';

/** A slow backend request: when it arrived, when its request and response closed, whether it was answered. */
interface SlowHit {
  readonly url: string;
  reqClosedAt: number | undefined;
  answered: boolean;
}

/**
 * One of two upstreams of the pair route: answers its name once the request body has ended. Idle kept-alive
 * connections are closed after 300 ms (Node's default is 5 s): an upstream exchange dancegate left hanging
 * then fails at once instead of 5 s later.
 */
class PairBackend {
  received = 0;
  open = 0;
  readonly hits: string[] = [];
  /** Body bytes received, over all requests. */
  bytes = 0;
  /** Per request, once it closed: whether its body ended (the message was complete) and the body as latin1. */
  readonly closed: Array<{ complete: boolean; body: string }> = [];
  readonly server: http.Server;
  constructor(readonly name: string) {
    this.server = http.createServer((req, res) => {
      this.received++;
      this.open++;
      this.hits.push(`${req.method} ${req.url}`);
      let body = '';
      req.on('close', () => {
        this.open--;
        this.closed.push({ complete: req.complete, body });
      });
      req.on('data', (c: Buffer) => {
        this.bytes += c.length;
        body += c.toString('latin1');
      });
      req.on('end', () => res.end(`${name}\n`));
    });
    this.server.keepAliveTimeout = 300;
  }
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }
}

/**
 * A raw HTTP/1.1 backend, as the backends behind dancegate may be: node:http refuses a lower-case method and a
 * raw byte above 0x7F in the target (answering 400 itself), Django, Flask or Kestrel do not; and node:http
 * cannot send a repeated or connection-specific trailer. Requests here carry no body. Records each request as
 * `METHOD target identity` (the request line's bytes as latin1) and writes what `answer` gives for it.
 */
class RawBackend {
  readonly seen: string[] = [];
  readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(answer: (method: string, target: string, identity: string) => string) {
    this.server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      let pending = '';
      socket.on('data', (d: Buffer) => {
        pending += d.toString('latin1');
        for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
          const [line = '', ...fields] = pending.slice(0, end).split('\r\n');
          pending = pending.slice(end + 4);
          const [method = '', target = ''] = line.split(' ');
          const identity = /^x-dane-client-id:\s*(.*)$/i.exec(fields.find((f) => /^x-dane-client-id:/i.test(f)) ?? '')?.[1] ?? '-';
          this.seen.push(`${method} ${target} ${identity}`);
          socket.write(answer(method, target, identity));
        }
      });
    });
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** 200 with `METHOD target identity` as the body. */
function echo(method: string, target: string, identity: string): string {
  const body = `${method} ${target} ${identity}\n`;
  return `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`;
}

/** Trailers the trailer backend sends after a chunked body, by path; any other path gets a plain 'plain\n'. */
const TRAILERS: Readonly<Record<string, string>> = {
  '/settings': 'HTTP2-Settings: AAA\r\n',
  '/settings-and-sum': 'HTTP2-Settings: AAA\r\nX-Checksum: 1f\r\n',
  '/etags-grpc': 'ETag: "a"\r\nETag: "b"\r\ngrpc-status: 0\r\n',
};

let dir: string;
let serverCa: IssuedCertificate;
const clients = {} as Record<'dev' | 'ops', IssuedCertificate>;
let child: ChildProcess;
let stderr = '';
const ports = { api: 0, admin: 0 };
const rulesBackend = new RawBackend(echo);
const pathsBackend = new RawBackend(echo);
let slowServer: http.Server;
const slowHits: SlowHit[] = [];
const pair = { p1: new PairBackend('p1'), p2: new PairBackend('p2') };
const uploads = new PairBackend('u');
const trailerBackend = new RawBackend((_method, target) => {
  const trailers = TRAILERS[target];
  return trailers === undefined
    ? 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nplain\n'
    : `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n2\r\nhi\r\n0\r\n${trailers}\r\n`;
});

/** An HTTP/2 (h2c) upstream answering 8 MiB of a known pattern, then trailers; what it managed to send is recorded. */
const BIG = 8 * 1024 * 1024;
const bigBody = Buffer.alloc(BIG);
for (let i = 0; i < BIG; i += 4) bigBody.writeUInt32BE(i, i);
const bigStreams: Array<{ closed: boolean; rstCode: number | undefined }> = [];
const bigServer = http2.createServer();
bigServer.on('stream', (stream) => {
  const seen = { closed: false, rstCode: undefined as number | undefined };
  bigStreams.push(seen);
  stream.on('error', () => undefined);
  stream.on('close', () => {
    seen.closed = true;
    seen.rstCode = stream.rstCode;
  });
  stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'x-sum': 'all-sent' }));
  stream.end(bigBody);
});

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-h2-review-'));
  serverCa = await createCertificate({ commonName: 'review CA', isCA: true });
  const server = await createCertificate({ commonName: HOST.rules, dnsNames: Object.values(HOST), issuer: serverCa, extendedKeyUsage: 'server' });
  clients.dev = await createCertificate({ commonName: DEV, dnsNames: [DEV] });
  clients.ops = await createCertificate({ commonName: OPS, dnsNames: [OPS] });
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  const rr = (name: string, c: IssuedCertificate): string => `${name} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(c.der), 3, 1, 1))}`;
  await writeFile(join(dir, 'tlsa.txt'), `${rr(DEV, clients.dev)}\n${rr(OPS, clients.ops)}\n`);

  for (const b of [rulesBackend, pathsBackend, trailerBackend]) await listen(b.server);
  // Answers after 4 s, unless the request goes away first.
  slowServer = http.createServer((req, res) => {
    const hit: SlowHit = { url: req.url ?? '', reqClosedAt: undefined, answered: false };
    slowHits.push(hit);
    const timer = setTimeout(() => {
      hit.answered = true;
      res.end('late\n');
    }, 4000);
    req.on('close', () => (hit.reqClosedAt ??= performance.now()));
    res.on('close', () => clearTimeout(timer));
  });
  const slowPort = await listen(slowServer);
  for (const b of [pair.p1, pair.p2, uploads]) await listen(b.server);
  bigServer.listen(0, '127.0.0.1');
  await once(bigServer, 'listening');
  const bigPort = (bigServer.address() as net.AddressInfo).port;

  ports.api = await freePort();
  ports.admin = await freePort();
  const devices = "['*._device.review.test']";
  await writeFile(
    join(dir, 'dancegate.yaml'),
    `workers: 1
reload: { watch: false }
admin: { listen: "127.0.0.1:${ports.admin}" }
log: { destination: ${join(dir, 'dancegate.log')} }
shutdown: { drainTimeoutMs: 2000 }
resolver:
  localTlsaFile: tlsa.txt
listeners:
  - name: api
    listen: 127.0.0.1:${ports.api}
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - serverNames: [${HOST.rules}]
        upstream: http://127.0.0.1:${rulesBackend.port}
        allow: ${devices}
        rules:
          - { path: /api/*, methods: [DELETE], allow: ['ops-*._device.review.test'] }
          - { path: '*', allow: ['${DEV}'] }
      - serverNames: [${HOST.slow}]
        upstreams: [{ url: "http://127.0.0.1:${slowPort}", name: slow }]
        allow: ${devices}
      - serverNames: [${HOST.pair}]
        upstreams: [{ url: "http://127.0.0.1:${pair.p1.port}", name: p1 }, { url: "http://127.0.0.1:${pair.p2.port}", name: p2 }]
        balance: round-robin
        allow: ${devices}
      - serverNames: [${HOST.upload}]
        upstreams: [{ url: "http://127.0.0.1:${uploads.port}", name: u }]
        allow: ${devices}
      - serverNames: [${HOST.trailers}]
        upstream: http://127.0.0.1:${trailerBackend.port}
        allow: ${devices}
      - serverNames: [${HOST.paths}]
        upstream: http://127.0.0.1:${pathsBackend.port}
        allow: ${devices}
      - serverNames: [${HOST.big}]
        upstreams: [{ url: "h2c://127.0.0.1:${bigPort}", name: big }]
        allow: ${devices}
`,
  );
  child = spawn(process.execPath, [CLI, 'serve', '-c', join(dir, 'dancegate.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 20_000;
  while ((await admin('/readyz').catch(() => ({ status: 0, body: '' }))).status !== 200) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`dancegate did not become ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}, 60_000);

afterAll(async () => {
  if (child !== undefined) await stopProcess(child);
  for (const b of [rulesBackend, pathsBackend, trailerBackend]) if (b.server.listening) await b.close();
  bigServer.close();
  for (const server of [slowServer, pair.p1.server, pair.p2.server, uploads.server]) {
    if (server === undefined) continue;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function admin(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: ports.admin, path, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

async function metric(sample: string): Promise<number | undefined> {
  const { body } = await admin('/metrics');
  const line = body.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

async function logLines(): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(join(dir, 'dancegate.log'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function session(host: string, who: IssuedCertificate): http2.ClientHttp2Session {
  const s = http2.connect(`https://127.0.0.1:${ports.api}`, { servername: host, ca: serverCa.certPem, cert: who.certPem, key: who.keyPem });
  s.on('error', () => undefined);
  return s;
}

interface H2Answer {
  readonly status: number;
  readonly body: string;
  /** What the 'trailers' event gave (string keys only), or undefined when it did not fire. */
  readonly trailers: Record<string, unknown> | undefined;
}

function request(s: http2.ClientHttp2Session, host: string, headers: http2.OutgoingHttpHeaders): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = s.request({ ':authority': host, ...headers });
    let status = 0;
    let trailers: Record<string, unknown> | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('trailers', (t) => (trailers = Object.fromEntries(Object.entries(t))));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', reject);
    stream.on('close', () => resolve({ status, body: Buffer.concat(chunks).toString('latin1'), trailers }));
    stream.end();
  });
}

/** A raw h2 connection (HPACK literals: the bytes go as they are). */
async function rawH2(host: string): Promise<{ socket: tls.TLSSocket; log: FrameLog }> {
  const socket = tls.connect({ host: '127.0.0.1', port: ports.api, servername: host, ca: serverCa.certPem, cert: clients.dev.certPem, key: clients.dev.keyPem, ALPNProtocols: ['h2'] });
  socket.on('error', () => undefined);
  await once(socket, 'secureConnect');
  expect(socket.alpnProtocol).toBe('h2');
  const log = recordFrames(socket);
  socket.write(clientStart());
  await waitUntil("the server's SETTINGS", () => log.frames.some((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0), 5000);
  return { socket, log };
}

/** The :status and the body of a stream, once it ended (END_STREAM on DATA or HEADERS, or RST_STREAM). */
async function answerOf(log: FrameLog, streamId: number): Promise<{ status: number | undefined; body: string; reset: number | undefined }> {
  const ended = (): boolean =>
    log.resets().has(streamId) || log.frames.some((f) => f.streamId === streamId && (f.type === FRAME.DATA || f.type === FRAME.HEADERS) && (f.flags & FLAG.END_STREAM) !== 0);
  await waitUntil(`stream ${streamId} ended`, ended, 5000);
  const head = log.headersOf(streamId);
  const body = Buffer.concat(log.frames.filter((f) => f.type === FRAME.DATA && f.streamId === streamId).map((f) => f.payload)).toString('latin1');
  return { status: head === undefined ? undefined : statusOf(head.payload), body, reset: log.resets().get(streamId) };
}

describe('finding: an HTTP/2 :method not in upper case passed a DELETE rule', () => {
  it.each(['delete', 'Delete'])(':method %s from a client the DELETE rule does not allow: 400, never forwarded', async (method) => {
    rulesBackend.seen.length = 0;
    const s = session(HOST.rules, clients.dev);
    try {
      const got = await request(s, HOST.rules, { ':method': method, ':path': '/api/users/1' });
      expect(got).toEqual({ status: 400, body: `Bad Request: the method "${method}" is not in upper case (rules compare methods exactly)\n`, trailers: undefined });
    } finally {
      s.close();
    }
    expect(rulesBackend.seen).toEqual([]);
  });

  it('DELETE: 403 for the client outside ops-*, forwarded for an ops client; GET by the client reaches the backend', async () => {
    rulesBackend.seen.length = 0;
    const dev = session(HOST.rules, clients.dev);
    const ops = session(HOST.rules, clients.ops);
    try {
      expect(await request(dev, HOST.rules, { ':method': 'DELETE', ':path': '/api/users/1' })).toEqual({ status: 403, body: PATH_NOT_ALLOWED_BODY, trailers: undefined });
      expect(rulesBackend.seen).toEqual([]);
      expect(await request(ops, HOST.rules, { ':method': 'DELETE', ':path': '/api/users/2' })).toEqual({ status: 200, body: `DELETE /api/users/2 ${OPS}\n`, trailers: undefined });
      expect(await request(dev, HOST.rules, { ':method': 'GET', ':path': '/api/users/3' })).toEqual({ status: 200, body: `GET /api/users/3 ${DEV}\n`, trailers: undefined });
    } finally {
      dev.close();
      ops.close();
    }
    expect(rulesBackend.seen).toEqual([`DELETE /api/users/2 ${OPS}`, `GET /api/users/3 ${DEV}`]);
  });
});

describe('finding: an HTTP/2 reset did not reach the upstream request, and counted against the upstream', () => {
  it('a GET to a backend that answers after 4 s, reset by the client (CANCEL): the upstream request closes within 1 s, unanswered', async () => {
    slowHits.length = 0;
    const s = session(HOST.slow, clients.dev);
    try {
      const stream = s.request({ ':authority': HOST.slow, ':path': '/slow' });
      stream.on('error', () => undefined);
      stream.end();
      await waitUntil('the backend got the GET', () => slowHits.length === 1, 5000);
      const resetAt = performance.now();
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await waitUntil('the upstream request closed', () => slowHits[0]?.reqClosedAt !== undefined, 6000);
      const hit = slowHits[0] as SlowHit;
      expect([hit.url, hit.answered]).toEqual(['/slow', false]);
      const afterReset = (hit.reqClosedAt as number) - resetAt;
      expect(afterReset).toBeGreaterThanOrEqual(0);
      expect(afterReset).toBeLessThan(1000);
    } finally {
      s.close();
    }
    expect(await metric('dancegate_upstream_attempts_total{listener="api",upstream="slow",outcome="failed"}')).toBe(0);
  });

  it('ten POST streams reset after a few body bytes, two healthy upstreams (passive health, failures 5): no ejection, no health line; GETs reach both', async () => {
    const ejections = async (): Promise<number[]> => {
      const out: number[] = [];
      for (const u of ['p1', 'p2']) for (const cause of ['passive', 'active']) out.push((await metric(`dancegate_upstream_ejections_total{listener="api",upstream="${u}",cause="${cause}"}`)) ?? -1);
      return out;
    };
    expect(await ejections()).toEqual([0, 0, 0, 0]);
    const s = session(HOST.pair, clients.dev);
    try {
      for (let i = 0; i < 10; i++) {
        const stream = s.request({ ':authority': HOST.pair, ':method': 'POST', ':path': `/up/${i}` });
        stream.on('error', () => undefined);
        stream.write('hello');
        await waitUntil(`upload ${i} reached an upstream`, () => pair.p1.received + pair.p2.received === i + 1, 5000);
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
      await waitUntil('every upstream upload closed', () => pair.p1.open === 0 && pair.p2.open === 0, 5000);
      await waitUntil('ten access-log lines for the uploads', async () => (await logLines()).filter((l) => l['event'] === 'request' && String(l['path']).startsWith('/up/')).length === 10, 5000);
      // Room for a late failure: an exchange left hanging ends when the backend closes its idle connection (300 ms).
      await new Promise((r) => setTimeout(r, 1000));
      expect([pair.p1.hits, pair.p2.hits]).toEqual([
        ['POST /up/0', 'POST /up/2', 'POST /up/4', 'POST /up/6', 'POST /up/8'],
        ['POST /up/1', 'POST /up/3', 'POST /up/5', 'POST /up/7', 'POST /up/9'],
      ]);
      expect(await ejections()).toEqual([0, 0, 0, 0]);
      expect(await metric('dancegate_upstream_healthy{listener="api",upstream="p1"}')).toBe(1);
      expect(await metric('dancegate_upstream_healthy{listener="api",upstream="p2"}')).toBe(1);
      expect(await metric('dancegate_upstream_attempts_total{listener="api",upstream="p1",outcome="failed"}')).toBe(0);
      expect(await metric('dancegate_upstream_attempts_total{listener="api",upstream="p2",outcome="failed"}')).toBe(0);
      const lines = await logLines();
      expect(lines.filter((l) => l['event'] === 'upstream-health' || l['event'] === 'upstream-error')).toEqual([]);
      const gets = [await request(s, HOST.pair, { ':path': '/after/1' }), await request(s, HOST.pair, { ':path': '/after/2' })];
      expect(gets).toEqual([
        { status: 200, body: 'p1\n', trailers: undefined },
        { status: 200, body: 'p2\n', trailers: undefined },
      ]);
    } finally {
      s.close();
    }
  });
  it('an upload reset mid-body (raw frames: DATA without END_STREAM, then RST_STREAM CANCEL): the upstream request is cut, never ended as if complete', async () => {
    uploads.closed.length = 0;
    uploads.bytes = 0;
    const { socket, log } = await rawH2(HOST.upload);
    try {
      // No content-length: the body goes upstream chunked, where ending it early would look like a whole body.
      socket.write(
        headersFrame(
          1,
          headerBlock([
            [':method', 'POST'],
            [':scheme', 'https'],
            [':path', '/upload'],
            [':authority', HOST.upload],
          ]),
        ),
      );
      socket.write(dataFrame(1, Buffer.from('hello')));
      await waitUntil('the first body bytes upstream', () => uploads.bytes === 5, 5000);
      socket.write(rstStreamFrame(1, H2_ERROR.CANCEL));
      await waitUntil('the upstream request closed', () => uploads.closed.length === 1, 5000);
      expect(uploads.closed).toEqual([{ complete: false, body: 'hello' }]);
      expect(uploads.hits).toEqual(['POST /upload']);
      expect(log.goaway()).toBeUndefined();
    } finally {
      socket.destroy();
    }
  });
});

describe('finding: upstream trailers node:http2 refuses to send ended the process', () => {
  it.each([
    ['/settings', 'HTTP2-Settings: AAA', undefined],
    ['/settings-and-sum', 'HTTP2-Settings: AAA, X-Checksum: 1f', { 'x-checksum': '1f' }],
    ['/etags-grpc', 'ETag: "a", ETag: "b", grpc-status: 0', { 'grpc-status': '0' }],
  ] as const)('%s (trailers %s) to an HTTP/2 client: 200 and the body, only allowed trailers, the process serves on', async (path, _sent, expected) => {
    trailerBackend.seen.length = 0;
    const first = session(HOST.trailers, clients.dev);
    try {
      expect(await request(first, HOST.trailers, { ':path': path })).toEqual({ status: 200, body: 'hi', trailers: expected });
    } finally {
      first.close();
    }
    const second = session(HOST.trailers, clients.dev);
    try {
      expect(await request(second, HOST.trailers, { ':path': '/plain' })).toEqual({ status: 200, body: 'plain\n', trailers: undefined });
    } finally {
      second.close();
    }
    expect(trailerBackend.seen).toEqual([`GET ${path} ${DEV}`, `GET /plain ${DEV}`]);
    expect([child.exitCode, child.signalCode]).toEqual([null, null]);
  });
});

describe('finding: an HTTP/2 :path with raw bytes 0x80-0xFF was forwarded', () => {
  it('raw 0x80, 0xE9 and 0xFF in :path: 400 each, the backend sees nothing; the percent-encoded path is forwarded', async () => {
    pathsBackend.seen.length = 0;
    const { socket, log } = await rawH2(HOST.paths);
    try {
      const targets = [Buffer.from('/a\x80b', 'latin1'), Buffer.from('/caf\xe9', 'latin1'), Buffer.from('/x?q=\xff', 'latin1')];
      expect(targets.map((t) => t.length)).toEqual([4, 5, 6]);
      const refusal = { status: 400, body: 'Bad Request: the request target has bytes outside visible ASCII (percent-encode them)\n', reset: undefined };
      for (const [i, target] of targets.entries()) {
        const id = 1 + 2 * i;
        socket.write(
          headersFrame(
            id,
            headerBlock([
              [':method', 'GET'],
              [':scheme', 'https'],
              [':path', target],
              [':authority', HOST.paths],
            ]),
            { endStream: true },
          ),
        );
        expect(await answerOf(log, id)).toEqual(refusal);
      }
      expect(pathsBackend.seen).toEqual([]);
      socket.write(headersFrame(7, headerBlock(getFields('/a%80b', HOST.paths)), { endStream: true }));
      expect(await answerOf(log, 7)).toEqual({ status: 200, body: `GET /a%80b ${DEV}\n`, reset: undefined });
      expect(log.goaway()).toBeUndefined();
    } finally {
      socket.destroy();
    }
    expect(pathsBackend.seen).toEqual([`GET /a%80b ${DEV}`]);
  });
});

describe("an HTTP/2 upstream (node:http2, not undici, which drops a paused stream's last bytes at the trailers): every byte and the trailers arrive; back-pressure reaches the upstream", () => {
  it('a client that reads gets all 8 MiB, in order, and the trailers', async () => {
    const s = session(HOST.big, clients.dev);
    try {
      const stream = s.request({ ':authority': HOST.big, ':path': '/big' });
      const chunks: Buffer[] = [];
      let trailers: Record<string, unknown> | undefined;
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('trailers', (t) => (trailers = { ...t }));
      await once(stream, 'close');
      const body = Buffer.concat(chunks);
      expect(body.length).toBe(BIG);
      expect(body.equals(bigBody)).toBe(true);
      expect(trailers?.['x-sum']).toBe('all-sent');
    } finally {
      s.destroy();
    }
  });

  it('a client that reads nothing holds the upstream back (back-pressure reaches it); when it goes away the upstream stream is cancelled, not blamed', async () => {
    const before = bigStreams.length;
    const s = session(HOST.big, clients.dev);
    const stream = s.request({ ':authority': HOST.big, ':path': '/big' });
    stream.pause();
    stream.on('error', () => undefined);
    await waitUntil('the upstream stream opened', () => bigStreams.length === before + 1, 5000);
    await new Promise((r) => setTimeout(r, 1000));
    // 8 MiB cannot have left the upstream: the client's window is 64 KiB and dancegate stopped reading.
    expect(bigStreams[before]?.closed).toBe(false);
    s.destroy();
    await waitUntil('the upstream stream closed', () => bigStreams[before]?.closed === true, 5000);
    expect(bigStreams[before]?.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
    expect(await metric('dancegate_upstream_attempts_total{listener="api",upstream="big",outcome="failed"}')).toBe(0);
    expect(await metric('dancegate_upstream_attempts_total{listener="api",upstream="big",outcome="connect-failed"}')).toBe(0);
    expect(child.exitCode).toBe(null);
  });
});
