/**
 * The DANE core against real parts: NSD serving zones signed with
 * ldns-signzone, Unbound validating them, our resolver, cache and matcher.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate, type KeyAlgorithm } from '../../certs/pki.js';
import { Allowlist } from '../../src/allowlist/allowlist.js';
import { TlsaCache } from '../../src/lookup/cache.js';
import { parseCertificateDer, type ParsedCertificate } from '../../src/dane/certificate.js';
import type { ResolverServer } from '../../src/dns/resolver.js';
import { DnsTlsaResolver } from '../../src/lookup/tlsa-query.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { verifyClient, type VerificationResult } from '../../src/connection/verify.js';
import { startSilentDns } from '../lab/silent-dns.js';
import { startDnssecLab, type DnsLab, type LabZone, type SigningAlgorithm } from '../lab/dnssec-lab.js';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');
const DAY = 86_400_000;

interface Pki {
  root: IssuedCertificate;
  intermediate: IssuedCertificate;
  fleetCa: IssuedCertificate;
  ee: IssuedCertificate;
  expiredEe: IssuedCertificate;
  other: IssuedCertificate;
  ta201: IssuedCertificate;
  ta211: IssuedCertificate;
  sensor1: IssuedCertificate;
  sensor2WrongSan: IssuedCertificate;
  byAlgorithm: Map<SigningAlgorithm, IssuedCertificate>;
}

const parsed = (...certs: IssuedCertificate[]): ParsedCertificate[] => certs.map((c) => parseCertificateDer(c.der));
const rdata = (cert: IssuedCertificate, u: number, s: number, m: number): string => formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(cert.der), u, s, m));

const ALGORITHMS: SigningAlgorithm[] = [8, 10, 13, 14, 15, 16];

async function makePki(): Promise<Pki> {
  const root = await createCertificate({ commonName: 'lab root CA', isCA: true });
  const intermediate = await createCertificate({ commonName: 'lab intermediate CA', isCA: true, pathLength: 0, issuer: root });
  const fleetCa = await createCertificate({ commonName: 'lab fleet CA', isCA: true });
  const leaf = (name: string, issuer?: IssuedCertificate, extra: { notBefore?: Date; notAfter?: Date; keyAlgorithm?: KeyAlgorithm; san?: string } = {}) =>
    createCertificate({ commonName: name, dnsNames: [extra.san ?? name], issuer, ...extra });
  const byAlgorithm = new Map<SigningAlgorithm, IssuedCertificate>();
  for (const alg of ALGORITHMS) byAlgorithm.set(alg, await leaf(`client.alg${alg}.test`, undefined, { keyAlgorithm: alg === 8 ? 'rsa-2048' : alg === 15 ? 'ed25519' : 'ecdsa-p256' }));
  return {
    root,
    intermediate,
    fleetCa,
    ee: await leaf('ee.alg13.test'),
    expiredEe: await leaf('expired.alg13.test', undefined, { notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - 30 * DAY) }),
    other: await leaf('other.alg13.test'),
    ta201: await leaf('ta201.alg13.test', intermediate),
    ta211: await leaf('ta211.alg13.test', intermediate),
    sensor1: await leaf('sensor1._device.alg13.test', fleetCa),
    sensor2WrongSan: await leaf('sensor2._device.alg13.test', fleetCa, { san: 'sensor3._device.alg13.test' }),
    byAlgorithm,
  };
}

function zones(pki: Pki): LabZone[] {
  // Eight distinct non-matching full-certificate records (~400 bytes each) push the RRset past 1232 bytes.
  const bigRecords = Array.from({ length: 8 }, (_, i) => `big 300 IN TLSA 3 0 0 ${pki.other.der.toString('hex')}${i.toString(16).padStart(2, '0')}`);
  const main: LabZone & { records: string[] } = {
    origin: 'alg13.test',
    signing: { algorithm: 13 },
    records: [
      `ee311 300 IN TLSA ${rdata(pki.ee, 3, 1, 1)}`,
      `ee301 300 IN TLSA ${rdata(pki.ee, 3, 0, 1)}`,
      `ee312 300 IN TLSA ${rdata(pki.ee, 3, 1, 2)}`,
      `ee300 300 IN TLSA ${rdata(pki.ee, 3, 0, 0)}`,
      `expired 300 IN TLSA ${rdata(pki.expiredEe, 3, 1, 1)}`,
      `ta201 300 IN TLSA ${rdata(pki.intermediate, 2, 0, 1)}`,
      `ta211 300 IN TLSA ${rdata(pki.intermediate, 2, 1, 1)}`,
      `*._device 300 IN TLSA ${rdata(pki.fleetCa, 2, 0, 1)}`,
      `multi 300 IN TLSA ${rdata(pki.other, 3, 1, 1)}`,
      `multi 300 IN TLSA ${rdata(pki.ee, 3, 1, 1)}`,
      `multi 300 IN TLSA ${rdata(pki.other, 3, 0, 1)}`,
      // Digest agility: the correct SHA-256 record must not count beside a (wrong) SHA-512 one.
      `agility 300 IN TLSA ${rdata(pki.ee, 3, 1, 1)}`,
      `agility 300 IN TLSA ${rdata(pki.other, 3, 1, 2)}`,
      `nodata 300 IN TXT "no TLSA here"`,
      `alias 300 IN CNAME ee311`,
      ...bigRecords,
      `big 300 IN TLSA ${rdata(pki.ee, 3, 1, 1)}`,
    ],
  };
  const perAlgorithm = ALGORITHMS.filter((a) => a !== 13).map((alg): LabZone => ({
    origin: `alg${alg}.test`,
    signing: { algorithm: alg },
    records: [`client 300 IN TLSA ${rdata(pki.byAlgorithm.get(alg) as IssuedCertificate, 3, 1, 1)}`],
  }));
  main.records.push(`client 300 IN TLSA ${rdata(pki.byAlgorithm.get(13) as IssuedCertificate, 3, 1, 1)}`);
  const ee311 = `client 300 IN TLSA ${rdata(pki.ee, 3, 1, 1)}`;
  return [
    main,
    ...perAlgorithm,
    { origin: 'unsigned.test', signing: 'unsigned', records: [ee311] },
    { origin: 'tampered.test', signing: { algorithm: 13 }, tamper: true, records: [ee311] },
    { origin: 'expiredsig.test', signing: { algorithm: 13 }, expiredSignatures: true, records: [ee311] },
  ];
}

describe('DANE core against a real DNSSEC lab (NSD + Unbound)', () => {
  let lab: DnsLab;
  let pki: Pki;
  let server: ResolverServer;
  let dir: string;
  let dotCa: IssuedCertificate;

  beforeAll(async () => {
    pki = await makePki();
    dotCa = await createCertificate({ commonName: 'lab DoT CA', isCA: true });
    const dotServer = await createCertificate({
      commonName: 'resolver.lab.test',
      dnsNames: ['resolver.lab.test'],
      issuer: dotCa,
      extendedKeyUsage: 'server',
    });
    lab = await startDnssecLab(zones(pki), { dot: { certPem: dotServer.certPem + dotCa.certPem, keyPem: dotServer.keyPem } });
    server = { host: lab.resolver.host, port: lab.resolver.port, transport: 'udp' };
    dir = await mkdtemp(join(tmpdir(), 'dancegate-lab-cli-'));
  }, 120_000);

  afterAll(async () => {
    await lab?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function verify(name: string, chain: IssuedCertificate[], servers: ResolverServer[] = [server], allowlist?: Allowlist): Promise<VerificationResult> {
    const cache = new TlsaCache(new DnsTlsaResolver({ servers, attemptTimeoutMs: 1500, totalTimeoutMs: 4000 }));
    return verifyClient({ claimedName: name, chain: parsed(...chain), cache, allowlist });
  }

  const verdicts = (r: VerificationResult): string[] => (r.decision?.records ?? []).map((x) => x.verdict);

  it.each([
    ['DANE-EE 3 1 1', 'ee311.alg13.test'],
    ['DANE-EE 3 0 1', 'ee301.alg13.test'],
    ['DANE-EE 3 1 2', 'ee312.alg13.test'],
    ['DANE-EE 3 0 0', 'ee300.alg13.test'],
    ['mixed-case name', 'EE311.Alg13.TEST'],
  ])('%s authenticates', async (_label, name) => {
    const r = await verify(name, [pki.ee]);
    expect(r).toMatchObject({ authenticated: true, reason: 'authenticated', name: name.toLowerCase() });
    expect(r.lookup?.kind).toBe('secure');
    expect(verdicts(r)).toEqual(['matched']);
  });

  it('DANE-EE accepts an expired certificate (RFC 7671 5.1: no validity dates)', async () => {
    const r = await verify('expired.alg13.test', [pki.expiredEe]);
    expect(r).toMatchObject({ authenticated: true, reason: 'authenticated' });
  });

  it('DANE-EE refuses a different certificate', async () => {
    const r = await verify('ee311.alg13.test', [pki.other]);
    expect(r).toMatchObject({ authenticated: false, reason: 'no-matching-record' });
    expect(verdicts(r)).toEqual(['ee-mismatch']);
  });

  it.each([
    ['2 0 1', 'ta201.alg13.test', 'ta201'],
    ['2 1 1', 'ta211.alg13.test', 'ta211'],
  ] as const)('DANE-TA %s with a private CA chain authenticates', async (_label, name, key) => {
    const r = await verify(name, [pki[key], pki.intermediate]);
    expect(r).toMatchObject({ authenticated: true, reason: 'authenticated' });
    expect(verdicts(r)).toEqual(['matched']);
  });

  it('DANE-TA without the anchor in the presented chain is refused', async () => {
    const r = await verify('ta201.alg13.test', [pki.ta201]);
    expect(r).toMatchObject({ authenticated: false, reason: 'no-matching-record' });
    expect(verdicts(r)).toEqual(['ta-not-found']);
  });

  it('wildcard *._device DANE-TA record: matching SAN authenticates', async () => {
    const r = await verify('sensor1._device.alg13.test', [pki.sensor1, pki.fleetCa]);
    expect(r).toMatchObject({ authenticated: true, reason: 'authenticated' });
  });

  it('wildcard *._device DANE-TA record: mismatching SAN is refused (name-mismatch)', async () => {
    const r = await verify('sensor2._device.alg13.test', [pki.sensor2WrongSan, pki.fleetCa]);
    expect(r).toMatchObject({ authenticated: false, reason: 'no-matching-record' });
    expect(verdicts(r)).toEqual(['name-mismatch']);
  });

  it('several records, one matching: authenticated by that one', async () => {
    const r = await verify('multi.alg13.test', [pki.ee]);
    expect(r.authenticated).toBe(true);
    expect(r.decision?.matched?.record.data.equals(tlsaRecordForCertificate(parseCertificateDer(pki.ee.der), 3, 1, 1).data)).toBe(true);
    expect(verdicts(r).filter((v) => v === 'matched')).toEqual(['matched']);
    expect(r.lookup?.records).toHaveLength(3);
  });

  it('digest agility: a correct SHA-256 record beside a wrong SHA-512 record fails', async () => {
    const r = await verify('agility.alg13.test', [pki.ee]);
    expect(r).toMatchObject({ authenticated: false, reason: 'no-matching-record' });
    const byType = Object.fromEntries((r.decision?.records ?? []).map((x) => [x.record.matchingType, x.verdict]));
    expect(byType).toEqual({ 1: 'weaker-digest', 2: 'ee-mismatch' });
  });

  it.each(ALGORITHMS)('a zone signed with algorithm %i validates and authenticates', async (alg) => {
    const r = await verify(`client.alg${alg}.test`, [pki.byAlgorithm.get(alg) as IssuedCertificate]);
    expect(r).toMatchObject({ authenticated: true, reason: 'authenticated' });
    expect(r.lookup?.kind).toBe('secure');
  });

  it('unsigned zone: refused as insecure', async () => {
    const r = await verify('client.unsigned.test', [pki.ee]);
    expect(r).toMatchObject({ authenticated: false, reason: 'dns-insecure' });
    expect(r.decision).toBeUndefined();
  });

  it('tampered signed zone: refused as bogus', async () => {
    const r = await verify('client.tampered.test', [pki.ee]);
    expect(r).toMatchObject({ authenticated: false, reason: 'dns-bogus' });
    expect(r.detail).toMatch(/^SERVFAIL/);
  });

  it('expired signatures: refused as bogus', async () => {
    const r = await verify('client.expiredsig.test', [pki.ee]);
    expect(r).toMatchObject({ authenticated: false, reason: 'dns-bogus' });
  });

  it('secure NXDOMAIN: refused, no TLSA', async () => {
    const r = await verify('nonexistent.alg13.test', [pki.ee]);
    expect(r).toMatchObject({ authenticated: false, reason: 'dns-no-tlsa' });
    expect(r.lookup?.detail).toMatch(/^secure NXDOMAIN/);
  });

  it('secure NODATA: refused, no TLSA', async () => {
    const r = await verify('nodata.alg13.test', [pki.ee]);
    expect(r).toMatchObject({ authenticated: false, reason: 'dns-no-tlsa' });
    expect(r.lookup?.detail).toMatch(/^secure NODATA/);
  });

  it('a TLSA RRset too large for UDP is fetched over TCP after TC', async () => {
    const r = await verify('big.alg13.test', [pki.ee]);
    expect(r).toMatchObject({ authenticated: true, reason: 'authenticated' });
    expect(r.lookup?.records).toHaveLength(9);
    expect(r.lookup?.detail).toContain('(UDP answer truncated, retried over TCP)');
  });

  it('TCP-only transport works', async () => {
    const r = await verify('ee311.alg13.test', [pki.ee], [{ ...server, transport: 'tcp' }]);
    expect(r).toMatchObject({ authenticated: true });
    expect(r.lookup?.detail).toContain('from tcp://127.0.0.1:');
  });

  describe('DNS over TLS (RFC 7858) to Unbound', () => {
    const dot = (overrides: Partial<ResolverServer>): ResolverServer => ({
      host: '127.0.0.1',
      port: lab.dotPort as number,
      transport: 'tls',
      tlsCa: dotCa.certPem,
      tlsServerName: 'resolver.lab.test',
      ...overrides,
    });

    it('authenticates with the server certificate verified against the configured CA and name', async () => {
      const r = await verify('ee311.alg13.test', [pki.ee], [dot({})]);
      expect(r).toMatchObject({ authenticated: true, reason: 'authenticated' });
      expect(r.lookup?.detail).toContain(`from tls://127.0.0.1:${lab.dotPort}`);
    });

    it('refuses a server whose certificate does not carry the configured name', async () => {
      const r = await verify('ee311.alg13.test', [pki.ee], [dot({ tlsServerName: 'other.lab.test' })]);
      expect(r).toMatchObject({ authenticated: false, reason: 'dns-server-error' });
      expect(r.detail).toContain("Host: other.lab.test. is not in the cert's altnames");
    });

    it('refuses a server certificate from another CA', async () => {
      const r = await verify('ee311.alg13.test', [pki.ee], [dot({ tlsCa: pki.root.certPem })]);
      expect(r).toMatchObject({ authenticated: false, reason: 'dns-server-error' });
      expect(r.detail).toBe(`tls://127.0.0.1:${lab.dotPort}: self-signed certificate in certificate chain`);
    });
  });

  it('a CNAME leading to the TLSA RRset is followed', async () => {
    const r = await verify('alias.alg13.test', [pki.ee]);
    expect(r).toMatchObject({ authenticated: true, reason: 'authenticated' });
    expect(r.lookup?.canonicalName).toBe('ee311.alg13.test');
  });

  it('a resolver that does not answer: timeout within the deadline', async () => {
    const hole = await startSilentDns('drop');
    try {
      const started = Date.now();
      const cache = new TlsaCache(new DnsTlsaResolver({ servers: [{ host: hole.host, port: hole.port, transport: 'udp' }], attemptTimeoutMs: 300, totalTimeoutMs: 700 }));
      const r = await verifyClient({ claimedName: 'ee311.alg13.test', chain: parsed(pki.ee), cache });
      const elapsed = Date.now() - started;
      expect(r).toMatchObject({ authenticated: false, reason: 'dns-timeout' });
      expect(hole.udpQueriesSeen()).toBe(2);
      // Deadline enforced: not Unbound's or the OS's idea of a timeout.
      expect(elapsed).toBeLessThan(2000);
    } finally {
      await hole.stop();
    }
  });

  it('fails over from a silent server to a working one', async () => {
    const hole = await startSilentDns('drop');
    try {
      const r = await verify('ee311.alg13.test', [pki.ee], [{ host: hole.host, port: hole.port, transport: 'udp' }, server]);
      expect(r).toMatchObject({ authenticated: true });
      expect(hole.udpQueriesSeen()).toBe(1);
    } finally {
      await hole.stop();
    }
  });

  it('a name not on the allowlist causes no DNS query at all', async () => {
    await lab.resetQueryLog();
    const allowlist = Allowlist.fromList(['*._device.alg13.test'], 'allow');
    const refused = await verify('ee311.alg13.test', [pki.ee], [server], allowlist);
    expect(refused).toMatchObject({ authenticated: false, reason: 'not-allowed', lookup: undefined });
    const allowed = await verify('sensor1._device.alg13.test', [pki.sensor1, pki.fleetCa], [server], allowlist);
    expect(allowed).toMatchObject({ authenticated: true, allowedBy: '*._device.alg13.test' });
    const asked = (await lab.clientQueries()).filter((q) => q.type === 'TLSA').map((q) => q.name);
    expect(asked).toEqual(['sensor1._device.alg13.test']);
  });

  describe('dancegate check (built CLI)', () => {
    async function check(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
      try {
        const { stdout, stderr } = await run(process.execPath, [CLI, 'check', ...args, '--resolver', `127.0.0.1:${lab.resolver.port}`]);
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    }

    it('exits 0 and prints the records, outcome and reason when authenticated', async () => {
      const cert = join(dir, 'ta201.pem');
      await writeFile(cert, pki.ta201.certPem);
      const chain = join(dir, 'chain.pem');
      await writeFile(chain, pki.intermediate.certPem);
      const r = await check('ta201.alg13.test', '--cert', cert, '--chain', chain);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(
        [
          'name:     ta201.alg13.test',
          `lookup:   secure (1 TLSA record(s) from udp://127.0.0.1:${lab.resolver.port})`,
          'records:',
          `  1. ${rdata(pki.intermediate, 2, 0, 1)}`,
          '     DANE-TA(2) Cert(0) SHA2-256(1): matched',
          'outcome:  authenticated',
          'reason:   authenticated (record 1 of 1 matched)',
          '',
        ].join('\n'),
      );
    });

    it('exits 1 with a JSON verdict when not authenticated', async () => {
      const cert = join(dir, 'other.pem');
      await writeFile(cert, pki.other.certPem);
      const r = await check('ee311.alg13.test', '--cert', cert, '--json');
      expect(r.code).toBe(1);
      const json = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(json).toMatchObject({
        name: 'ee311.alg13.test',
        authenticated: false,
        reason: 'no-matching-record',
        lookup: { outcome: 'secure' },
        records: [{ usage: 3, selector: 1, matchingType: 1, verdict: 'ee-mismatch' }],
      });
    });

    it('exits 1 for an insecure zone', async () => {
      const cert = join(dir, 'ee.pem');
      await writeFile(cert, pki.ee.certPem);
      const r = await check('client.unsigned.test', '--cert', cert);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain('reason:   dns-insecure (answer is not DNSSEC-validated (AD=0, NOERROR)');
    });
  });
});
