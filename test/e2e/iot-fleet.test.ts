/**
 * examples/iot-fleet as a test: 1,000 devices, each with its own key and
 * certificate; half publish their own DANE-EE record, half are covered by
 * the fleet CA's DANE-TA wildcard record, all in a zone signed for real and
 * served by NSD behind a validating Unbound. They connect concurrently and
 * post readings; every reading must reach the backend attributed to the
 * right device. Then some devices are revoked (their records removed, the
 * zone re-signed, the TTL run out) and are refused afterwards.
 */
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseConfigText } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';

const DEVICES = 1000;
const CONCURRENCY = 48;
const ZONE = 'fleet.example';
const EE_TTL = 2;

interface Device {
  readonly serial: string;
  readonly name: string;
  readonly kind: 'ee' | 'ta';
  readonly cert: IssuedCertificate;
  /** What the device presents: its certificate, and for DANE-TA the fleet CA after it. */
  readonly chainPem: string;
}

interface Reading {
  readonly device: string | undefined;
  readonly tlsa: string | undefined;
  readonly body: { serial: string; value: number };
}

describe('examples/iot-fleet: 1,000 devices through dancegate', () => {
  let dir: string;
  let lab: DnsLab;
  let proxy: RunningProxy;
  let backend: http.Server;
  let port: number;
  let serverCa: IssuedCertificate;
  const devices: Device[] = [];
  const readings: Reading[] = [];
  const decisions: DecisionRecord[] = [];
  let eeRecords: string[] = [];
  let wildcard: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-iot-'));
    serverCa = await createCertificate({ commonName: 'ingest CA', isCA: true });
    const server = await createCertificate({ commonName: 'ingest.fleet.example', dnsNames: ['ingest.fleet.example'], issuer: serverCa, extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'ingest.pem'), server.certPem);
    await writeFile(join(dir, 'ingest.key'), server.keyPem);
    const fleetCa = await createCertificate({ commonName: 'fleet CA', isCA: true });
    for (let i = 0; i < DEVICES; i++) {
      const serial = `sn${String(i).padStart(5, '0')}`;
      const name = `${serial}._device.${ZONE}`;
      const kind = i % 2 === 0 ? 'ee' : 'ta';
      const cert = await createCertificate({ commonName: name, dnsNames: [name], ...(kind === 'ta' ? { issuer: fleetCa } : {}) });
      devices.push({ serial, name, kind, cert, chainPem: kind === 'ta' ? cert.certPem + fleetCa.certPem : cert.certPem });
    }
    eeRecords = devices.filter((d) => d.kind === 'ee').map((d) => `${d.serial}._device ${EE_TTL} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(d.cert.der), 3, 1, 1))}`);
    wildcard = `*._device 60 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(fleetCa.der), 2, 0, 1))}`;
    lab = await startDnssecLab([{ origin: ZONE, signing: { algorithm: 13 }, records: [...eeRecords, wildcard] }]);

    backend = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        readings.push({ device: req.headers['x-dane-client-id'] as string | undefined, tlsa: req.headers['x-dane-tlsa'] as string | undefined, body: JSON.parse(body) as Reading['body'] });
        res.writeHead(204).end();
      });
    });
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    port = await freePort();
    // The example's own configuration, pointed at this test's ports.
    const example = await readFile(join(import.meta.dirname, '../../examples/iot-fleet/dancegate.yaml'), 'utf8');
    const text = example
      .replace('listen: 127.0.0.1:9901', 'listen: 127.0.0.1:0')
      .replace('address: 127.0.0.1:53 ', `address: "127.0.0.1:${lab.resolver.port}" `)
      .replace('listen: 0.0.0.0:8443', `listen: 127.0.0.1:${port}`)
      .replace('upstream: http://127.0.0.1:8080', `upstream: http://127.0.0.1:${(backend.address() as AddressInfo).port}`);
    expect(text).not.toBe(example);
    const config = await parseConfigText(text, join(dir, 'dancegate.yaml'));
    proxy = await startProxy(config, { log: (d) => decisions.push(d) });
  }, 180_000);

  afterAll(async () => {
    await proxy?.close();
    backend?.closeAllConnections();
    await new Promise<void>((r) => (backend ? backend.close(() => r()) : r()));
    await lab?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  function post(device: Device, value: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/readings',
          servername: 'ingest.fleet.example',
          headers: { host: 'ingest.fleet.example', 'content-type': 'application/json', 'x-dane-client-id': 'forged.example' },
          ca: serverCa.certPem,
          cert: device.chainPem,
          key: device.cert.keyPem,
          agent: false,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ serial: device.serial, value }));
    });
  }

  async function all(list: readonly Device[], value: number): Promise<number[]> {
    const statuses: number[] = new Array<number>(list.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < list.length) {
          const i = next++;
          statuses[i] = await post(list[i] as Device, value);
        }
      }),
    );
    return statuses;
  }

  it('every device posts concurrently and every reading arrives attributed to the right device', async () => {
    const statuses = await all(devices, 1);
    expect(statuses.filter((s) => s === 204)).toHaveLength(DEVICES);
    expect(readings).toHaveLength(DEVICES);
    for (const r of readings) expect(r.device).toBe(`${r.body.serial}._device.${ZONE}`);
    expect(new Set(readings.map((r) => r.device)).size).toBe(DEVICES);
    // Half by their own key (DANE-EE), half through the fleet CA (DANE-TA wildcard).
    const byTlsa = (t: string): number => readings.filter((r) => r.tlsa === t).length;
    expect([byTlsa('3 1 1'), byTlsa('2 0 1')]).toEqual([DEVICES / 2, DEVICES / 2]);
    expect(decisions.filter((d) => d.reason === 'authenticated')).toHaveLength(DEVICES);
  }, 180_000);

  it('revoked devices (records removed, zone re-signed, TTL expired) are refused; the others still get in', async () => {
    const revoked = devices.filter((d) => d.kind === 'ee').slice(0, 20);
    const revokedNames = new Set(revoked.map((d) => d.serial));
    await lab.updateZone(ZONE, [...eeRecords.filter((r) => !revokedNames.has(r.split('.')[0] as string)), wildcard]);
    // Let every cached copy (Unbound's and dancegate's) run out.
    await new Promise((r) => setTimeout(r, (EE_TTL + 1) * 1000));
    readings.length = 0;
    decisions.length = 0;
    const stillValid = [...devices.filter((d) => d.kind === 'ee').slice(20, 60), ...devices.filter((d) => d.kind === 'ta').slice(0, 40)];
    const statuses = await all([...revoked, ...stillValid], 2);
    expect(statuses.slice(0, revoked.length)).toEqual(revoked.map(() => 403));
    expect(statuses.slice(revoked.length)).toEqual(stillValid.map(() => 204));
    // A revoked device's name now falls under the wildcard: its own key no longer counts, and its certificate is not the fleet CA's.
    const refused = decisions.filter((d) => d.outcome === 'refused');
    expect(refused.map((d) => d.claimedName).sort()).toEqual(revoked.map((d) => d.name).sort());
    expect(new Set(refused.map((d) => d.reason))).toEqual(new Set(['no-matching-record']));
    expect(readings.map((r) => r.body.serial).filter((s) => revokedNames.has(s))).toEqual([]);
  }, 120_000);
});
