/**
 * examples/radsec as a test, with every part real: radtest → radsecproxy
 * (the RADSEC client, its certificate published in TLSA, connecting from
 * 127.0.0.9) → dancegate in TCP mode (DANE via NSD + Unbound) → TLS
 * re-originated with a PROXY v1 line → FreeRADIUS 3.2 RadSec listener with
 * proxy_protocol = yes → Access-Accept; FreeRADIUS sees the NAS's address,
 * and radsecproxy's Status-Server watchdog is answered through the chain.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/pki.js';
import { parseConfigText } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { waitUntil } from '../lab/wait.js';

const run = promisify(execFile);
const NAS = 'nas1.nas.radsec.example';
const NAS_ADDRESS = '127.0.0.9';

function freeradiusConfig(dir: string, port: number): string {
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
}
# With proxy_protocol, both the proxy (dancegate) and the real client must be clients.
clients radsec {
  client dancegate {
    ipaddr = 127.0.0.1
    proto = tls
    secret = radsec
  }
  client nas {
    ipaddr = ${NAS_ADDRESS}
    proto = tls
    secret = radsec
  }
}
server radsec {
  listen {
    ipaddr = 127.0.0.1
    port = ${port}
    type = auth
    proto = tcp
    clients = radsec
    proxy_protocol = yes
    tls {
      private_key_file = ${dir}/fr.key
      certificate_file = ${dir}/fr.pem
      ca_file = ${dir}/radius-ca.pem
      require_client_cert = yes
      tls_min_version = "1.2"
      tls_max_version = "1.3"
      fragment_size = 8192
      cipher_list = "DEFAULT"
      cache {
        enable = no
      }
      verify {
      }
    }
  }
  authorize {
    files
    pap
  }
  authenticate {
    pap
  }
  Autz-Type Status-Server {
    ok
  }
}
`;
}

function radsecproxyConfig(dir: string, udpPort: number, dancegatePort: number): string {
  return `ListenUDP 127.0.0.1:${udpPort}
SourceTLS ${NAS_ADDRESS}
LogLevel 5
tls default {
    CACertificateFile ${dir}/dancegate-ca.pem
    CertificateFile ${dir}/nas.pem
    CertificateKeyFile ${dir}/nas.key
}
client localhost {
    host 127.0.0.1
    type udp
    secret testing123
}
server dancegate {
    host 127.0.0.1
    port ${dancegatePort}
    type tls
    tls default
    secret radsec
    CertificateNameCheck off
    StatusServer on
}
realm * {
    server dancegate
}
`;
}

function startDaemon(command: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  process.once('exit', () => child.kill('SIGKILL'));
  return { child, output: () => output };
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

describe('examples/radsec: radsecproxy → dancegate → FreeRADIUS', () => {
  let dir: string;
  let lab: DnsLab;
  let proxy: RunningProxy;
  let freeradius: ReturnType<typeof startDaemon>;
  let radsecproxy: ReturnType<typeof startDaemon>;
  let udpPort: number;
  const decisions: DecisionRecord[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-radsec-'));
    const write = async (name: string, c: { certPem: string; keyPem: string }): Promise<void> => {
      await writeFile(join(dir, `${name}.pem`), c.certPem);
      await writeFile(join(dir, `${name}.key`), c.keyPem);
    };
    // FreeRADIUS side: its CA, its server certificate, dancegate's client certificate towards it.
    const radiusCa = await createCertificate({ commonName: 'radius CA', isCA: true });
    await writeFile(join(dir, 'radius-ca.pem'), radiusCa.certPem);
    await write('fr', await createCertificate({ commonName: 'radius.backend.test', dnsNames: ['radius.backend.test'], issuer: radiusCa, extendedKeyUsage: 'server' }));
    await write('to-radius', await createCertificate({ commonName: 'dancegate', issuer: radiusCa, extendedKeyUsage: 'client' }));
    // dancegate's RadSec server certificate, and the NAS, self-signed, known only through DANE.
    const dancegateCa = await createCertificate({ commonName: 'dancegate CA', isCA: true });
    await writeFile(join(dir, 'dancegate-ca.pem'), dancegateCa.certPem);
    await write('radsec', await createCertificate({ commonName: 'radsec.dancegate.test', dnsNames: ['radsec.dancegate.test'], issuer: dancegateCa, extendedKeyUsage: 'server' }));
    const nas = await createCertificate({ commonName: NAS, dnsNames: [NAS] });
    await write('nas', nas);
    await writeFile(join(dir, 'users'), 'testuser Cleartext-Password := "testpass"\n');

    lab = await startDnssecLab([
      { origin: 'radsec.example', signing: { algorithm: 13 }, records: [`nas1.nas 300 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(nas.der), 3, 1, 1))}`] },
    ]);

    const radiusPort = await freePort();
    await writeFile(join(dir, 'radiusd.conf'), freeradiusConfig(dir, radiusPort));
    // -f foreground, -xx debug (threads stay on: TLS listeners need them), log to stdout.
    freeradius = startDaemon('freeradius', ['-f', '-xx', '-l', 'stdout', '-d', dir]);
    await waitUntil('FreeRADIUS to listen', () => freeradius.output().includes('Ready to process requests') || freeradius.child.exitCode !== null, 20_000);
    expect(freeradius.child.exitCode, freeradius.output().slice(-2000)).toBeNull();

    const dancegatePort = await freePort();
    const example = await readFile(join(import.meta.dirname, '../../examples/radsec/dancegate.yaml'), 'utf8');
    const text = example
      .replace('listen: 127.0.0.1:9901', 'listen: 127.0.0.1:0')
      .replace('address: 127.0.0.1:53 ', `address: "127.0.0.1:${lab.resolver.port}" `)
      .replace('listen: 0.0.0.0:2083', `listen: 127.0.0.1:${dancegatePort}`)
      .replace('upstream: tls://127.0.0.1:12083', `upstream: tls://127.0.0.1:${radiusPort}`);
    proxy = await startProxy(await parseConfigText(text, join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });

    udpPort = await freePort();
    await writeFile(join(dir, 'radsecproxy.conf'), radsecproxyConfig(dir, udpPort, dancegatePort));
    radsecproxy = startDaemon('radsecproxy', ['-f', '-c', join(dir, 'radsecproxy.conf')]);
  }, 120_000);

  afterAll(async () => {
    await stop(radsecproxy?.child);
    await proxy?.close();
    await stop(freeradius?.child);
    await lab?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('Access-Request for a test user gets Access-Accept through the whole chain', async () => {
    const { stdout } = await run('radtest', ['-t', 'pap', 'testuser', 'testpass', `127.0.0.1:${udpPort}`, '0', 'testing123'], { timeout: 20_000 });
    expect(stdout).toMatch(/Received Access-Accept/);
    expect(decisions.filter((d) => d.reason === 'authenticated').map((d) => [d.listener, d.claimedName, d.nameSource, d.tlsa])).toEqual([['radsec', NAS, 'san', '3 1 1']]);
    // dancegate saw the NAS's own address …
    expect(decisions[0]?.source.startsWith(`${NAS_ADDRESS}:`)).toBe(true);
  }, 30_000);

  it('FreeRADIUS saw the NAS address from the PROXY line, not dancegate’s', async () => {
    await waitUntil('the request in the FreeRADIUS log', () => /Received Access-Request Id \d+ from 127\.0\.0\.9:\d+/.test(freeradius.output()));
    expect(freeradius.output()).toMatch(/Received Access-Request Id \d+ from 127\.0\.0\.9:\d+ to 127\.0\.0\.1:\d+/);
    expect(freeradius.output()).not.toMatch(/Received Access-Request Id \d+ from 127\.0\.0\.1:/);
  });

  it('a wrong password gets Access-Reject (the chain carries RADIUS, it does not decide it)', async () => {
    const result = await run('radtest', ['-t', 'pap', 'testuser', 'wrong', `127.0.0.1:${udpPort}`, '0', 'testing123'], { timeout: 20_000 }).catch((e: { stdout: string }) => e);
    expect(result.stdout).toMatch(/Received Access-Reject/);
  }, 30_000);

  it('radsecproxy’s Status-Server watchdog is answered by FreeRADIUS through dancegate', async () => {
    await waitUntil('a Status-Server in the FreeRADIUS log', () => /Received Status-Server Id \d+ from 127\.0\.0\.9/.test(freeradius.output()), 60_000);
    expect(freeradius.output()).toMatch(/Sent Access-Accept Id \d+ from 127\.0\.0\.1:\d+ to 127\.0\.0\.9:\d+/);
    await waitUntil('radsecproxy to take the answer', () => radsecproxy.output().includes('replyh: got status server response from dancegate'), 10_000);
  }, 90_000);
});
