/**
 * Issue 10, findings 2 and 3, against the built CLI (`dancegate serve`, its
 * own process, so that a crash is seen as one): client certificates that
 * OpenSSL accepts in the handshake but that are hostile to whatever reads
 * them next.
 *  - Finding 2: a DANE-EE (3 1 1) client whose certificatePolicies or
 *    authorityInfoAccess extension is malformed (@peculiar/x509 throws
 *    AsnSchemaValidationError on it) sends a request with forwardXfcc on:
 *    the process lives, the request is forwarded with the certificate's
 *    subject, and a normal client is served after it.
 *  - Finding 3: certificates with more SAN dNSNames than MAX_SAN_ENTRIES
 *    holding quotes and commas (3 KB, and the audit's 63 KB with 2,901),
 *    and a 70 KB one, are refused with a reason naming the bound, before
 *    any allowlist check or full parse; a legitimate client still
 *    authenticates.
 * Needs `npm run build` (dist/) first, as test/e2e/demo.test.ts does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { createManySanCertificate, createMalformedExtensionCertificate, createOversizeCertificate, type HostileCertificate } from '../fixtures-hostile/certificates.js';

const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');
const SNI = 'api.hostile.test';
const LEGIT = 'legit._device.hostile.test';
const POLICIES = 'policies._device.hostile.test';
const AIA = 'aia._device.hostile.test';

/** TLSA 3 1 1 for a certificate, computed with node:crypto only. */
function daneEe(name: string, der: Buffer): string {
  const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  return `${name} IN TLSA 3 1 1 ${createHash('sha256').update(spki).digest('hex')}\n`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Exchange {
  /** The status line and body, or how the connection ended without a response. */
  readonly status: string;
  readonly body: string;
}

/** One TLS connection presenting `cert`, one raw HTTP/1.1 request, read until the proxy closes. */
function request(port: number, cert: HostileCertificate | IssuedCertificate, localAddress = '127.0.0.1'): Promise<Exchange> {
  return new Promise((resolve) => {
    const raw = net.connect({ host: '127.0.0.1', port, localAddress });
    const socket = tls.connect({ socket: raw, servername: SNI, cert: cert.certPem, key: cert.keyPem, rejectUnauthorized: false });
    let response = '';
    let error = '';
    const timer = setTimeout(() => {
      error ||= 'no response in 10 s';
      socket.destroy();
    }, 10_000);
    socket.on('secureConnect', () => socket.write(`GET /r HTTP/1.1\r\nHost: ${SNI}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (d: Buffer) => (response += d.toString('latin1')));
    socket.on('error', (err: Error) => (error ||= err.message));
    raw.on('error', (err: Error) => (error ||= err.message));
    socket.on('close', () => {
      raw.destroy();
      clearTimeout(timer);
      const [head = '', body = ''] = response.split('\r\n\r\n');
      resolve(response === '' ? { status: `no response (${error || 'closed'})`, body: '' } : { status: head.split('\r\n')[0] ?? '', body });
    });
  });
}

interface Serve {
  readonly port: number;
  readonly child: ChildProcess;
  readonly stderr: string;
  /** Request headers the backend received. */
  readonly seen: readonly http.IncomingHttpHeaders[];
  readonly certs: Readonly<Record<'legit' | 'policies' | 'aia', HostileCertificate>>;
  /** The proxy's decision records so far (pino JSON lines on stdout). */
  decisions(): Array<Record<string, unknown>>;
  /** Run `exchange` and return the decision record it made (stdout may lag the response a little). */
  decided<T>(exchange: () => Promise<T>): Promise<{ result: T; decision: Record<string, unknown> }>;
}

/**
 * Registers beforeAll/afterAll that run `dancegate serve` (HTTP mode,
 * forwardXfcc on, a local TLSA file with DANE-EE records for the legit and
 * malformed-extension clients) and a plain HTTP backend; each describe gets
 * its own process, so a crash in one does not hide the other's outcome.
 */
function useServe(): Serve {
  let dir: string;
  let child: ChildProcess;
  let port: number;
  let backend: http.Server;
  let stdout = '';
  let stderr = '';
  const seen: http.IncomingHttpHeaders[] = [];
  const certs = {} as Record<'legit' | 'policies' | 'aia', HostileCertificate>;

  /** The proxy's decision records so far (pino JSON lines on stdout). */
  function decisions(): Array<Record<string, unknown>> {
    return stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((r) => r.msg === 'connection decision');
  }

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' first`);
    dir = await mkdtemp(join(tmpdir(), 'dancegate-hostile-cert-'));
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], extendedKeyUsage: 'server' });
    certs.legit = await createCertificate({ commonName: LEGIT, dnsNames: [LEGIT] });
    certs.policies = await createMalformedExtensionCertificate(POLICIES, 'certificatePolicies');
    certs.aia = await createMalformedExtensionCertificate(AIA, 'authorityInfoAccess');
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'tlsa.txt'), daneEe(LEGIT, certs.legit.der) + daneEe(POLICIES, certs.policies.der) + daneEe(AIA, certs.aia.der));
    backend = http.createServer((req, res) => {
      seen.push(req.headers);
      res.end(`hello ${req.headers['x-dane-client-id'] ?? 'nobody'}`);
    });
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    port = await freePort();
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:
  localTlsaFile: tlsa.txt
admin: false
limits:
  penaltyBox: false
listeners:
  - name: hostile
    listen: 127.0.0.1:${port}
    mode: http
    http: { forwardXfcc: true }
    tls:
      certificates: [{ certFile: server.pem, keyFile: server.key }]
    routes:
      - upstream: http://127.0.0.1:${(backend.address() as net.AddressInfo).port}
        allow: ['*._device.hostile.test']
`,
    );
    child = spawn(process.execPath, [CLI, 'serve', '--config', join(dir, 'dancegate.yaml')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 20_000;
    while (!stderr.includes(`on 127.0.0.1:${port}`)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`dancegate did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    await new Promise<void>((resolve) => (backend ? backend.close(() => resolve()) : resolve()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  return {
    get port() {
      return port;
    },
    get child() {
      return child;
    },
    get stderr() {
      return stderr;
    },
    seen,
    certs,
    decisions,
    async decided<T>(exchange: () => Promise<T>) {
      const before = decisions().length;
      const result = await exchange();
      const deadline = Date.now() + 5000;
      while (decisions().length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return { result, decision: decisions()[before] ?? {} };
    },
  };
}

describe('finding 2: certificates whose details cannot all be parsed', () => {
  const serve = useServe();

  it.each([
    ['certificatePolicies', POLICIES, 'policies'],
    ['authorityInfoAccess', AIA, 'aia'],
  ] as const)('finding 2: a DANE-EE client with a malformed %s extension is served with XFCC, and the process lives', async (_label, name, key) => {
    const before = serve.seen.length;
    const { result: exchange, decision } = await serve.decided(() => request(serve.port, serve.certs[key]));
    // On the old code the process died here (AsnSchemaValidationError out of leaf.subject): no response, exit code 1.
    expect({ exchange, exitCode: serve.child.exitCode, crashed: /AsnSchemaValidationError|uncaught/i.test(serve.stderr) }).toEqual({
      exchange: { status: 'HTTP/1.1 200 OK', body: `hello ${name}` },
      exitCode: null,
      crashed: false,
    });
    expect(serve.seen.length).toBe(before + 1);
    expect(serve.seen.at(-1)?.['x-forwarded-client-cert']).toBe(`Hash=${createHash('sha256').update(serve.certs[key].der).digest('hex')};Subject="CN=${name}";DNS=${name}`);
    expect(decision).toMatchObject({ outcome: 'forwarded', reason: 'authenticated', claimedName: name, nameSource: 'san', tlsa: '3 1 1' });
    // A normal client is still served by the same process.
    expect(await request(serve.port, serve.certs.legit)).toEqual({ status: 'HTTP/1.1 200 OK', body: `hello ${LEGIT}` });
  });
});

describe('finding 3: certificates that would cost a full parse before any allowlist check', () => {
  const serve = useServe();
  /** Hostile clients connect from another loopback address than the legitimate one. */
  const HOSTILE_ADDRESS = '127.0.0.2';

  it('150 SAN dNSNames with quotes and commas (3 KB, under any handshake size limit) are refused for their count before any allowlist check; a legitimate client still authenticates', async () => {
    const hostile = await createManySanCertificate(150);
    // OpenSSL quotes these names in its rendering: the old code then ran a full @peculiar/x509 parse per handshake.
    expect(new X509Certificate(hostile.der).subjectAltName?.startsWith('DNS:"\\"0\\u002cy.example.test", DNS:"\\"1')).toBe(true);
    const { result: exchange, decision } = await serve.decided(() => request(serve.port, hostile, HOSTILE_ADDRESS));
    expect(exchange).toEqual({ status: 'HTTP/1.1 403 Forbidden', body: 'Forbidden: DANE client authentication failed (no-matching-record)\n' });
    expect(decision).toMatchObject({
      outcome: 'refused',
      reason: 'no-matching-record',
      detail: 'unparseable client certificate: subjectAltName has more than 100 entries (the limit)',
    });
    // Refused before any name was taken from the certificate.
    expect(decision.claimedName).toBe(undefined);
    const legit = await serve.decided(() => request(serve.port, serve.certs.legit));
    expect(legit.result).toEqual({ status: 'HTTP/1.1 200 OK', body: `hello ${LEGIT}` });
    expect(legit.decision).toMatchObject({ outcome: 'forwarded', reason: 'authenticated', claimedName: LEGIT });
  });

  /**
   * The two large certificates are stopped by whichever bound comes first:
   * the handshake-flight limit (limits.handshakes.maxClientFlightBytes,
   * 16 KiB by default, finding 6) where the proxy has one, else the
   * certificate parser's own (MAX_CERTIFICATE_BYTES, MAX_SAN_ENTRIES).
   */
  const refusedForSize =
    /^(the client sent \d+ bytes of handshake after its ClientHello; at most \d+ are accepted \(limits\.handshakes\.maxClientFlightBytes\)|unparseable client certificate: (subjectAltName has more than 100 entries \(the limit\)|certificate is \d+ bytes; the limit is 65536))$/;

  it.each([
    ["the audit's 63 KB certificate with 2,901 quoted SAN dNSNames", () => createManySanCertificate()],
    ['a 70 KB certificate (over the 64 KiB limit)', () => createOversizeCertificate(70_000, 'big._device.hostile.test')],
  ])('%s is refused with a reason naming the bound; a legitimate client still authenticates', async (_label, make) => {
    const hostile = await make();
    expect(hostile.der.length).toBeGreaterThan(60_000);
    const { result: exchange, decision } = await serve.decided(() => request(serve.port, hostile, HOSTILE_ADDRESS));
    expect(exchange.status).toBe('HTTP/1.1 403 Forbidden');
    expect({ outcome: decision.outcome, claimedName: decision.claimedName, sizeBound: refusedForSize.test(String(decision.detail)) }).toEqual({
      outcome: 'refused',
      claimedName: undefined,
      sizeBound: true,
    });
    expect(['no-matching-record', 'chain-over-limits']).toContain(decision.reason);
    expect(await request(serve.port, serve.certs.legit)).toEqual({ status: 'HTTP/1.1 200 OK', body: `hello ${LEGIT}` });
    expect(serve.child.exitCode).toBe(null);
  });
});
