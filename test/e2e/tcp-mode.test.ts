/**
 * TCP mode end to end: openssl s_client as the client, dancegate in TCP
 * mode with a local TLSA file, and two consumers of the PROXY header it
 * writes: a Node backend that decodes it with our codec, and a real HAProxy
 * (`accept-proxy`) that must accept it and pass the original client address
 * on (as a v1 line, `send-proxy`) to the Node backend.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { parseProxyHeader, type ProxyParse } from '../../src/protocol/proxy-protocol.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort } from '../lab/dnssec-lab.js';
import { waitForTcpPort } from '../lab/process.js';

const NAME = 'nas1._device.radsec.test';

/** A TCP backend that reads a PROXY header with our decoder, then echoes the payload upper-cased. */
async function startProxyAwareBackend(tlsOptions?: tls.TlsOptions): Promise<{ port: number; headers: Array<Extract<ProxyParse, { status: 'complete' }>>; peers: string[]; close(): Promise<void> }> {
  const headers: Array<Extract<ProxyParse, { status: 'complete' }>> = [];
  const peers: string[] = [];
  const secureContext = tlsOptions ? tls.createSecureContext(tlsOptions) : undefined;
  /** After the PROXY header: echo upper-cased (inside TLS when this backend speaks TLS, as FreeRADIUS's RadSec listener does). */
  const serve = (socket: net.Socket, rest: Buffer): void => {
    if (rest.length > 0) socket.unshift(rest);
    const stream: net.Socket = secureContext
      ? new tls.TLSSocket(socket, { isServer: true, secureContext, requestCert: tlsOptions?.requestCert, rejectUnauthorized: tlsOptions?.rejectUnauthorized })
      : socket;
    if (stream instanceof tls.TLSSocket) stream.once('secure', () => peers.push(String(stream.getPeerCertificate().subject?.CN ?? '(none)')));
    stream.on('data', (chunk: Buffer) => stream.write(chunk.toString().toUpperCase()));
    stream.on('end', () => stream.end('BYE\n'));
    stream.on('error', () => undefined);
    // The TLS socket takes the buffered bytes over; resuming the raw socket here would hand them to nobody.
    if (stream === socket) socket.resume();
  };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    let buffered = Buffer.alloc(0);
    socket.on('error', () => undefined);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const parsed = parseProxyHeader(buffered);
      if (parsed.status === 'incomplete') return;
      socket.off('data', onData);
      socket.pause();
      if (parsed.status !== 'complete') {
        socket.destroy();
        return;
      }
      headers.push(parsed);
      serve(socket, buffered.subarray(parsed.headerBytes));
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    headers,
    peers,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** openssl s_client: send one line, return what came back and whether the session was refused. */
async function sClient(port: number, dir: string, client: string | undefined, line: string, extra: string[] = []): Promise<{ output: string; code: number | null }> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'radsec.proxy.test', '-quiet', '-no_ign_eof', ...extra];
  if (client) args.push('-cert', join(dir, `${client}.pem`), '-key', join(dir, `${client}.key`));
  const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stdin.write(`${line}\n`);
  const timer = setTimeout(() => child.stdin.end(), 1500);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { output, code };
}

describe('TCP mode with openssl s_client', () => {
  let dir: string;
  let backend: Awaited<ReturnType<typeof startProxyAwareBackend>>;
  let proxy: RunningProxy;
  let haproxy: ChildProcess | undefined;
  const ports: Record<string, number> = {};
  const decisions: DecisionRecord[] = [];
  let client: IssuedCertificate;
  let tlsBackend: Awaited<ReturnType<typeof startProxyAwareBackend>>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-tcp-'));
    const server = await createCertificate({ commonName: 'radsec.proxy.test', dnsNames: ['radsec.proxy.test'], extendedKeyUsage: 'server' });
    client = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    const stranger = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'client.pem'), client.certPem);
    await writeFile(join(dir, 'client.key'), client.keyPem);
    await writeFile(join(dir, 'stranger.pem'), stranger.certPem);
    await writeFile(join(dir, 'stranger.key'), stranger.keyPem);
    await writeFile(join(dir, 'tlsa.txt'), `${NAME}. IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(client.der), 3, 1, 1))}\n`);
    backend = await startProxyAwareBackend();
    // A RadSec-like backend: TLS that requires dancegate's own client certificate from a private CA.
    const backendCa = await createCertificate({ commonName: 'backend CA', isCA: true });
    const backendCert = await createCertificate({ commonName: 'radius.backend.test', dnsNames: ['radius.backend.test'], issuer: backendCa, extendedKeyUsage: 'server' });
    const proxyClientCert = await createCertificate({ commonName: 'dancegate-to-backend', issuer: backendCa, extendedKeyUsage: 'client' });
    await writeFile(join(dir, 'backend-ca.pem'), backendCa.certPem);
    await writeFile(join(dir, 'to-backend.pem'), proxyClientCert.certPem);
    await writeFile(join(dir, 'to-backend.key'), proxyClientCert.keyPem);
    tlsBackend = await startProxyAwareBackend({ cert: backendCert.certPem, key: backendCert.keyPem, ca: backendCa.certPem, requestCert: true, rejectUnauthorized: true });
    for (const key of ['direct', 'viaHaproxy', 'v1', 'haproxy', 'tlsUpstream', 'idle', 'lifetime']) ports[key] = await freePort();

    await writeFile(
      join(dir, 'haproxy.cfg'),
      `global
  log stderr format raw local0 info
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend from_dancegate
  bind 127.0.0.1:${ports.haproxy} accept-proxy
  default_backend echo
backend echo
  server echo 127.0.0.1:${backend.port} send-proxy
`,
    );
    haproxy = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] });
    process.once('exit', () => haproxy?.kill('SIGKILL'));
    await waitForTcpPort(ports.haproxy as number, 'HAProxy', 10_000);

    const listener = (name: string, port: number, upstream: string, proxyHeader: string, upstreamTls = '', timeouts = ''): string => `  - name: ${name}
    listen: 127.0.0.1:${port}
    mode: tcp
${timeouts}    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - upstream: ${upstream}
        allow: ['*._device.radsec.test']
        proxyHeader: ${proxyHeader}
${upstreamTls}`;
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:
  localTlsaFile: tlsa.txt
listeners:
${listener('direct', ports.direct as number, `tcp://127.0.0.1:${backend.port}`, 'v2')}${listener('via-haproxy', ports.viaHaproxy as number, `tcp://127.0.0.1:${ports.haproxy}`, 'v2')}${listener('v1', ports.v1 as number, `tcp://127.0.0.1:${ports.haproxy}`, 'v1')}${listener(
        'tls-upstream',
        ports.tlsUpstream as number,
        `tls://127.0.0.1:${tlsBackend.port}`,
        'v1',
        '        upstreamTls: { caFile: backend-ca.pem, certFile: to-backend.pem, keyFile: to-backend.key, serverName: radius.backend.test }\n',
      )}${listener('idle', ports.idle as number, `tcp://127.0.0.1:${backend.port}`, 'v1', '', '    idleTimeoutMs: 300\n')}${listener(
        'lifetime',
        ports.lifetime as number,
        `tcp://127.0.0.1:${backend.port}`,
        'v1',
        '',
        '    maxLifetimeMs: 800\n',
      )}`,
    );
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    if (haproxy && haproxy.exitCode === null) {
      haproxy.kill('SIGTERM');
      await once(haproxy, 'exit');
    }
    await backend?.close();
    await tlsBackend?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    backend.headers.length = 0;
    tlsBackend.headers.length = 0;
    tlsBackend.peers.length = 0;
    decisions.length = 0;
  });

  it.each([['-tls1_3'], ['-tls1_2']])('%s: relays both ways after a PROXY v2 header carrying the verified identity', async (version) => {
    const r = await sClient(ports.direct as number, dir, 'client', 'access-request', [version]);
    expect(r.output).toBe('ACCESS-REQUEST\n');
    expect(backend.headers).toHaveLength(1);
    const h = backend.headers[0]?.header;
    expect(backend.headers[0]?.version).toBe(2);
    expect(h?.command).toBe('PROXY');
    expect(h?.addresses).toMatchObject({ family: 'tcp4', sourceAddress: '127.0.0.1', destinationAddress: '127.0.0.1', destinationPort: ports.direct });
    expect(h?.authority).toBe('radsec.proxy.test');
    expect(h?.ssl).toMatchObject({ client: 0x07, verify: 0, version: version === '-tls1_3' ? 'TLSv1.3' : 'TLSv1.2', cn: NAME });
    const tlv = (type: number): Buffer | undefined => h?.tlvs.find((t) => t.type === type)?.value;
    expect(tlv(0xe4)?.toString()).toBe(NAME);
    expect(tlv(0xe5)?.toString('hex')).toBe(parseCertificateDer(client.der).sha256Hex);
    expect([...(tlv(0xe6) ?? [])]).toEqual([3, 1, 1]);
    expect(decisions[0]).toMatchObject({ outcome: 'forwarded', reason: 'authenticated', claimedName: NAME, listener: 'direct' });
  });

  it('refuses a certificate whose key is not published, and the backend sees nothing', async () => {
    const r = await sClient(ports.direct as number, dir, 'stranger', 'access-request');
    expect(r.output).toBe('');
    expect(backend.headers).toEqual([]);
    expect(decisions.map((d) => [d.outcome, d.reason])).toEqual([['refused', 'no-matching-record']]);
  });

  it('refuses a client without a certificate', async () => {
    const r = await sClient(ports.direct as number, dir, undefined, 'access-request');
    expect(r.output).toBe('');
    expect(decisions.map((d) => d.reason)).toEqual(['no-certificate']);
  });

  it.each([
    ['v2', 'via-haproxy', 'viaHaproxy'],
    ['v1', 'v1', 'v1'],
  ] as const)('a real HAProxy (accept-proxy) accepts our PROXY %s header and passes the client address on', async (_v, _name, key) => {
    const r = await sClient(ports[key] as number, dir, 'client', 'status-server');
    expect(r.output).toBe('STATUS-SERVER\n');
    // HAProxy re-announces (send-proxy, v1) the source it read from our header: the openssl client's address and port.
    expect(backend.headers).toHaveLength(1);
    expect(backend.headers[0]?.version).toBe(1);
    const source = backend.headers[0]?.header.addresses;
    expect(source?.sourceAddress).toBe('127.0.0.1');
    expect(source?.destinationPort).toBe(ports[key]);
    expect(decisions[0]?.source).toBe(`127.0.0.1:${source?.sourcePort}`);
  });

  it('re-originates TLS to the upstream with its own CA, client certificate and server name, after a PROXY v1 line in the clear', async () => {
    const r = await sClient(ports.tlsUpstream as number, dir, 'client', 'access-request');
    expect(r.output).toBe('ACCESS-REQUEST\n');
    expect(tlsBackend.peers).toEqual(['dancegate-to-backend']);
    expect(tlsBackend.headers.map((h) => [h.version, h.header.addresses?.sourceAddress])).toEqual([[1, '127.0.0.1']]);
  });

  it('a TLS 1.3 client that writes 20 KB at once after its handshake is served: what follows its Finished is not client flight (maxClientFlightBytes 16384)', async () => {
    const socket = tls.connect({ port: ports.direct as number, host: '127.0.0.1', servername: 'radsec.proxy.test', cert: client.certPem, key: client.keyPem, rejectUnauthorized: false });
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    await once(socket, 'secureConnect');
    // Sent while the proxy may still be verifying (a TLS 1.3 client finishes first).
    const line = `${'x'.repeat(20_000)}\n`;
    socket.end(line);
    await once(socket, 'close');
    expect(received).toBe(`${line.toUpperCase()}BYE\n`);
    expect(decisions[0]).toMatchObject({ outcome: 'forwarded', reason: 'authenticated' });
  });

  it('half-close: the client ends its side, the upstream still answers before closing', async () => {
    const socket = tls.connect({
      port: ports.direct as number,
      host: '127.0.0.1',
      servername: 'radsec.proxy.test',
      cert: client.certPem,
      key: client.keyPem,
      rejectUnauthorized: false,
    });
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    await once(socket, 'secureConnect');
    socket.end('last words\n');
    await once(socket, 'close');
    // The backend upper-cased the payload, then answered our FIN with BYE and its own FIN.
    expect(received).toBe('LAST WORDS\nBYE\n');
    expect(decisions[0]).toMatchObject({ outcome: 'forwarded', reason: 'authenticated' });
  });

  it.each([
    ['idle', 'an idle established connection is closed after idleTimeoutMs', false],
    ['lifetime', 'a busy established connection is closed at maxLifetimeMs all the same', true],
  ] as const)('%s: %s', async (key, _label, busy) => {
    const socket = tls.connect({ port: ports[key] as number, host: '127.0.0.1', servername: 'radsec.proxy.test', cert: client.certPem, key: client.keyPem, rejectUnauthorized: false });
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    await once(socket, 'secureConnect');
    socket.write('first\n');
    const ticker = busy ? setInterval(() => socket.write('tick\n'), 100) : undefined;
    // The proxy destroys the connection; a tick still in flight towards it makes the kernel
    // answer with a reset, so the end may arrive as ECONNRESET instead of a clean close.
    const errors: string[] = [];
    socket.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    await new Promise((resolve) => socket.once('close', resolve));
    clearInterval(ticker);
    expect(errors.filter((code) => code !== 'ECONNRESET')).toEqual([]);
    expect(received.startsWith('FIRST\n')).toBe(true);
    if (busy) expect(received.split('TICK').length - 1).toBeGreaterThan(2);
    expect(decisions[0]).toMatchObject({ listener: key, outcome: 'forwarded', reason: 'authenticated' });
  });
});
