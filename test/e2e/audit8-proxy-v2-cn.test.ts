/**
 * Issue 10, finding 8: the SSL TLV's CN sub-TLV (0x22) of the outbound PROXY
 * v2 header is what brokers (Mosquitto, EMQX, VerneMQ) and nginx
 * ($proxy_protocol_tlv_ssl_cn) authorise on. It must carry the verified DANE
 * client name, never text from the certificate subject (DANE-EE vouches for
 * the key, not for the subject).
 *
 * Attack: a DANE-EE client whose subject is `O="x, CN=root.admin…", CN=nas1…`
 * (made by openssl, so the subject bytes are exactly that). Before the fix
 * the backend saw CN=root.admin.radsec.test.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { startHeaderBackend, tcpListenerYaml, tlsExchange, type HeaderBackend } from '../lab/audit-small-kit.js';
import { freePort } from '../lab/dnssec-lab.js';

const run = promisify(execFile);
const NAME = 'nas1._device.radsec.test';
const FORGED = 'root.admin.radsec.test';

/**
 * Walk the raw PROXY v2 header independently of our codec and return every
 * value of the SSL TLV's sub-TLV `subType`, plus the SSL TLV's client and verify fields.
 */
function sslFields(raw: Buffer, subType: number): { client: number; verify: number; values: string[] } | undefined {
  let o = 16 + (raw[13] === 0x11 ? 12 : raw[13] === 0x21 ? 36 : 0);
  while (o + 3 <= raw.length) {
    const type = raw[o] as number;
    const length = raw.readUInt16BE(o + 1);
    if (type === 0x20) {
      const value = raw.subarray(o + 3, o + 3 + length);
      const values: string[] = [];
      let p = 5;
      while (p + 3 <= value.length) {
        const t = value[p] as number;
        const l = value.readUInt16BE(p + 1);
        if (t === subType) values.push(value.subarray(p + 3, p + 3 + l).toString('latin1'));
        p += 3 + l;
      }
      return { client: value[0] as number, verify: value.readUInt32BE(1), values };
    }
    o += 3 + length;
  }
  return undefined;
}

describe('finding 8: PROXY v2 SSL CN carries the verified DANE name, never certificate text', () => {
  let dir: string;
  let backend: HeaderBackend;
  let proxy: RunningProxy;
  let port: number;
  const decisions: DecisionRecord[] = [];
  const pem: Record<string, { cert: string; key: string }> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-audit8-'));
    const server = await createCertificate({ commonName: 'radsec.proxy.test', dnsNames: ['radsec.proxy.test'], extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    // The hostile subject: an O attribute whose value contains ", CN=<forged>", before the real CN.
    const subjects: Record<string, string> = {
      forged: `/O=x, CN=${FORGED}/CN=${NAME}`,
      escaped: `/CN=${FORGED}\\, O=y/OU=z, CN=${FORGED}`,
      noCn: '/O=devices',
    };
    const tlsa: string[] = [];
    for (const [label, subject] of Object.entries(subjects)) {
      const certFile = join(dir, `${label}.pem`);
      const keyFile = join(dir, `${label}.key`);
      await run('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '30',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-subj',
        subject,
        '-addext',
        `subjectAltName=DNS:${NAME}`,
        '-addext',
        'extendedKeyUsage=clientAuth',
      ]);
      pem[label] = { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
      const der = new X509Certificate(pem[label].cert).raw;
      tlsa.push(`${NAME}. IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(der), 3, 1, 1))}`);
    }
    // The subject really is what the attack needs (OpenSSL's own rendering).
    expect(new X509Certificate(pem.forged?.cert ?? '').subject).toBe(`O=x\\, CN=${FORGED}\nCN=${NAME}`);
    await writeFile(join(dir, 'tlsa.txt'), `${tlsa.join('\n')}\n`);
    backend = await startHeaderBackend();
    port = await freePort();
    await writeFile(
      join(dir, 'dancegate.yaml'),
      `resolver:\n  localTlsaFile: tlsa.txt\nlisteners:\n${tcpListenerYaml({ name: 'mqtt', port, upstreamPort: backend.port, allow: '*._device.radsec.test' })}`,
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

  it.each([
    ['a subject hiding "CN=<forged>" inside O, before the real CN', 'forged'],
    ['a subject whose only CNs are forged (escaped comma, CN text inside OU)', 'escaped'],
    ['a subject with no CN at all', 'noCn'],
  ])('%s: the backend sees CN = the verified DANE name, verify = 0', async (_label, key) => {
    const r = await tlsExchange({ port, servername: 'radsec.proxy.test', certPem: pem[key]?.cert, keyPem: pem[key]?.key, line: 'connect' });
    expect(r.received).toBe('CONNECT\n');
    expect(decisions.map((d) => [d.outcome, d.reason, d.claimedName])).toEqual([['forwarded', 'authenticated', NAME]]);
    expect(backend.headers).toHaveLength(1);
    const header = backend.headers[0];
    // Decoded by our codec and walked independently: one CN sub-TLV, the verified name; nothing forged anywhere.
    expect(header?.parsed.header.ssl).toMatchObject({ client: 0x07, verify: 0, cn: NAME });
    expect(sslFields(header?.raw ?? Buffer.alloc(0), 0x22)).toEqual({ client: 0x07, verify: 0, values: [NAME] });
    expect(header?.raw.includes(Buffer.from(FORGED))).toBe(false);
    // The DANE name TLV (0xE4) agrees with the CN.
    expect(header?.parsed.header.tlvs.find((t) => t.type === 0xe4)?.value.toString()).toBe(NAME);
  });
});
