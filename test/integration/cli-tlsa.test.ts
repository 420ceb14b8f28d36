import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');

async function dancegate(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The record computed by the openssl command line, independently of our code. */
async function opensslDigest(certPath: string, selector: 0 | 1, digest: 'sha256' | 'sha512'): Promise<string> {
  const script =
    selector === 1
      ? `openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -${digest} -binary | od -An -v -tx1 | tr -d ' \\n'`
      : `openssl x509 -in "$1" -outform DER | openssl dgst -${digest} -binary | od -An -v -tx1 | tr -d ' \\n'`;
  const { stdout } = await run('bash', ['-c', script, 'openssl-digest', certPath]);
  return stdout.trim();
}

describe('dancegate tlsa (built CLI) against openssl', () => {
  let dir: string;
  let certPath: string;
  let leaf: IssuedCertificate;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-cli-'));
    leaf = await createCertificate({ commonName: 'sensor7._device.example.test', dnsNames: ['sensor7._device.example.test'] });
    certPath = join(dir, 'client.pem');
    await writeFile(certPath, leaf.certPem);
    await writeFile(join(dir, 'client.key'), leaf.keyPem);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    [[], 3, 1, 1, 'sha256'],
    [['--usage', '3', '--selector', '0', '--mtype', '1'], 3, 0, 1, 'sha256'],
    [['--usage', '2', '--selector', '1', '--mtype', '2'], 2, 1, 2, 'sha512'],
    [['--selector', '0', '--mtype', '2'], 3, 0, 2, 'sha512'],
  ] as const)('%j prints the record openssl computes', async (args, usage, selector, mtype, digest) => {
    const result = await dancegate('tlsa', '--cert', certPath, ...args);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${usage} ${selector} ${mtype} ${await opensslDigest(certPath, selector, digest)}\n`);
  });

  it('prints the owner name first when --name is given (canonicalised)', async () => {
    const result = await dancegate('tlsa', '--cert', certPath, '--name', 'Sensor7._DEVICE.example.test.');
    expect(result.stdout).toBe(`sensor7._device.example.test. IN TLSA 3 1 1 ${await opensslDigest(certPath, 1, 'sha256')}\n`);
  });

  it("takes a wildcard owner, as the README's IoT example publishes", async () => {
    const result = await dancegate('tlsa', '--cert', certPath, '--usage', '2', '--selector', '1', '--mtype', '1', '--name', '*._device.example.test');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`*._device.example.test. IN TLSA 2 1 1 ${await opensslDigest(certPath, 1, 'sha256')}\n`);
  });

  it('prints the full certificate for matching type 0', async () => {
    const result = await dancegate('tlsa', '--cert', certPath, '--selector', '0', '--mtype', '0');
    expect(result.stdout).toBe(`3 0 0 ${leaf.der.toString('hex')}\n`);
  });

  it.each([
    [['tlsa'], '--cert FILE is required'],
    [['tlsa', '--cert', '/nonexistent.pem'], 'cannot read /nonexistent.pem: ENOENT'],
    [['tlsa', '--cert', 'KEY', '--usage', '4'], "--usage must be a number from 0 to 3, got '4'"],
    [['tlsa', '--cert', 'KEY', '--mtype', 'sha'], "--mtype must be a number from 0 to 2, got 'sha'"],
    [['tlsa', '--cert', 'KEY', '--name', 'bad..name'], '--name: label 2 is empty'],
    [['tlsa', '--cert', 'KEY', '--name', 'a.*.example.test'], "--name: a wildcard is only allowed as the whole leftmost label, as in '*._device.example.com'"],
    [['tlsa', '--bogus'], "Unknown option '--bogus'"],
    [['frobnicate'], "unknown command 'frobnicate'; see dancegate --help"],
    [['check', '--cert', 'x.pem'], 'exactly one NAME is required (dancegate check NAME --cert FILE)'],
    [['check', 'a..b', '--cert', 'x.pem'], 'NAME "a..b": label 2 is empty'],
    [['check', 'a.example.test', '--cert', 'CERT', '--resolver', '192.0.2.1:53'], 'cannot protect the AD bit'],
    [['check', 'a.example.test', '--cert', 'CERT', '--resolver', 'resolver.example:53'], 'host must be an IP address literal'],
    [['check', 'a.example.test', '--cert', 'CERT', '--transport', 'doh'], "--transport must be udp, tcp or tls, got 'doh'"],
  ])('%j is a usage error (exit 2): %s', async (args, message) => {
    const argv = args.map((a) => (a === 'KEY' ? join(dir, 'client.key') : a === 'CERT' ? certPath : a));
    const result = await dancegate(...argv);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
  });

  it('names the key file when a private key is passed as the certificate', async () => {
    const result = await dancegate('tlsa', '--cert', join(dir, 'client.key'));
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`dancegate: ${join(dir, 'client.key')}: PEM block 1 is 'PRIVATE KEY', expected 'CERTIFICATE' (is this the key file?)\n`);
  });

  it.each([['--help'], ['tlsa', '--help'], ['check', '--help']])('%j prints help and exits 0', async (...args) => {
    const result = await dancegate(...args);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^(dancegate: DANE|Usage: dancegate)/);
  });

  it('--version prints the package version', async () => {
    const { version } = (await import('../../package.json', { with: { type: 'json' } })).default;
    expect((await dancegate('--version')).stdout).toBe(`dancegate ${version}\n`);
  });
});
