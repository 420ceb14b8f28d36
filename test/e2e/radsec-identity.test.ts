/**
 * examples/radsec's identity deployment as a test, with every part real:
 * radclient/radtest (UDP) → radsecproxy, one per NAS (the RadSec client:
 * its own key in TLSA under its DANE name, its own source address) →
 * dancegate `mode: radsec` (dancegate-identity.yaml; DANE via NSD +
 * Unbound), which adds the verified name as Dancegate-Client-Name
 * (Vendor-Specific 32473/1), strips the NAS's copies and re-signs →
 * FreeRADIUS 3.2 running the example's site, policy, dictionary and users
 * (examples/radsec/freeradius/, dictionary.dancegate) on a RadSec listener.
 *
 * What FreeRADIUS received is read from its debug output (-xx prints every
 * request's attributes, named by the example's dictionary).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseConfigText } from '../../src/config/load.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { radiusPacketChannel, type RadiusPacketEvent } from '../../src/forward/channels.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { stopProcess } from '../lab/process.js';
import { waitUntil } from '../lab/wait.js';

const EXAMPLE = join(import.meta.dirname, '../../examples/radsec');
const NAS1 = 'nas1.nas.radsec.example';
const NAS2 = 'nas2.nas.radsec.example';
/** Published in TLSA, but for another key than the one it presents. */
const NAS3 = 'nas3.nas.radsec.example';
/** Secret between radclient and each radsecproxy (UDP); RadSec itself uses "radsec". */
const UDP_SECRET = 'testing123';

/** Replace `from` (which must occur exactly once) in an example file, so that a changed example fails here instead of being tested half-edited. */
function replaceOnce(text: string, from: string, to: string, file: string): string {
  const at = text.indexOf(from);
  if (at === -1 || text.indexOf(from, at + 1) !== -1) throw new Error(`${file}: expected exactly one "${from}"`);
  return text.slice(0, at) + to + text.slice(at + from.length);
}

/** The main configuration of the test's FreeRADIUS: the stock radiusd.conf's essentials around the example's policy and site. */
function radiusdConf(dir: string): string {
  return `prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = ${dir}
raddbdir = ${dir}
radacctdir = ${dir}
name = freeradius
confdir = ${dir}
modconfdir = ${dir}
certdir = ${dir}
cadir = ${dir}
run_dir = ${dir}
db_dir = ${dir}
libdir = /usr/lib/freeradius
pidfile = ${dir}/freeradius.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {
  destination = stdout
  auth = yes
}
security {
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}
thread pool {
  start_servers = 2
  max_servers = 4
  min_spare_servers = 1
  max_spare_servers = 3
}
modules {
  pap {
    normalise = yes
  }
  files {
    filename = ${dir}/users
  }
  # What the stock mods-enabled/always gives the policy.
  always reject {
    rcode = reject
  }
  always ok {
    rcode = ok
  }
}
policy {
$INCLUDE ${dir}/policy.d/dancegate
}
$INCLUDE ${dir}/sites-enabled/dancegate-radsec
`;
}

interface Nas {
  /** What the test calls it (also its radsecproxy's file names). */
  readonly label: string;
  readonly certificate: IssuedCertificate;
  /** radsecproxy's source address towards dancegate (dancegate's per-address limits count each NAS alone). */
  readonly source: string;
  /** The secret radsecproxy signs with towards dancegate. */
  readonly radsecSecret: string;
}

function radsecproxyConfig(dir: string, nas: Nas, udpPort: number, dancegatePort: number): string {
  return `ListenUDP 127.0.0.1:${udpPort}
SourceTLS ${nas.source}
LogLevel 5
tls default {
    CACertificateFile ${dir}/dancegate-ca.pem
    CertificateFile ${dir}/${nas.label}.pem
    CertificateKeyFile ${dir}/${nas.label}.key
}
client localhost {
    host 127.0.0.1
    type udp
    secret ${UDP_SECRET}
}
server dancegate {
    host 127.0.0.1
    port ${dancegatePort}
    type tls
    tls default
    secret ${nas.radsecSecret}
    CertificateNameCheck off
    StatusServer on
}
realm * {
    server dancegate
    accountingServer dancegate
}
`;
}

interface Daemon {
  readonly child: ChildProcess;
  output(): string;
}

function startDaemon(command: string, args: string[]): Daemon {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  process.once('exit', () => child.kill('SIGKILL'));
  return { child, output: () => output };
}

/** Run a command with `input` on its stdin; resolves with everything it printed (whatever its exit code). */
function runWithInput(command: string, args: string[], input: string, killAfterMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(output);
    });
    child.stdin.end(input);
  });
}

/** What radclient printed about the answer: its code (undefined: no reply) and the Reply-Message values. */
interface RadclientAnswer {
  readonly code: string | undefined;
  readonly replyMessages: readonly string[];
  /** Whether radclient's own request carried a Message-Authenticator. */
  readonly sentMessageAuthenticator: boolean;
  readonly output: string;
}

/** The lines right after `lines[index]` that start with a tab (radclient's attribute lines). */
function attributeLinesAfter(lines: readonly string[], index: number): string[] {
  if (index === -1) return [];
  const block: string[] = [];
  for (const line of lines.slice(index + 1)) {
    if (!line.startsWith('\t')) break;
    block.push(line);
  }
  return block;
}

function parseRadclient(output: string): RadclientAnswer {
  const lines = output.split('\n');
  const received = lines.findIndex((l) => /^Received \S+ Id \d+ /.test(l));
  const sent = lines.findIndex((l) => /^Sent \S+ Id \d+ /.test(l));
  return {
    code: /^Received (\S+)/.exec(lines[received] ?? '')?.[1],
    replyMessages: attributeLinesAfter(lines, received)
      .map((l) => /^\tReply-Message = "(.*)"$/.exec(l)?.[1])
      .filter((m): m is string => m !== undefined),
    sentMessageAuthenticator: attributeLinesAfter(lines, sent).some((l) => l.startsWith('\tMessage-Authenticator = ')),
    output,
  };
}

/** A request as FreeRADIUS's debug output shows it on arrival. */
interface SeenRequest {
  readonly code: string;
  /** [name, value as printed] in packet order: strings quoted, octets 0x…. */
  readonly attributes: Array<[string, string]>;
  /** Whether its attribute list has ended in the log (the next line about it came). */
  complete: boolean;
}

/**
 * The requests in a slice of FreeRADIUS -xx output. Each line about a
 * request starts with "(n) "; its attributes are the "(n)   Name = value"
 * lines after "(n) Received …", up to the next other line about it ("(n)
 * (TLS) …" lines are the listener's, whatever n).
 */
function requestsIn(log: string): SeenRequest[] {
  const open = new Map<string, SeenRequest>();
  const requests: SeenRequest[] = [];
  for (const line of log.split('\n')) {
    const received = /^\((\d+)\) Received (\S+) Id \d+ from /.exec(line);
    if (received) {
      const request: SeenRequest = { code: received[2] as string, attributes: [], complete: false };
      open.set(received[1] as string, request);
      requests.push(request);
      continue;
    }
    const attribute = /^\((\d+)\) {3}([A-Za-z0-9-]+) = (.*)$/.exec(line);
    if (attribute) {
      open.get(attribute[1] as string)?.attributes.push([attribute[2] as string, attribute[3] as string]);
      continue;
    }
    const other = /^\((\d+)\) (?!\(TLS\))/.exec(line);
    const ended = other ? open.get(other[1] as string) : undefined;
    if (ended && other) {
      ended.complete = true;
      open.delete(other[1] as string);
    }
  }
  return requests;
}

const valuesOf = (request: SeenRequest | undefined, name: string): string[] => (request?.attributes ?? []).filter(([n]) => n === name).map(([, v]) => v);

describe('examples/radsec identity: radsecproxy → dancegate (mode: radsec) → FreeRADIUS', () => {
  let dir: string;
  let lab: DnsLab | undefined;
  let proxy: RunningProxy | undefined;
  let freeradius: Daemon | undefined;
  const radsecproxies = new Map<string, { daemon: Daemon; udpPort: number }>();
  const decisions: DecisionRecord[] = [];
  /** What dancegate's RADSEC filter did with each packet (src/forward/channels.ts). */
  const packetEvents: RadiusPacketEvent[] = [];
  let unsubscribe: (() => void) | undefined;
  let dancegatePort: number;
  let dancegateCaPem: string;
  let nas1Certificate: IssuedCertificate;

  /** radclient through one NAS's radsecproxy; `-t 2 -r 1`: an unanswered request costs 2 s. */
  const radclient = async (nas: string, command: 'auth' | 'acct', attributes: readonly string[]): Promise<RadclientAnswer> => {
    const port = radsecproxies.get(nas)?.udpPort;
    if (port === undefined) throw new Error(`no radsecproxy for ${nas}`);
    const output = await runWithInput('radclient', ['-d', dir, '-x', '-t', '2', '-r', '1', `127.0.0.1:${port}`, command, UDP_SECRET], `${attributes.join('\n')}\n`, 15_000);
    return parseRadclient(output);
  };
  /**
   * The requests FreeRADIUS received from the start of `action` on. FreeRADIUS
   * logs a request before answering, but its output reaches us through
   * another pipe than the answer: with `arrived`, wait until the requests
   * it names are in the log, complete.
   */
  const seenDuring = async <T>(action: () => Promise<T>, arrived?: (seen: SeenRequest[]) => SeenRequest[]): Promise<{ result: T; seen: SeenRequest[] }> => {
    const from = freeradius?.output().length ?? 0;
    const seen = (): SeenRequest[] => requestsIn(freeradius?.output().slice(from) ?? '');
    const result = await action();
    // Not arriving is for the caller's assertions to report (with radclient's output).
    if (arrived) await waitUntil('the requests in the FreeRADIUS log', () => arrived(seen()).some((r) => r.complete), 5_000).catch(() => undefined);
    return { result, seen: seen() };
  };
  /** dancegate's packet events (direction, outcome, code, reason) on the connections from `source`, from event number `since` on. */
  const eventsFrom = (source: string, since = 0): Array<[string, string, number | undefined, string | undefined]> => {
    const connections = new Set(decisions.filter((d) => d.source.startsWith(`${source}:`)).map((d) => d.connectionId));
    return packetEvents
      .slice(since)
      .filter((e) => connections.has(e.connectionId))
      .map((e) => [e.direction, e.outcome, e.code, e.reason]);
  };
  const marked = (seen: SeenRequest[], nasIdentifier: string): SeenRequest[] => seen.filter((r) => valuesOf(r, 'NAS-Identifier').includes(`"${nasIdentifier}"`));

  beforeAll(async () => {
    unsubscribe = radiusPacketChannel.subscribe((e) => packetEvents.push(e));
    dir = await mkdtemp(join(tmpdir(), 'dancegate-radsec-identity-'));
    const write = async (name: string, c: IssuedCertificate): Promise<void> => {
      await writeFile(join(dir, `${name}.pem`), c.certPem);
      await writeFile(join(dir, `${name}.key`), c.keyPem);
    };
    // FreeRADIUS side: its CA (which also issues dancegate's client certificate), its server certificate.
    const radiusCa = await createCertificate({ commonName: 'radius CA', isCA: true });
    await writeFile(join(dir, 'radius-ca.pem'), radiusCa.certPem);
    await write('radius', await createCertificate({ commonName: 'radius.backend.test', dnsNames: ['radius.backend.test'], issuer: radiusCa, extendedKeyUsage: 'server' }));
    await write('to-radius', await createCertificate({ commonName: 'dancegate', issuer: radiusCa, extendedKeyUsage: 'client' }));
    // dancegate's RadSec server certificate; the NASes are self-signed, known only through DANE.
    const dancegateCa = await createCertificate({ commonName: 'dancegate CA', isCA: true });
    dancegateCaPem = dancegateCa.certPem;
    await writeFile(join(dir, 'dancegate-ca.pem'), dancegateCa.certPem);
    await write('radsec', await createCertificate({ commonName: 'radsec.dancegate.test', dnsNames: ['radsec.dancegate.test'], issuer: dancegateCa, extendedKeyUsage: 'server' }));
    const nas1 = await createCertificate({ commonName: NAS1, dnsNames: [NAS1] });
    nas1Certificate = nas1;
    const nas2 = await createCertificate({ commonName: NAS2, dnsNames: [NAS2] });
    const nas3 = await createCertificate({ commonName: NAS3, dnsNames: [NAS3] });
    const nas3Published = await createCertificate({ commonName: NAS3, dnsNames: [NAS3] });
    const nases: Nas[] = [
      { label: 'nas1', certificate: nas1, source: '127.0.0.11', radsecSecret: 'radsec' },
      { label: 'nas2', certificate: nas2, source: '127.0.0.12', radsecSecret: 'radsec' },
      { label: 'nas3', certificate: nas3, source: '127.0.0.13', radsecSecret: 'radsec' },
      // nas1's own key and name, but radsecproxy signs with another secret than dancegate's. A packet
      // that does not verify closes the connection, so one radsecproxy per kind of packet.
      { label: 'wrong-secret-auth', certificate: nas1, source: '127.0.0.14', radsecSecret: 'not-radsec' },
      { label: 'wrong-secret-acct', certificate: nas1, source: '127.0.0.16', radsecSecret: 'not-radsec' },
    ];
    for (const nas of nases) await write(nas.label, nas.certificate);

    const tlsa = (c: IssuedCertificate): string => formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(c.der), 3, 1, 1));
    lab = await startDnssecLab([
      {
        origin: 'radsec.example',
        signing: { algorithm: 13 },
        records: [`nas1.nas 300 IN TLSA ${tlsa(nas1)}`, `nas2.nas 300 IN TLSA ${tlsa(nas2)}`, `nas3.nas 300 IN TLSA ${tlsa(nas3Published)}`],
      },
    ]);

    // FreeRADIUS with the example's files, only the port changed.
    const radiusPort = await freePort();
    const site = await readFile(join(EXAMPLE, 'freeradius/sites-available/dancegate-radsec'), 'utf8');
    await mkdir(join(dir, 'sites-enabled'));
    await mkdir(join(dir, 'policy.d'));
    await writeFile(join(dir, 'sites-enabled/dancegate-radsec'), replaceOnce(site, 'port = 12083', `port = ${radiusPort}`, 'freeradius/sites-available/dancegate-radsec'));
    await writeFile(join(dir, 'policy.d/dancegate'), await readFile(join(EXAMPLE, 'freeradius/policy.d/dancegate')));
    await writeFile(join(dir, 'users'), await readFile(join(EXAMPLE, 'freeradius/mods-config/files/authorize')));
    // raddb/dictionary ($INCLUDE dictionary.dancegate): FreeRADIUS and radclient -d both read it.
    await writeFile(join(dir, 'dictionary'), await readFile(join(EXAMPLE, 'freeradius/dictionary')));
    await writeFile(join(dir, 'dictionary.dancegate'), await readFile(join(EXAMPLE, 'dictionary.dancegate')));
    await writeFile(join(dir, 'radiusd.conf'), radiusdConf(dir));
    // -f foreground, -xx debug (threads stay on: TLS listeners need them), log to stdout.
    const fr = startDaemon('freeradius', ['-f', '-xx', '-l', 'stdout', '-d', dir]);
    freeradius = fr;
    await waitUntil('FreeRADIUS to listen', () => fr.output().includes('Ready to process requests') || fr.child.exitCode !== null, 20_000);
    expect(fr.child.exitCode, fr.output().slice(-3000)).toBeNull();

    dancegatePort = await freePort();
    const file = 'dancegate-identity.yaml';
    let text = await readFile(join(EXAMPLE, file), 'utf8');
    text = replaceOnce(text, 'listen: 127.0.0.1:9901', 'listen: 127.0.0.1:0', file);
    text = replaceOnce(text, 'address: 127.0.0.1:53 ', `address: "127.0.0.1:${lab.resolver.port}" `, file);
    text = replaceOnce(text, 'listen: 0.0.0.0:2083', `listen: 127.0.0.1:${dancegatePort}`, file);
    text = replaceOnce(text, 'upstream: tls://127.0.0.1:12083', `upstream: tls://127.0.0.1:${radiusPort}`, file);
    proxy = await startProxy(await parseConfigText(text, join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });

    for (const nas of nases) {
      const udpPort = await freePort();
      const config = join(dir, `radsecproxy-${nas.label}.conf`);
      await writeFile(config, radsecproxyConfig(dir, nas, udpPort, dancegatePort));
      radsecproxies.set(nas.label, { daemon: startDaemon('radsecproxy', ['-f', '-c', config]), udpPort });
    }
  }, 120_000);

  afterAll(async () => {
    unsubscribe?.();
    await Promise.all([...radsecproxies.values()].map((r) => stopProcess(r.daemon.child)));
    await proxy?.close();
    if (freeradius) await stopProcess(freeradius.child);
    await lab?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('radtest alice@nas1 through nas1: Access-Accept; FreeRADIUS saw one Dancegate-Client-Name, nas1’s, and a Message-Authenticator', async () => {
    const { result, seen } = await seenDuring(
      async () => {
        const port = radsecproxies.get('nas1')?.udpPort ?? 0;
        const output = await runWithInput('radtest', ['-d', dir, '-t', 'pap', 'alice@nas1', 'alice-secret', `127.0.0.1:${port}`, '0', UDP_SECRET], '', 15_000);
        return parseRadclient(output);
      },
      (seen) => seen.filter((r) => r.code === 'Access-Request'),
    );
    expect(result.code, result.output).toBe('Access-Accept');
    expect(result.sentMessageAuthenticator).toBe(true);
    expect(result.replyMessages).toEqual([`dancegate: accepted from ${NAS1}`]);
    const requests = seen.filter((r) => r.code === 'Access-Request');
    expect(requests).toHaveLength(1);
    expect(valuesOf(requests[0], 'User-Name')).toEqual(['"alice@nas1"']);
    expect(valuesOf(requests[0], 'Dancegate-Client-Name')).toEqual([`"${NAS1}"`]);
    expect(valuesOf(requests[0], 'Message-Authenticator')).toEqual([expect.stringMatching(/^0x[0-9a-f]{32}$/)]);
    // radsecproxy keeps its connection: every decision for its address (one, normally) is this one.
    const nas1Decisions = decisions.filter((d) => d.source.startsWith('127.0.0.11:'));
    expect(nas1Decisions.length).toBeGreaterThan(0);
    expect(new Set(nas1Decisions.map((d) => [d.listener, d.claimedName, d.reason, d.nameSource, d.tlsa].join(' ')))).toEqual(new Set([`radsec ${NAS1} authenticated san 3 1 1`]));
  });

  it('a wrong password through nas1: Access-Reject from pap (the policy passed: no Reply-Message)', async () => {
    const port = radsecproxies.get('nas1')?.udpPort ?? 0;
    const output = await runWithInput('radtest', ['-d', dir, '-t', 'pap', 'alice@nas1', 'wrong', `127.0.0.1:${port}`, '0', UDP_SECRET], '', 15_000);
    const answer = parseRadclient(output);
    expect(answer.code, output).toBe('Access-Reject');
    expect(answer.replyMessages).toEqual([]);
  });

  it('nas2 serves its own realm, and is refused nas1’s realm by the policy', async () => {
    const own = await radclient('nas2', 'auth', ['User-Name = "bob@nas2"', 'User-Password = "bob-secret"', 'Message-Authenticator = 0x00']);
    expect(own.code, own.output).toBe('Access-Accept');
    expect(own.replyMessages).toEqual([`dancegate: accepted from ${NAS2}`]);
    const other = await radclient('nas2', 'auth', ['User-Name = "alice@nas1"', 'User-Password = "alice-secret"', 'Message-Authenticator = 0x00']);
    expect(other.code, other.output).toBe('Access-Reject');
    expect(other.replyMessages).toEqual([`dancegate: realm nas1 belongs to ${NAS1}, not ${NAS2}`]);
  });

  it('a Dancegate-Client-Name the NAS sends itself is replaced: FreeRADIUS sees exactly one, the proven name', async () => {
    // nas1 claiming nas2's name changes nothing …
    const before = packetEvents.length;
    const { result: fromNas1, seen } = await seenDuring(
      () =>
        radclient('nas1', 'auth', [
          'User-Name = "alice@nas1"',
          'User-Password = "alice-secret"',
          'NAS-Identifier = "forged-by-nas1"',
          `Dancegate-Client-Name = "${NAS2}"`,
          'Message-Authenticator = 0x00',
        ]),
      (seen) => marked(seen, 'forged-by-nas1'),
    );
    expect(fromNas1.output).toContain(`Dancegate-Client-Name = "${NAS2}"`); // radclient did send the copy
    expect(fromNas1.code, fromNas1.output).toBe('Access-Accept');
    expect(fromNas1.replyMessages).toEqual([`dancegate: accepted from ${NAS1}`]);
    const forged = marked(seen, 'forged-by-nas1');
    expect(forged).toHaveLength(1);
    expect(valuesOf(forged[0], 'Dancegate-Client-Name')).toEqual([`"${NAS1}"`]);
    expect(eventsFrom('127.0.0.11', before)).toEqual([
      ['from-client', 'stripped', 1, 'removed 1 copy of the identity attribute sent by the client'],
      ['from-client', 'rewritten', 1, undefined],
      ['from-server', 'passed', 2, undefined],
    ]);
    // … and nas2 claiming nas1's name (two copies, even) does not get into nas1's realm.
    const before2 = packetEvents.length;
    const { result: fromNas2, seen: seen2 } = await seenDuring(
      () =>
        radclient('nas2', 'auth', [
          'User-Name = "alice@nas1"',
          'User-Password = "alice-secret"',
          'NAS-Identifier = "forged-by-nas2"',
          `Dancegate-Client-Name = "${NAS1}"`,
          `Dancegate-Client-Name += "${NAS1}"`,
          'Message-Authenticator = 0x00',
        ]),
      (seen) => marked(seen, 'forged-by-nas2'),
    );
    expect(fromNas2.code, fromNas2.output).toBe('Access-Reject');
    expect(fromNas2.replyMessages).toEqual([`dancegate: realm nas1 belongs to ${NAS1}, not ${NAS2}`]);
    expect(marked(seen2, 'forged-by-nas2').map((r) => valuesOf(r, 'Dancegate-Client-Name'))).toEqual([[`"${NAS2}"`]]);
    expect(eventsFrom('127.0.0.12', before2)).toEqual([
      ['from-client', 'stripped', 1, 'removed 2 copies of the identity attribute sent by the client'],
      ['from-client', 'rewritten', 1, undefined],
      ['from-server', 'passed', 3, undefined],
    ]);
  });

  it('Accounting-Request through nas1 gets its Accounting-Response (re-signed for radsecproxy); nas2’s for nas1’s realm gets none', async () => {
    const before = packetEvents.length;
    const { result, seen } = await seenDuring(
      () =>
        radclient('nas1', 'acct', ['User-Name = "alice@nas1"', 'Acct-Status-Type = Start', 'Acct-Session-Id = "identity-acct-1"', 'NAS-Identifier = "acct-nas1"', `Dancegate-Client-Name = "${NAS2}"`]),
      (seen) => marked(seen, 'acct-nas1'),
    );
    expect(result.code, result.output).toBe('Accounting-Response');
    const requests = marked(seen, 'acct-nas1');
    expect(requests.map((r) => [r.code, valuesOf(r, 'Acct-Session-Id'), valuesOf(r, 'Dancegate-Client-Name')])).toEqual([['Accounting-Request', ['"identity-acct-1"'], [`"${NAS1}"`]]]);
    expect(eventsFrom('127.0.0.11', before)).toEqual([
      ['from-client', 'stripped', 4, 'removed 1 copy of the identity attribute sent by the client'],
      ['from-client', 'rewritten', 4, undefined],
      ['from-server', 'rewritten', 5, undefined],
    ]);

    // preacct runs the same policy: FreeRADIUS does not answer, radsecproxy does not either.
    const { result: wrongNas, seen: seen2 } = await seenDuring(
      () => radclient('nas2', 'acct', ['User-Name = "alice@nas1"', 'Acct-Status-Type = Start', 'Acct-Session-Id = "identity-acct-2"', 'NAS-Identifier = "acct-nas2"']),
      (seen) => marked(seen, 'acct-nas2'),
    );
    expect(wrongNas.code, wrongNas.output).toBeUndefined();
    expect(wrongNas.output).toMatch(/No reply from server/);
    expect(marked(seen2, 'acct-nas2').map((r) => valuesOf(r, 'Dancegate-Client-Name'))).toEqual([[`"${NAS2}"`]]);
  });

  it('an Access-Request without Message-Authenticator gets one from dancegate (the example policy rejects any without)', async () => {
    const { result, seen } = await seenDuring(
      () => radclient('nas1', 'auth', ['User-Name = "alice@nas1"', 'User-Password = "alice-secret"', 'NAS-Identifier = "no-message-authenticator"']),
      (seen) => marked(seen, 'no-message-authenticator'),
    );
    // radsecproxy 1.9 forwards such a request as it is (seen in the dry run against FreeRADIUS directly).
    expect(result.sentMessageAuthenticator).toBe(false);
    expect(result.code, result.output).toBe('Access-Accept');
    const requests = marked(seen, 'no-message-authenticator');
    expect(requests.map((r) => valuesOf(r, 'Message-Authenticator'))).toEqual([[expect.stringMatching(/^0x[0-9a-f]{32}$/)]]);
  });

  it('packets signed with another secret than dancegate’s never reach FreeRADIUS', async () => {
    const { result, seen } = await seenDuring(async () =>
      Promise.all([
        radclient('wrong-secret-auth', 'auth', ['User-Name = "alice@nas1"', 'User-Password = "alice-secret"', 'NAS-Identifier = "wrong-secret-auth"', 'Message-Authenticator = 0x00']),
        radclient('wrong-secret-acct', 'acct', ['User-Name = "alice@nas1"', 'Acct-Status-Type = Start', 'Acct-Session-Id = "identity-acct-3"', 'NAS-Identifier = "wrong-secret-acct"']),
      ]),
    );
    expect(result.map((r) => r.code)).toEqual([undefined, undefined]);
    // Not even as a packet FreeRADIUS drops for its bad signature: dancegate refused both.
    expect(seen.filter((r) => r.code !== 'Status-Server')).toEqual([]);
    // The TLS side was fine: the name verified (radsecproxy may have connected again since).
    expect(new Set(decisions.filter((d) => /^127\.0\.0\.1[46]:/.test(d.source)).map((d) => `${d.source.split(':')[0]} ${d.claimedName} ${d.reason}`))).toEqual(
      new Set([`127.0.0.14 ${NAS1} authenticated`, `127.0.0.16 ${NAS1} authenticated`]),
    );
    // Each connection's first packet was refused; nothing from them was passed on.
    expect(eventsFrom('127.0.0.14')[0]).toEqual(['from-client', 'refused', 1, expect.stringMatching(/^Access-Request id \d+: Message-Authenticator does not verify with the shared secret$/)]);
    expect(eventsFrom('127.0.0.16')[0]).toEqual([
      'from-client',
      'refused',
      4,
      expect.stringMatching(/^Accounting-Request id \d+: Request Authenticator does not verify with the shared secret \(RFC 2866\)$/),
    ]);
    expect([...eventsFrom('127.0.0.14'), ...eventsFrom('127.0.0.16')].filter(([, outcome]) => outcome !== 'refused')).toEqual([]);
  });

  it('a NAS whose TLSA record does not match its key is refused at TLS and gets no answer', async () => {
    const { result, seen } = await seenDuring(() =>
      radclient('nas3', 'auth', ['User-Name = "alice@nas1"', 'User-Password = "alice-secret"', 'NAS-Identifier = "nas3-attempt"', 'Message-Authenticator = 0x00']),
    );
    expect(result.code, result.output).toBeUndefined();
    expect(result.output).toMatch(/No reply from server/);
    expect(seen.filter((r) => r.code !== 'Status-Server')).toEqual([]);
    await waitUntil('dancegate to refuse nas3', () => decisions.some((d) => d.claimedName === NAS3));
    const nas3 = decisions.filter((d) => d.claimedName === NAS3);
    expect(new Set(nas3.map((d) => [d.outcome, d.reason, d.source.split(':')[0]].join(' ')))).toEqual(new Set(['refused no-matching-record 127.0.0.13']));
  });

  it('the listener offers ALPN radius/1.0 only: chosen over radius/1.1, and a RADIUS/1.1-only client is refused', async () => {
    const handshake = async (alpn: string[]): Promise<string> => {
      // From an address of its own: a refused handshake counts against its source address.
      const socket = connect({
        socket: netConnect({ host: '127.0.0.1', port: dancegatePort, localAddress: '127.0.0.15' }),
        servername: 'radsec.dancegate.test',
        ca: dancegateCaPem,
        cert: nas1Certificate.certPem,
        key: nas1Certificate.keyPem,
        ALPNProtocols: alpn,
      });
      try {
        await once(socket, 'secureConnect');
        // Stay until dancegate has decided (it verifies the name after the handshake).
        const source = `127.0.0.15:${socket.localPort ?? 0}`;
        await waitUntil('dancegate’s decision', () => decisions.some((d) => d.source === source));
        const decision = decisions.find((d) => d.source === source);
        return `negotiated ${String(socket.alpnProtocol)}; dancegate: ${decision?.reason} ${decision?.claimedName} alpn ${decision?.alpn}`;
      } catch (err) {
        return `failed ${(err as { code?: string }).code ?? String(err)}`;
      } finally {
        socket.destroy();
      }
    };
    expect(await handshake(['radius/1.1', 'radius/1.0'])).toBe(`negotiated radius/1.0; dancegate: authenticated ${NAS1} alpn radius/1.0`);
    expect(await handshake(['radius/1.1'])).toBe('failed ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
  });

  it('radsecproxy’s Status-Server watchdog reaches FreeRADIUS untouched (no name added) and is answered', async () => {
    const statusServers = (): SeenRequest[] => requestsIn(freeradius?.output() ?? '').filter((r) => r.code === 'Status-Server');
    await waitUntil('a Status-Server in the FreeRADIUS log', () => statusServers().length > 0, 45_000);
    for (const request of statusServers()) expect(request.attributes.map(([name]) => name)).toEqual(['Message-Authenticator']);
    await waitUntil('nas1’s radsecproxy to take the answer', () => radsecproxies.get('nas1')?.daemon.output().includes('replyh: got status server response from dancegate') === true, 15_000);
    const statusEvents = eventsFrom('127.0.0.11').filter(([direction, , code]) => (direction === 'from-client' && code === 12) || (direction === 'from-server' && code === 2));
    expect(statusEvents.slice(-2)).toEqual([
      ['from-client', 'passed', 12, undefined],
      ['from-server', 'passed', 2, undefined],
    ]);
  }, 70_000);
});
