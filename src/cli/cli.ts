/**
 * The dancegate command line. `runCli` takes argv and output streams and
 * returns the exit code: 0 success (authenticated), 1 not authenticated,
 * 2 usage or configuration error.
 */
import cluster from 'node:cluster';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer, isIP } from 'node:net';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { DancegateConfig } from '../config/types.js';
import type { TlsaCache } from '../lookup/cache.js';
import { buildLookup } from '../lookup/build.js';
import { parseCertificates, type ParsedCertificate } from '../dane/certificate.js';
import { canonicalizeClientName } from '../dane/name.js';
import { RESOLVER_LIMITS, type ResolverServer, type ResolverTransport } from '../dns/resolver.js';
import { describeTlsaParameters, formatTlsaRdata, formatTlsaRecord, tlsaRecordForCertificate } from '../dane/tlsa.js';
import { verifyClient } from '../connection/verify.js';
import type { DemoFiles } from './demo.js';

export interface CliIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
}

export const EXIT_OK = 0;
export const EXIT_NOT_AUTHENTICATED = 1;
export const EXIT_USAGE = 2;
/** `serve` could not start (a port in use, a resolver that does not validate); also a drain that had to cut connections. */
export const EXIT_START_FAILED = 1;

class UsageError extends Error {}

function version(): string {
  const require = createRequire(import.meta.url);
  for (const path of ['../../package.json', '../../../package.json']) {
    try {
      return (require(path) as { version: string }).version;
    } catch {
      // try the next layout (source vs dist)
    }
  }
  return 'unknown';
}

const MAIN_HELP = `dancegate: DANE client-authentication TLS front proxy

Usage: dancegate <command> [options]

Commands:
  serve   Run the proxy: 'serve -c dancegate.yaml', or with no -c the embedded demo
  config  'config check -c FILE' validates a configuration without serving
  tlsa    Print the TLSA record for a client certificate
  check   Look up a client name's TLSA records and verify a certificate against them
  connect Connect to HOST:PORT as a device: send the name in dane_clientid, pipe stdin/stdout

Options:
  -h, --help      Show help (also after a command: dancegate check --help)
  -V, --version   Print the version

Exit codes: 0 success / authenticated, 1 not authenticated, 2 usage or configuration error.
`;

const TLSA_HELP = `Usage: dancegate tlsa --cert FILE [--usage 3] [--selector 1] [--mtype 1] [--name OWNER]

Print the TLSA record that publishes a certificate, in presentation format.

  --cert FILE      PEM or DER certificate (the first certificate is used)
  --usage N        0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE (default 3)
  --selector N     0 full certificate, 1 SubjectPublicKeyInfo (default 1)
  --mtype N        0 exact bytes, 1 SHA-256, 2 SHA-512 (default 1)
  --name OWNER     client name, or a wildcard '*.suffix' owner; printed first as the record's owner
`;

const CHECK_HELP = `Usage: dancegate check NAME --cert FILE [--chain FILE] [--resolver HOST:PORT]... [--transport udp|tcp|tls] [--json]

Look up NAME's TLSA records (DNSSEC-validated answers only) and verify the
certificate against them, exactly as the proxy would.

  --cert FILE          client certificate, PEM (may hold the chain, leaf first) or DER
  --chain FILE         further chain certificates, PEM
  --resolver HOST:PORT validating resolver, IP literal (default 127.0.0.1:53); repeat for failover
  --transport T        udp (TCP retry on truncation), tcp or tls (DNS over TLS) (default udp)
  --tls-ca FILE        DNS over TLS: CA certificate(s) for the resolver
  --tls-name NAME      DNS over TLS: name in the resolver's certificate (default: its IP)
  --timeout MS         total lookup deadline (default 5000)
  --allow-remote-plain-resolver
                       accept plain UDP/TCP to a resolver that is not on loopback
  --pkix-ca FILE       CA bundle for PKIX-TA/PKIX-EE records (usages 0 and 1)
  --json               print the result as JSON
`;

function parseOctetOption(value: string | undefined, fallback: number, option: string, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) > max) throw new UsageError(`--${option} must be a number from 0 to ${max}, got '${value}'`);
  return Number(value);
}

async function readCertificates(path: string): Promise<ParsedCertificate[]> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return parseCertificates(data, path);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function parse(args: string[], options: ParseArgsConfig['options']): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * The owner name of `tlsa --name`, canonical: a client name, or a wildcard
 * owner whose leftmost label is `*` (`*._device.example.com`, one record
 * for a whole fleet). Throws UsageError saying what is wrong.
 */
function tlsaOwnerName(input: string): string {
  const wildcard = input.startsWith('*.');
  const body = wildcard ? input.slice(2) : input;
  if (body.includes('*')) throw new UsageError(`--name: a wildcard is only allowed as the whole leftmost label, as in '*._device.example.com'`);
  const name = canonicalizeClientName(body);
  if (!name.ok) throw new UsageError(`--name: ${name.reason}`);
  return wildcard ? `*.${name.name}` : name.name;
}

async function tlsaCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, {
    cert: { type: 'string' },
    usage: { type: 'string' },
    selector: { type: 'string' },
    mtype: { type: 'string' },
    name: { type: 'string' },
  });
  if (values.help) {
    io.stdout.write(TLSA_HELP);
    return EXIT_OK;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  if (typeof values.cert !== 'string') throw new UsageError('--cert FILE is required');
  const usage = parseOctetOption(values.usage as string | undefined, 3, 'usage', 3);
  const selector = parseOctetOption(values.selector as string | undefined, 1, 'selector', 1);
  const mtype = parseOctetOption(values.mtype as string | undefined, 1, 'mtype', 2);
  const owner = typeof values.name === 'string' ? tlsaOwnerName(values.name) : undefined;
  const [cert] = await readCertificates(values.cert);
  io.stdout.write(`${formatTlsaRecord(tlsaRecordForCertificate(cert as ParsedCertificate, usage, selector, mtype), owner)}\n`);
  return EXIT_OK;
}

function parseResolver(spec: string, transport: ResolverTransport, tlsCa: string | undefined, tlsName: string | undefined): ResolverServer {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(spec);
  let host: string;
  let port: string | undefined;
  if (bracketed) {
    host = bracketed[1] as string;
    port = bracketed[2];
  } else if (isIP(spec) === 6) {
    host = spec;
  } else {
    const colon = spec.lastIndexOf(':');
    host = colon === -1 ? spec : spec.slice(0, colon);
    port = colon === -1 ? undefined : spec.slice(colon + 1);
  }
  const defaultPort = transport === 'tls' ? 853 : 53;
  if (port !== undefined && !/^\d{1,5}$/.test(port)) throw new UsageError(`--resolver ${spec}: port must be a number`);
  return { host, port: port === undefined ? defaultPort : Number(port), transport, tlsCa, tlsServerName: tlsName };
}

async function checkCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, {
    cert: { type: 'string' },
    chain: { type: 'string' },
    resolver: { type: 'string', multiple: true },
    transport: { type: 'string' },
    'tls-ca': { type: 'string' },
    'tls-name': { type: 'string' },
    timeout: { type: 'string' },
    'allow-remote-plain-resolver': { type: 'boolean' },
    'pkix-ca': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) {
    io.stdout.write(CHECK_HELP);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw new UsageError('exactly one NAME is required (dancegate check NAME --cert FILE)');
  const claimed = positionals[0] as string;
  const name = canonicalizeClientName(claimed);
  if (!name.ok) throw new UsageError(`NAME ${JSON.stringify(claimed)}: ${name.reason}`);
  if (typeof values.cert !== 'string') throw new UsageError('--cert FILE is required');
  const transport = (values.transport ?? 'udp') as string;
  if (transport !== 'udp' && transport !== 'tcp' && transport !== 'tls') {
    throw new UsageError(`--transport must be udp, tcp or tls, got '${transport}'`);
  }
  let timeout: number | undefined;
  if (values.timeout !== undefined) {
    timeout = Number(values.timeout);
    const { min, max } = RESOLVER_LIMITS.totalTimeoutMs;
    if (!Number.isInteger(timeout) || timeout < min || timeout > max) throw new UsageError(`--timeout must be ${min} to ${max} milliseconds`);
  }
  const chain = await readCertificates(values.cert);
  if (typeof values.chain === 'string') chain.push(...(await readCertificates(values.chain)));
  const pkixRoots = typeof values['pkix-ca'] === 'string' ? await readCertificates(values['pkix-ca']) : undefined;
  let tlsCa: string | undefined;
  if (typeof values['tls-ca'] === 'string') {
    try {
      tlsCa = await readFile(values['tls-ca'], 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${values['tls-ca']}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const tlsName = typeof values['tls-name'] === 'string' ? values['tls-name'] : undefined;
  const specs = (values.resolver as string[] | undefined) ?? ['127.0.0.1'];
  const servers = specs.map((s) => parseResolver(s, transport, tlsCa, tlsName));
  let cache: TlsaCache;
  try {
    const settings = {
      servers,
      totalTimeoutMs: timeout,
      attemptTimeoutMs: timeout === undefined ? undefined : Math.min(timeout, 2000),
      allowRemotePlainResolver: values['allow-remote-plain-resolver'] === true,
    };
    cache = buildLookup(settings, { resolverGate: undefined }).cache;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const result = await verifyClient({ claimedName: name.name, chain, cache, pkixRoots });
  const verdicts = result.decision?.records ?? [];
  const records = (result.lookup?.records ?? []).map((record, i) => ({
    usage: record.usage,
    selector: record.selector,
    matchingType: record.matchingType,
    data: record.data.toString('hex'),
    verdict: verdicts[i]?.verdict,
  }));
  if (values.json) {
    io.stdout.write(
      `${JSON.stringify(
        {
          name: result.name,
          authenticated: result.authenticated,
          reason: result.reason,
          detail: result.detail,
          lookup: result.lookup && {
            outcome: result.lookup.kind,
            detail: result.lookup.detail,
            ttl: result.lookup.ttl,
            canonicalName: result.lookup.canonicalName,
          },
          records,
          certificate: { subject: chain[0]?.subject, sha256: chain[0]?.sha256Hex, dnsNames: chain[0]?.dnsNames },
        },
        null,
        2,
      )}\n`,
    );
  } else {
    const lines = [`name:     ${result.name}`];
    if (result.lookup) {
      lines.push(`lookup:   ${result.lookup.kind} (${result.lookup.detail})`);
      if (result.lookup.canonicalName) lines.push(`alias of: ${result.lookup.canonicalName}`);
    }
    if (records.length > 0) {
      lines.push('records:');
      (result.lookup?.records ?? []).forEach((record, i) => {
        lines.push(`  ${i + 1}. ${formatTlsaRdata(record)}`);
        lines.push(`     ${describeTlsaParameters(record)}: ${verdicts[i]?.verdict ?? 'not evaluated'}`);
      });
    }
    lines.push(`outcome:  ${result.authenticated ? 'authenticated' : 'NOT authenticated'}`);
    lines.push(`reason:   ${result.reason} (${result.detail})`);
    io.stdout.write(`${lines.join('\n')}\n`);
  }
  return result.authenticated ? EXIT_OK : EXIT_NOT_AUTHENTICATED;
}

const SERVE_HELP = `Usage: dancegate serve [-c dancegate.yaml] [--demo-port PORT]

Run the proxy with the given configuration. Without -c, run the embedded demo:
a dev PKI under certs/out, an echo backend and the proxy on 127.0.0.1 in HTTP
mode with a local TLSA file; it prints the curl command to try. Decision logs
go to stdout as JSON lines. SIGINT/SIGTERM stop it.

  -c, --config FILE   configuration file (see the README's configuration reference)
  --demo-port PORT    the demo proxy's port (default 8443; 0 = any free port)
`;

const CONFIG_HELP = `Usage: dancegate config check -c FILE

Validate a configuration file (and the files it names) without serving.
Exit codes: 0 valid, 2 invalid (every problem is listed with its key path).
`;

async function loadConfigOrUsage(path: string): Promise<DancegateConfig> {
  const { loadConfig, ConfigError } = await import('../config/load.js');
  try {
    return await loadConfig(path);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`invalid configuration:\n${err.message}`);
    throw err;
  }
}

async function configCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { config: { type: 'string', short: 'c' } });
  if (values.help) {
    io.stdout.write(CONFIG_HELP);
    return EXIT_OK;
  }
  if (positionals[0] !== 'check' || positionals.length !== 1) throw new UsageError('usage: dancegate config check -c FILE');
  if (typeof values.config !== 'string') throw new UsageError('-c FILE is required');
  const config = await loadConfigOrUsage(values.config);
  const routes = config.listeners.reduce((n, l) => n + l.routes.length, 0);
  io.stdout.write(`${config.source}: valid (${config.listeners.length} listener(s), ${routes} route(s))\n`);
  return EXIT_OK;
}

async function serveCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { config: { type: 'string', short: 'c' }, 'demo-port': { type: 'string' } });
  if (values.help) {
    io.stdout.write(SERVE_HELP);
    return EXIT_OK;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const { serve, StartError } = await import('./serve.js');
  let demo: { files: DemoFiles; cwd: string; stop: () => Promise<void> } | undefined;
  let configPath: string;
  if (typeof values.config === 'string') {
    configPath = values.config;
  } else {
    const demoModule = await import('./demo.js');
    const wanted = values['demo-port'] === undefined ? 8443 : Number(values['demo-port']);
    if (!Number.isInteger(wanted) || wanted < 0 || wanted > 65535) throw new UsageError('--demo-port must be 0 to 65535');
    const backend = await demoModule.startEchoBackend();
    const port = (await portIsFree(wanted)) ? wanted : 0;
    const cwd = process.cwd();
    const files = await demoModule.writeDemoConfig(join(cwd, 'certs', 'out'), port, backend.port);
    configPath = files.configFile;
    demo = { files, cwd, stop: () => new Promise<void>((resolve) => backend.server.close(() => resolve())) };
    io.stderr.write(`dancegate: embedded demo: echo backend on 127.0.0.1:${backend.port}, dev PKI in ${files.dir}\n`);
  }
  try {
    // A cluster worker never reads the file: the primary hands it the text in force.
    const config = cluster.isWorker ? undefined : await loadConfigOrUsage(configPath);
    let served: Awaited<ReturnType<typeof serve>>;
    try {
      served = await serve(configPath, config, version(), io);
    } catch (err) {
      if (!(err instanceof StartError)) throw err;
      // Something the operator can fix (a port in use, a resolver that does not validate): said in words, exit 1.
      // A worker's reason is said once, by the primary.
      if (!cluster.isWorker) io.stderr.write(`dancegate: ${err.message}\n`);
      return EXIT_START_FAILED;
    }
    if (demo) {
      const { demoCurlCommand } = await import('./demo.js');
      const port = served.listeners[0]?.port ?? 0;
      io.stderr.write(`dancegate: try it (the backend echoes the headers it receives, X-Dane-Client-Id among them):\n\n  ${demoCurlCommand(demo.files, port, demo.cwd)}\n\n`);
    }
    return await served.done;
  } finally {
    await demo?.stop();
  }
}

function portIsFree(port: number): Promise<boolean> {
  if (port === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        io.stdout.write(MAIN_HELP);
        return command === undefined ? EXIT_USAGE : EXIT_OK;
      case '-V':
      case '--version':
        io.stdout.write(`dancegate ${version()}\n`);
        return EXIT_OK;
      case 'serve':
        return await serveCommand(rest, io);
      case 'config':
        return await configCommand(rest, io);
      case 'tlsa':
        return await tlsaCommand(rest, io);
      case 'check':
        return await checkCommand(rest, io);
      case 'connect': {
        const { connectCommand } = await import('./connect.js');
        return await connectCommand(rest, io);
      }
      default:
        throw new UsageError(`unknown command '${command}'; see dancegate --help`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`dancegate: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
}
