/**
 * Issue 10, finding 14: one unauthenticated connection wrote a 61 KB
 * decision-log line (SAN names quoted in `detail` untruncated). Every logged
 * field is now bounded.
 *
 * Against the real proxy and the real process logger (pino, to a file, as
 * `dancegate serve` logs): a client certificate (under the 64 KiB certificate
 * limit) with over a thousand SAN dNSNames, the first ones each 11 KB long,
 * none allowlisted.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { createLogger } from '../../src/process/logging.js';
import { loadConfig } from '../../src/config/load.js';
import { loggerSink } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { startHeaderBackend, tcpListenerYaml, tlsExchange, type HeaderBackend } from '../lab/audit-small-kit.js';
import { freePort } from '../lab/dnssec-lab.js';

/** Long names first (they are the ones a message quotes), then a thousand short ones. */
const HOSTILE_NAMES = [...Array.from({ length: 4 }, (_, i) => `${String.fromCharCode(0x61 + i).repeat(11_000)}.evil.test`), ...Array.from({ length: 1_000 }, (_, i) => `h${i}.e.test`)];
/** The bound the README promises for one decision line. */
const MAX_LINE_BYTES = 4096;

describe('finding 14: a hostile certificate produces a bounded decision-log line', () => {
  let dir: string;
  let backend: HeaderBackend;
  let proxy: RunningProxy;
  let port: number;
  let hostile: IssuedCertificate;
  let logger: ReturnType<typeof createLogger>;
  const logFile = (): string => join(dir, 'dancegate.log');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-audit14-'));
    const server = await createCertificate({ commonName: 'radsec.proxy.test', dnsNames: ['radsec.proxy.test'], extendedKeyUsage: 'server' });
    hostile = await createCertificate({ commonName: 'hostile', dnsNames: HOSTILE_NAMES });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'tlsa.txt'), '');
    backend = await startHeaderBackend();
    port = await freePort();
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:\n  localTlsaFile: tlsa.txt\nlisteners:\n${tcpListenerYaml({ name: 'mqtt', port, upstreamPort: backend.port, allow: '*._device.radsec.test' })}`,
    );
    logger = createLogger({ level: 'info', destination: logFile() });
    proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: loggerSink(logger) });
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await backend?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the certificate really is hostile: tens of kilobytes of names, yet under the 64 KiB certificate limit', () => {
    expect(hostile.der.length).toBeGreaterThan(50_000);
    expect(hostile.der.length).toBeLessThan(65_536);
    expect(HOSTILE_NAMES.join('').length).toBeGreaterThan(50_000);
  });

  it('is refused, nothing reaches the backend, and its one log line stays under 4 KiB with every field bounded', async () => {
    const r = await tlsExchange({ port, servername: 'radsec.proxy.test', certPem: hostile.certPem, keyPem: hostile.keyPem, line: 'hello' });
    expect(r.received).toBe('');
    expect(backend.connections()).toBe(0);
    await new Promise<void>((resolve, reject) => logger.flush((err) => (err ? reject(err) : resolve())));
    const lines = (await readFile(logFile(), 'utf8')).split('\n').filter((l) => l !== '');
    const decisions = lines.filter((l) => l.includes('"connection decision"'));
    expect(decisions).toHaveLength(1);
    const line = decisions[0] ?? '';
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(MAX_LINE_BYTES);
    const record = JSON.parse(line) as Record<string, unknown>;
    expect(record).toMatchObject({ msg: 'connection decision', listener: 'mqtt', outcome: 'refused' });
    // Whatever the refusal says about the names, it says it in at most 1 KiB, the cut marker included.
    expect(Buffer.byteLength(String(record.detail))).toBeLessThanOrEqual(1024);
    for (const [field, value] of Object.entries(record)) {
      if (typeof value === 'string' && field !== 'detail') expect(Buffer.byteLength(value), field).toBeLessThanOrEqual(253);
    }
  });
});
