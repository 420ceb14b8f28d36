/**
 * bench/hostile-chain (issue 10, finding 6): server CPU per handshake for a
 * normal client and for hostile client chains of huge-exponent RSA-3072
 * keys (built by test/lab/hostile-rsa-chain.ts with node:crypto).
 *
 * dancegate runs in a child process (this script forked with `serve`), on
 * loopback, HTTP mode, DANE-EE records in a local TLSA file; the clients
 * run in this process with node:tls, one connection at a time, each a full
 * handshake and one GET. The child's process.cpuUsage() (user + system)
 * before and after each scenario, divided by the handshakes, is the figure.
 * Scenarios:
 *   - normal: an ECDSA P-256 client with a DANE-EE record (authenticated);
 *   - hostile-N fresh: an N-certificate hostile chain, each connection from
 *     a new loopback address (so every one is a full handshake);
 *   - hostile-10 one address: the same from one address (what an address
 *     can repeat: with the penalty box, one handshake, then refusals).
 * Uses only loadConfig/startProxy and the wire, so it runs on any checkout.
 *
 *   tsc -p tsconfig.bench.json && node dist-bench/bench/hostile-chain.js
 *   (NORMAL=200 HOSTILE=20 MAXCHAIN=70 MAXN=5)
 */
import { fork } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { createCertificate } from '../certs/pki.js';
import { loadConfig } from '../src/config/load.js';
import { startProxy } from '../src/process/running-proxy.js';
import { createHostileRsaChain } from '../test/lab/hostile-rsa-chain.js';

const SNI = 'api.bench.test';
const NORMAL = Number(process.env.NORMAL ?? 200);
const HOSTILE = Number(process.env.HOSTILE ?? 20);
const MAXCHAIN = Number(process.env.MAXCHAIN ?? 70);
const MAXN = Number(process.env.MAXN ?? 5);

type Message = { cpuMs: number } | { listening: true };

async function serve(configPath: string): Promise<void> {
  const send = process.send?.bind(process);
  if (send === undefined) throw new Error('serve: needs an IPC channel');
  const proxy = await startProxy(await loadConfig(configPath), { log: () => undefined });
  process.on('message', (m: unknown) => {
    if (m === 'cpu') {
      const u = process.cpuUsage();
      send({ cpuMs: (u.user + u.system) / 1000 } satisfies Message);
    } else if (m === 'stop') void proxy.close().then(() => process.exit(0));
  });
  send({ listening: true } satisfies Message);
}

function tlsaLine(name: string, der: Buffer): string {
  const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  return `${name} IN TLSA 3 1 1 ${createHash('sha256').update(spki).digest('hex')}\n`;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-bench-chain-'));
  const serverCa = await createCertificate({ commonName: 'bench CA', isCA: true });
  const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
  const normal = await createCertificate({ commonName: 'normal._device.bench.test', dnsNames: ['normal._device.bench.test'] });
  const hostile10 = await createHostileRsaChain({ leafName: 'hostile._device.bench.test', length: 10 });
  const hostileMax = await createHostileRsaChain({ leafName: 'hostile._device.bench.test', length: MAXCHAIN });
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  await writeFile(join(dir, 'tlsa.txt'), tlsaLine('normal._device.bench.test', normal.der) + tlsaLine('hostile._device.bench.test', hostile10.leafDer));
  const backend = http.createServer((req, res) => res.end('ok'));
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  await writeFile(
    join(dir, 'dancegate.yaml'),
    `resolver:
  localTlsaFile: tlsa.txt
limits:
  newConnectionsPerIp: false
listeners:
  - name: bench
    listen: 127.0.0.1:${port}
    mode: http
    tls:
      certificates: [{ certFile: server.pem, keyFile: server.key }]
    routes:
      - upstream: http://127.0.0.1:${(backend.address() as net.AddressInfo).port}
        allow: ['*._device.bench.test']
`,
  );
  const child = fork(fileURLToPath(import.meta.url), ['serve', join(dir, 'dancegate.yaml')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = async (): Promise<Message> => ((await once(child, 'message')) as [Message])[0];
  await next();
  const cpu = async (): Promise<number> => {
    child.send('cpu');
    const m = await next();
    return 'cpuMs' in m ? m.cpuMs : NaN;
  };

  async function handshake(localAddress: string, cert: string, key: string): Promise<string> {
    const raw = net.connect({ host: '127.0.0.1', port, localAddress });
    raw.on('error', () => undefined);
    try {
      await once(raw, 'connect');
    } catch {
      return 'connect failed';
    }
    return new Promise((resolve) => {
      const socket = tls.connect({ socket: raw, servername: SNI, ca: serverCa.certPem, cert, key });
      let text = '';
      socket.on('secureConnect', () => socket.write(`GET / HTTP/1.1\r\nHost: ${SNI}\r\nConnection: close\r\n\r\n`));
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 'closed'));
    });
  }

  const rows: string[][] = [['scenario', 'handshakes', 'server CPU ms/handshake', 'outcomes']];
  let addressCounter = 0;
  const freshAddress = (): string => {
    addressCounter++;
    return `127.0.${2 + Math.floor(addressCounter / 250)}.${1 + (addressCounter % 250)}`;
  };
  async function scenario(label: string, n: number, address: () => string, cert: string, key: string): Promise<void> {
    const outcomes = new Map<string, number>();
    const before = await cpu();
    for (let i = 0; i < n; i++) {
      const o = await handshake(address(), cert, key);
      outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
    }
    const after = await cpu();
    rows.push([label, String(n), ((after - before) / n).toFixed(2), [...outcomes].map(([k, v]) => `${k} x${v}`).join(', ')]);
  }

  // Warm-up (JIT, first TLSA load), not counted.
  for (let i = 0; i < 20; i++) await handshake('127.0.0.1', normal.certPem, normal.keyPem);
  await scenario('normal (ECDSA P-256 leaf, DANE-EE)', NORMAL, () => '127.0.0.1', normal.certPem, normal.keyPem);
  await scenario(`hostile 10 x RSA-3072/e~2^3070 (${hostile10.bytes} B), fresh address each`, HOSTILE, freshAddress, hostile10.chainPem, hostile10.keyPem);
  await scenario(`hostile ${MAXCHAIN} x RSA-3072/e~2^3070 (${hostileMax.bytes} B), fresh address each`, MAXN, freshAddress, hostileMax.chainPem, hostileMax.keyPem);
  const one = freshAddress();
  await scenario('hostile 10, all from one address', HOSTILE, () => one, hostile10.chainPem, hostile10.keyPem);
  await scenario('normal again (after the hostile ones)', NORMAL, () => '127.0.0.1', normal.certPem, normal.keyPem);

  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  for (const r of rows) console.log(r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  '));

  child.send('stop');
  await once(child, 'exit');
  backend.close();
  await rm(dir, { recursive: true, force: true });
}

if (process.argv[2] === 'serve') await serve(process.argv[3] ?? '');
else await main();
