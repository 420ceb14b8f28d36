/**
 * `dancegate connect` end to end: the BUILT command line (run `npm run build`
 * first) as a child process against a dancegate listener started in-process
 * with a local TLSA file, an HTTP backend and a TCP echo backend; and against
 * openssl s_server, whose -trace shows what the client put on the wire.
 *
 * The client certificate carries no SAN dNSName, so an authenticated
 * connection can only have taken its name from dane_clientid.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes, createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { loadNativeEngine } from '../../src/tls/native-engine.js';
import { freePort } from '../lab/dnssec-lab.js';
import { TEST_ENGINE } from '../lab/engine.js';
import { waitUntil } from '../lab/wait.js';

const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');
const SNI = 'connect.proxy.test';
const NAME = 'dev1._device.clients.test';
const OUTSIDER = 'outsider.example.test';

interface CliRun {
  readonly code: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** The built CLI: `dancegate connect ...args`, `input` on stdin then its end; killed after 20 s. */
async function connect(args: readonly string[], input: Buffer | string = '', env: NodeJS.ProcessEnv = process.env): Promise<CliRun> {
  const child = spawn(process.execPath, [CLI, 'connect', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
  const stdout: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => stdout.push(d));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // The command may exit (bad arguments) before reading stdin: EPIPE then is expected.
  child.stdin.on('error', () => undefined);
  child.stdin.end(input);
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(killer);
  return { code, stdout: Buffer.concat(stdout), stderr };
}

function tlsaLine(name: string, der: Buffer): string {
  const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  return `${name}. IN TLSA 3 1 1 ${createHash('sha256').update(spki).digest('hex')}\n`;
}

const REQUEST = `GET /hello HTTP/1.1\r\nHost: ${SNI}\r\nConnection: close\r\n\r\n`;

/** Files every describe block uses: a client certificate and key, another key, CAs. Made at load: the tables name them. */
const dir = mkdtempSync(join(tmpdir(), 'dancegate-connect-'));
let client: IssuedCertificate;
let serverCa: IssuedCertificate;
let otherCa: IssuedCertificate;
const file = (name: string): string => join(dir, name);

beforeAll(async () => {
  serverCa = await createCertificate({ commonName: 'connect server CA', isCA: true });
  otherCa = await createCertificate({ commonName: 'some other CA', isCA: true });
  const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
  // No SAN dNSName: the name can only come from dane_clientid.
  client = await createCertificate({ commonName: 'device 1' });
  const stranger = await createCertificate({ commonName: 'device 2' });
  await writeFile(file('server.pem'), server.certPem + serverCa.certPem);
  await writeFile(file('server.key'), server.keyPem);
  await writeFile(file('server-ca.pem'), serverCa.certPem);
  await writeFile(file('other-ca.pem'), otherCa.certPem);
  await writeFile(file('client.pem'), client.certPem);
  await writeFile(file('client.key'), client.keyPem);
  await writeFile(file('stranger.key'), stranger.keyPem);
  await writeFile(file('garbage.pem'), 'not a certificate\n');
  await writeFile(file('tlsa.txt'), tlsaLine(NAME, client.der) + tlsaLine(OUTSIDER, client.der));
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The parsing itself is covered by test/unit/connect-args.test.ts; here, the built command's exit code and message. */
describe('dancegate connect: arguments (either engine)', () => {
  const base = (): string[] => ['127.0.0.1:9', '--name', NAME, '--cert', file('client.pem'), '--key', file('client.key')];

  it.each<[string, () => string[], string]>([
    ['missing --name', () => ['127.0.0.1:9', '--cert', file('client.pem'), '--key', file('client.key')], '--name NAME is required (the client name sent in dane_clientid)'],
    ['missing --key', () => ['127.0.0.1:9', '--name', NAME, '--cert', file('client.pem')], '--key FILE is required'],
    ['a NAME with one label', () => [...base(), '--name', 'device1'], '--name "device1": name has a single label; a client name needs at least two'],
    ['another --form', () => [...base(), '--form', 'san'], "--form must be certificate or clienthello, got 'san'"],
    ['--tls1.2 with the certificate form', () => [...base(), '--tls1.2'], '--tls1.2: the certificate form is TLS 1.3 only (draft -13); use --form clienthello'],
    ['an unreadable --cert', () => [...base(), '--cert', file('missing.pem')], `--cert ${file('missing.pem')}: cannot read it (ENOENT)`],
    ['a --cert that is no certificate', () => [...base(), '--cert', file('garbage.pem')], `--cert ${file('garbage.pem')}: no PEM certificate in it`],
    ['a --key that is no key', () => [...base(), '--key', file('garbage.pem')], `--key ${file('garbage.pem')}: no PEM private key in it`],
    ['a key that does not match the certificate', () => [...base(), '--key', file('stranger.key')], `--key ${file('stranger.key')}: the key does not match the certificate in ${file('client.pem')}`],
    ['a --ca that is no certificate', () => [...base(), '--ca', file('garbage.pem')], `--ca ${file('garbage.pem')}: no PEM certificate in it`],
  ])('%s: exit 2 naming the argument', async (_what, argv, message) => {
    const r = await connect(argv());
    expect(r).toEqual({ code: 2, stdout: Buffer.alloc(0), stderr: `dancegate: ${message}\n` });
  });

  it("an unknown option: exit 2 with node's parseArgs message (its wording varies by node version)", async () => {
    const r = await connect([...base(), '--sni', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^dancegate: Unknown option '--sni'\. [^\n]+\n$/);
  });

  it('DANCEGATE_NATIVE=0: exit 2, the engine is disabled', async () => {
    const r = await connect(base(), '', { ...process.env, DANCEGATE_NATIVE: '0' });
    expect(r).toEqual({ code: 2, stdout: Buffer.alloc(0), stderr: 'dancegate: connect needs the native TLS engine, which is unavailable: disabled by DANCEGATE_NATIVE=0\n' });
  });

  it('--help prints the usage; the main help lists the command', async () => {
    const r = await connect(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toMatch(/^Usage: dancegate connect HOST:PORT --name NAME --cert FILE --key FILE \[options\]\n/);
    const main = spawn(process.execPath, [CLI, '--help']);
    let text = '';
    main.stdout.on('data', (d: Buffer) => (text += d.toString()));
    await once(main, 'close');
    expect(text).toContain('\n  connect Connect to HOST:PORT as a device: send the name in dane_clientid, pipe stdin/stdout\n');
  });
});

if (TEST_ENGINE === 'node') {
  describe('dancegate connect without the native engine', () => {
    it("exits 2 with the loader's reason", async () => {
      const load = loadNativeEngine();
      expect(load.ok).toBe(false);
      const reason = load.ok ? '' : load.reason;
      const r = await connect(['127.0.0.1:9', '--name', NAME, '--cert', file('client.pem'), '--key', file('client.key')]);
      expect(r).toEqual({ code: 2, stdout: Buffer.alloc(0), stderr: `dancegate: connect needs the native TLS engine, which is unavailable: ${reason}\n` });
    });
  });
} else {
  describe('dancegate connect against dancegate (native engine)', () => {
    let proxy: RunningProxy;
    let httpBackend: http.Server;
    let echoBackend: net.Server;
    const ports = { web: 0, raw: 0 };
    const decisions: DecisionRecord[] = [];
    const deviceArgs = (port: number, ...more: string[]): string[] => [`127.0.0.1:${port}`, '--servername', SNI, '--name', NAME, '--cert', file('client.pem'), '--key', file('client.key'), ...more];

    beforeAll(async () => {
      httpBackend = http.createServer((req, res) => res.end(`hello ${String(req.headers['x-dane-client-id'])}\n`));
      httpBackend.listen(0, '127.0.0.1');
      await once(httpBackend, 'listening');
      // Echoes every byte; its end answers ours (half-close).
      echoBackend = net.createServer({ allowHalfOpen: true }, (socket) => {
        socket.on('error', () => undefined);
        socket.pipe(socket);
      });
      echoBackend.listen(0, '127.0.0.1');
      await once(echoBackend, 'listening');
      ports.web = await freePort();
      ports.raw = await freePort();
      const listener = (name: string, port: number, mode: string, upstream: string): string => `  - name: ${name}
    listen: 127.0.0.1:${port}
    mode: ${mode}
    tls:
      certificates: [{ certFile: server.pem, keyFile: server.key }]
    routes:
      - upstream: ${upstream}
        allow: ['*._device.clients.test']
`;
      await writeFile(
        file('dancegate.yaml'),
        `resolver:
  localTlsaFile: tlsa.txt
limits:
  newConnectionsPerIp: false
  penaltyBox: { failures: 100, windowMs: 60000, banMs: 60000 }
listeners:
${listener('web', ports.web, 'http', `http://127.0.0.1:${(httpBackend.address() as net.AddressInfo).port}`)}${listener('raw', ports.raw, 'tcp', `tcp://127.0.0.1:${(echoBackend.address() as net.AddressInfo).port}`)}`,
      );
      proxy = await startProxy(await loadConfig(file('dancegate.yaml')), { log: (d) => decisions.push(d) });
    }, 60_000);

    afterAll(async () => {
      await proxy?.close();
      httpBackend?.closeAllConnections();
      await new Promise<void>((resolve) => (httpBackend ? httpBackend.close(() => resolve()) : resolve()));
      await new Promise<void>((resolve) => (echoBackend ? echoBackend.close(() => resolve()) : resolve()));
    });

    beforeEach(() => {
      decisions.length = 0;
    });

    it('form certificate (default): authenticated from the Certificate message, the request gets the backend answer', async () => {
      const r = await connect(deviceArgs(ports.web, '--ca', file('server-ca.pem')).concat('--no-shutdown'), REQUEST);
      expect(r.stderr).toMatch(/^connected: TLSv1\.3, TLS_[A-Z0-9_]+, alpn none, name sent in certificate if asked\n$/);
      expect(r.code).toBe(0);
      const response = r.stdout.toString();
      expect(response).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(response.endsWith(`\r\n\r\nhello ${NAME}\n`)).toBe(true);
      expect(decisions.map((d) => [d.listener, d.outcome, d.reason, d.claimedName, d.nameSource, d.tlsVersion])).toEqual([
        ['web', 'forwarded', 'authenticated', NAME, 'certificate-extension', 'TLSv1.3'],
      ]);
    });

    it('form clienthello over TLS 1.2: authenticated from the ClientHello; ALPN offered and chosen', async () => {
      const r = await connect(deviceArgs(ports.web, '--ca', file('server-ca.pem'), '--form', 'clienthello', '--tls1.2', '--alpn', 'http/1.1').concat('--no-shutdown'), REQUEST);
      expect(r.stderr).toMatch(/^connected: TLSv1\.2, [A-Z0-9-]+, alpn http\/1\.1, name sent in clienthello\n$/);
      expect(r.code).toBe(0);
      expect(r.stdout.toString().endsWith(`\r\n\r\nhello ${NAME}\n`)).toBe(true);
      expect(decisions.map((d) => [d.outcome, d.reason, d.claimedName, d.nameSource, d.tlsVersion])).toEqual([['forwarded', 'authenticated', NAME, 'clienthello-extension', 'TLSv1.2']]);
    });

    it('form clienthello over TLS 1.3', async () => {
      const r = await connect(deviceArgs(ports.web, '--ca', file('server-ca.pem'), '--form', 'clienthello').concat('--no-shutdown'), REQUEST);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/^connected: TLSv1\.3, TLS_[A-Z0-9_]+, alpn none, name sent in clienthello\n$/);
      expect(decisions.map((d) => [d.reason, d.nameSource, d.tlsVersion])).toEqual([['authenticated', 'clienthello-extension', 'TLSv1.3']]);
    });

    it('TCP mode: binary-safe both ways, stdin end → close_notify → the backend ends → stdout ends, exit 0', async () => {
      // Every byte value, and under maxClientFlightBytes (16384): over TLS 1.3 what we send right after our Finished
      // reaches the proxy while it still verifies us, and it counts those bytes as our handshake flight.
      const payload = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(8_000)]);
      const r = await connect(deviceArgs(ports.raw, '--ca', file('server-ca.pem')), payload);
      expect(r.code).toBe(0);
      expect(r.stdout.equals(payload)).toBe(true);
      expect(decisions.map((d) => [d.listener, d.reason, d.nameSource])).toEqual([['raw', 'authenticated', 'certificate-extension']]);
    });

    it.each([
      // TLS 1.3: our handshake is done before the server decides, so the refusal arrives on the first read.
      ['certificate', /^connected: TLSv1\.3, TLS_[A-Z0-9_]+, alpn none, name sent in certificate if asked\nrefused: the server sent alert handshake_failure \(40\)\n$/],
      // The name in the ClientHello is judged before any TLS: refused before the ServerHello.
      ['clienthello', /^refused: the server sent alert handshake_failure \(40\)\n$/],
    ])('a name that is not allowlisted (form %s, TCP mode): exit 1, alert handshake_failure (40)', async (form, stderr) => {
      const args = deviceArgs(ports.raw, '--ca', file('server-ca.pem'), '--form', form);
      args[args.indexOf(NAME)] = OUTSIDER;
      const r = await connect(args, 'never forwarded\n');
      expect(r.code).toBe(1);
      expect(r.stdout.length).toBe(0);
      expect(r.stderr).toMatch(stderr);
      await waitUntil('the decision', () => decisions.length === 1);
      expect(decisions.map((d) => [d.outcome, d.reason, d.claimedName, d.nameSource])).toEqual([['refused', 'not-allowed', OUTSIDER, `${form}-extension`]]);
    });

    it('a refusal in a TLS 1.2 handshake: exit 1 before any connected line', async () => {
      const args = deviceArgs(ports.raw, '--ca', file('server-ca.pem'), '--form', 'clienthello', '--tls1.2');
      args[args.indexOf(NAME)] = OUTSIDER;
      const r = await connect(args, 'never forwarded\n');
      expect(r).toEqual({ code: 1, stdout: Buffer.alloc(0), stderr: 'refused: the server sent alert handshake_failure (40)\n' });
    });

    it("--ca with another CA: exit 1, the server's certificate does not verify", async () => {
      const r = await connect(deviceArgs(ports.web, '--ca', file('other-ca.pem')), REQUEST);
      expect(r).toEqual({ code: 1, stdout: Buffer.alloc(0), stderr: `failed: TLS handshake with 127.0.0.1:${ports.web}: certificate verify failed (we sent alert unknown_ca (48))\n` });
    });

    it("--servername that the server's certificate does not carry: exit 1", async () => {
      const args = deviceArgs(ports.web, '--ca', file('server-ca.pem'));
      args[args.indexOf(SNI)] = 'other.proxy.test';
      const r = await connect(args, REQUEST);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^failed: TLS handshake with 127\.0\.0\.1:\d+: certificate verify failed \(we sent alert [a-z_]+ \(\d+\)\)\n$/);
    });

    it('no --servername with an IP: no SNI and no name check (said on stderr); --insecure warns', async () => {
      // The listener has one certificate, so no SNI still finds it; the CA still verifies the chain.
      const noSni = await connect(
        ['127.0.0.1:' + String(ports.web), '--name', NAME, '--cert', file('client.pem'), '--key', file('client.key'), '--ca', file('server-ca.pem'), '--no-shutdown'],
        REQUEST,
      );
      expect(noSni.code).toBe(0);
      expect(noSni.stderr.split('\n')[0]).toBe("note: 127.0.0.1 is an IP address and no --servername was given: no SNI is sent and the name in the server's certificate is not checked (its chain is)");
      const insecure = await connect(deviceArgs(ports.web, '--insecure').concat('--no-shutdown'), REQUEST);
      expect(insecure.code).toBe(0);
      expect(insecure.stderr.split('\n')[0]).toBe("warning: --insecure: the server's certificate is not verified");
      expect(insecure.stdout.toString().endsWith(`hello ${NAME}\n`)).toBe(true);
    });

    it('connection errors: refused TCP and an unknown host exit 1 with a clear line', async () => {
      const closed = await freePort();
      const refused = await connect(deviceArgs(closed, '--insecure'));
      expect(refused).toEqual({
        code: 1,
        stdout: Buffer.alloc(0),
        stderr: `warning: --insecure: the server's certificate is not verified\nfailed: cannot connect to 127.0.0.1:${closed}: ECONNREFUSED (connection refused)\n`,
      });
      const unknown = await connect(['no-such-host.invalid:443', '--name', NAME, '--cert', file('client.pem'), '--key', file('client.key'), '--insecure']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain('failed: cannot connect to no-such-host.invalid:443: ENOTFOUND (no such host)\n');
    });

    it('--timeout: a server that accepts and never answers', async () => {
      const silent = net.createServer((socket) => socket.on('error', () => undefined));
      silent.listen(0, '127.0.0.1');
      await once(silent, 'listening');
      try {
        const port = (silent.address() as net.AddressInfo).port;
        const r = await connect(deviceArgs(port, '--insecure', '--timeout', '300'));
        expect(r.code).toBe(1);
        expect(r.stderr.split('\n')[1]).toBe(`failed: no TLS handshake with 127.0.0.1:${port} within 300 ms`);
      } finally {
        silent.close();
      }
    });
  });

  describe('dancegate connect against openssl s_server -trace (what goes on the wire)', () => {
    const deviceArgs = (port: number, ...more: string[]): string[] => [`127.0.0.1:${port}`, '--servername', SNI, '--name', NAME, '--cert', file('client.pem'), '--key', file('client.key'), ...more];
    /** One s_server connection (-rev: answers each line reversed); its trace once it exits. */
    async function sServer(extra: readonly string[]): Promise<{ port: number; trace: () => Promise<string> }> {
      const port = await freePort();
      const child = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', file('server.pem'), '-key', file('server.key'), '-trace', '-rev', '-naccept', '1', ...extra], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = once(child, 'exit');
      process.once('exit', () => child.kill('SIGKILL'));
      // It prints ACCEPT once listening (probing the port would use up its one connection).
      await waitUntil('openssl s_server to listen', () => out.includes('ACCEPT'), 10_000);
      return {
        port,
        trace: async () => {
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
          return out;
        },
      };
    }

    it('form certificate: a CertificateRequest without dane_clientid gets a Certificate without it, and the ClientHello has none', async () => {
      const server = await sServer(['-Verify', '1']);
      const r = await connect(deviceArgs(server.port, '--ca', file('server-ca.pem')), 'abc\n');
      const trace = await server.trace();
      expect(r.stderr).toMatch(/^connected: TLSv1\.3, TLS_[A-Z0-9_]+, alpn none, name sent in certificate if asked\n$/);
      expect(r.code).toBe(0);
      expect(r.stdout.toString()).toBe('cba\n');
      expect(trace).toContain('certificate_list'); // the client did send its Certificate
      expect(trace).not.toContain('UNKNOWN(65500)');
    });

    it('form clienthello: the extension is in the ClientHello (the check above can fail)', async () => {
      const server = await sServer(['-Verify', '1']);
      const r = await connect(deviceArgs(server.port, '--ca', file('server-ca.pem'), '--form', 'clienthello'), 'abc\n');
      const trace = await server.trace();
      expect(r.stderr).toMatch(/^connected: TLSv1\.3, TLS_[A-Z0-9_]+, alpn none, name sent in clienthello\n$/);
      expect(r.code).toBe(0);
      expect(trace).toContain(`extension_type=UNKNOWN(65500), length=${NAME.length + 1}`);
    });
  });
}
