/**
 * bench/handshake-13: the draft -13 path itself, as a client sees it. The
 * OpenSSL C client of the tests (test/lab/c/dane-clientid-client.c, compiled
 * here) puts the name in the end-entity entry of its TLS 1.3 Certificate
 * message; dancegate, on the native engine, reads it there, pauses the
 * handshake, decides (DANE-EE record from NSD behind Unbound, warm cache) and
 * forwards one HTTP/1.0 request to a backend that answers with the identity
 * header it received.
 *
 * Every sample is one run of the client, from spawn to exit: process start,
 * OpenSSL's initialisation and loading the key are in it, so the same loop is
 * also run for
 *  - the ClientHello form over TLS 1.3 (tls-clientid) and no extension (the
 *    name from the certificate's SAN), on the same native process;
 *  - no extension against dancegate on node:tls (`tls.engine: node`);
 *  - the client alone, exiting on a usage error before any connection (the
 *    process floor).
 * Variants are interleaved, sample by sample, so drift hits all alike; the
 * differences between them are the figures that mean something.
 * The -13 samples go to a strict route (TLS 1.3, the Certificate extension
 * only): a client whose name were not read from its Certificate would be
 * refused there, and every sample checks the 200 and the identity.
 *
 *   npm run build && tsc -p tsconfig.bench.json && node dist-bench/bench/handshake-13.js
 *   (SAMPLES=300 per variant, after WARMUP=20; DANCEGATE_CLI=<a build's dist/src/cli/main.js>)
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { createCertificate } from '../certs/pki.js';
import { parseCertificateDer } from '../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../src/dane/tlsa.js';
import { DEFAULT_DANE_CLIENTID_TYPE } from '../src/protocol/client-hello.js';
import { loadNativeEngine } from '../src/tls/native-engine.js';
import { freePort, startDnssecLab } from '../test/lab/dnssec-lab.js';
import { stopProcess, waitForTcpPort } from '../test/lab/process.js';

const run = promisify(execFile);
const SAMPLES = Number(process.env.SAMPLES ?? 300);
const WARMUP = Number(process.env.WARMUP ?? 20);
const CLIENT = 'client1._device.bench.test';
/** DANCEGATE_CLI=/path/to/another/build/dist/src/cli/main.js measures another build the same way. */
const CLI = process.env.DANCEGATE_CLI ?? join(import.meta.dirname, '../src/cli/main.js');
/** The client's source in the repository (this file runs from dist-bench/bench). */
const CLIENT_SOURCE = join(import.meta.dirname, '../../test/lab/c/dane-clientid-client.c');

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};
const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length;

interface Variant {
  readonly label: string;
  readonly args: () => string[];
  /** Checks one run's outcome; throws when the sample is not what it claims to measure. */
  readonly check: (code: number, stdout: string) => void;
}

async function main(): Promise<void> {
  const native = loadNativeEngine();
  if (!native.ok) throw new Error(`the native TLS engine does not load here (${native.reason})`);
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-hs13-'));
  const children: ChildProcess[] = [];
  let stopLab: (() => Promise<void>) | undefined;
  try {
    console.log(
      `bench/handshake-13 on ${availableParallelism()}x ${cpus()[0]?.model ?? '?'}, node ${process.version}, native engine on ${native.openssl}; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}; SAMPLES=${SAMPLES} WARMUP=${WARMUP}; ${CLI}`,
    );
    const binary = join(dir, 'dane-clientid-client');
    await run('gcc', ['-Wall', '-Wextra', '-Werror', '-O2', '-o', binary, CLIENT_SOURCE, '-lssl', '-lcrypto']);

    const ca = await createCertificate({ commonName: 'bench CA', isCA: true });
    const server = await createCertificate({ commonName: 'bench.test', dnsNames: ['bench.test', 'strict.bench.test'], issuer: ca, extendedKeyUsage: 'server' });
    const client = await createCertificate({ commonName: CLIENT, dnsNames: [CLIENT], issuer: ca, extendedKeyUsage: 'client' });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'client.pem'), client.certPem);
    await writeFile(join(dir, 'client.key'), client.keyPem);
    const lab = await startDnssecLab([
      { origin: 'bench.test', signing: { algorithm: 13 }, records: [`client1._device 300 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(client.der), 3, 1, 1))}`] },
    ]);
    stopLab = () => lab.stop();

    const ports = { backend: await freePort(), native: await freePort(), node: await freePort() };
    // The backend answers with the identity dancegate sent, so each sample proves who was authenticated.
    const backend = spawn(process.execPath, ['-e', `require('http').createServer((q, s) => s.end('id=' + q.headers['x-dane-client-id'] + '\\n')).listen(${ports.backend}, '127.0.0.1')`], {
      stdio: 'ignore',
    });
    children.push(backend);
    const config = (port: number, engine: 'native' | 'node', strictRoute: boolean): string => `admin: false
log: { level: warn }
resolver:
  servers: [{ address: "127.0.0.1:${lab.resolver.port}" }]
limits:
  newConnectionsPerIp: false
  penaltyBox: false
  handshakes: { maxConcurrent: 100000, maxConcurrentPerIp: 100000, maxTlsHandshakesPerIp: 100000 }
listeners:
  - name: bench
    listen: 127.0.0.1:${port}
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }], engine: ${engine} }
    routes:
${
  strictRoute
    ? `      - serverNames: [strict.bench.test]
        upstream: http://127.0.0.1:${ports.backend}
        allow: ['*._device.bench.test']
        strict: true
`
    : ''
}      - upstream: http://127.0.0.1:${ports.backend}
        allow: ['*._device.bench.test']
`;
    await writeFile(join(dir, 'native.yaml'), config(ports.native, 'native', true));
    await writeFile(join(dir, 'node.yaml'), config(ports.node, 'node', false));
    for (const name of ['native', 'node'] as const) {
      const child = spawn(process.execPath, [CLI, 'serve', '-c', join(dir, `${name}.yaml`)], { stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(child);
    }
    await waitForTcpPort(ports.backend);
    await waitForTcpPort(ports.native);
    await waitForTcpPort(ports.node);

    const request = (host: string): string => `GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`;
    const clientArgs = (port: number, sni: string, name: string, form: string): string[] => [
      '127.0.0.1',
      String(port),
      sni,
      String(DEFAULT_DANE_CLIENTID_TYPE),
      name,
      join(dir, 'client.pem'),
      join(dir, 'client.key'),
      request(sni),
      form,
    ];
    const served = (code: number, stdout: string): void => {
      if (code !== 0 || !stdout.startsWith('HTTP/1.1 200 ') || !stdout.endsWith(`id=${CLIENT}\n`)) throw new Error(`not served as ${CLIENT}: exit ${code}, ${JSON.stringify(stdout.slice(0, 300))}`);
    };
    const variants: Variant[] = [
      { label: 'native, -13: name in the TLS 1.3 Certificate (strict route)', args: () => clientArgs(ports.native, 'strict.bench.test', CLIENT, 'certificate'), check: served },
      { label: 'native, name in the TLS 1.3 ClientHello', args: () => clientArgs(ports.native, 'bench.test', CLIENT, 'hello13'), check: served },
      { label: 'native, no extension (SAN), TLS 1.3', args: () => clientArgs(ports.native, 'bench.test', '-', 'none'), check: served },
      { label: 'node:tls, no extension (SAN), TLS 1.3', args: () => clientArgs(ports.node, 'bench.test', '-', 'none'), check: served },
      {
        label: 'the client alone (usage error, no connection)',
        args: () => ['127.0.0.1', '1', 'x', '1', 'x', 'x', 'x', 'x', 'no-such-form'],
        check: (code) => {
          if (code !== 1) throw new Error(`the floor run exited ${code}`);
        },
      },
    ];
    const one = async (variant: Variant): Promise<number> => {
      const t0 = performance.now();
      let code = 0;
      let stdout = '';
      try {
        stdout = (await run(binary, variant.args(), { timeout: 15_000 })).stdout;
      } catch (err) {
        const e = err as { code: number | string | null; stdout: string };
        code = typeof e.code === 'number' ? e.code : -1;
        stdout = e.stdout;
      }
      const ms = performance.now() - t0;
      variant.check(code, stdout);
      return ms;
    };
    const samples = new Map<string, number[]>(variants.map((v) => [v.label, []]));
    for (let i = -WARMUP; i < SAMPLES; i++) {
      for (const variant of variants) {
        const ms = await one(variant);
        if (i >= 0) samples.get(variant.label)?.push(ms);
      }
    }
    const floor = samples.get(variants[4]?.label ?? '') ?? [];
    for (const [label, values] of samples) {
      console.log(
        `${label.padEnd(62)} p50 ${percentile(values, 50).toFixed(2)} ms  p99 ${percentile(values, 99).toFixed(2)} ms  mean ${mean(values).toFixed(2)} ms` +
          (values === floor ? '' : `  (p50 above the floor: ${(percentile(values, 50) - percentile(floor, 50)).toFixed(2)} ms)`),
      );
    }
  } finally {
    await Promise.all(children.map((c) => stopProcess(c)));
    await stopLab?.();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
