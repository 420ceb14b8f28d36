/**
 * Issue 10, finding 12: an inbound PROXY v2 header whose CRC32C TLV does not
 * match was accepted (the checksum was computed and never checked), so a
 * header corrupted (or altered) on the way from the load balancer set the
 * client address that admission, the penalty box and the logs trust. The
 * spec: the receiver MUST reject such a connection.
 *
 * Against the real proxy with inbound PROXY protocol enabled: raw header
 * bytes, then a real TLS client on the same TCP connection.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { encodeProxyV2 } from '../../src/protocol/proxy-protocol.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { startHeaderBackend, tcpListenerYaml, tlsExchange, type HeaderBackend } from '../lab/audit-small-kit.js';
import { freePort } from '../lab/dnssec-lab.js';

const NAME = 'nas1._device.radsec.test';
/** The original client the load balancer reports. */
const ORIGINAL = { family: 'tcp4', sourceAddress: '198.51.100.7', sourcePort: 40000, destinationAddress: '203.0.113.1', destinationPort: 2083 } as const;

/** A v2 header with a CRC32C TLV; `corrupt` changes one byte after the checksum was computed. */
function header(corrupt: 'none' | 'address' | 'checksum'): Buffer {
  const bytes = encodeProxyV2({ addresses: ORIGINAL, crc32c: true });
  if (corrupt === 'address') bytes[16] = 10; // source 198.51.100.7 -> 10.51.100.7
  if (corrupt === 'checksum') bytes[bytes.length - 1] = ((bytes[bytes.length - 1] ?? 0) ^ 0x01) & 0xff;
  return bytes;
}

describe('finding 12: inbound PROXY v2 with a bad CRC32C is refused', () => {
  let dir: string;
  let backend: HeaderBackend;
  let proxy: RunningProxy;
  let port: number;
  let client: IssuedCertificate;
  const decisions: DecisionRecord[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-audit12-'));
    const server = await createCertificate({ commonName: 'radsec.proxy.test', dnsNames: ['radsec.proxy.test'], extendedKeyUsage: 'server' });
    client = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'tlsa.txt'), `${NAME}. IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(client.der), 3, 1, 1))}\n`);
    backend = await startHeaderBackend();
    port = await freePort();
    const inbound = "    proxyProtocol:\n      versions: v2\n      trustedCidrs: ['127.0.0.0/8']\n";
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:\n  localTlsaFile: tlsa.txt\nlisteners:\n${tcpListenerYaml({ name: 'behind-lb', port, upstreamPort: backend.port, allow: '*._device.radsec.test', extra: inbound })}`,
    );
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await backend?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    backend.headers.length = 0;
    decisions.length = 0;
  });

  /** The load balancer's header, then a real TLS client on the same connection. */
  async function viaLoadBalancer(bytes: Buffer): Promise<Awaited<ReturnType<typeof tlsExchange>>> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(bytes);
    return tlsExchange({ port, socket, servername: 'radsec.proxy.test', certPem: client.certPem, keyPem: client.keyPem, line: 'access-request' });
  }

  it('control: a header with a matching CRC32C is accepted and its client address is used', async () => {
    const r = await viaLoadBalancer(header('none'));
    expect(decisions.map((d) => [d.outcome, d.reason, d.source])).toEqual([['forwarded', 'authenticated', '198.51.100.7:40000']]);
    expect(r.received).toBe('ACCESS-REQUEST\n');
    expect(decisions.map((d) => [d.outcome, d.reason, d.source])).toEqual([['forwarded', 'authenticated', '198.51.100.7:40000']]);
    expect(backend.headers.map((h) => h.parsed.header.addresses?.sourceAddress)).toEqual(['198.51.100.7']);
  });

  it.each([
    ['an address changed after the checksum was computed', 'address', 'PROXY v2: CRC32C checksum mismatch (header says 0x'],
    ['a corrupted checksum', 'checksum', 'PROXY v2: CRC32C checksum mismatch (header says 0x'],
  ] as const)('%s: refused before TLS, logged with the reason, nothing reaches the backend', async (_label, corrupt, reason) => {
    const before = backend.connections();
    const r = await viaLoadBalancer(header(corrupt));
    expect(r.secure).toBe(false);
    expect(r.received).toBe('');
    expect(backend.connections()).toBe(before);
    expect(decisions).toHaveLength(1);
    expect(decisions[0]).toMatchObject({ outcome: 'refused', reason: 'proxy-header-invalid', listener: 'behind-lb', source: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(decisions[0]?.detail.startsWith(reason)).toBe(true);
    expect(decisions[0]?.detail).toMatch(/^PROXY v2: CRC32C checksum mismatch \(header says 0x[0-9A-F]{8}, the bytes give 0x[0-9A-F]{8}\)$/);
  });
});
