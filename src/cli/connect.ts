/**
 * `dancegate connect`: a one-line TLS client for people who deploy devices.
 * It runs the native engine in client mode, sends the device's name in
 * dane_clientid (in the TLS 1.3 Certificate message when the server's
 * CertificateRequest asks for it, draft-ietf-dance-client-auth-13, or in the
 * ClientHello, tls-clientid), then pipes stdin to the server and the server
 * to stdout, byte for byte. A refusal is printed with the alert's name.
 *
 * Exit codes: 0 the server closed after a completed handshake; 1 refused,
 * failed or timed out (connection, handshake, verification of the server);
 * 2 bad arguments, or the native engine is unavailable.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import * as net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { readBoundedFile } from '../config/bounded-file.js';
import { MAX_PKI_FILE_BYTES } from '../config/load.js';
import { canonicalizeClientName } from '../dane/name.js';
import { DEFAULT_DANE_CLIENTID_TYPE } from '../protocol/client-hello.js';
import { TLS_ALERTS } from '../reasons.js';
import type { NativeTlsVersion } from '../tls/native-binding.js';
import { loadNativeEngine } from '../tls/native-engine.js';
import { NativeTlsError, NativeTlsSocket } from '../tls/native-socket.js';

export const CONNECT_HELP = `Usage: dancegate connect HOST:PORT --name NAME --cert FILE --key FILE [options]

Open a TLS connection as a device would, sending NAME (the device's TLSA owner
name) in the dane_clientid extension, and pipe stdin to the server and the
server to stdout, byte for byte. stdin's end closes our side (close_notify,
then FIN) unless --no-shutdown; the command ends when the server closes.
Needs the native TLS engine.

  --name NAME          the client name, e.g. sensor1._device.example.com
  --cert FILE          client certificate, PEM (leaf first, then its chain)
  --key FILE           its private key, PEM, unencrypted
  --form F             where the name goes (default certificate):
                         certificate  TLS 1.3 Certificate message, sent only when
                                      the server's CertificateRequest asks
                                      (draft-ietf-dance-client-auth-13)
                         clienthello  the ClientHello, TLS 1.2 or 1.3 (tls-clientid)
  --servername SNI     SNI to send and the name the server's certificate must
                       carry (default HOST; when HOST is an IP: no SNI, no name check)
  --ca FILE            CA bundle to verify the server with (default: the system's)
  --insecure           do not verify the server's certificate
  --alpn P             offer ALPN protocol P (repeat for more, preferred first)
  --tls1.2             TLS 1.2 only (form clienthello)
  --type N             the dane_clientid extension type (default ${DEFAULT_DANE_CLIENTID_TYPE}, the listener default)
  --timeout MS         connect and handshake deadline (default 10000)
  --no-shutdown        stdin's end does not close our side: wait for the server to
                       close (an HTTP server takes our close as the request abandoned)

stderr says 'connected: <version>, <cipher>, alpn <p|none>, ...' once the
handshake is done. Over TLS 1.3 the server decides after our last handshake
message, so its refusal arrives after that line: 'refused: the server sent
alert handshake_failure (40)'.
Exit codes: 0 the server closed the connection, 1 refused or failed, 2 bad arguments
or no native engine.
`;

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_TIMEOUT_MS = 3_600_000;

/**
 * Alert descriptions (RFC 8446 6, RFC 5246 7.2 and their extensions), for
 * naming the alert a server sent. The four the proxy itself sends come from
 * the reason catalog, so both spell them the same.
 */
export const ALERT_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [0, 'close_notify'],
  [10, 'unexpected_message'],
  [20, 'bad_record_mac'],
  [21, 'decryption_failed'],
  [22, 'record_overflow'],
  [30, 'decompression_failure'],
  [41, 'no_certificate'],
  [42, 'bad_certificate'],
  [43, 'unsupported_certificate'],
  [44, 'certificate_revoked'],
  [45, 'certificate_expired'],
  [46, 'certificate_unknown'],
  [47, 'illegal_parameter'],
  [48, 'unknown_ca'],
  [49, 'access_denied'],
  [50, 'decode_error'],
  [51, 'decrypt_error'],
  [60, 'export_restriction'],
  [70, 'protocol_version'],
  [71, 'insufficient_security'],
  [86, 'inappropriate_fallback'],
  [90, 'user_canceled'],
  [100, 'no_renegotiation'],
  [109, 'missing_extension'],
  [110, 'unsupported_extension'],
  [111, 'certificate_unobtainable'],
  [113, 'bad_certificate_status_response'],
  [114, 'bad_certificate_hash_value'],
  [115, 'unknown_psk_identity'],
  [120, 'no_application_protocol'],
  ...Object.entries(TLS_ALERTS).map(([name, code]): [number, string] => [code, name]),
]);

/** "handshake_failure (40)"; an unknown number is said as such. */
export function describeAlert(code: number): string {
  return `${ALERT_NAMES.get(code) ?? 'unknown alert'} (${code})`;
}

export type NameForm = 'certificate' | 'clienthello';

/** The command line, checked, before any file is read. */
export interface ConnectArgs {
  readonly host: string;
  readonly port: number;
  readonly name: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly form: NameForm;
  /** SNI to send; undefined when HOST is an IP and no --servername was given. */
  readonly serverName: string | undefined;
  readonly caFile: string | undefined;
  readonly insecure: boolean;
  readonly alpn: readonly string[] | undefined;
  readonly minVersion: NativeTlsVersion;
  readonly maxVersion: NativeTlsVersion;
  readonly extensionType: number;
  readonly timeoutMs: number;
  /** stdin's end leaves our side open. */
  readonly noShutdown: boolean;
}

export type ParsedConnectArgs = { readonly kind: 'help' } | { readonly kind: 'args'; readonly args: ConnectArgs } | { readonly kind: 'usage'; readonly message: string };

/** HOST:PORT, [IPv6]:PORT; the brackets are removed. */
function parseTarget(spec: string): { host: string; port: number } | string {
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(spec);
  const plain = /^([^:[\]]+):(\d{1,5})$/.exec(spec);
  const match = bracketed ?? plain;
  if (match === null) return `HOST:PORT expected (an IPv6 address in brackets: [::1]:443), got '${spec}'`;
  const host = match[1] as string;
  const port = Number(match[2]);
  if (bracketed !== null && net.isIP(host) !== 6) return `'${host}' in brackets is not an IPv6 address`;
  if (port < 1 || port > 65535) return `port must be 1 to 65535, got ${port}`;
  return { host, port };
}

/** The command line of `connect`, checked; pure (no file is read). */
export function parseConnectArgs(argv: readonly string[]): ParsedConnectArgs {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        help: { type: 'boolean', short: 'h' },
        name: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        form: { type: 'string' },
        servername: { type: 'string' },
        ca: { type: 'string' },
        insecure: { type: 'boolean' },
        alpn: { type: 'string', multiple: true },
        'tls1.2': { type: 'boolean' },
        type: { type: 'string' },
        timeout: { type: 'string' },
        'no-shutdown': { type: 'boolean' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    return { kind: 'usage', message: (err as Error).message };
  }
  const { values, positionals } = parsed;
  const usage = (message: string): ParsedConnectArgs => ({ kind: 'usage', message });
  if (values.help === true) return { kind: 'help' };
  if (positionals.length !== 1) return usage('exactly one HOST:PORT is required (dancegate connect HOST:PORT --name NAME --cert FILE --key FILE)');
  const target = parseTarget(positionals[0] as string);
  if (typeof target === 'string') return usage(target);
  const str = (key: string): string | undefined => {
    const value = values[key];
    return typeof value === 'string' ? value : undefined;
  };
  const rawName = str('name');
  if (rawName === undefined) return usage('--name NAME is required (the client name sent in dane_clientid)');
  const name = canonicalizeClientName(rawName);
  if (!name.ok) return usage(`--name ${JSON.stringify(rawName)}: ${name.reason}`);
  const certFile = str('cert');
  if (certFile === undefined) return usage('--cert FILE is required');
  const keyFile = str('key');
  if (keyFile === undefined) return usage('--key FILE is required');
  const form = str('form') ?? 'certificate';
  if (form !== 'certificate' && form !== 'clienthello') return usage(`--form must be certificate or clienthello, got '${form}'`);
  const tls12 = values['tls1.2'] === true;
  if (tls12 && form === 'certificate') return usage('--tls1.2: the certificate form is TLS 1.3 only (draft -13); use --form clienthello');
  const caFile = str('ca');
  const insecure = values.insecure === true;
  if (caFile !== undefined && insecure) return usage('--ca and --insecure exclude each other');
  const sni = str('servername');
  if (sni !== undefined && (sni.length === 0 || sni.length > 253 || net.isIP(sni) !== 0 || !/^[A-Za-z0-9_.-]+$/.test(sni))) {
    return usage(`--servername must be a DNS name, got '${sni}'`);
  }
  const alpn = values.alpn as string[] | undefined;
  const badAlpn = alpn?.find((p) => p.length === 0 || Buffer.byteLength(p) > 255);
  if (badAlpn !== undefined) return usage(`--alpn: a protocol name is 1 to 255 bytes, got '${badAlpn}'`);
  const typeText = str('type');
  const extensionType = typeText === undefined ? DEFAULT_DANE_CLIENTID_TYPE : Number(typeText);
  if (typeText !== undefined && (!/^\d{1,5}$/.test(typeText) || extensionType > 65535)) return usage(`--type must be an extension type from 0 to 65535, got '${typeText}'`);
  const timeoutText = str('timeout');
  const timeoutMs = timeoutText === undefined ? DEFAULT_TIMEOUT_MS : Number(timeoutText);
  if (timeoutText !== undefined && (!/^\d{1,7}$/.test(timeoutText) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS)) {
    return usage(`--timeout must be 1 to ${MAX_TIMEOUT_MS} milliseconds, got '${timeoutText}'`);
  }
  return {
    kind: 'args',
    args: {
      host: target.host,
      port: target.port,
      name: name.name,
      certFile,
      keyFile,
      form,
      serverName: sni ?? (net.isIP(target.host) === 0 ? target.host : undefined),
      caFile,
      insecure,
      alpn,
      minVersion: form === 'certificate' ? 'TLSv1.3' : 'TLSv1.2',
      maxVersion: tls12 ? 'TLSv1.2' : 'TLSv1.3',
      extensionType,
      timeoutMs,
      noShutdown: values['no-shutdown'] === true,
    },
  };
}

class ConnectUsageError extends Error {}

async function readPem(option: string, path: string): Promise<string> {
  try {
    return (await readBoundedFile(path, MAX_PKI_FILE_BYTES)).toString('utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConnectUsageError(`${option} ${path}: cannot read it (${e.code ?? e.message})`);
  }
}

/** The PEM files, checked here (not left to OpenSSL) so that each error names its argument. */
async function readCredentials(args: ConnectArgs): Promise<{ certPem: string; keyPem: string; caPem: string | undefined }> {
  const certPem = await readPem('--cert', args.certFile);
  const keyPem = await readPem('--key', args.keyFile);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certPem);
  } catch {
    throw new ConnectUsageError(`--cert ${args.certFile}: no PEM certificate in it`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    const passphrase = /passphrase/i.test((err as Error).message);
    throw new ConnectUsageError(`--key ${args.keyFile}: ${passphrase ? 'the key is encrypted; an unencrypted PEM key is needed' : 'no PEM private key in it'}`);
  }
  if (!certificate.checkPrivateKey(key)) throw new ConnectUsageError(`--key ${args.keyFile}: the key does not match the certificate in ${args.certFile}`);
  let caPem: string | undefined;
  if (args.caFile !== undefined) {
    caPem = await readPem('--ca', args.caFile);
    try {
      new X509Certificate(caPem);
    } catch {
      throw new ConnectUsageError(`--ca ${args.caFile}: no PEM certificate in it`);
    }
  }
  return { certPem, keyPem, caPem };
}

export interface ConnectIo {
  /** Messages (help goes here). */
  readonly stdout: { write(text: string): unknown };
  /** Status lines: connected, refused, failed, warnings. */
  readonly stderr: { write(text: string): unknown };
}

export interface ConnectStreams {
  /** What is sent to the server. */
  readonly input: Readable;
  /** Where the server's bytes go. */
  readonly output: Writable;
}

/** `dancegate connect ...`: the exit code. */
export async function connectCommand(argv: readonly string[], io: ConnectIo, streams: ConnectStreams = { input: process.stdin, output: process.stdout }): Promise<number> {
  const parsed = parseConnectArgs(argv);
  if (parsed.kind === 'help') {
    io.stdout.write(CONNECT_HELP);
    return EXIT_OK;
  }
  if (parsed.kind === 'usage') {
    io.stderr.write(`dancegate: ${parsed.message}\n`);
    return EXIT_USAGE;
  }
  const args = parsed.args;
  let credentials: Awaited<ReturnType<typeof readCredentials>>;
  try {
    credentials = await readCredentials(args);
  } catch (err) {
    if (!(err instanceof ConnectUsageError)) throw err;
    io.stderr.write(`dancegate: ${err.message}\n`);
    return EXIT_USAGE;
  }
  const engine = loadNativeEngine();
  if (!engine.ok) {
    io.stderr.write(`dancegate: connect needs the native TLS engine, which is unavailable: ${engine.reason}\n`);
    return EXIT_USAGE;
  }
  const verify = !args.insecure;
  let connection: EngineConnection;
  try {
    const context = engine.binding.createContext({
      role: 'client',
      certPem: credentials.certPem,
      keyPem: credentials.keyPem,
      extensionType: args.extensionType,
      minVersion: args.minVersion,
      maxVersion: args.maxVersion,
      alpn: args.alpn,
      caPem: credentials.caPem,
      verifyPeer: verify,
    });
    connection = new engine.binding.Connection(context, {
      serverName: args.serverName,
      verifyHost: verify ? args.serverName : undefined,
      clientName: args.name,
      clientNameForm: args.form,
    });
  } catch (err) {
    // Our own checks came first, so what is left is a setting OpenSSL refuses (an --type it handles itself, say).
    io.stderr.write(`dancegate: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
  if (!verify) io.stderr.write(`warning: --insecure: the server's certificate is not verified\n`);
  else if (args.serverName === undefined)
    io.stderr.write(`note: ${args.host} is an IP address and no --servername was given: no SNI is sent and the name in the server's certificate is not checked (its chain is)\n`);
  return run(args, connection, io, streams);
}

/** Words for the connection errors a device team meets most. */
const CONNECT_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: ' (connection refused)',
  ENOTFOUND: ' (no such host)',
  EHOSTUNREACH: ' (host unreachable)',
  ENETUNREACH: ' (network unreachable)',
  ECONNRESET: ' (connection reset)',
};

type EngineConnection = ConstructorParameters<typeof NativeTlsSocket>[1];

/** Connect, shake hands, pipe both ways; the exit code. */
function run(args: ConnectArgs, connection: EngineConnection, io: ConnectIo, streams: ConnectStreams): Promise<number> {
  const { input, output } = streams;
  const target = `${net.isIP(args.host) === 6 ? `[${args.host}]` : args.host}:${args.port}`;
  return new Promise<number>((resolve) => {
    let settled = false;
    let secure = false;
    let tls: NativeTlsSocket | undefined;
    const raw = net.connect({ host: args.host, port: args.port });
    const finish = (code: number, line?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (line !== undefined) io.stderr.write(`${line}\n`);
      input.off('data', onInput);
      input.off('end', onInputEnd);
      input.pause();
      // A terminal or pipe left open would keep the process alive after the server is gone.
      if (input === process.stdin) input.destroy();
      if (tls === undefined) {
        raw.destroy();
        connection.destroy();
      } else tls.destroy();
      // The last bytes reach stdout before the exit code is given.
      if (output.writableNeedDrain) output.once('drain', () => resolve(code));
      else resolve(code);
    };
    const deadline = setTimeout(() => {
      finish(EXIT_FAILED, tls === undefined ? `failed: cannot connect to ${target}: no connection within ${args.timeoutMs} ms` : `failed: no TLS handshake with ${target} within ${args.timeoutMs} ms`);
    }, args.timeoutMs);

    const onInput = (chunk: Buffer): void => {
      if (tls !== undefined && !tls.write(chunk)) input.pause();
    };
    let inputEnded = false;
    // Ended only once the handshake is done: an end during the handshake would close the TCP connection under it.
    const onInputEnd = (): void => {
      if (args.noShutdown) return;
      inputEnded = true;
      if (secure) tls?.end();
    };

    raw.once('error', (err: NodeJS.ErrnoException) => {
      if (tls === undefined) finish(EXIT_FAILED, `failed: cannot connect to ${target}: ${err.code ?? err.message}${CONNECT_ERRORS[err.code ?? ''] ?? ''}`);
    });
    raw.once('connect', () => {
      if (settled) return;
      const socket = new NativeTlsSocket(raw, connection);
      tls = socket;
      socket.on('secure', () => {
        secure = true;
        clearTimeout(deadline);
        const cipher = socket.getCipher()?.name ?? 'unknown cipher';
        const where = args.form === 'clienthello' ? 'name sent in clienthello' : 'name sent in certificate if asked';
        io.stderr.write(`connected: ${socket.getProtocol() ?? 'unknown'}, ${cipher}, alpn ${socket.alpnProtocol === false || socket.alpnProtocol === null ? 'none' : socket.alpnProtocol}, ${where}\n`);
        if (inputEnded) socket.end();
      });
      socket.on('data', (chunk: Buffer) => {
        if (!output.write(chunk)) {
          socket.pause();
          output.once('drain', () => socket.resume());
        }
      });
      socket.on('drain', () => input.resume());
      // The server closed its side: the output is complete; close ours too (close_notify), then stop.
      socket.on('end', () => {
        if (socket.writable) socket.end(() => finish(EXIT_OK));
        else finish(EXIT_OK);
      });
      socket.on('error', (err: Error) => {
        if (err instanceof NativeTlsError && err.alertReceived !== undefined && err.alertReceived !== 0) {
          finish(EXIT_FAILED, `refused: the server sent alert ${describeAlert(err.alertReceived)}`);
          return;
        }
        const sent = err instanceof NativeTlsError && err.alertSent !== undefined ? ` (we sent alert ${describeAlert(err.alertSent)})` : '';
        const code = (err as NodeJS.ErrnoException).code;
        // A socket error (a reset) in words; an engine error without the alert numbers, said above in words.
        const cause = code !== undefined ? `${code}${CONNECT_ERRORS[code] ?? ''}` : err.message.replace(/ \(alert (sent|received) \d+(, alert received \d+)?\)$/, '');
        finish(EXIT_FAILED, `failed: ${secure ? '' : 'TLS handshake with '}${secure ? 'the connection' : target}: ${cause}${sent}`);
      });
      socket.on('close', () => finish(secure ? EXIT_OK : EXIT_FAILED, secure ? undefined : `failed: ${target} closed the connection during the TLS handshake`));
      output.on('error', () => finish(EXIT_OK));
      input.on('data', onInput);
      input.on('end', onInputEnd);
      socket.start();
    });
  });
}
