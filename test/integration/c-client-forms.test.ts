/**
 * The C dane_clientid test client (test/lab/c/dane-clientid-client.c) puts
 * the extension where each FORM says, and nowhere else, as seen by a real
 * `openssl s_server -trace` that requires a client certificate. s_server
 * never asks for dane_clientid in its CertificateRequest, so the draft -13
 * form ("certificate") must send it nowhere: OpenSSL only adds a Certificate
 * extension the CertificateRequest carried. Exit codes and the parsed alert
 * are checked on real refusals (unknown_ca from -verify_return_error, a
 * protocol_version mismatch).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildDaneClientIdClient, parseAlert, runDaneClientIdClient, type DaneClientIdForm } from '../lab/c-client.js';
import { CA_EXTENSIONS, issue, LEAF_EXTENSIONS, type OpensslCert } from '../lab/openssl-chains.js';
import { stopProcess } from '../lab/process.js';

const run = promisify(execFile);
const EXT = 65280;
const NAME = 'dev.example.test';
/** The extension's body: one length byte, then the name. */
const EXT_LINE = `extension_type=UNKNOWN(${EXT}), length=${NAME.length + 1}`;
const REQUEST = 'GET / HTTP/1.0\r\n\r\n';

interface TraceRecord {
  readonly direction: 'Received' | 'Sent';
  readonly text: string;
}

/** s_server's -trace output split into records, each with its direction as seen by the server. */
function records(trace: string): TraceRecord[] {
  const out: TraceRecord[] = [];
  const re = /^(Received|Sent) Record$/gm;
  const starts = [...trace.matchAll(re)];
  starts.forEach((m, i) => {
    const end = i + 1 < starts.length ? (starts[i + 1]?.index ?? trace.length) : trace.length;
    out.push({ direction: m[1] as 'Received' | 'Sent', text: trace.slice(m.index, end) });
  });
  return out;
}

function message(trace: string, direction: 'Received' | 'Sent', name: string): string {
  const found = records(trace).filter((r) => r.direction === direction && new RegExp(`^ {4}${name}, Length=\\d+$`, 'm').test(r.text));
  expect(found.length, `${direction} ${name} records`).toBe(1);
  return found[0]?.text ?? '';
}

/** The version the server chose, from its ServerHello. */
function negotiated(trace: string): 'TLSv1.2' | 'TLSv1.3' | 'unknown' {
  const hello = message(trace, 'Sent', 'ServerHello');
  if (/extension_type=supported_versions\(43\), length=2\n\s+TLS 1\.3 \(772\)/.test(hello)) return 'TLSv1.3';
  if (/server_version=0x303 \(TLS 1\.2\)/.test(hello) && !hello.includes('supported_versions')) return 'TLSv1.2';
  return 'unknown';
}

describe('the C dane_clientid client against openssl s_server', () => {
  let dir: string;
  let client: OpensslCert;
  let stranger: OpensslCert;
  let server: OpensslCert;
  let ca: OpensslCert;
  let children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-cforms-'));
    ca = await issue(dir, { name: 'ca', subject: '/CN=forms test CA', extensions: CA_EXTENSIONS });
    server = await issue(dir, {
      name: 'server',
      subject: '/CN=server.test',
      issuer: ca,
      extensions: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth', 'subjectAltName=DNS:server.test'],
    });
    client = await issue(dir, { name: 'client', subject: `/CN=${NAME}`, issuer: ca, extensions: LEAF_EXTENSIONS(NAME) });
    const otherCa = await issue(dir, { name: 'other-ca', subject: '/CN=another CA', extensions: CA_EXTENSIONS });
    stranger = await issue(dir, { name: 'stranger', subject: `/CN=${NAME}`, issuer: otherCa, extensions: LEAF_EXTENSIONS(NAME) });
    await buildDaneClientIdClient();
  });
  afterEach(async () => {
    await Promise.all(children.map((c) => stopProcess(c)));
    children = [];
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  /**
   * One s_server for one connection (-naccept 1), so it exits by itself and
   * its trace file is complete; the port comes from its "ACCEPT" line.
   */
  async function sServer(version: 'tls1_2' | 'tls1_3', opts: { returnError?: boolean } = {}): Promise<{ port: number; trace: () => Promise<string> }> {
    const traceFile = join(dir, `trace-${Date.now()}-${Math.random().toString(36).slice(2)}.txt`);
    const args = ['s_server', '-accept', '127.0.0.1:0', '-naccept', '1', '-www', `-${version}`, '-cert', server.certFile, '-key', server.keyFile];
    args.push('-CAfile', ca.certFile, '-no-CApath', '-no-CAstore', '-Verify', '1', '-trace', '-msgfile', traceFile);
    if (opts.returnError === true) args.push('-verify_return_error');
    const child = spawn('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const exited = once(child, 'exit');
    let output = '';
    const port = await new Promise<number>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        const m = /^ACCEPT 127\.0\.0\.1:(\d+)$/m.exec(output);
        if (m?.[1] !== undefined) resolve(Number(m[1]));
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => reject(new Error(`s_server exited (${code}) before listening: ${output}`)));
    });
    return {
      port,
      trace: async () => {
        await exited;
        return readFile(traceFile, 'utf8');
      },
    };
  }

  const connect = (port: number, form: DaneClientIdForm | undefined, opts: { name?: string; cert?: OpensslCert } = {}) =>
    runDaneClientIdClient({
      port,
      sni: 'server.test',
      extensionType: EXT,
      name: opts.name ?? NAME,
      certFile: (opts.cert ?? client).certFile,
      keyFile: (opts.cert ?? client).keyFile,
      request: REQUEST,
      ...(form === undefined ? {} : { form }),
    });

  it.each([
    ['no FORM (hello12 by default)', undefined],
    ['hello12', 'hello12'],
  ] as const)('%s: the name is in a TLS 1.2 ClientHello', async (_label, form) => {
    const s = await sServer('tls1_2');
    const r = await connect(s.port, form);
    expect(r.code).toBe(0);
    expect(r.alert).toBeUndefined();
    expect(r.stdout.startsWith('HTTP/1.0 200 ok\r\n')).toBe(true);
    const trace = await s.trace();
    const hello = message(trace, 'Received', 'ClientHello');
    expect(hello).toContain(EXT_LINE);
    expect(hello).not.toContain('supported_versions');
    expect(negotiated(trace)).toBe('TLSv1.2');
    expect(trace.split(`(${EXT})`).length - 1).toBe(1);
    // The client did present its certificate when asked.
    expect(message(trace, 'Sent', 'CertificateRequest')).toMatch(/CertificateRequest, Length=\d+/);
    expect(message(trace, 'Received', 'Certificate')).toContain('ASN.1Cert, length=');
  });

  it('hello13: the name is in a TLS 1.3 ClientHello that offers only TLS 1.3', async () => {
    const s = await sServer('tls1_3');
    const r = await connect(s.port, 'hello13');
    expect(r.code).toBe(0);
    expect(r.alert).toBeUndefined();
    expect(r.stdout.startsWith('HTTP/1.0 200 ok\r\n')).toBe(true);
    const trace = await s.trace();
    const hello = message(trace, 'Received', 'ClientHello');
    expect(hello).toContain(EXT_LINE);
    expect(hello).toMatch(/extension_type=supported_versions\(43\), length=3\n\s+TLS 1\.3 \(772\)\n/);
    expect(negotiated(trace)).toBe('TLSv1.3');
    expect(trace.split(`(${EXT})`).length - 1).toBe(1);
  });

  it('hello13 with NAME "-" sends the empty ClientName (one zero length byte)', async () => {
    const s = await sServer('tls1_3');
    const r = await connect(s.port, 'hello13', { name: '' });
    expect(r.code).toBe(0);
    const hello = message(await s.trace(), 'Received', 'ClientHello');
    expect(hello).toMatch(new RegExp(`extension_type=UNKNOWN\\(${EXT}\\), length=1\\n\\s+0000 - 00 `));
  });

  it.each(['certificate', 'none'] as const)('%s: TLS 1.3 and no dane_clientid anywhere (s_server never asks for it)', async (form) => {
    const s = await sServer('tls1_3');
    const r = await connect(s.port, form);
    expect(r.code).toBe(0);
    expect(r.alert).toBeUndefined();
    expect(r.stdout.startsWith('HTTP/1.0 200 ok\r\n')).toBe(true);
    const trace = await s.trace();
    expect(negotiated(trace)).toBe('TLSv1.3');
    expect(trace).not.toContain(`(${EXT})`);
    expect(message(trace, 'Received', 'ClientHello')).not.toContain('UNKNOWN(');
    expect(message(trace, 'Sent', 'CertificateRequest')).not.toContain('UNKNOWN(');
    // The client's Certificate: one entry, and that entry carries no extensions.
    const certificate = message(trace, 'Received', 'Certificate');
    expect(certificate.split('ASN.1Cert, length=').length - 1).toBe(1);
    expect(certificate).toMatch(/-----END CERTIFICATE-----\n-+\n\s+No extensions\n/);
  });

  it('a TLS 1.2 handshake refused by the server exits 2 with the alert (unknown_ca)', async () => {
    const s = await sServer('tls1_2', { returnError: true });
    const r = await connect(s.port, 'hello12', { cert: stranger });
    expect(r.code).toBe(2);
    expect(r.alert).toBe(48);
    expect(r.stderr).toMatch(/^alert: unknown_ca \(48\)$/m);
    expect(r.stderr).toContain('tlsv1 alert unknown ca');
    expect(r.stdout).toBe('');
    expect(message(await s.trace(), 'Received', 'ClientHello')).toContain(EXT_LINE);
  });

  it.each(['certificate', 'hello13', 'none'] as const)('%s: a TLS 1.3 client refused after its handshake exits 3 with the alert on its first read', async (form) => {
    const s = await sServer('tls1_3', { returnError: true });
    const r = await connect(s.port, form, { cert: stranger });
    expect(r.code).toBe(3);
    expect(r.alert).toBe(48);
    expect(r.stderr).toMatch(/^first read failed after the handshake \(TLSv1\.3\)\nalert: unknown_ca \(48\)\n/m);
    expect(r.stdout).toBe('');
    await s.trace();
  });

  it.each([
    ['hello13', 'tls1_2'],
    ['certificate', 'tls1_2'],
    ['none', 'tls1_2'],
    ['hello12', 'tls1_3'],
  ] as const)('%s against a %s-only server fails the handshake with protocol_version (70), exit 2', async (form, version) => {
    const s = await sServer(version);
    const r = await connect(s.port, form);
    expect(r.code).toBe(2);
    expect(r.alert).toBe(70);
    expect(r.stderr).toMatch(/^handshake failed\nalert: protocol_version \(70\)\n/m);
    await s.trace();
  });

  it('a usage error exits 1 without connecting', async () => {
    const binary = await buildDaneClientIdClient();
    const s = await sServer('tls1_3');
    const runIt = async (argv: string[]): Promise<{ code: number; stderr: string }> => {
      try {
        await run(binary, argv, { timeout: 10_000 });
        return { code: 0, stderr: '' };
      } catch (err) {
        const e = err as { code: number; stderr: string };
        return { code: e.code, stderr: e.stderr };
      }
    };
    const base = ['127.0.0.1', String(s.port), 'server.test', String(EXT), NAME, client.certFile, client.keyFile, REQUEST];
    expect(await runIt([...base, 'tls13'])).toEqual({ code: 1, stderr: "unknown FORM 'tls13' (hello12, hello13, certificate, none)\n" });
    expect((await runIt(base.slice(0, 6))).code).toBe(1);
    expect((await runIt(['127.0.0.1', String(s.port), 'server.test', '70000', NAME, client.certFile, client.keyFile])).code).toBe(1);
    expect((await runIt(['127.0.0.1', String(s.port), 'server.test', String(EXT), 'x'.repeat(256), client.certFile, client.keyFile])).code).toBe(1);
    // None of them connected: the one connection s_server takes is still free.
    const r = await connect(s.port, 'none');
    expect(r.code).toBe(0);
    expect(negotiated(await s.trace())).toBe('TLSv1.3');
  });

  it("parseAlert reads only the client's own line", () => {
    expect(parseAlert('handshake failed\nalert: certificate_required (116)\n40E7:error:0A00045C:SSL routines\n')).toBe(116);
    expect(parseAlert('alert: handshake_failure (40)')).toBe(40);
    expect(parseAlert('handshake failed\n40E7:error:0A000410:SSL routines::sslv3 alert handshake failure:SSL alert number 40\n')).toBeUndefined();
    expect(parseAlert('')).toBeUndefined();
  });
});
