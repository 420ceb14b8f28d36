/**
 * HTTP mode features beyond the basic flow, with a local TLSA file (no DNS):
 * policy optional, RFC 9440 / XFCC / TLSA headers, an https upstream,
 * WebSocket upgrades, slow headers (408), refusal by closing, and inbound
 * PROXY protocol from a trusted load balancer.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { encodeProxyV1 } from '../../src/protocol/proxy-protocol.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort } from '../lab/dnssec-lab.js';

const NAME = 'meter1._device.iot.test';
const SNI = 'ingest.proxy.test';

interface Seen {
  headers: http.IncomingHttpHeaders;
  /** The TLS server name dancegate sent to this https backend. */
  servername?: string | false | null;
}

import { byEngine } from '../lab/engine.js';

describe('HTTP mode features', () => {
  let dir: string;
  let proxy: RunningProxy;
  let backend: https.Server;
  let serverCa: IssuedCertificate;
  let device: IssuedCertificate;
  let stranger: IssuedCertificate;
  const seen: Seen[] = [];
  const decisions: DecisionRecord[] = [];
  const ports: Record<'optional' | 'required' | 'closing' | 'proxied', number> = { optional: 0, required: 0, closing: 0, proxied: 0 };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-httpf-'));
    serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
    const backendCert = await createCertificate({ commonName: 'backend.test', dnsNames: ['backend.test'], issuer: serverCa, extendedKeyUsage: 'server' });
    device = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    stranger = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'ca.pem'), serverCa.certPem);
    await writeFile(join(dir, 'tlsa.txt'), `${NAME} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(device.der), 3, 1, 1))}\n`);

    // An https backend (dancegate verifies it against ca.pem and the name backend.test).
    backend = https.createServer({ cert: backendCert.certPem, key: backendCert.keyPem }, (req, res) => {
      seen.push({ headers: req.headers, servername: (req.socket as tls.TLSSocket).servername });
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${req.headers['x-device'] ?? 'anonymous'} (${req.headers['x-auth'] ?? '-'})`);
    });
    backend.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      seen.push({ headers: req.headers });
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n');
      socket.on('data', (d: Buffer) => socket.write(d.toString().toUpperCase()));
    });
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    const backendPort = (backend.address() as net.AddressInfo).port;
    for (const key of Object.keys(ports) as Array<keyof typeof ports>) ports[key] = await freePort();

    const listener = (name: keyof typeof ports, extra: string): string => `  - name: ${name}
    listen: 127.0.0.1:${ports[name]}
    mode: http
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
${extra}    routes:
      - upstream: https://127.0.0.1:${backendPort}
        upstreamTls: { caFile: ca.pem, serverName: backend.test }
        allow: ['*._device.iot.test']
      - serverNames: [admin.proxy.test]
        upstream: https://127.0.0.1:${backendPort}
        upstreamTls: { caFile: ca.pem, serverName: backend.test }
        allow: [root._device.iot.test]
`;
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:
  localTlsaFile: tlsa.txt
listeners:
${listener(
  'optional',
  `    policy: optional
    http:
      identityHeader: X-Device
      statusHeader: X-Auth
      forwardClientCert: true
      forwardXfcc: true
      tlsaHeader: X-Device-Tlsa
      headersTimeoutMs: 300
`,
)}${listener('required', '')}${listener('closing', '    http: { refuseWith403: false }\n')}${listener('proxied', '    proxyProtocol: { versions: v1, trustedCidrs: [127.0.0.0/8] }\n')}`,
    );
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    backend?.closeAllConnections();
    await new Promise<void>((resolve) => (backend ? backend.close(() => resolve()) : resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    seen.length = 0;
    decisions.length = 0;
  });

  function get(port: number, cert: IssuedCertificate | undefined, headers: Record<string, string> = {}, path = '/r'): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, servername: SNI, path, ca: serverCa.certPem, cert: cert?.certPem, key: cert?.keyPem, headers, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('policy optional: an authenticated client gets every configured identity header, renamed', async () => {
    const r = await get(ports.optional, device, { 'X-Device': 'forged', 'X-Auth': 'authenticated', 'Client-Cert': ':Zm9v:' });
    expect(r).toEqual({ status: 200, body: `hello ${NAME} (authenticated)` });
    const h = seen[0]?.headers ?? {};
    expect(h['x-device']).toBe(NAME);
    expect(h['x-auth']).toBe('authenticated');
    expect(h['x-device-tlsa']).toBe('3 1 1');
    expect(h['client-cert']).toBe(`:${device.der.toString('base64')}:`);
    expect(h['x-forwarded-client-cert']).toBe(`Hash=${parseCertificateDer(device.der).sha256Hex};Subject="CN=${NAME}";DNS=${NAME}`);
    // The default header name is stripped too, whatever it is renamed to.
    expect(h['x-dane-client-id']).toBeUndefined();
  });

  it("the https upstream gets the configured TLS server name, never the client's Host", async () => {
    const r = await get(ports.required, device, { Host: SNI }, '/sni');
    expect(r.status).toBe(200);
    expect(seen.map((x) => [x.headers.host, x.servername])).toEqual([[SNI, 'backend.test']]);
  });

  it.each([
    ['a stranger (key not published)', () => stranger, 'no-matching-record'],
    ['no certificate', () => undefined, 'no-certificate'],
  ])('policy optional: %s is forwarded without identity and with the reason', async (_label, cert, reason) => {
    const r = await get(ports.optional, cert(), { 'X-Device': 'forged', 'Client-Cert': ':Zm9v:', 'X-Device-Tlsa': '3 1 1' });
    expect(r).toEqual({ status: 200, body: `hello anonymous (${reason})` });
    const h = seen[0]?.headers ?? {};
    expect([h['x-device'], h['client-cert'], h['x-device-tlsa'], h['x-forwarded-client-cert']]).toEqual([undefined, undefined, undefined, undefined]);
    expect(decisions.map((d) => [d.outcome, d.reason])).toEqual([['forwarded', reason]]);
  });

  it('policy required with 403 refusal (the default)', async () => {
    const r = await get(ports.required, stranger);
    expect(r).toEqual({ status: 403, body: 'Forbidden: DANE client authentication failed (no-matching-record)\n' });
    expect(seen).toEqual([]);
  });

  it('refuseWith403: false closes the connection without an answer (native engine: handshake_failure inside the handshake)', async () => {
    await expect(get(ports.closing, stranger)).rejects.toThrow(byEngine({ native: /alert handshake failure.*SSL alert number 40/, node: /socket hang up|ECONNRESET/ }));
    expect(seen).toEqual([]);
    expect(decisions.map((d) => [d.outcome, d.reason])).toEqual([['refused', 'no-matching-record']]);
  });

  it('WebSocket upgrades pass through to the upstream with the identity set', async () => {
    const socket = tls.connect({ port: ports.required, host: '127.0.0.1', servername: SNI, ca: serverCa.certPem, cert: device.certPem, key: device.keyPem });
    await once(socket, 'secureConnect');
    socket.write(
      `GET /ws HTTP/1.1\r\nHost: ${SNI}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Dane-Client-Id: forged\r\n\r\n`,
    );
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    const closed = once(socket, 'close');
    while (!received.includes('\r\n\r\n')) await Promise.race([once(socket, 'data'), closed.then(() => Promise.reject(new Error(`closed after ${JSON.stringify(received)}`)))]);
    expect(received.startsWith('HTTP/1.1 101 Switching Protocols\r\n')).toBe(true);
    received = '';
    socket.write('ping over the upgraded stream');
    while (received.length < 29) await once(socket, 'data');
    expect(received).toBe('PING OVER THE UPGRADED STREAM');
    expect(seen[0]?.headers['x-dane-client-id']).toBe(NAME);
    socket.destroy();
  });

  it('slow request headers get 408 after headersTimeoutMs', async () => {
    const socket = tls.connect({ port: ports.optional, host: '127.0.0.1', servername: SNI, ca: serverCa.certPem, cert: device.certPem, key: device.keyPem });
    await once(socket, 'secureConnect');
    socket.write(`GET /slow HTTP/1.1\r\nHost: ${SNI}\r\n`);
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    await once(socket, 'close');
    expect(received.startsWith('HTTP/1.1 408 Request Timeout\r\n')).toBe(true);
    expect(seen).toEqual([]);
  });

  it('421 when the Host header leads to another route than the TLS server name (an identity allowed on one route cannot reach another)', async () => {
    const r = await get(ports.required, device, { Host: 'admin.proxy.test' });
    expect(r).toEqual({ status: 421, body: 'Misdirected Request: the Host header does not belong to the TLS server name of this connection\n' });
    expect(seen).toEqual([]);
  });

  it('an HTTP/1.0 request without Host is routed by the TLS server name alone', async () => {
    const socket = tls.connect({ port: ports.required, host: '127.0.0.1', servername: SNI, ca: serverCa.certPem, cert: device.certPem, key: device.keyPem });
    await once(socket, 'secureConnect');
    socket.write('GET /old HTTP/1.0\r\n\r\n');
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    await once(socket, 'close');
    expect(received.startsWith('HTTP/1.1 200 OK\r\n'), received).toBe(true);
    expect(seen.map((x) => x.headers['x-dane-client-id'])).toEqual([NAME]);
  });

  it('400 for an absolute-form request target', async () => {
    const r = await get(ports.required, device, {}, 'https://admin.proxy.test/r');
    expect(r.status).toBe(400);
    expect(seen).toEqual([]);
  });

  it.each([['TLSv1.2'], ['TLSv1.3']] as const)('%s: no session resumption, so every connection is verified with its full chain', async (version) => {
    const connect = (session?: Buffer): Promise<{ session: Buffer | undefined; reused: boolean }> =>
      new Promise((resolve, reject) => {
        let saved: Buffer | undefined;
        const socket = tls.connect({
          port: ports.required,
          host: '127.0.0.1',
          servername: SNI,
          ca: serverCa.certPem,
          cert: device.certPem,
          key: device.keyPem,
          minVersion: version,
          maxVersion: version,
          session,
        });
        socket.on('session', (s: Buffer) => (saved = s));
        socket.on('error', reject);
        socket.once('secureConnect', () => {
          socket.write(`GET /s HTTP/1.1\r\nHost: ${SNI}\r\nConnection: close\r\n\r\n`);
        });
        let body = '';
        socket.on('data', (d: Buffer) => (body += d.toString()));
        socket.on('end', () => {
          expect(body.startsWith('HTTP/1.1 200 OK')).toBe(true);
          resolve({ session: saved ?? socket.getSession(), reused: socket.isSessionReused() });
        });
      });
    const first = await connect();
    const second = await connect(first.session);
    expect(second.reused).toBe(false);
    expect(decisions.map((d) => [d.reason, d.tlsVersion])).toEqual([
      ['authenticated', version],
      ['authenticated', version],
    ]);
  });

  describe('inbound PROXY protocol from a trusted address', () => {
    async function viaLoadBalancer(header: Buffer | undefined): Promise<{ status: number; body: string }> {
      const raw = net.connect(ports.proxied, '127.0.0.1');
      await once(raw, 'connect');
      if (header) raw.write(header);
      return new Promise((resolve, reject) => {
        const req = https.request(
          {
            path: '/lb',
            servername: SNI,
            ca: serverCa.certPem,
            cert: device.certPem,
            key: device.keyPem,
            createConnection: () => tls.connect({ socket: raw, servername: SNI, ca: serverCa.certPem, cert: device.certPem, key: device.keyPem }),
          },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    }

    it('the original client address drives X-Forwarded-For and the decision log', async () => {
      const header = encodeProxyV1({ family: 'tcp4', sourceAddress: '203.0.113.7', sourcePort: 40001, destinationAddress: '198.51.100.1', destinationPort: 443 });
      const r = await viaLoadBalancer(header);
      expect(r.status).toBe(200);
      expect(seen[0]?.headers['x-forwarded-for']).toBe('203.0.113.7');
      expect(decisions[0]).toMatchObject({ source: '203.0.113.7:40001', outcome: 'forwarded', reason: 'authenticated' });
    });

    it('a trusted address that sends no PROXY header is refused', async () => {
      await expect(viaLoadBalancer(undefined)).rejects.toThrow();
      expect(seen).toEqual([]);
      expect(decisions.map((d) => [d.reason, d.detail])).toEqual([['proxy-header-invalid', 'a PROXY protocol header is required from this address']]);
    });

    it('a PROXY v2 header is refused where v1 is configured', async () => {
      const { encodeProxyV2 } = await import('../../src/protocol/proxy-protocol.js');
      const header = encodeProxyV2({ command: 'PROXY', addresses: { family: 'tcp4', sourceAddress: '203.0.113.7', sourcePort: 1, destinationAddress: '198.51.100.1', destinationPort: 443 } });
      await expect(viaLoadBalancer(header)).rejects.toThrow();
      expect(decisions.map((d) => [d.reason, d.detail])).toEqual([['proxy-header-invalid', 'PROXY v2 received, v1 required']]);
    });
  });
});
