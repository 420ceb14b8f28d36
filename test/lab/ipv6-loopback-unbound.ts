/**
 * A second real validating Unbound, listening on the IPv6 loopback (::1),
 * in front of a running DNSSEC lab: same trust anchors, stub zones pointing
 * at the lab's NSD. Used to check that a resolver configured with another
 * spelling of ::1 (e.g. [0:0:0:0:0:0:0:1]) is still answered.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { DnsLab } from './dnssec-lab.js';
import { stopProcess } from './process.js';

const run = promisify(execFile);

export interface Ipv6Unbound {
  readonly host: '::1';
  readonly port: number;
  stop(): Promise<void>;
}

/** A TCP port free on ::1 (Unbound binds UDP and TCP on it). */
async function freeIpv6Port(): Promise<number> {
  const server = createServer();
  server.listen(0, '::1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no port on ::1');
  return address.port;
}

/** Start Unbound on [::1]:port validating `zones` of `lab` (files go to the lab's directory). */
export async function startIpv6Unbound(lab: DnsLab, zones: readonly string[]): Promise<Ipv6Unbound> {
  const port = await freeIpv6Port();
  const dir = lab.dir;
  const conf = join(dir, 'unbound-ipv6.conf');
  const log = join(dir, 'unbound-ipv6.log');
  await writeFile(
    conf,
    [
      'server:',
      `  interface: ::1@${port}`,
      `  port: ${port}`,
      '  do-ip4: yes',
      '  do-ip6: yes',
      '  username: ""',
      '  chroot: ""',
      `  directory: "${dir}"`,
      `  pidfile: "${join(dir, 'unbound-ipv6.pid')}"`,
      '  do-not-query-localhost: no',
      '  module-config: "validator iterator"',
      `  trust-anchor-file: "${join(dir, 'anchors.ds')}"`,
      '  local-zone: "test." nodefault',
      `  logfile: "${log}"`,
      '  use-syslog: no',
      '  verbosity: 1',
      '  num-threads: 1',
      '  qname-minimisation: no',
      '  harden-referral-path: no',
      '  access-control: ::1/128 allow',
      ...zones.flatMap((z) => ['stub-zone:', `  name: "${z}"`, `  stub-addr: ${lab.authoritative.host}@${lab.authoritative.port}`]),
      '',
    ].join('\n'),
  );
  await run('unbound-checkconf', [conf]);
  const child: ChildProcess = spawn('unbound', ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  const kill = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', kill);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) break;
    const ok = await run('dig', ['+time=1', '+tries=1', '@::1', '-p', String(port), `${zones[0] ?? 'test'}.`, 'SOA'])
      .then(({ stdout }) => /status: (NOERROR|SERVFAIL|NXDOMAIN)/.test(stdout))
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (child.exitCode !== null || Date.now() > deadline) {
    await stopProcess(child);
    const tail = (await readFile(log, 'utf8').catch(() => '')).slice(-2000);
    throw new Error(`Unbound on [::1]:${port} did not start answering; log tail:\n${tail}`);
  }
  return {
    host: '::1',
    port,
    async stop() {
      process.removeListener('exit', kill);
      await stopProcess(child);
    },
  };
}
