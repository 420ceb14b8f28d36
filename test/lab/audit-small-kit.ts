/**
 * Small helpers for the audit regression tests of TCP mode (issue 10,
 * findings 8, 11-14): a backend that records the PROXY header it receives
 * (as raw bytes and decoded) and echoes upper-cased, a TCP-mode listener
 * configuration, and a TLS client that sends one line and reads the echo.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { parseProxyHeader, type ProxyParse } from '../../src/protocol/proxy-protocol.js';

export type CompleteProxyHeader = Extract<ProxyParse, { status: 'complete' }>;

export interface HeaderBackend {
  readonly port: number;
  /** Every PROXY header received, decoded, with its raw bytes. */
  readonly headers: Array<{ parsed: CompleteProxyHeader; raw: Buffer }>;
  /** Connections that reached the backend at all. */
  connections(): number;
  close(): Promise<void>;
}

/** A TCP backend that reads a PROXY header (v1 or v2), then echoes the payload upper-cased. */
export async function startHeaderBackend(): Promise<HeaderBackend> {
  const headers: HeaderBackend['headers'] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const parsed = parseProxyHeader(buffered);
      if (parsed.status === 'incomplete') return;
      socket.off('data', onData);
      if (parsed.status !== 'complete') {
        socket.destroy();
        return;
      }
      headers.push({ parsed, raw: Buffer.from(buffered.subarray(0, parsed.headerBytes)) });
      const rest = buffered.subarray(parsed.headerBytes);
      if (rest.length > 0) socket.write(rest.toString().toUpperCase());
      socket.on('data', (d: Buffer) => socket.write(d.toString().toUpperCase()));
      socket.on('end', () => socket.end());
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    headers,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** One TCP-mode listener (YAML, indented for the `listeners:` list). */
export function tcpListenerYaml(options: {
  name: string;
  port: number;
  upstreamPort: number;
  allow: string;
  proxyHeader?: 'none' | 'v1' | 'v2';
  /** Extra YAML lines at the listener level, each indented by 4 spaces. */
  extra?: string;
}): string {
  return `  - name: ${options.name}
    listen: 127.0.0.1:${options.port}
    mode: tcp
${options.extra ?? ''}    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - upstream: tcp://127.0.0.1:${options.upstreamPort}
        allow: ['${options.allow}']
        proxyHeader: ${options.proxyHeader ?? 'v2'}
`;
}

/**
 * Connect with TLS (over `socket` when given), send `line`, read until a
 * line comes back (then close) or the proxy closes. Never rejects.
 */
export async function tlsExchange(options: {
  port: number;
  servername: string;
  certPem?: string;
  keyPem?: string;
  line: string;
  socket?: net.Socket;
  timeoutMs?: number;
}): Promise<{ secure: boolean; received: string; error: string | undefined }> {
  const socket = tls.connect({
    ...(options.socket ? { socket: options.socket } : { port: options.port, host: '127.0.0.1' }),
    servername: options.servername,
    cert: options.certPem,
    key: options.keyPem,
    rejectUnauthorized: false,
  });
  let received = '';
  let secure = false;
  let error: string | undefined;
  socket.on('data', (d: Buffer) => {
    received += d.toString();
    // One line out, one line back: then close our side.
    if (received.endsWith('\n')) socket.end();
  });
  socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  socket.once('secureConnect', () => {
    secure = true;
    socket.write(`${options.line}\n`);
  });
  const timer = setTimeout(() => socket.destroy(), options.timeoutMs ?? 10_000);
  await new Promise((resolve) => socket.once('close', resolve));
  clearTimeout(timer);
  return { secure, received, error };
}
