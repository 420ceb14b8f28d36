/**
 * Rebuilds the seed corpus under fuzz/corpus/ from real tools (run with
 * `npm run fuzz:corpus`; the result is committed, no private key is kept):
 *  - client-hello: ClientHellos captured on a loopback listener from
 *    node:tls, openssl s_client, curl and the C client that sends
 *    dane_clientid (test/lab/c);
 *  - proxy-protocol: headers HAProxy sends (send-proxy, send-proxy-v2 with
 *    its SSL, AUTHORITY, UNIQUE_ID and CRC32C TLVs, behind a TLS frontend
 *    given a client certificate), the spec's v1 examples and dancegate's own
 *    outbound v2 header;
 *  - dns-response: Unbound's answers to dancegate's TLSA query in a real NSD +
 *    Unbound DNSSEC lab (secure, wildcard, CNAME, NXDOMAIN, NODATA, insecure,
 *    bogus with EDE);
 *  - certificate: certificates made by `openssl req`/`openssl x509` with
 *    many extensions (policies, AIA, CRL DP, name constraints, quoted SANs)
 *    and by the test PKI (certs/pki.ts).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import * as dgram from 'node:dgram';
import { createCertificate } from '../certs/pki.js';
import { encodeTlsaQuery } from '../src/lookup/tlsa-answer.js';
import { encodeProxyV1, encodeProxyV2 } from '../src/protocol/proxy-protocol.js';
import { startDnssecLab } from '../test/lab/dnssec-lab.js';
import { corpusDirectory, repositoryRoot } from './corpus.js';

const run = promisify(execFile);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Listen once on loopback, start the client, keep the first `enough(bytes)` bytes it sends
 * (or all of them when it closes), then stop it.
 */
async function captureFrom(start: (port: number) => ChildProcess | { destroy(): void }, enough: (b: Buffer) => number | undefined, host = '127.0.0.1'): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as net.AddressInfo).port;
  let client: ChildProcess | { destroy(): void } | undefined;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no capture within 15 s')), 15_000);
      server.on('connection', (socket) => {
        let bytes = Buffer.alloc(0);
        socket.on('error', () => undefined);
        socket.on('data', (chunk: Buffer) => {
          bytes = Buffer.concat([bytes, chunk]);
          const n = enough(bytes);
          if (n !== undefined) {
            clearTimeout(timer);
            socket.destroy();
            resolve(bytes.subarray(0, n));
          }
        });
      });
      client = start(port);
    });
  } finally {
    if (client !== undefined) {
      if ('kill' in client) client.kill('SIGKILL');
      else client.destroy();
    }
    server.close();
  }
}

/** Length of a complete ClientHello in TLS records at the start of `b` (independent of the parser under test). */
function helloLength(b: Buffer): number | undefined {
  let off = 0;
  let message = Buffer.alloc(0);
  while (off + 5 <= b.length) {
    const length = b.readUInt16BE(off + 3);
    if (off + 5 + length > b.length) return undefined;
    message = Buffer.concat([message, b.subarray(off + 5, off + 5 + length)]);
    off += 5 + length;
    if (message.length >= 4 && message.length >= 4 + message.readUIntBE(1, 3)) return off;
  }
  return undefined;
}

/** Every process and socket started here, ended when main() finishes. */
const started = new Set<ChildProcess | net.Socket>();

const quiet = (command: string, args: string[]): ChildProcess => {
  const child = spawn(command, args, { stdio: ['pipe', 'ignore', 'ignore'] });
  child.on('error', () => undefined);
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
};

async function clientHellos(work: string): Promise<Record<string, Buffer>> {
  const client = await createCertificate({ commonName: 'sensor7', dnsNames: ['sensor7._device.example.test'] });
  await writeFile(join(work, 'c.pem'), client.certPem);
  await writeFile(join(work, 'c.key'), client.keyPem);
  const binary = join(work, 'dane-clientid-client');
  await run('gcc', ['-O2', '-o', binary, join(repositoryRoot(), 'test/lab/c/dane-clientid-client.c'), '-lssl', '-lcrypto']);
  const nodeTls = (options: tls.ConnectionOptions) => (port: number) => tls.connect({ port, host: '127.0.0.1', ...options }).on('error', () => undefined);
  return {
    'node-tls13-alpn': await captureFrom(nodeTls({ servername: 'api.example.test', ALPNProtocols: ['h2', 'http/1.1'] }), helloLength),
    'node-tls12-only': await captureFrom(nodeTls({ servername: 'a.example.test', maxVersion: 'TLSv1.2' }), helloLength),
    'openssl-default': await captureFrom((port) => quiet('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'radsec.example.test', '-alpn', 'radius/1.1']), helloLength),
    'openssl-tls12': await captureFrom((port) => quiet('openssl', ['s_client', '-tls1_2', '-connect', `127.0.0.1:${port}`, '-servername', 'mqtt.example.test']), helloLength),
    'openssl-tls13-no-sni': await captureFrom((port) => quiet('openssl', ['s_client', '-tls1_3', '-noservername', '-connect', `127.0.0.1:${port}`]), helloLength),
    curl: await captureFrom((port) => quiet('curl', ['-sk', '--max-time', '5', '--resolve', `api.example.test:${port}:127.0.0.1`, `https://api.example.test:${port}/`]), helloLength),
    'c-dane-clientid': await captureFrom(
      (port) => quiet(binary, ['127.0.0.1', String(port), 'gw.example.test', '65500', 'sensor7._device.example.test', join(work, 'c.pem'), join(work, 'c.key')]),
      helloLength,
    ),
    'c-dane-clientid-empty': await captureFrom((port) => quiet(binary, ['127.0.0.1', String(port), 'gw.example.test', '65500', '-', join(work, 'c.pem'), join(work, 'c.key')]), helloLength),
  };
}

/** Length of a PROXY header at the start of `b` (v1: through CRLF; v2: 16 + length), independent of the parser under test. */
function proxyLength(b: Buffer): number | undefined {
  if (b[0] === 0x0d) return b.length >= 16 && b.length >= 16 + b.readUInt16BE(14) ? 16 + b.readUInt16BE(14) : undefined;
  const end = b.indexOf('\r\n');
  return end < 0 ? undefined : end + 2;
}

async function haproxyHeaders(work: string): Promise<Record<string, Buffer>> {
  const ca = await createCertificate({ commonName: 'Fuzz CA', isCA: true });
  const server = await createCertificate({ commonName: 'lb.example.test', dnsNames: ['lb.example.test'], issuer: ca, extendedKeyUsage: 'server' });
  const client = await createCertificate({ commonName: 'sensor7._device.example.test', dnsNames: ['sensor7._device.example.test'], issuer: ca });
  await writeFile(join(work, 'lb.pem'), server.certPem + server.keyPem);
  await writeFile(join(work, 'ca.pem'), ca.certPem);
  await writeFile(join(work, 'client.pem'), client.certPem);
  await writeFile(join(work, 'client.key'), client.keyPem);
  const out: Record<string, Buffer> = {};
  const variants: Array<[string, string, boolean, string]> = [
    ['haproxy-v1-tcp4', 'send-proxy', false, '127.0.0.1'],
    ['haproxy-v1-tcp6', 'send-proxy', false, '::1'],
    ['haproxy-v2-tcp4', 'send-proxy-v2', false, '127.0.0.1'],
    ['haproxy-v2-tcp6-crc', 'send-proxy-v2 proxy-v2-options crc32c,unique-id', false, '::1'],
    ['haproxy-v2-ssl-all', 'send-proxy-v2 proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,unique-id,crc32c', true, '127.0.0.1'],
  ];
  for (const [name, sendProxy, useTls, backendHost] of variants) {
    const front = await freePort();
    const cfg = join(work, `${name}.cfg`);
    const frontHost = backendHost === '::1' ? '[::1]' : '127.0.0.1';
    const bind = useTls ? `bind 127.0.0.1:${front} ssl crt ${join(work, 'lb.pem')} ca-file ${join(work, 'ca.pem')} verify optional` : `bind ${frontHost}:${front}`;
    let haproxy: ChildProcess | undefined;
    const bytes = await captureFrom(
      (port) => {
        const backend = backendHost === '::1' ? `[::1]:${port}` : `127.0.0.1:${port}`;
        const text = [
          'global',
          '  log stderr format raw local0 emerg',
          'defaults',
          '  mode tcp',
          '  timeout connect 5s',
          '  timeout client 5s',
          '  timeout server 5s',
          'frontend f',
          `  ${bind}`,
          '  unique-id-format fuzz-%[uuid]',
          '  default_backend b',
          'backend b',
          `  server s ${backend} ${sendProxy}`,
          '',
        ].join('\n');
        void writeFile(cfg, text).then(() => {
          haproxy = quiet('haproxy', ['-db', '-f', cfg]);
          const connect = (): void => {
            if (useTls) {
              quiet('openssl', ['s_client', '-connect', `127.0.0.1:${front}`, '-servername', 'lb.example.test', '-cert', join(work, 'client.pem'), '-key', join(work, 'client.key')]);
            } else {
              const socket = net.connect(front, backendHost);
              started.add(socket);
              socket.on('error', () => setTimeout(connect, 200)).on('connect', () => socket.write('hello'));
            }
          };
          setTimeout(connect, 500);
        });
        return { destroy: () => haproxy?.kill('SIGKILL') };
      },
      proxyLength,
      backendHost,
    );
    out[name] = bytes;
  }
  return out;
}

function specProxyHeaders(): Record<string, Buffer> {
  return {
    'spec-v1-tcp4-max': Buffer.from('PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n', 'latin1'),
    'spec-v1-tcp6-max': Buffer.from('PROXY TCP6 ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n'.replace(/ffff:f\.\.\.f:ffff/g, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), 'latin1'),
    'spec-v1-unknown': Buffer.from('PROXY UNKNOWN\r\n', 'latin1'),
    'spec-v1-unknown-long': Buffer.from('PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n', 'latin1'),
    'dancegate-v1-tcp6': encodeProxyV1({ family: 'tcp6', sourceAddress: '2001:db8::1', sourcePort: 50000, destinationAddress: '::ffff:192.0.2.1', destinationPort: 8883 }),
    'dancegate-v2-dane': encodeProxyV2({
      addresses: { family: 'tcp4', sourceAddress: '192.0.2.10', sourcePort: 40000, destinationAddress: '198.51.100.1', destinationPort: 1883 },
      alpn: 'mqtt',
      authority: 'broker.example.test',
      ssl: { client: 0x07, verify: 0, version: 'TLSv1.3', cn: 'sensor7._device.example.test', cipher: 'TLS_AES_128_GCM_SHA256', sigAlg: 'ECDSA-SHA256', keyAlg: 'EC256' },
      customTlvs: [
        { type: 0xe4, value: Buffer.from('sensor7._device.example.test') },
        { type: 0xe5, value: Buffer.alloc(32, 0xab) },
        { type: 0xe6, value: Buffer.from([3, 1, 1]) },
      ],
      crc32c: true,
    }),
    'dancegate-v2-local': encodeProxyV2({ command: 'LOCAL' }),
  };
}

async function dnsResponses(): Promise<Record<string, Buffer>> {
  const digest = 'ab'.repeat(32);
  const cert = await createCertificate({ commonName: 'Zone TA', isCA: true });
  const full = cert.der.toString('hex');
  const lab = await startDnssecLab([
    {
      origin: 'alg13.test',
      signing: { algorithm: 13 },
      records: [
        `sensor1._device 300 IN TLSA 3 1 1 ${digest}`,
        `multi 300 IN TLSA 3 1 1 ${digest}`,
        `multi 300 IN TLSA 3 1 2 ${'cd'.repeat(64)}`,
        `multi 300 IN TLSA 2 0 0 ${full}`,
        `*._wild 300 IN TLSA 2 1 1 ${digest}`,
        'alias 300 IN CNAME sensor1._device',
        'plain 300 IN A 192.0.2.1',
      ],
    },
    { origin: 'alg8.test', signing: { algorithm: 8 }, records: [`ee 300 IN TLSA 3 0 1 ${digest}`] },
    { origin: 'unsigned.test', signing: 'unsigned', records: [`ee 300 IN TLSA 3 1 1 ${digest}`] },
    { origin: 'bogus.test', signing: { algorithm: 13 }, tamper: true, records: [`ee 300 IN TLSA 3 1 1 ${digest}`] },
  ]);
  const ask = (name: string, id: number): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const socket = dgram.createSocket('udp4');
      const timer = setTimeout(() => {
        socket.close();
        reject(new Error(`no answer for ${name}`));
      }, 5000);
      socket.on('message', (msg) => {
        clearTimeout(timer);
        socket.close();
        resolve(msg);
      });
      socket.send(encodeTlsaQuery(id, name), lab.resolver.port, lab.resolver.host);
    });
  try {
    const names: Record<string, string> = {
      'secure-3-1-1': 'sensor1._device.alg13.test',
      'secure-multi-with-full-cert': 'multi.alg13.test',
      'secure-wildcard': 'x._wild.alg13.test',
      'secure-cname': 'alias.alg13.test',
      'secure-rsa-3-0-1': 'ee.alg8.test',
      'secure-nxdomain': 'missing.alg13.test',
      'secure-nodata': 'plain.alg13.test',
      'insecure-unsigned': 'ee.unsigned.test',
      'bogus-servfail-ede': 'ee.bogus.test',
    };
    const out: Record<string, Buffer> = {};
    let id = 0x1000;
    for (const [file, name] of Object.entries(names)) out[file] = await ask(name, id++);
    return out;
  } finally {
    await lab.stop();
  }
}

async function certificates(work: string): Promise<Record<string, Buffer>> {
  const ext = join(work, 'ext.cnf');
  await writeFile(
    ext,
    [
      '[ca]',
      'basicConstraints = critical, CA:TRUE, pathlen:1',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      'nameConstraints = critical, permitted;DNS:.example.test, excluded;DNS:.bad.example.test, permitted;IP:192.0.2.0/255.255.255.0',
      'certificatePolicies = 2.5.29.32.0, 1.3.6.1.4.1.99999.1',
      '[leaf]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical, digitalSignature',
      'extendedKeyUsage = clientAuth',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid:always',
      'subjectAltName = DNS:sensor7._device.example.test, DNS:Device73.Example.Test, IP:192.0.2.7, IP:2001:db8::7, email:ops@example.test, URI:https://example.test/d/7',
      'certificatePolicies = @pol',
      'authorityInfoAccess = OCSP;URI:http://ocsp.example.test, caIssuers;URI:http://ca.example.test/ca.der',
      'crlDistributionPoints = URI:http://crl.example.test/ca.crl',
      '[pol]',
      'policyIdentifier = 1.3.6.1.4.1.99999.2',
      'CPS.1 = "http://example.test/cps"',
      'userNotice.1 = @notice',
      '[notice]',
      'explicitText = "UTF8:fuzz notice"',
      'organization = "Example"',
      'noticeNumbers = 1, 2',
      '[quoted]',
      'subjectAltName = @quotedAlt',
      'basicConstraints = critical, CA:FALSE',
      '[quotedAlt]',
      'DNS.1 = odd,name.example.test',
      'DNS.2 = "quoted".example.test',
      'DNS.3 = plain.example.test',
      'otherName.1 = 1.3.6.1.5.5.7.8.7;IA5STRING:_dane.example.test',
      '[many]',
      `subjectAltName = ${Array.from({ length: 40 }, (_, i) => `DNS:n${i}.example.test`).join(', ')}`,
      '',
    ].join('\n'),
  );
  const o = (...args: string[]): Promise<unknown> => run('openssl', args);
  await o(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    join(work, 'ca.key'),
    '-out',
    join(work, 'ca.pem'),
    '-subj',
    '/C=ZZ/O=Fuzz, Inc./CN=Fuzz Root',
    '-days',
    '30',
    '-extensions',
    'ca',
    '-config',
    ext,
  );
  const leaf = async (name: string, keyArgs: string[], section: string, subject: string): Promise<void> => {
    await o('req', '-new', ...keyArgs, '-nodes', '-keyout', join(work, `${name}.key`), '-out', join(work, `${name}.csr`), '-subj', subject);
    await o(
      'x509',
      '-req',
      '-in',
      join(work, `${name}.csr`),
      '-CA',
      join(work, 'ca.pem'),
      '-CAkey',
      join(work, 'ca.key'),
      '-CAcreateserial',
      '-days',
      '30',
      '-extfile',
      ext,
      '-extensions',
      section,
      '-out',
      join(work, `${name}.pem`),
    );
  };
  await leaf('leaf-ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'leaf', '/O=x\\, CN=root.admin/CN=sensor7._device.example.test');
  await leaf('leaf-ed25519', ['-newkey', 'ed25519'], 'quoted', '/CN=quoted.example.test/emailAddress=a@example.test');
  await leaf('leaf-many-sans', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], 'many', '/CN=many.example.test');
  const der = async (name: string): Promise<Buffer> => {
    await o('x509', '-in', join(work, `${name}.pem`), '-outform', 'DER', '-out', join(work, `${name}.der`));
    return readFile(join(work, `${name}.der`));
  };
  const root = await createCertificate({ commonName: 'PKI Root', isCA: true, pathLength: 2, keyAlgorithm: 'ecdsa-p384' });
  const pkiLeaf = await createCertificate({ commonName: 'device73', dnsNames: ['device73.example.test'], issuer: root, keyAlgorithm: 'rsa-2048' });
  return {
    'openssl-ca-rsa-name-constraints': await der('ca'),
    'openssl-leaf-ec-policies-aia': await der('leaf-ec'),
    'openssl-leaf-ed25519-quoted-san': await der('leaf-ed25519'),
    'openssl-leaf-p384-40-sans': await der('leaf-many-sans'),
    'pki-root-p384': root.der,
    'pki-leaf-rsa': pkiLeaf.der,
  };
}

async function write(target: string, seeds: Record<string, Buffer>): Promise<void> {
  const dir = corpusDirectory(target);
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(seeds)) await writeFile(join(dir, `${name}.bin`), bytes);
  console.log(`${target}: ${Object.keys(seeds).length} seeds in ${dir}`);
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'dancegate-corpus-'));
  try {
    const only = process.argv[2];
    if (only === undefined || only === 'client-hello') await write('client-hello', await clientHellos(work));
    if (only === undefined || only === 'proxy-protocol') await write('proxy-protocol', { ...specProxyHeaders(), ...(await haproxyHeaders(work)) });
    if (only === undefined || only === 'dns-response') await write('dns-response', await dnsResponses());
    if (only === undefined || only === 'certificate') await write('certificate', await certificates(work));
  } finally {
    for (const s of started) {
      if (s instanceof net.Socket) s.destroy();
      else s.kill('SIGKILL');
    }
    await rm(work, { recursive: true, force: true }); // the keys made for the captures go with it
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
