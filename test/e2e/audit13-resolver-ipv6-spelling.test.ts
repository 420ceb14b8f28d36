/**
 * Issue 10, finding 13: a resolver written `[0:0:0:0:0:0:0:1]:PORT` passed
 * validation, then every UDP reply was dropped (the reply's source '::1' was
 * compared as a string with '0:0:0:0:0:0:0:1'): every lookup timed out, a
 * silent total outage. Addresses are now compared in canonical form.
 *
 * Real parts: the DNSSEC lab (NSD + Unbound) and a second validating Unbound
 * on ::1 in front of the lab's NSD; dancegate in TCP mode pointed at it with
 * non-canonical spellings of ::1.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { DnsTlsaResolver } from '../../src/lookup/tlsa-query.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { startHeaderBackend, tcpListenerYaml, tlsExchange, type HeaderBackend } from '../lab/audit-small-kit.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { startIpv6Unbound, type Ipv6Unbound } from '../lab/ipv6-loopback-unbound.js';

const NAME = 'nas1._device.radsec.test';

describe('finding 13: a resolver address in a non-canonical IPv6 spelling still gets its answers', () => {
  let dir: string;
  let lab: DnsLab;
  let unbound6: Ipv6Unbound;
  let backend: HeaderBackend;
  let client: IssuedCertificate;
  const running: RunningProxy[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-audit13-'));
    const server = await createCertificate({ commonName: 'radsec.proxy.test', dnsNames: ['radsec.proxy.test'], extendedKeyUsage: 'server' });
    client = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    lab = await startDnssecLab([
      { origin: 'radsec.test', signing: { algorithm: 13 }, records: [`nas1._device 300 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(client.der), 3, 1, 1))}`] },
    ]);
    unbound6 = await startIpv6Unbound(lab, ['radsec.test']);
    backend = await startHeaderBackend();
  }, 120_000);

  afterAll(async () => {
    for (const p of running) await p.close();
    await backend?.close();
    await unbound6?.stop();
    await lab?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['[0:0:0:0:0:0:0:1]', 'udp'],
    ['[0000:0000:0000:0000:0000:0000:0000:0001]', 'udp'],
    ['[0::1]', 'udp'],
    ['[::1]', 'udp'],
    ['[0:0:0:0:0:0:0:1]', 'tcp'],
  ])('resolver %s (%s): the lookup succeeds and the client is authenticated', async (spelling, transport) => {
    const port = await freePort();
    const decisions: DecisionRecord[] = [];
    const file = join(dir, `dancegate-${running.length}.yaml`);
    await writeFile(
      file,
      `resolver:
  attemptTimeoutMs: 1500
  totalTimeoutMs: 3000
  servers:
    - address: "${spelling}:${unbound6.port}"
      transport: ${transport}
listeners:
${tcpListenerYaml({ name: 'radsec', port, upstreamPort: backend.port, allow: '*._device.radsec.test' })}`,
    );
    const proxy = await startProxy(await loadConfig(file), { log: (d) => decisions.push(d) });
    running.push(proxy);
    const r = await tlsExchange({ port, servername: 'radsec.proxy.test', certPem: client.certPem, keyPem: client.keyPem, line: 'access-request' });
    expect(decisions.map((d) => [d.outcome, d.reason, d.claimedName])).toEqual([['forwarded', 'authenticated', NAME]]);
    expect(r.received).toBe('ACCESS-REQUEST\n');
  });

  it.each(['0:0:0:0:0:0:0:1', '0000:0000:0000:0000:0000:0000:0000:0001', '0::1'])(
    'the resolver itself, given %s directly (not through the configuration file), accepts the reply from ::1',
    async (host) => {
      const resolver = new DnsTlsaResolver({ servers: [{ host, port: unbound6.port, transport: 'udp' }], attemptTimeoutMs: 1500, totalTimeoutMs: 3000 });
      const outcome = await resolver.lookup(NAME);
      expect(outcome.kind).toBe('secure');
      expect(outcome.records).toHaveLength(1);
    },
  );
});
