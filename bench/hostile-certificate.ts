/**
 * bench/hostile-certificate: CPU the proxy spends per handshake on a client
 * certificate an unauthenticated client chose (issue 10, finding 3).
 *
 * Runs the built CLI (`dist/src/cli/main.js serve`, or the one named by
 * DANCEGATE_CLI, e.g. an older checkout's) as its own process in HTTP mode
 * with a local TLSA file, then for each certificate kind opens ROUNDS
 * sequential TLS connections that each send one request, and reads the
 * proxy process's CPU time (utime + stime from /proc/PID/stat, Linux) before
 * and after: the figure printed is proxy CPU ms per handshake. Kinds:
 *   - legit:      a small DANE-EE client (authenticated, 200)
 *   - sans-150:   3 KB, 150 SAN dNSNames with a quote and a comma each
 *   - many-sans:  63 KB, 2,901 of them (the audit's certificate)
 *   - oversize:   about 70 KB (over the 64 KiB limit)
 *
 *   npm run build && tsc -p tsconfig.bench.json && node dist-bench/bench/hostile-certificate.js
 *   ROUNDS=100 DANCEGATE_CLI=/tmp/before/dist/src/cli/main.js node dist-bench/bench/hostile-certificate.js
 * HANDSHAKE_LIMITS='{ maxClientFlightBytes: 131072 }' adds settings under
 * limits.handshakes (to measure the certificate parser's own bounds behind
 * a raised handshake-flight limit; older versions reject the key).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as tls from 'node:tls';
import { createCertificate } from '../certs/pki.js';
import { createManySanCertificate, createOversizeCertificate, type HostileCertificate } from '../test/fixtures-hostile/certificates.js';

const ROUNDS = Number(process.env.ROUNDS ?? 100);
const CLI = process.env.DANCEGATE_CLI ?? resolve(import.meta.dirname, '../../dist/src/cli/main.js');
const SNI = 'api.bench.test';
const LEGIT = 'legit._device.bench.test';
/** Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at state (field 3); utime, stime are 14, 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = net.createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => done(port));
    });
  });
}

/** One TLS connection with one request; resolves with the HTTP status line, or 'closed'. */
function oneRequest(port: number, cert: HostileCertificate): Promise<string> {
  return new Promise((done) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: SNI, cert: cert.certPem, key: cert.keyPem, rejectUnauthorized: false });
    let response = '';
    const timer = setTimeout(() => socket.destroy(), 10_000);
    socket.on('secureConnect', () => socket.write(`GET / HTTP/1.1\r\nHost: ${SNI}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (d: Buffer) => (response += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      done(response.split('\r\n')[0] || 'closed');
    });
  });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-bench-cert-'));
  const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], extendedKeyUsage: 'server' });
  const legit = await createCertificate({ commonName: LEGIT, dnsNames: [LEGIT] });
  const kinds: Array<[string, HostileCertificate]> = [
    ['legit', legit],
    ['sans-150', await createManySanCertificate(150)],
    ['many-sans', await createManySanCertificate()],
    ['oversize', await createOversizeCertificate(70_000, 'big._device.bench.test')],
  ];
  const spki = new (await import('node:crypto')).X509Certificate(legit.der).publicKey.export({ type: 'spki', format: 'der' });
  const digest = (await import('node:crypto')).createHash('sha256').update(spki).digest('hex');
  await writeFile(join(dir, 'tlsa.txt'), `${LEGIT} IN TLSA 3 1 1 ${digest}\n`);
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  const backend = http.createServer((req, res) => res.end(`hello ${req.headers['x-dane-client-id'] ?? 'nobody'}`));
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const port = await freePort();
  await writeFile(
    join(dir, 'dancegate.yaml'),
    `resolver:
  localTlsaFile: tlsa.txt
admin: false
limits:
  penaltyBox: false${process.env.HANDSHAKE_LIMITS ? `\n  handshakes: ${process.env.HANDSHAKE_LIMITS}` : ''}
  newConnectionsPerIp: false
listeners:
  - name: bench
    listen: 127.0.0.1:${port}
    mode: http
    http: { forwardXfcc: true }
    tls:
      certificates: [{ certFile: server.pem, keyFile: server.key }]
    routes:
      - upstream: http://127.0.0.1:${(backend.address() as net.AddressInfo).port}
        allow: ['*._device.bench.test']
`,
  );
  const child = spawn(process.execPath, [CLI, 'serve', '--config', join(dir, 'dancegate.yaml')], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`the proxy exited with ${child.exitCode}`);
      const ok = await new Promise<boolean>((done) => {
        const s = net.connect(port, '127.0.0.1', () => done(s.end() !== undefined));
        s.on('error', () => done(false));
      });
      if (ok) break;
      if (i > 100) throw new Error('the proxy did not start listening');
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(`proxy: ${CLI}; ${ROUNDS} sequential handshakes + one request per kind${process.env.HANDSHAKE_LIMITS ? `; limits.handshakes ${process.env.HANDSHAKE_LIMITS}` : ''}`);
    for (const [kind, cert] of kinds) {
      await oneRequest(port, cert); // warm-up
      const before = await cpuMs(child.pid as number);
      const outcomes = new Map<string, number>();
      for (let i = 0; i < ROUNDS; i++) {
        const status = await oneRequest(port, cert);
        outcomes.set(status, (outcomes.get(status) ?? 0) + 1);
      }
      const after = await cpuMs(child.pid as number);
      const perHandshake = (after - before) / ROUNDS;
      console.log(
        `${kind.padEnd(10)} ${String(cert.der.length).padStart(6)} B  proxy CPU ${perHandshake.toFixed(2).padStart(7)} ms/handshake  outcomes: ${[...outcomes].map(([s, n]) => `${n}× ${s}`).join(', ')}`,
      );
    }
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await once(child, 'exit');
    backend.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
