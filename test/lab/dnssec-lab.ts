/**
 * A real DNSSEC lab on loopback for the test suite (RFC 4033-4035 validation, end to end):
 * NSD serving zones signed with ldns-signzone, Unbound validating them with
 * the zones' DS records as trust anchors. Both run as children on free
 * ports and are killed on stop() or when the test process exits.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stopProcess } from './process.js';

const run = promisify(execFile);

export type SigningAlgorithm = 8 | 10 | 13 | 14 | 15 | 16;

export interface LabZone {
  /** e.g. 'alg13.test' (no trailing dot); every zone lives under the TLD 'test'. */
  readonly origin: string;
  /** Zone-file lines, owners relative to the origin or absolute with a trailing dot. SOA and NS are added. */
  readonly records: readonly string[];
  readonly signing: { readonly algorithm: SigningAlgorithm } | 'unsigned';
  /** After signing, flip a hex digit in the first TLSA record so validation fails (bogus). */
  readonly tamper?: boolean;
  /** Sign with inception and expiry in the past (bogus). */
  readonly expiredSignatures?: boolean;
  /** SOA MINIMUM (negative TTL), default 60. */
  readonly soaMinimum?: number;
}

export interface LabOptions {
  /** Also serve DNS over TLS with this certificate and key (PEM). */
  readonly dot?: { readonly certPem: string; readonly keyPem: string };
  /** Extra stub zones (e.g. an unsigned zone served by a deliberately slow fake). */
  readonly extraStubZones?: ReadonlyArray<{ readonly name: string; readonly host: string; readonly port: number }>;
}

export interface DnsLab {
  readonly resolver: { readonly host: '127.0.0.1'; readonly port: number };
  /** DNS over TLS port of the same Unbound, when LabOptions.dot was given. */
  readonly dotPort: number | undefined;
  readonly authoritative: { readonly host: '127.0.0.1'; readonly port: number };
  readonly dir: string;
  /**
   * Replace a zone's records (same origin, same keys), re-sign it and make
   * NSD load it (SIGHUP). Unbound keeps what it cached until the TTLs run out.
   */
  updateZone(origin: string, records: readonly string[]): Promise<void>;
  /** Questions clients asked Unbound since start or the last reset (from Unbound's query log). */
  clientQueries(): Promise<Array<{ name: string; type: string }>>;
  resetQueryLog(): Promise<void>;
  stop(): Promise<void>;
}

const ALGORITHM_NAMES: Record<SigningAlgorithm, string> = {
  8: 'RSASHA256',
  10: 'RSASHA512',
  13: 'ECDSAP256SHA256',
  14: 'ECDSAP384SHA384',
  15: 'ED25519',
  16: 'ED448',
};

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

interface ZoneKeys {
  readonly ksk: string;
  readonly zsk: string;
}

async function signZone(dir: string, zone: LabZone, zoneFile: string, existing?: ZoneKeys): Promise<{ signedFile: string; ds: string; keys?: ZoneKeys }> {
  if (zone.signing === 'unsigned') return { signedFile: zoneFile, ds: '' };
  const alg = ALGORITHM_NAMES[zone.signing.algorithm];
  const bits = alg.startsWith('RSA') ? ['-b', '2048'] : [];
  const ksk = existing?.ksk ?? (await run('ldns-keygen', ['-a', alg, ...bits, '-k', zone.origin], { cwd: dir })).stdout.trim();
  const zsk = existing?.zsk ?? (await run('ldns-keygen', ['-a', alg, ...bits, zone.origin], { cwd: dir })).stdout.trim();
  const signedFile = `${zoneFile}.signed`;
  const dates = zone.expiredSignatures ? ['-i', '20200101000000', '-e', '20200201000000'] : [];
  await run('ldns-signzone', ['-n', '-t', '0', '-s', '', ...dates, '-f', signedFile, zoneFile, ksk, zsk], { cwd: dir });
  if (zone.tamper) {
    const lines = (await readFile(signedFile, 'utf8')).split('\n');
    const index = lines.findIndex((l) => /\tTLSA\t/.test(l));
    if (index === -1) throw new Error(`zone ${zone.origin}: tamper needs a TLSA record`);
    const line = lines[index] as string;
    const last = line.at(-1) === '0' ? '1' : '0';
    lines[index] = line.slice(0, -1) + last;
    await writeFile(signedFile, lines.join('\n'));
  }
  const ds = await readFile(join(dir, `${ksk}.ds`), 'utf8');
  return { signedFile, ds, keys: { ksk, zsk } };
}

function zoneText(zone: LabZone, serial: number): string {
  const minimum = zone.soaMinimum ?? 60;
  return [
    `$ORIGIN ${zone.origin}.`,
    '$TTL 300',
    `@ IN SOA ns.${zone.origin}. hostmaster.${zone.origin}. ${serial} 3600 600 86400 ${minimum}`,
    `@ IN NS ns.${zone.origin}.`,
    'ns IN A 127.0.0.1',
    ...zone.records,
    '',
  ].join('\n');
}

async function waitForAnswer(port: number, name: string, child: ChildProcess, logFile: string, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    try {
      const { stdout } = await run('dig', ['+time=1', '+tries=1', '@127.0.0.1', '-p', String(port), name, 'SOA']);
      if (/status: (NOERROR|SERVFAIL|NXDOMAIN)/.test(stdout)) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const log = await readFile(logFile, 'utf8').catch(() => '');
  throw new Error(`${what} did not start answering on port ${port} (exit code ${child.exitCode}); log tail:\n${log.slice(-2000)}`);
}

function startDaemon(command: string, args: string[], logFile: string): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  track(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
    void writeFile(`${logFile}.stderr`, stderr).catch(() => undefined);
  });
  return child;
}

export async function startDnssecLab(zones: readonly LabZone[], options: LabOptions = {}): Promise<DnsLab> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-lab-'));
  const children: ChildProcess[] = [];
  try {
    const anchors: string[] = [];
    const nsdZones: string[] = [];
    const signed = new Map<string, { zone: LabZone; zoneFile: string; keys: ZoneKeys | undefined; serial: number }>();
    for (const zone of zones) {
      const zoneFile = join(dir, `${zone.origin}.zone`);
      await writeFile(zoneFile, zoneText(zone, 1));
      const { signedFile, ds, keys } = await signZone(dir, zone, zoneFile);
      signed.set(zone.origin, { zone, zoneFile, keys, serial: 1 });
      if (ds) anchors.push(ds.trim());
      nsdZones.push(`zone:\n  name: "${zone.origin}"\n  zonefile: "${signedFile}"\n`);
    }

    const nsdPort = await freePort();
    const nsdLog = join(dir, 'nsd.log');
    await writeFile(
      join(dir, 'nsd.conf'),
      [
        'server:',
        `  ip-address: 127.0.0.1@${nsdPort}`,
        '  username: ""',
        '  database: ""',
        `  zonelistfile: "${join(dir, 'zone.list')}"`,
        `  xfrdfile: "${join(dir, 'xfrd.state')}"`,
        `  pidfile: "${join(dir, 'nsd.pid')}"`,
        `  logfile: "${nsdLog}"`,
        `  xfrdir: "${dir}"`,
        '  server-count: 1',
        '  verbosity: 1',
        'remote-control:',
        '  control-enable: no',
        ...nsdZones,
      ].join('\n'),
    );
    const nsd = startDaemon('nsd', ['-d', '-c', join(dir, 'nsd.conf')], nsdLog);
    children.push(nsd);
    await waitForAnswer(nsdPort, `${zones[0]?.origin ?? 'test'}.`, nsd, `${nsdLog}.stderr`, 'NSD');

    const unboundPort = await freePort();
    const dotPort = options.dot ? await freePort() : undefined;
    const unboundLog = join(dir, 'unbound.log');
    const anchorFile = join(dir, 'anchors.ds');
    await writeFile(anchorFile, `${anchors.join('\n')}\n`);
    const tlsLines: string[] = [];
    if (options.dot && dotPort !== undefined) {
      await writeFile(join(dir, 'dot.pem'), options.dot.certPem);
      await writeFile(join(dir, 'dot.key'), options.dot.keyPem);
      tlsLines.push(`  interface: 127.0.0.1@${dotPort}`, `  tls-port: ${dotPort}`, `  tls-service-pem: "${join(dir, 'dot.pem')}"`, `  tls-service-key: "${join(dir, 'dot.key')}"`);
    }
    const stubs = [...zones.map((z) => ({ name: z.origin, host: '127.0.0.1', port: nsdPort })), ...(options.extraStubZones ?? [])];
    const insecure = [...zones.filter((z) => z.signing === 'unsigned').map((z) => z.origin), ...(options.extraStubZones ?? []).map((z) => z.name)];
    await writeFile(
      join(dir, 'unbound.conf'),
      [
        'server:',
        `  interface: 127.0.0.1@${unboundPort}`,
        ...tlsLines,
        `  port: ${unboundPort}`,
        '  do-ip6: no',
        '  username: ""',
        '  chroot: ""',
        `  directory: "${dir}"`,
        `  pidfile: "${join(dir, 'unbound.pid')}"`,
        '  do-not-query-localhost: no',
        '  module-config: "validator iterator"',
        `  trust-anchor-file: "${anchorFile}"`,
        '  local-zone: "test." nodefault',
        ...insecure.map((z) => `  domain-insecure: "${z}"`),
        '  val-log-level: 2',
        '  ede: yes',
        '  log-queries: yes',
        `  logfile: "${unboundLog}"`,
        '  use-syslog: no',
        '  verbosity: 1',
        '  num-threads: 1',
        '  qname-minimisation: no',
        '  harden-referral-path: no',
        '  cache-max-negative-ttl: 5',
        '  access-control: 127.0.0.0/8 allow',
        ...stubs.flatMap((s) => ['stub-zone:', `  name: "${s.name}"`, `  stub-addr: ${s.host}@${s.port}`]),
        '',
      ].join('\n'),
    );
    await run('unbound-checkconf', [join(dir, 'unbound.conf')]);
    const unbound = startDaemon('unbound', ['-d', '-c', join(dir, 'unbound.conf')], unboundLog);
    children.push(unbound);
    await waitForAnswer(unboundPort, `${zones[0]?.origin ?? 'test'}.`, unbound, unboundLog, 'Unbound');

    let logOffset = (await stat(unboundLog).catch(() => ({ size: 0 }))).size;
    return {
      resolver: { host: '127.0.0.1', port: unboundPort },
      dotPort,
      authoritative: { host: '127.0.0.1', port: nsdPort },
      dir,
      async clientQueries() {
        const text = (await readFile(unboundLog)).subarray(logOffset).toString('utf8');
        const queries: Array<{ name: string; type: string }> = [];
        // "[1700000000] unbound[123:0] info: 127.0.0.1 name.example.test. TLSA IN"
        for (const match of text.matchAll(/info: 127\.0\.0\.1 (\S+)\. (\S+) IN$/gm)) {
          queries.push({ name: (match[1] as string).toLowerCase(), type: match[2] as string });
        }
        return queries;
      },
      async updateZone(origin: string, records: readonly string[]) {
        const entry = signed.get(origin);
        if (!entry) throw new Error(`no zone ${origin} in the lab`);
        entry.serial++;
        entry.zone = { ...entry.zone, records };
        await writeFile(entry.zoneFile, zoneText(entry.zone, entry.serial));
        await signZone(dir, entry.zone, entry.zoneFile, entry.keys);
        nsd.kill('SIGHUP');
        // NSD has the new zone once it serves the new serial.
        const deadline = Date.now() + 10_000;
        for (;;) {
          const { stdout } = await run('dig', ['+short', '+time=1', '+tries=1', '@127.0.0.1', '-p', String(nsdPort), `${origin}.`, 'SOA']);
          if (stdout.split(/\s+/)[2] === String(entry.serial)) return;
          if (Date.now() > deadline) throw new Error(`NSD did not load serial ${entry.serial} of ${origin}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      },
      async resetQueryLog() {
        logOffset = (await stat(unboundLog)).size;
      },
      async stop() {
        await Promise.all(children.map((c) => stopProcess(c)));
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all(children.map((c) => stopProcess(c)));
    const files = await readdir(dir).catch(() => []);
    await rm(dir, { recursive: true, force: true });
    throw new Error(`DNSSEC lab failed to start (${files.length} files written): ${(err as Error).message}`);
  }
}
