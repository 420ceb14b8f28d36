/**
 * Issue 10, finding 11: a ClientHello sent as 1-byte TLS records (and 1-byte
 * TCP writes) made the peek re-join and re-parse the whole buffer on every
 * data event (~1 s of CPU per connection at the size limit). The peek now
 * follows the record framing and parses a constant number of times (see
 * also test/unit/peek-linear.test.ts, and bench/peek-fragmented.ts for the
 * CPU figures).
 *
 * Here: real TLS clients (TLS 1.3 and 1.2) through a relay that re-frames
 * their ClientHello, against the real proxy in TCP mode: the decision and
 * the relayed bytes are exactly those of an unfragmented ClientHello, and
 * the proxy's ClientHello parser (the real one, counted) runs at most 3 times.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { startHeaderBackend, tcpListenerYaml, type HeaderBackend } from '../lab/audit-small-kit.js';
import { freePort } from '../lab/dnssec-lab.js';
import { startRecordSplitter, type RecordSplitter } from '../lab/tls-record-splitter.js';

const NAME = 'nas1._device.radsec.test';
const SNI = 'radsec.proxy.test';

/** The parse work the proxy does on ClientHellos: the real parser, counted. */
const parseWork = vi.hoisted(() => ({ calls: 0, bytes: 0 }));
vi.mock('../../src/protocol/client-hello.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/protocol/client-hello.js')>();
  return {
    ...original,
    parseClientHello: (buffered: Buffer, options?: Parameters<typeof original.parseClientHello>[1]) => {
      parseWork.calls++;
      parseWork.bytes += buffered.length;
      return original.parseClientHello(buffered, options);
    },
  };
});

describe('finding 11: a ClientHello in 1-byte records still gets the right decision', () => {
  let dir: string;
  let backend: HeaderBackend;
  let proxy: RunningProxy;
  let port: number;
  let client: IssuedCertificate;
  let stranger: IssuedCertificate;
  const splitters: Record<string, RecordSplitter> = {};
  const decisions: DecisionRecord[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-audit11-'));
    const server = await createCertificate({ commonName: SNI, dnsNames: [SNI], extendedKeyUsage: 'server' });
    client = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    stranger = await createCertificate({ commonName: NAME, dnsNames: [NAME] });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'tlsa.txt'), `${NAME}. IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(client.der), 3, 1, 1))}\n`);
    backend = await startHeaderBackend();
    port = await freePort();
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:\n  localTlsaFile: tlsa.txt\nlisteners:\n${tcpListenerYaml({ name: 'radsec', port, upstreamPort: backend.port, allow: '*._device.radsec.test' })}`,
    );
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
    splitters.records1 = await startRecordSplitter({ host: '127.0.0.1', port }, { recordBytes: 1, writeBytes: 6 });
    splitters.records1writes1 = await startRecordSplitter({ host: '127.0.0.1', port }, { recordBytes: 1, writeBytes: 1 });
    splitters.records7writes3 = await startRecordSplitter({ host: '127.0.0.1', port }, { recordBytes: 7, writeBytes: 3 });
  }, 60_000);

  afterAll(async () => {
    for (const s of Object.values(splitters)) await s.close();
    await proxy?.close();
    await backend?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    decisions.length = 0;
    backend.headers.length = 0;
    parseWork.calls = 0;
    parseWork.bytes = 0;
  });

  /** A real TLS client through `splitter`: one line out, the echo back. */
  async function exchange(splitter: RecordSplitter, cert: IssuedCertificate, maxVersion: tls.SecureVersion): Promise<string> {
    const socket = tls.connect({ port: splitter.port, host: '127.0.0.1', servername: SNI, cert: cert.certPem, key: cert.keyPem, rejectUnauthorized: false, maxVersion });
    let received = '';
    socket.on('data', (d: Buffer) => {
      received += d.toString();
      if (received.endsWith('\n')) socket.end();
    });
    socket.on('error', () => undefined);
    socket.once('secureConnect', () => socket.write('access-request\n'));
    const timer = setTimeout(() => socket.destroy(), 10_000);
    await new Promise((resolve) => socket.once('close', resolve));
    clearTimeout(timer);
    return received;
  }

  it.each([
    ['1-byte records', 'records1', 'TLSv1.3'],
    ['1-byte records', 'records1', 'TLSv1.2'],
    ['1-byte records in 1-byte TCP writes', 'records1writes1', 'TLSv1.3'],
    ['1-byte records in 1-byte TCP writes', 'records1writes1', 'TLSv1.2'],
    ['7-byte records in 3-byte writes', 'records7writes3', 'TLSv1.3'],
  ] as const)('%s (%s), %s client: authenticated, SNI read, relayed', async (_label, key, version) => {
    const splitter = splitters[key] as RecordSplitter;
    const before = splitter.reframedBytes();
    expect(await exchange(splitter, client, version)).toBe('ACCESS-REQUEST\n');
    // The ClientHello really went out re-framed: hundreds of records, 5 header bytes each.
    const wire = splitter.reframedBytes() - before;
    expect(wire).toBeGreaterThan(600);
    // Linear work: the proxy parsed it a constant number of times, not once per record or segment.
    expect(parseWork.calls).toBeGreaterThan(0);
    expect(parseWork.calls).toBeLessThanOrEqual(3);
    expect(parseWork.bytes).toBeLessThanOrEqual(3 * wire);
    expect(decisions.map((d) => [d.outcome, d.reason, d.claimedName, d.sni, d.tlsVersion])).toEqual([['forwarded', 'authenticated', NAME, SNI, version]]);
    expect(backend.headers.map((h) => h.parsed.header.authority)).toEqual([SNI]);
  });

  it('1-byte records from a client whose key is not published: refused, nothing relayed', async () => {
    expect(await exchange(splitters.records1writes1 as RecordSplitter, stranger, 'TLSv1.3')).toBe('');
    expect(decisions.map((d) => [d.outcome, d.reason, d.sni])).toEqual([['refused', 'no-matching-record', SNI]]);
    expect(backend.headers).toEqual([]);
  });
});
