/**
 * Raw-bytes HTTP-over-TLS kit for forwarder attack tests: a Node backend
 * that records every request it receives (method, url, headers, body,
 * upstream socket id) and echoes it back in an `X-Echo` header, a
 * dancegate in HTTP mode with a local TLSA file and two DANE identities,
 * and a TLS client that writes raw bytes and splits what comes back into
 * responses.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort } from './dnssec-lab.js';

export const SNI = 'api.smuggle.test';
export const ADMIN_SNI = 'admin.smuggle.test';
export const ATTACKER = 'mallory._device.smuggle.test';
export const VICTIM = 'alice._device.smuggle.test';
export const ROOT = 'root._device.smuggle.test';

export interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** Which upstream connection (numbered in accept order) carried it. */
  readonly socketId: number;
}

export interface Backend {
  readonly port: number;
  readonly requests: Recorded[];
  /** Requests whose body is still arriving (stalled uploads). */
  readonly uploading: () => number;
  close(): Promise<void>;
}

/** A backend that records every request and answers `X-Echo: METHOD URL identity` (and the same as body). */
export async function startRecordingBackend(): Promise<Backend> {
  const requests: Recorded[] = [];
  let sockets = 0;
  let uploading = 0;
  const ids = new WeakMap<object, number>();
  const server = http.createServer((req, res) => {
    const socketId = ids.get(req.socket) ?? -1;
    const chunks: Buffer[] = [];
    uploading++;
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('close', () => {
      if (!req.complete) uploading--;
    });
    req.on('end', () => {
      uploading--;
      const body = Buffer.concat(chunks).toString('latin1');
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, socketId });
      const echo = `${req.method} ${req.url} ${String(req.headers['x-dane-client-id'] ?? '-')}`;
      // Paths starting /hop get hop-by-hop response headers the proxy must not pass on.
      const hop = req.url?.startsWith('/hop') ? { connection: 'X-Internal', 'x-internal': 'backend-secret', 'keep-alive': 'timeout=1', 'proxy-authenticate': 'Basic' } : {};
      const text = `${echo}\n`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text), 'x-echo': echo, ...hop }).end(text);
    });
  });
  server.on('connection', (s: net.Socket) => ids.set(s, ++sockets));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    uploading: () => uploading,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface Lab {
  readonly dir: string;
  readonly port: number;
  readonly proxy: RunningProxy;
  readonly backend: Backend;
  readonly serverCa: IssuedCertificate;
  readonly clients: Record<'attacker' | 'victim' | 'root', IssuedCertificate>;
  stop(): Promise<void>;
}

/**
 * dancegate (HTTP mode, defaults everywhere) in front of the recording
 * backend: the default route (SNI api.smuggle.test) allows the attacker and
 * the victim; admin.smuggle.test allows only root.
 */
export async function startLab(
  options: {
    /** Top-level YAML added to the configuration (e.g. a limits block). */
    readonly extraYaml?: string;
    /** The listener's `http:` block, as flow YAML (e.g. `{ upstreamConnections: 2 }`). */
    readonly http?: string;
  } = {},
): Promise<Lab> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-raw-'));
  const serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
  const server = await createCertificate({ commonName: SNI, dnsNames: [SNI, ADMIN_SNI], issuer: serverCa, extendedKeyUsage: 'server' });
  const clients = {
    attacker: await createCertificate({ commonName: ATTACKER, dnsNames: [ATTACKER] }),
    victim: await createCertificate({ commonName: VICTIM, dnsNames: [VICTIM] }),
    root: await createCertificate({ commonName: ROOT, dnsNames: [ROOT] }),
  };
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem);
  const tlsa = (
    [
      [ATTACKER, clients.attacker],
      [VICTIM, clients.victim],
      [ROOT, clients.root],
    ] as const
  )
    .map(([name, c]) => `${name} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(c.der), 3, 1, 1))}`)
    .join('\n');
  await writeFile(join(dir, 'tlsa.txt'), `${tlsa}\n`);
  const backend = await startRecordingBackend();
  const port = await freePort();
  await writeFile(
    join(dir, 'dancegate.yaml'),
    `${options.extraYaml ?? ''}resolver:
  localTlsaFile: tlsa.txt
listeners:
  - name: api
    listen: 127.0.0.1:${port}
    mode: http
${options.http === undefined ? '' : `    http: ${options.http}\n`}    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - serverNames: [${ADMIN_SNI}]
        upstream: http://127.0.0.1:${backend.port}
        allow: [${ROOT}]
      - upstream: http://127.0.0.1:${backend.port}
        allow: [${ATTACKER}, ${VICTIM}]
`,
  );
  const proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: () => undefined });
  return {
    dir,
    port,
    proxy,
    backend,
    serverCa,
    clients,
    async stop() {
      await proxy.close();
      await backend.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface ParsedResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/**
 * Split a byte stream into HTTP/1.1 responses. `heads[i]` says whether the
 * i-th response answers a HEAD (no body). Returns the complete responses
 * and whether bytes are left over (an incomplete or unparseable tail).
 */
export function parseResponses(data: string, heads: readonly boolean[]): { responses: ParsedResponse[]; rest: string } {
  const responses: ParsedResponse[] = [];
  let at = 0;
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const lines = data.slice(at, end).split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN);
    if (Number.isNaN(status)) break;
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const key = line.slice(0, colon).trim().toLowerCase();
      headers[key] = headers[key] === undefined ? line.slice(colon + 1).trim() : `${headers[key]}, ${line.slice(colon + 1).trim()}`;
    }
    let cursor = end + 4;
    let body = '';
    const noBody = heads[responses.length] === true || status === 204 || status === 304 || (status >= 100 && status < 200);
    if (!noBody && headers['transfer-encoding']?.toLowerCase().includes('chunked')) {
      let complete = false;
      for (;;) {
        const lineEnd = data.indexOf('\r\n', cursor);
        if (lineEnd === -1) break;
        const size = parseInt(data.slice(cursor, lineEnd), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const trailerEnd = data.indexOf('\r\n\r\n', lineEnd);
          if (trailerEnd === -1 && data.slice(lineEnd, lineEnd + 4) !== '\r\n\r\n') break;
          cursor = (trailerEnd === -1 ? lineEnd : trailerEnd) + 4;
          complete = true;
          break;
        }
        if (data.length < lineEnd + 2 + size + 2) break;
        body += data.slice(lineEnd + 2, lineEnd + 2 + size);
        cursor = lineEnd + 2 + size + 2;
      }
      if (!complete) break;
    } else if (!noBody && headers['content-length'] !== undefined) {
      const length = Number(headers['content-length']);
      if (data.length < cursor + length) break;
      body = data.slice(cursor, cursor + length);
      cursor += length;
    } else if (!noBody && headers.connection?.toLowerCase() === 'close') {
      // Close-delimited: whatever is left.
      body = data.slice(cursor);
      cursor = data.length;
    }
    responses.push({ status, headers, body });
    at = cursor;
  }
  return { responses, rest: data.slice(at) };
}

/** A client's TLS connection to dancegate that writes raw bytes and reads responses back. */
export class RawClient {
  private data = '';
  private closed = false;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: tls.TLSSocket) {
    socket.on('data', (d: Buffer) => {
      this.data += d.toString('latin1');
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async connect(lab: Lab, who: IssuedCertificate | undefined, servername = SNI): Promise<RawClient> {
    const socket = tls.connect({ port: lab.port, host: '127.0.0.1', servername, ca: lab.serverCa.certPem, cert: who?.certPem, key: who?.keyPem });
    await once(socket, 'secureConnect');
    return new RawClient(socket);
  }

  private wake(): void {
    for (const w of this.waiters) w();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  write(bytes: string): void {
    this.socket.write(Buffer.from(bytes, 'latin1'));
  }

  /**
   * Wait until `count` complete responses have arrived (heads[i]: answers a
   * HEAD), the connection closed, or `limitMs` passed; return what arrived.
   */
  async responses(count: number, heads: readonly boolean[] = [], limitMs = 4000): Promise<{ responses: ParsedResponse[]; rest: string; closed: boolean }> {
    const deadline = Date.now() + limitMs;
    for (;;) {
      const parsed = parseResponses(this.data, heads);
      if (parsed.responses.length >= count || this.closed || Date.now() >= deadline) return { ...parsed, closed: this.closed };
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.max(1, deadline - Date.now()));
        this.waiters.add(done);
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
