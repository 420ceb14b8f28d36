/**
 * Helpers for the draft-ietf-dance-client-auth-13 end-to-end tests: the
 * backends that count what reaches them (so a test can prove a refused
 * client reached nothing), and curl / openssl s_client runs that report
 * their exit status and stderr instead of throwing.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { promisify } from 'node:util';
import { parseProxyHeader, type ProxyParse } from '../../src/protocol/proxy-protocol.js';

const run = promisify(execFile);

/** The PROXY v2 TLV dancegate writes the verified name in (proxyV2.nameTlv default). */
export const NAME_TLV = 0xe4;

export interface CountingTcpBackend {
  readonly port: number;
  /** TCP connections accepted: a refused client must leave this at 0. */
  readonly accepted: () => number;
  /** Payload bytes received after the PROXY header. */
  readonly payloadBytes: () => number;
  /** Every complete PROXY header read, in order. */
  readonly headers: Array<Extract<ProxyParse, { status: 'complete' }>>;
  /** The name TLV of each PROXY v2 header, as text (undefined when absent). */
  readonly names: () => Array<string | undefined>;
  reset(): void;
  close(): Promise<void>;
}

/**
 * A TCP backend behind a `proxyHeader: v2` route: reads the PROXY header,
 * then answers the first payload chunk with `<name TLV>: <payload upper-cased>`
 * and closes (so a client reading until EOF finishes).
 */
export async function startCountingTcpBackend(): Promise<CountingTcpBackend> {
  const headers: Array<Extract<ProxyParse, { status: 'complete' }>> = [];
  let accepted = 0;
  let payloadBytes = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    let header: Extract<ProxyParse, { status: 'complete' }> | undefined;
    socket.on('data', (chunk: Buffer) => {
      if (header === undefined) {
        buffered = Buffer.concat([buffered, chunk]);
        const parsed = parseProxyHeader(buffered);
        if (parsed.status === 'incomplete') return;
        if (parsed.status !== 'complete') return void socket.destroy();
        header = parsed;
        headers.push(parsed);
        chunk = buffered.subarray(parsed.headerBytes);
        if (chunk.length === 0) return;
      }
      payloadBytes += chunk.length;
      const name = header.header.tlvs.find((t) => t.type === NAME_TLV)?.value.toString() ?? '(none)';
      socket.end(`${name}: ${chunk.toString().toUpperCase()}`);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    payloadBytes: () => payloadBytes,
    headers,
    names: () => headers.map((h) => h.header.tlvs.find((t) => t.type === NAME_TLV)?.value.toString()),
    reset() {
      headers.length = 0;
      accepted = 0;
      payloadBytes = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface CountingHttpBackend {
  readonly port: number;
  /** The headers of every request received: a refused client must leave this empty. */
  readonly requests: http.IncomingHttpHeaders[];
  close(): Promise<void>;
}

/** An HTTP backend answering `hello <x-dane-client-id>` to every request. */
export async function startCountingHttpBackend(): Promise<CountingHttpBackend> {
  const requests: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.headers);
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${String(req.headers['x-dane-client-id'] ?? 'nobody')}\n`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface ToolRun {
  /** The exit status (-1 when killed by the timeout). */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run a tool; a non-zero exit is a result, not an exception. */
export async function runTool(command: string, args: readonly string[], timeoutMs = 15_000): Promise<ToolRun> {
  try {
    const { stdout, stderr } = await run(command, args, { timeout: timeoutMs });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number | null | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** curl over HTTPS to `host` on 127.0.0.1:`port` with a client certificate; `-w` appends the status on the last line. */
export async function curlWithCertificate(args: {
  port: number;
  host: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  extra?: readonly string[];
}): Promise<ToolRun & { readonly status: string; readonly body: string }> {
  const r = await runTool('curl', [
    '-sS',
    '--max-time',
    '10',
    '--cacert',
    args.caFile,
    '--resolve',
    `${args.host}:${args.port}:127.0.0.1`,
    '--cert',
    args.certFile,
    '--key',
    args.keyFile,
    '-w',
    '\n%{http_code}',
    ...(args.extra ?? []),
    `https://${args.host}:${args.port}/resource`,
  ]);
  const cut = r.stdout.lastIndexOf('\n');
  return { ...r, body: r.stdout.slice(0, Math.max(cut, 0)).replace(/\n$/, ''), status: r.stdout.slice(cut + 1) };
}

/**
 * openssl s_client: send `line` and collect what comes back until the server
 * closes (stdin is held open 1.5 s so a refusal has time to arrive).
 */
export async function sClient(args: { port: number; sni: string; certFile: string; keyFile: string; line: string; extra?: readonly string[] }): Promise<ToolRun> {
  const child = spawn(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${args.port}`, '-servername', args.sni, '-quiet', '-no_ign_eof', '-cert', args.certFile, '-key', args.keyFile, ...(args.extra ?? [])],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // s_client may exit (refused) before the write lands.
  child.stdin.on('error', () => undefined);
  child.stdin.write(`${args.line}\n`);
  const timer = setTimeout(() => child.stdin.end(), 1500);
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  clearTimeout(killer);
  return { code: code ?? -1, stdout, stderr };
}
