/**
 * Per-path rules, per-identity request rates and the access log end to
 * end: the built CLI as a child process logging to a file, a real Node
 * backend, curl over HTTP/1.1 and HTTP/2 with two DANE client identities
 * (names pinned in a local TLSA file). A refused request never reaches the
 * backend; every request on a kept-alive connection gets exactly one
 * access-log line carrying that connection's id from its decision line.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { freePort } from '../lab/dnssec-lab.js';
import { waitUntil } from '../lab/wait.js';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');
const SNI = 'api.policy.test';
const OPS = 'ops-7._device.policy.test';
const DEV = 'dev-1._device.policy.test';
type Client = 'ops' | 'dev';
type Protocol = 'h1' | 'h2';
const CURL_PROTOCOL: Record<Protocol, string> = { h1: '--http1.1', h2: '--http2' };

let dir: string;
let backend: http.Server;
/** Request targets the backend received, in order. */
const seen: string[] = [];
let child: ChildProcess;
let stderr = '';
const ports = { api: 0, limited: 0, admin: 0 };
const logFile = (): string => join(dir, 'dancegate.log');

/** What the backend answers: who asked for what (the identity header is dancegate's). */
const backendBody = (identity: string, target: string): string => `hello ${identity} ${target}\n`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-policy-'));
  const ca = await createCertificate({ commonName: 'policy CA', isCA: true });
  const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: ca, extendedKeyUsage: 'server' });
  const clients: Record<Client, IssuedCertificate> = {
    ops: await createCertificate({ commonName: OPS, dnsNames: [OPS] }),
    dev: await createCertificate({ commonName: DEV, dnsNames: [DEV] }),
  };
  for (const [name, c] of Object.entries({ server, ...clients })) {
    await writeFile(join(dir, `${name}.pem`), c.certPem);
    await writeFile(join(dir, `${name}.key`), c.keyPem);
  }
  await writeFile(join(dir, 'ca.pem'), ca.certPem);
  const rr = (name: string, c: IssuedCertificate): string => `${name} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(c.der), 3, 1, 1))}`;
  await writeFile(join(dir, 'tlsa.txt'), `${rr(OPS, clients.ops)}\n${rr(DEV, clients.dev)}\n`);

  backend = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'text/plain' }).end(backendBody(String(req.headers['x-dane-client-id']), req.url ?? ''));
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const backendPort = (backend.address() as AddressInfo).port;

  ports.api = await freePort();
  ports.limited = await freePort();
  ports.admin = await freePort();
  const listener = (name: string, port: number, http: string, rules: string): string => `  - name: ${name}
    listen: 127.0.0.1:${port}
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    http:
${http}
    routes:
      - upstreams: [{ url: http://127.0.0.1:${backendPort}, name: backend-a }]
        allow: ['*._device.policy.test']
${rules}`;
  await writeFile(
    join(dir, 'dancegate.yaml'),
    `admin: { listen: "127.0.0.1:${ports.admin}" }
log: { destination: ${logFile()} }
resolver:
  localTlsaFile: tlsa.txt
listeners:
${listener(
  'api',
  ports.api,
  '      alpn: [h2, http/1.1]\n      accessLog: { enabled: true, sampleRate: 1, includeQuery: false }',
  `        rules:
          - { path: /admin/*, methods: [GET], allow: ['ops-*._device.policy.test'] }
          - { path: /admin/*, allow: [] }
          - { path: '*', allow: ['*._device.policy.test'] }
`,
)}
${listener('limited', ports.limited, '      requestRatePerIdentity: { ratePerSecond: 0.1, burst: 3 }', '')}
`,
  );
  child = spawn(process.execPath, [CLI, 'serve', '-c', join(dir, 'dancegate.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitUntil('dancegate ready', async () => {
    if (child.exitCode !== null) throw new Error(`dancegate exited ${child.exitCode}: ${stderr}`);
    return (await readyz()) === 200;
  });
}, 60_000);

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
  backend?.closeAllConnections();
  await new Promise<void>((r) => (backend ? backend.close(() => r()) : r()));
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  seen.length = 0;
});

function readyz(): Promise<number> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port: ports.admin, path: '/readyz', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', () => resolve(0));
  });
}

interface Answer {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: string;
  /** Connections curl opened for this transfer: 1 for the first, 0 when it reused the kept-alive one. */
  connects: number;
}

const END = /\n<<(\d{3}) (\d+)>>\n/;

/** One curl run: every target in order, on one connection when curl can keep it. */
async function curl(client: Client, protocol: Protocol, targets: readonly string[], extra: readonly string[] = [], port = ports.api): Promise<Answer[]> {
  const args = ['-sS', '--max-time', '10', '--path-as-is', CURL_PROTOCOL[protocol], '--cacert', join(dir, 'ca.pem'), '--resolve', `${SNI}:${port}:127.0.0.1`];
  args.push('--cert', join(dir, `${client}.pem`), '--key', join(dir, `${client}.key`), '-D', '-', '-w', '\n<<%{http_code} %{num_connects}>>\n');
  const { stdout } = await run('curl', [...args, ...extra, ...targets.map((t) => `https://${SNI}:${port}${t}`)]);
  const answers: Answer[] = [];
  let rest = stdout;
  for (let m = END.exec(rest); m !== null; m = END.exec(rest)) {
    const transfer = rest.slice(0, m.index);
    rest = rest.slice(m.index + m[0].length);
    const split = transfer.indexOf('\r\n\r\n');
    const headers: Record<string, string> = {};
    for (const line of transfer.slice(0, split).split('\r\n').slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    answers.push({ status: Number(m[1]), headers, body: transfer.slice(split + 4), connects: Number(m[2]) });
  }
  expect(rest).toBe('');
  return answers;
}

const summary = (answers: readonly Answer[]): Array<[number, string]> => answers.map((a) => [a.status, a.body]);

async function logLines(): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(logFile(), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe.each<Protocol>(['h1', 'h2'])('over %s', (protocol) => {
  it('rules allow and refuse by identity pattern; a refused request never reaches the backend', async () => {
    expect(summary(await curl('ops', protocol, ['/admin/users', '/admin', '/other']))).toEqual([
      [200, backendBody(OPS, '/admin/users')],
      [200, backendBody(OPS, '/admin')],
      [200, backendBody(OPS, '/other')],
    ]);
    expect(seen).toEqual(['/admin/users', '/admin', '/other']);
    seen.length = 0;
    expect(summary(await curl('dev', protocol, ['/admin/users', '/adminx', '/ADMIN/users']))).toEqual([
      [403, 'Forbidden: this identity may not use this path and method (path-not-allowed)\n'],
      [200, backendBody(DEV, '/adminx')],
      [200, backendBody(DEV, '/ADMIN/users')],
    ]);
    expect(seen).toEqual(['/adminx', '/ADMIN/users']);
  });

  it('a method the first rule does not list falls to the next rule (here: deny)', async () => {
    expect(summary(await curl('ops', protocol, ['/admin/users'], ['-X', 'DELETE']))).toEqual([[403, 'Forbidden: this identity may not use this path and method (path-not-allowed)\n']]);
    expect(seen).toEqual([]);
  });

  const pathBody = (what: string): string => `Bad Request: the request path contains ${what}\n`;
  it.each([
    ['/public/..%2fadmin', pathBody("an encoded '/' or '\\'")],
    ['/public/%2e%2e/admin', pathBody("a dot segment ('..')")],
    ['/public/.%2E/admin', pathBody("a dot segment ('..')")],
    ['/public//admin', pathBody("an empty segment ('//')")],
    ['/admin;x', pathBody("a ';' (path parameters)")],
    ['/public/%252e%252e/admin', pathBody("an encoded '%' (a backend that decodes twice would see another path)")],
    ['/public/%c0%ae%c0%ae/admin', pathBody('percent escapes that are not UTF-8')],
    // Refused by the request checks before the rules ('//x' reads as a network-path reference).
    ['//admin', 'Bad Request: a request target may not start with // or /\\\n'],
  ])('%s is refused with 400 before any rule', async (target, body) => {
    // ops may GET all of /admin/*: the refusal is the path's, not the identity's.
    const [answer] = await curl('ops', protocol, [target]);
    expect([answer?.status, answer?.body]).toEqual([400, body]);
    expect(seen).toEqual([]);
  });
});

describe('request rate per identity', () => {
  it('after the burst: 429 with Retry-After on either protocol, while another identity still gets 200', async () => {
    const first = await curl('ops', 'h1', ['/r1', '/r2', '/r3', '/r4'], [], ports.limited);
    expect(summary(first)).toEqual([
      [200, backendBody(OPS, '/r1')],
      [200, backendBody(OPS, '/r2')],
      [200, backendBody(OPS, '/r3')],
      [429, 'Too Many Requests: the request rate of this identity is over its limit\n'],
    ]);
    // 0.1 token per second: the next one is 10 s away.
    expect(first[3]?.headers['retry-after']).toBe('10');
    // The bucket is the identity's, not the connection's or the protocol's.
    const again = await curl('ops', 'h2', ['/r5'], [], ports.limited);
    expect([again[0]?.status, again[0]?.headers['retry-after']]).toEqual([429, '10']);
    expect(summary(await curl('dev', 'h2', ['/d1', '/d2'], [], ports.limited))).toEqual([
      [200, backendBody(DEV, '/d1')],
      [200, backendBody(DEV, '/d2')],
    ]);
    expect(seen).toEqual(['/r1', '/r2', '/r3', '/d1', '/d2']);
  });
});

describe('access log', () => {
  const since = async (mark: number): Promise<Array<Record<string, unknown>>> => (await logLines()).slice(mark);

  it.each<Protocol>(['h1', 'h2'])("%s: N requests on one kept-alive connection give exactly N lines, with the decision line's connection id", async (protocol) => {
    const mark = (await logLines()).length;
    const targets = ['/logs/1?token=secret', '/logs/2', '/admin/x?y=1', '/logs/3?'];
    const answers = await curl('dev', protocol, targets);
    expect(answers.map((a) => [a.status, a.connects])).toEqual([
      [200, 1],
      [200, 0],
      [403, 0],
      [200, 0],
    ]);
    await waitUntil('four request lines', async () => (await since(mark)).filter((l) => l.msg === 'http request').length >= 4);
    const lines = await since(mark);
    const decisions = lines.filter((l) => l.msg === 'connection decision');
    expect(decisions).toHaveLength(1);
    expect(decisions[0]).toMatchObject({ listener: 'api', outcome: 'forwarded', reason: 'authenticated', claimedName: DEV, connectionId: expect.any(String) });
    const connectionId = decisions[0]?.connectionId as string;
    const common = {
      level: 'info',
      time: expect.any(String),
      pid: child.pid,
      msg: 'http request',
      event: 'request',
      connectionId,
      listener: 'api',
      identity: DEV,
      protocol,
      method: 'GET',
      bytesIn: 0,
    };
    const forwarded = (path: string, target: string) => ({
      ...common,
      path,
      status: 200,
      bytesOut: Buffer.byteLength(backendBody(DEV, target)),
      upstream: 'backend-a',
      upstreamMs: expect.any(Number),
      totalMs: expect.any(Number),
    });
    const refusedBody = 'Forbidden: this identity may not use this path and method (path-not-allowed)\n';
    expect(answers[2]?.body).toBe(refusedBody);
    expect(lines.filter((l) => l.msg === 'http request')).toEqual([
      forwarded('/logs/1', targets[0] as string),
      forwarded('/logs/2', targets[1] as string),
      { ...common, path: '/admin/x', status: 403, bytesOut: Buffer.byteLength(refusedBody), upstream: null, upstreamMs: null, totalMs: expect.any(Number), refusal: 'path-not-allowed' },
      forwarded('/logs/3', targets[3] as string),
    ]);
    for (const line of lines.filter((l) => l.msg === 'http request')) {
      expect(line.totalMs as number).toBeGreaterThanOrEqual((line.upstreamMs as number | null) ?? 0);
    }
    expect(seen).toEqual(['/logs/1?token=secret', '/logs/2', '/logs/3?']);
  });

  it('the limited listener has its own access log lines (sampleRate 1 by default), none for the other listener', async () => {
    const mark = (await logLines()).length;
    await curl('dev', 'h1', ['/d3'], [], ports.limited);
    await waitUntil('one request line', async () => (await since(mark)).some((l) => l.msg === 'http request'));
    expect((await since(mark)).filter((l) => l.msg === 'http request').map((l) => [l.listener, l.path, l.status, l.protocol])).toEqual([['limited', '/d3', 200, 'h1']]);
  });
});
