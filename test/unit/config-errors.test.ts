/**
 * Configuration errors an operator can act on: DER certificate and key
 * files are read as bytes; identity header names that a backend would read
 * as one header are refused; YAML syntax errors carry line and column; an
 * unknown key names the nearest known one; allow and local TLSA files report
 * every bad line (bounded); `tlsa --name` takes a wildcard owner; and what
 * `serve` would fail on at start (addresses that overlap, a log file it
 * cannot write) `config check` refuses too.
 */
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { runCli } from '../../src/cli/cli.js';
import { bindOverlap } from '../../src/config/bind-overlap.js';
import { headerKey, identityHeaderCollisions } from '../../src/config/header-name.js';
import { allowedKeysAt, editDistance, nearestKey } from '../../src/config/key-suggestion.js';
import { ConfigError, HTTP_DEFAULTS, MAX_PKI_FILE_BYTES, parseConfigText } from '../../src/config/load.js';
import { logFileProblem } from '../../src/config/log-destination.js';
import { rewriteIdentityHeaders } from '../../src/forward/http-headers.js';
import type { HttpModeConfig } from '../../src/config/types.js';
import { z } from 'zod';

const run = promisify(execFile);
const A = 'aa'.repeat(32);

let dir: string;
let server: IssuedCertificate;
let ca: IssuedCertificate;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-config-errors-'));
  ca = await createCertificate({ commonName: 'ca', isCA: true });
  server = await createCertificate({ commonName: 'api', dnsNames: ['api.example.test'], issuer: ca, extendedKeyUsage: 'server' });
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  await writeFile(join(dir, 'ca.pem'), ca.certPem);
  // DER files made by openssl, not by our code.
  await run('openssl', ['x509', '-in', join(dir, 'server.pem'), '-outform', 'DER', '-out', join(dir, 'server.der')]);
  await run('openssl', ['x509', '-in', join(dir, 'ca.pem'), '-outform', 'DER', '-out', join(dir, 'ca.der')]);
  await run('openssl', ['pkey', '-in', join(dir, 'server.key'), '-outform', 'DER', '-out', join(dir, 'server.key.der')]);
  await run('openssl', ['ec', '-in', join(dir, 'server.key'), '-outform', 'DER', '-out', join(dir, 'server.sec1.der')]);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const source = (): string => join(dir, 'dancegate.yaml');

const MINIMAL = `
resolver:
  servers:
    - address: 127.0.0.1:5353
listeners:
  - name: api
    listen: 127.0.0.1:8443
    mode: http
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - upstream: http://127.0.0.1:8080
        allow: ['*._device.example.test']
`;

function replace(from: string, to: string, text = MINIMAL): string {
  if (!text.includes(from)) throw new Error(`fixture does not contain ${from}`);
  return text.replace(from, to);
}

async function problemsOf(text: string): Promise<readonly string[]> {
  try {
    await parseConfigText(text, source());
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => p.replaceAll(dir, 'DIR'));
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('files the configuration names are read bounded', () => {
  it('a FIFO as certFile is refused at once (it would block the loader and every later reload)', async () => {
    const fifo = join(dir, 'cert.fifo');
    execFileSync('mkfifo', [fifo]);
    try {
      const started = Date.now();
      const problems = await problemsOf(replace('certFile: server.pem', 'certFile: cert.fifo'));
      expect(problems).toEqual(['listeners[0].tls.certificates[0].certFile: DIR/cert.fifo is not a regular file']);
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await rm(fifo, { force: true });
    }
  });

  it('a certFile over MAX_PKI_FILE_BYTES is refused before it is read', async () => {
    const big = join(dir, 'big.pem');
    await writeFile(big, Buffer.alloc(MAX_PKI_FILE_BYTES + 1, 0x41));
    try {
      expect(await problemsOf(replace('certFile: server.pem', 'certFile: big.pem'))).toEqual([
        `listeners[0].tls.certificates[0].certFile: DIR/big.pem is larger than ${MAX_PKI_FILE_BYTES} bytes (${MAX_PKI_FILE_BYTES + 1})`,
      ]);
    } finally {
      await rm(big, { force: true });
    }
  });
});

describe('DER certificate and key files', () => {
  const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

  it.each([
    ['a DER certFile', 'server.der', 'server.key'],
    ['a DER certFile and a DER PKCS#8 keyFile', 'server.der', 'server.key.der'],
    ['a DER SEC1 keyFile', 'server.pem', 'server.sec1.der'],
  ])('%s is accepted, and handed on as PEM', async (_label, certFile, keyFile) => {
    const config = await parseConfigText(replace('certFile: server.pem\n          keyFile: server.key', `certFile: ${certFile}\n          keyFile: ${keyFile}`), source());
    const [cert] = config.listeners[0]?.certificates ?? [];
    expect(cert?.certPem).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(fingerprint(cert?.certPem ?? '')).toBe(fingerprint(server.certPem));
    expect(cert?.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  it('a DER pkixCaFile and a DER upstream caFile are accepted', async () => {
    const text = replace('          keyFile: server.key\n', '          keyFile: server.key\n      pkixCaFile: ca.der\n')
      .replace('http://127.0.0.1:8080', 'https://127.0.0.1:8080')
      .replace("allow: ['*._device.example.test']", "allow: ['*._device.example.test']\n        upstreamTls: { caFile: ca.der }");
    const config = await parseConfigText(text, source());
    expect(config.listeners[0]?.pkixRoots.map((c) => c.sha256Hex)).toEqual([createHash('sha256').update(ca.der).digest('hex')]);
    expect(fingerprint(config.listeners[0]?.routes[0]?.upstreams.targets[0]?.tls?.caPem ?? '')).toBe(fingerprint(ca.certPem));
  });

  it.each([
    [
      'bytes that are neither',
      'garbage.bin',
      Buffer.from([0x30, 0x82, 0xff, 0xff, 0x01]),
      'certFile',
      `listeners[0].tls.certificates[0].certFile: ${join('DIR', 'garbage.bin')}: neither PEM nor DER: `,
    ],
    [
      'a key that is neither',
      'garbage.key',
      Buffer.from('not a key'),
      'keyFile',
      `listeners[0].tls.certificates[0].keyFile: ${join('DIR', 'garbage.key')} does not hold a private key (PEM or DER: unencrypted PKCS#8, PKCS#1 or SEC1)`,
    ],
  ])('%s is refused by name', async (_label, file, bytes, key, expected) => {
    await writeFile(join(dir, file), bytes);
    const text = key === 'certFile' ? replace('certFile: server.pem', `certFile: ${file}`) : replace('keyFile: server.key', `keyFile: ${file}`);
    const problems = await problemsOf(text);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(expected);
  });
});

describe('identity header names a backend would read as one header', () => {
  it.each([
    ['x-dane-client-id', 'X-Dane-Client-Id'],
    ['x-client', 'X_Client'],
    ['x-a-b', 'x_A-b'],
  ])('headerKey(%s) = headerKey(%s)', (a, b) => {
    expect(headerKey(a)).toBe(headerKey(b));
    expect(headerKey(b)).toBe(a);
  });

  const base = { identityHeader: 'X-Dane-Client-Id', statusHeader: 'X-Dane-Status', forwardClientCert: false, forwardXfcc: false };
  const same = "(header names are compared ignoring case, and '_' is the same as '-')";
  it.each<[string, Partial<typeof base> & { tlsaHeader?: string }, Array<[string, string]>]>([
    ['distinct names', {}, []],
    ["'_' and '-'", { identityHeader: 'X-Client', statusHeader: 'X_Client' }, [['statusHeader', `statusHeader 'X_Client' is the same header as identityHeader 'X-Client' ${same}`]]],
    ['case', { statusHeader: 'x-dane-client-id' }, [['statusHeader', `statusHeader 'x-dane-client-id' is the same header as identityHeader 'X-Dane-Client-Id' ${same}`]]],
    ['the TLSA header', { tlsaHeader: 'X_DANE_STATUS' }, [['tlsaHeader', `tlsaHeader 'X_DANE_STATUS' is the same header as statusHeader 'X-Dane-Status' ${same}`]]],
    [
      'Client-Cert when forwarded',
      { identityHeader: 'client_cert', forwardClientCert: true },
      [['identityHeader', `the Client-Cert header that forwardClientCert adds is the same header as identityHeader 'client_cert' ${same}`]],
    ],
    ['Client-Cert when not forwarded', { identityHeader: 'client_cert' }, []],
    [
      'XFCC when forwarded',
      { statusHeader: 'X-Forwarded-Client-Cert', forwardXfcc: true },
      [['statusHeader', `the X-Forwarded-Client-Cert header that forwardXfcc adds is the same header as statusHeader 'X-Forwarded-Client-Cert' ${same}`]],
    ],
  ])('identityHeaderCollisions: %s', (_label, change, expected) => {
    expect(identityHeaderCollisions({ ...base, ...change })).toEqual(expected);
  });

  it('the loader refuses X-Client beside X_Client, naming both keys', async () => {
    const problems = await problemsOf(replace('    mode: http\n', '    mode: http\n    http: { identityHeader: X-Client, statusHeader: X_Client }\n'));
    expect(problems).toEqual([`listeners[0].http.statusHeader: statusHeader 'X_Client' is the same header as identityHeader 'X-Client' ${same}`]);
  });

  it('the forwarder treats them as one header too: a client-sent X_Client is stripped when identityHeader is X-Client', () => {
    const config: HttpModeConfig = { ...HTTP_DEFAULTS, identityHeader: 'X-Client', statusHeader: 'X-Status', tlsaHeader: undefined };
    const headers: Record<string, string> = { host: 'api.example.test', x_client: 'forged', 'x-status': 'forged' };
    rewriteIdentityHeaders(
      headers,
      {
        name: 'a._device.example.test',
        status: 'authenticated',
        certificateDer: undefined,
        certificateSha256Hex: undefined,
        certificateSubject: undefined,
        tlsa: undefined,
        clientAddress: '192.0.2.1',
      },
      config,
    );
    expect(headers.x_client).toBeUndefined();
    expect(headers['x-client']).toBe('a._device.example.test');
    expect(headers['x-status']).toBe('authenticated');
  });
});

describe('YAML syntax errors carry line and column', () => {
  it.each([
    ['an unclosed flow sequence', 'resolver:\n  servers: [\n', ['YAML syntax at line 3, column 1: ']],
    ['a duplicate key', `${MINIMAL}resolver: {}\n`, [`YAML syntax at line ${MINIMAL.split('\n').length}, column 1: Map keys must be unique`]],
    ['a bad indent', 'listeners:\n  - name: a\n   mode: http\n', ['YAML syntax at line 3, column 1: Sequence item without - indicator']],
    ['a tab', 'resolver:\n\tservers: []\n', ['YAML syntax at line 2, column 1: ']],
  ])('%s', async (_label, text, expected) => {
    const problems = await problemsOf(text);
    expect(problems.length).toBeGreaterThan(0);
    for (const fragment of expected)
      expect(
        problems.some((p) => p.startsWith(fragment)),
        `${JSON.stringify(problems)} should start with ${fragment}`,
      ).toBe(true);
  });
});

describe('an unknown key names the nearest known one', () => {
  it.each([
    ['editDistance', 'listners', 'listeners', 1],
    ['editDistance', 'tsl', 'tls', 1],
    ['editDistance', 'CertFile', 'certFile', 0],
    ['editDistance', 'abc', '', 3],
    ['editDistance', 'kitten', 'sitting', 3],
  ])('%s(%s, %s) = %i', (_f, a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });

  it.each([
    ['listners', ['listeners', 'limits', 'log'], 'listeners'],
    ['polcy', ['policy', 'listen'], 'policy'],
    ['frobnicate', ['listeners', 'limits'], undefined],
    ['lg', ['log', 'listeners'], 'log'],
    ['x', ['log'], undefined],
    ['maxEntry', ['maxEntries', 'maxTlsaRecords'], 'maxEntries'],
    ['mode', ['mode', 'node'], 'mode'],
  ])('nearestKey(%s)', (key, allowed, expected) => {
    expect(nearestKey(key, allowed)).toBe(expected);
  });

  it('allowedKeysAt walks objects, arrays, defaults and unions', () => {
    const schema = z.strictObject({
      a: z.array(z.strictObject({ b: z.strictObject({ c: z.number() }).default({ c: 1 }) })),
      u: z.union([z.literal(false), z.strictObject({ x: z.number(), y: z.number() })]).optional(),
    });
    expect(allowedKeysAt(schema, [])).toEqual(['a', 'u']);
    expect(allowedKeysAt(schema, ['a', 3])).toEqual(['b']);
    expect(allowedKeysAt(schema, ['a', 0, 'b'])).toEqual(['c']);
    expect(allowedKeysAt(schema, ['u'])).toEqual(['x', 'y']);
    expect(allowedKeysAt(schema, ['nope'])).toEqual([]);
  });

  it.each([
    ['top level', `${MINIMAL}listners: []\n`, '(top level): Unrecognized key: "listners" (did you mean "listeners"?)'],
    ['a listener', replace('    mode: http\n', '    mode: http\n    polcy: optional\n'), 'listeners[0]: Unrecognized key: "polcy" (did you mean "policy"?)'],
    [
      'a resolver server',
      replace('    - address: 127.0.0.1:5353\n', '    - address: 127.0.0.1:5353\n      transprot: tcp\n'),
      'resolver.servers[0]: Unrecognized key: "transprot" (did you mean "transport"?)',
    ],
    [
      'a certificate',
      replace('          keyFile: server.key\n', '          keyFile: server.key\n          serverName: [a.example]\n'),
      'listeners[0].tls.certificates[0]: Unrecognized key: "serverName" (did you mean "serverNames"?)',
    ],
    [
      'a route',
      replace('      - upstream: http://127.0.0.1:8080\n', '      - upstream: http://127.0.0.1:8080\n        alowFile: x.txt\n'),
      'listeners[0].routes[0]: Unrecognized key: "alowFile" (did you mean "allowFile"?)',
    ],
    ['the resolver cache', replace('  servers:\n', '  cache: { maxEntry: 5 }\n  servers:\n'), 'resolver.cache: Unrecognized key: "maxEntry" (did you mean "maxEntries"?)'],
    [
      'an object inside a union (penaltyBox)',
      `${MINIMAL}limits: { penaltyBox: { failurs: 3, windowMs: 1000, banMs: 1000 } }\n`,
      'limits.penaltyBox: Unrecognized key: "failurs" (did you mean "failures"?)',
    ],
    ['admin (a union)', `${MINIMAL}admin: { lisen: 127.0.0.1:9000 }\n`, 'admin: Unrecognized key: "lisen" (did you mean "listen"?)'],
    ['nothing near', `${MINIMAL}frobnicate: 1\n`, '(top level): Unrecognized key: "frobnicate"'],
  ])('%s', async (_label, text, expected) => {
    expect(await problemsOf(text)).toContain(expected);
  });

  it('two unknown keys in one object are two problems', async () => {
    const problems = await problemsOf(`${MINIMAL}listner: []\nworkrs: 2\n`);
    expect(problems).toEqual(['(top level): Unrecognized key: "listner" (did you mean "listeners"?)', '(top level): Unrecognized key: "workrs" (did you mean "workers"?)']);
  });
});

describe('allowFile and localTlsaFile report every bad line', () => {
  it('an allow file with three bad lines: three problems, each with its line', async () => {
    await writeFile(join(dir, 'three-bad.txt'), 'ok.example.test\nbad..example\n# fine\n*\na.*.example.test\n');
    const problems = await problemsOf(replace("allow: ['*._device.example.test']", 'allowFile: three-bad.txt'));
    const file = join('DIR', 'three-bad.txt');
    expect(problems).toEqual([
      `listeners[0].routes[0].allowFile: ${file}, line 2: invalid allowlist pattern "bad..example": label 2 is empty`,
      `listeners[0].routes[0].allowFile: ${file}, line 4: invalid allowlist pattern "*": '*' alone would allow every name; list names or '*.suffix' patterns`,
      `listeners[0].routes[0].allowFile: ${file}, line 5: invalid allowlist pattern "a.*.example.test": a wildcard is only allowed as the whole first label, as in '*.example.com'`,
    ]);
  });

  it('an allow file of 25 bad lines: the first 20, then how many more', async () => {
    await writeFile(join(dir, 'many-bad.txt'), Array.from({ length: 25 }, (_, i) => `bad${i}..example`).join('\n'));
    const problems = await problemsOf(replace("allow: ['*._device.example.test']", 'allowFile: many-bad.txt'));
    expect(problems).toHaveLength(21);
    expect(problems[19]).toBe(`listeners[0].routes[0].allowFile: ${join('DIR', 'many-bad.txt')}, line 20: invalid allowlist pattern "bad19..example": label 2 is empty`);
    expect(problems[20]).toBe(`listeners[0].routes[0].allowFile: ${join('DIR', 'many-bad.txt')}: and 5 more bad lines`);
  });

  it('a local TLSA file with two bad lines: two problems', async () => {
    await writeFile(join(dir, 'pins-bad.txt'), `a.example.test TLSA 3 1 1 ${A}\nb..example TLSA 3 1 1 ${A}\nc.example.test TLSA 3 1 1 zz\n`);
    const problems = await problemsOf(replace('  servers:\n    - address: 127.0.0.1:5353\n', '  localTlsaFile: pins-bad.txt\n'));
    const file = join('DIR', 'pins-bad.txt');
    expect(problems).toHaveLength(2);
    expect(problems[0]).toBe(`resolver.localTlsaFile: ${file}, line 2: owner name "b..example" is invalid: label 2 is empty`);
    expect(problems[1]).toMatch(new RegExp(`^resolver\\.localTlsaFile: ${file.replaceAll('.', '\\.')}, line 3: `));
  });
});

describe('dancegate tlsa --name', () => {
  async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await runCli(argv, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } });
    return { code, stdout, stderr };
  }

  it.each([
    ['*._device.example.com', '*._device.example.com.'],
    ['*._Device.Example.COM.', '*._device.example.com.'],
    ['sensor7._device.example.com', 'sensor7._device.example.com.'],
  ])('%s is the owner %s', async (name, owner) => {
    const result = await cli('tlsa', '--cert', join(dir, 'server.pem'), '--name', name);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(new RegExp(`^${owner.replaceAll('.', '\\.').replace('*', '\\*')} IN TLSA 3 1 1 [0-9a-f]{64}\\n$`));
  });

  it.each([
    ['*', "--name: a wildcard is only allowed as the whole leftmost label, as in '*._device.example.com'"],
    ['a.*.example.com', "--name: a wildcard is only allowed as the whole leftmost label, as in '*._device.example.com'"],
    ['*foo.example.com', "--name: a wildcard is only allowed as the whole leftmost label, as in '*._device.example.com'"],
    ['*.*.example.com', "--name: a wildcard is only allowed as the whole leftmost label, as in '*._device.example.com'"],
    ['*..example.com', '--name: label 1 is empty'],
    ['bad..name', '--name: label 2 is empty'],
  ])('%s is refused: %s', async (name, message) => {
    const result = await cli('tlsa', '--cert', join(dir, 'server.pem'), '--name', name);
    expect(result).toEqual({ code: 2, stdout: '', stderr: `dancegate: ${message}\n` });
  });
});

describe('config check refuses what serve would fail on at start', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1', 'the same address'],
    ['0.0.0.0', '127.0.0.1', "'0.0.0.0' takes the port on every IPv4 address, 127.0.0.1 included"],
    ['127.0.0.1', '0.0.0.0', "'0.0.0.0' takes the port on every IPv4 address, 127.0.0.1 included"],
    ['::', '127.0.0.1', "'::' takes the port on every IPv6 and IPv4 address, 127.0.0.1 included"],
    ['0.0.0.0', '::', "'::' takes the port on every IPv6 and IPv4 address, 0.0.0.0 included"],
    ['::1', '0:0:0::1', 'the same address'],
    ['::', '::1', "'::' takes the port on every IPv6 and IPv4 address, ::1 included"],
    ['127.0.0.1', '127.0.0.2', undefined],
    ['::1', '127.0.0.1', undefined],
    ['0.0.0.0', '::1', undefined],
  ])('bindOverlap(%s, %s) on one port = %s, as the kernel says', async (a, b, expected) => {
    // Find a port free on both, bind the first, then try the second: the kernel's verdict.
    const first = net.createServer();
    await new Promise<void>((resolve, reject) => first.once('error', reject).listen(0, a, resolve));
    const port = (first.address() as net.AddressInfo).port;
    const second = net.createServer();
    const code = await new Promise<string>((resolve) => {
      second.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      second.listen(port, b, () => resolve('ok'));
    });
    await new Promise<void>((resolve) => second.close(() => resolve()));
    await new Promise<void>((resolve) => first.close(() => resolve()));
    expect(bindOverlap({ host: a, port }, { host: b, port })).toBe(expected);
    expect(code).toBe(expected === undefined ? 'ok' : 'EADDRINUSE');
    expect(bindOverlap({ host: a, port: 0 }, { host: b, port: 0 })).toBeUndefined();
    expect(bindOverlap({ host: a, port }, { host: b, port: port === 65535 ? 1 : port + 1 })).toBeUndefined();
  });

  const second = (listen: string): string =>
    `${MINIMAL}  - name: other\n    listen: "${listen}"\n    mode: tcp\n    tls:\n      certificates:\n        - certFile: server.pem\n          keyFile: server.key\n    routes:\n      - upstream: tcp://127.0.0.1:9000\n        allow: [a.example.test]\n`;

  it.each([
    ['0.0.0.0:8443', ["listeners[1].listen: 0.0.0.0:8443 overlaps listeners[0] (127.0.0.1:8443): '0.0.0.0' takes the port on every IPv4 address, 127.0.0.1 included"]],
    ['[::]:8443', ["listeners[1].listen: [::]:8443 overlaps listeners[0] (127.0.0.1:8443): '::' takes the port on every IPv6 and IPv4 address, 127.0.0.1 included"]],
    ['127.0.0.1:8443', ['listeners[1].listen: 127.0.0.1:8443 is already used by listeners[0]']],
    ['127.0.0.2:8443', []],
    ['0.0.0.0:8444', []],
    // A zone index: no crash (new URL() refuses '%' in a host), and an address of its own.
    ['[fe80::1%lo]:8443', []],
  ])('a second listener on %s', async (listen, expected) => {
    if (expected.length === 0) {
      await expect(parseConfigText(second(listen), source())).resolves.toBeDefined();
      return;
    }
    expect(await problemsOf(second(listen))).toEqual(expected);
  });

  it.each([
    ['fe80::1%lo', 'fe80:0::1%lo', 'the same address'],
    ['fe80::1%lo', 'fe80::1%eth0', undefined],
    ['fe80::1%lo', 'fe80::1', undefined],
    ['fe80::1%lo', '127.0.0.1', undefined],
    ['::', 'fe80::1%lo', "'::' takes the port on every IPv6 and IPv4 address, fe80::1%lo included"],
  ])('bindOverlap(%s, %s) with a zone index = %s', (a, b, expected) => {
    expect(bindOverlap({ host: a, port: 8443 }, { host: b, port: 8443 })).toBe(expected);
  });

  it('the admin listener on 0.0.0.0 beside a listener on 127.0.0.1, same port', async () => {
    expect(await problemsOf(`${MINIMAL}admin: { listen: "0.0.0.0:8443" }\n`)).toEqual([
      "admin.listen: 0.0.0.0:8443 overlaps listeners[0] (127.0.0.1:8443): '0.0.0.0' takes the port on every IPv4 address, 127.0.0.1 included",
    ]);
  });

  it.each([
    ['a path under a regular file', 'server.pem/x.log', `log.destination: cannot create ${join('DIR', 'server.pem', 'x.log')}: ${join('DIR', 'server.pem')} is not a directory`],
    ['a directory', '.', `log.destination: DIR is a directory; name a file`],
  ])('a log destination that cannot be written: %s', async (_label, destination, expected) => {
    expect(await problemsOf(`${MINIMAL}log: { destination: "${destination}" }\n`)).toEqual([expected]);
  });

  it('a log file in directories not made yet is fine, and checking creates nothing', async () => {
    const config = await parseConfigText(`${MINIMAL}log: { destination: new/dir/dancegate.log }\n`, source());
    expect(config.log.destination).toBe(join(dir, 'new', 'dir', 'dancegate.log'));
    await expect(stat(join(dir, 'new'))).rejects.toThrow('ENOENT');
    await mkdir(join(dir, 'logs'));
    expect(await logFileProblem(join(dir, 'logs', 'a.log'))).toBeUndefined();
    await writeFile(join(dir, 'logs', 'a.log'), '');
    expect(await logFileProblem(join(dir, 'logs', 'a.log'))).toBeUndefined();
  });

  it('dancegate config check exits 2 on overlapping listeners', async () => {
    await writeFile(source(), second('0.0.0.0:8443'));
    let stderr = '';
    const code = await runCli(['config', 'check', '-c', source()], { stdout: { write: () => undefined }, stderr: { write: (t: string) => (stderr += t) } });
    expect(code).toBe(2);
    expect(stderr).toContain('listeners[1].listen: 0.0.0.0:8443 overlaps listeners[0] (127.0.0.1:8443)');
  });
});

describe('tls.engine, identitySources and strict routes', () => {
  const ROUTE = "allow: ['*._device.example.test']";
  const engine = (value: string, text = MINIMAL): string => replace('          keyFile: server.key\n', `          keyFile: server.key\n      engine: ${value}\n`, text);
  const route = (settings: string, text = MINIMAL): string => replace(ROUTE, `${ROUTE}\n        ${settings}`, text);

  it.each(['auto', 'node', 'native'] as const)('tls.engine: %s is accepted', async (value) => {
    expect((await parseConfigText(engine(value), source())).listeners[0]?.engine).toBe(value);
  });

  it.each<[string, string, string[]]>([
    ['an unknown tls.engine', engine('openssl'), ['listeners[0].tls.engine: Invalid option: expected one of "auto"|"node"|"native"']],
    ['an empty identitySources', route('identitySources: []'), ['listeners[0].routes[0].identitySources: expected at least one of certificate-extension, clienthello-extension, san']],
    [
      'an unknown identity source',
      route('identitySources: [san, subject-cn]'),
      ['listeners[0].routes[0].identitySources[1]: Invalid option: expected one of "certificate-extension"|"clienthello-extension"|"san"'],
    ],
    ['a source named twice', route('identitySources: [san, clienthello-extension, san]'), ['listeners[0].routes[0].identitySources: names a source twice']],
    [
      'strict with the ClientHello form too',
      route('strict: true\n        identitySources: [certificate-extension, clienthello-extension]'),
      ['listeners[0].routes[0].identitySources: a strict route (draft -13) takes the name from the TLS 1.3 Certificate message only: [certificate-extension]'],
    ],
    [
      'strict with all three sources listed',
      route('strict: true\n        identitySources: [certificate-extension, clienthello-extension, san]'),
      ['listeners[0].routes[0].identitySources: a strict route (draft -13) takes the name from the TLS 1.3 Certificate message only: [certificate-extension]'],
    ],
    [
      'strict on node:tls (its one source needs the native engine too)',
      engine('node', route('strict: true\n        identitySources: [certificate-extension]')),
      [
        'listeners[0].routes[0].strict: needs the native TLS engine (tls.engine: native or auto): node:tls cannot ask for dane_clientid in its CertificateRequest',
        'listeners[0].routes[0].identitySources: certificate-extension alone needs the native TLS engine (tls.engine: native or auto): node:tls never asks for the name',
      ],
    ],
    [
      'strict on node:tls, sources left to the default',
      engine('node', route('strict: true')),
      [
        'listeners[0].routes[0].strict: needs the native TLS engine (tls.engine: native or auto): node:tls cannot ask for dane_clientid in its CertificateRequest',
        'listeners[0].routes[0].identitySources: certificate-extension alone needs the native TLS engine (tls.engine: native or auto): node:tls never asks for the name',
      ],
    ],
    [
      'strict on node:tls with the wrong sources: both problems',
      engine('node', route('strict: true\n        identitySources: [san]')),
      [
        'listeners[0].routes[0].identitySources: a strict route (draft -13) takes the name from the TLS 1.3 Certificate message only: [certificate-extension]',
        'listeners[0].routes[0].strict: needs the native TLS engine (tls.engine: native or auto): node:tls cannot ask for dane_clientid in its CertificateRequest',
      ],
    ],
    [
      'certificate-extension alone on node:tls',
      engine('node', route('identitySources: [certificate-extension]')),
      ['listeners[0].routes[0].identitySources: certificate-extension alone needs the native TLS engine (tls.engine: native or auto): node:tls never asks for the name'],
    ],
  ])('%s', async (_label, text, expected) => {
    expect(await problemsOf(text)).toEqual(expected);
  });

  it.each<[string, string]>([
    ['strict, certificate-extension, engine auto', route('strict: true\n        identitySources: [certificate-extension]')],
    ['strict, sources left to the default (certificate-extension)', route('strict: true')],
    ['strict, certificate-extension, engine native', engine('native', route('strict: true\n        identitySources: [certificate-extension]'))],
    ['certificate-extension alone on the native engine', engine('native', route('identitySources: [certificate-extension]'))],
    ['certificate-extension with san on node:tls (san still names the client)', engine('node', route('identitySources: [certificate-extension, san]'))],
  ])('accepted: %s', async (_label, text) => {
    await expect(parseConfigText(text, source())).resolves.toBeDefined();
  });
});
