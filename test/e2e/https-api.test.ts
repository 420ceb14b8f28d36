/**
 * examples/https-api as a test: the example's configuration, the real lab
 * (NSD + Unbound, signed zone), a Node API behind dancegate, curl as the
 * client. The API sees the identity and the RFC 9440 certificate; clients
 * without DANE authentication never reach it.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseConfigText } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';

const run = promisify(execFile);
const CLIENT = 'billing.api-clients.example';

describe('examples/https-api', () => {
  let dir: string;
  let lab: DnsLab;
  let proxy: RunningProxy;
  let api: http.Server;
  let port: number;
  const seen: Array<{ client: string | undefined; certSubject: string | undefined }> = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-api-'));
    const ca = await createCertificate({ commonName: 'api CA', isCA: true });
    const server = await createCertificate({ commonName: 'api.example', dnsNames: ['api.example'], issuer: ca, extendedKeyUsage: 'server' });
    const billing = await createCertificate({ commonName: CLIENT, dnsNames: [CLIENT] });
    const impostor = await createCertificate({ commonName: CLIENT, dnsNames: [CLIENT] });
    const unpublished = await createCertificate({ commonName: 'hr.api-clients.example', dnsNames: ['hr.api-clients.example'] });
    const files: Record<string, IssuedCertificate> = { api: server, billing, impostor, unpublished };
    for (const [name, c] of Object.entries(files)) {
      await writeFile(join(dir, `${name}.pem`), c.certPem);
      await writeFile(join(dir, `${name}.key`), c.keyPem);
    }
    await writeFile(join(dir, 'ca.pem'), ca.certPem);
    lab = await startDnssecLab([
      { origin: 'api-clients.example', signing: { algorithm: 13 }, records: [`billing 300 IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(billing.der), 3, 1, 1))}`] },
    ]);
    // The API: trusts only what dancegate tells it, and checks the RFC 9440 certificate is the client's.
    api = http.createServer((req, res) => {
      const clientCert = req.headers['client-cert'] as string | undefined;
      const subject = clientCert ? new X509Certificate(Buffer.from(clientCert.slice(1, -1), 'base64')).subject : undefined;
      seen.push({ client: req.headers['x-dane-client-id'] as string | undefined, certSubject: subject });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ invoices: 3, for: req.headers['x-dane-client-id'] }));
    });
    api.listen(0, '127.0.0.1');
    await once(api, 'listening');
    port = await freePort();
    const example = await readFile(join(import.meta.dirname, '../../examples/https-api/dancegate.yaml'), 'utf8');
    const text = example
      .replace('listen: 127.0.0.1:9901', 'listen: 127.0.0.1:0')
      .replace('address: 127.0.0.1:53 ', `address: "127.0.0.1:${lab.resolver.port}" `)
      .replace('listen: 0.0.0.0:443', `listen: 127.0.0.1:${port}`)
      .replace('upstream: http://127.0.0.1:8080', `upstream: http://127.0.0.1:${(api.address() as AddressInfo).port}`);
    proxy = await startProxy(await parseConfigText(text, join(dir, 'dancegate.yaml')), { log: () => undefined });
  }, 120_000);

  afterAll(async () => {
    await proxy?.close();
    await new Promise<void>((r) => (api ? api.close(() => r()) : r()));
    await lab?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function curl(client: string | undefined): Promise<{ status: string; body: string }> {
    const args = ['-sS', '--max-time', '10', '--cacert', join(dir, 'ca.pem'), '--resolve', `api.example:${port}:127.0.0.1`, '-w', '\n%{http_code}'];
    if (client) args.push('--cert', join(dir, `${client}.pem`), '--key', join(dir, `${client}.key`));
    const { stdout } = await run('curl', [...args, `https://api.example:${port}/invoices`]);
    const cut = stdout.lastIndexOf('\n');
    return { body: stdout.slice(0, cut), status: stdout.slice(cut + 1) };
  }

  it('a DANE-authenticated client gets 200, and the API sees its identity and its certificate (RFC 9440)', async () => {
    expect(await curl('billing')).toEqual({ status: '200', body: JSON.stringify({ invoices: 3, for: CLIENT }) });
    expect(seen).toEqual([{ client: CLIENT, certSubject: `CN=${CLIENT}` }]);
  });

  it.each([
    ['another key under the same name', 'impostor', 'no-matching-record'],
    ['a name without a TLSA record', 'unpublished', 'dns-no-tlsa'],
    ['no certificate', undefined, 'no-certificate'],
  ])('%s is refused and never reaches the API', async (_label, client, reason) => {
    seen.length = 0;
    expect(await curl(client)).toEqual({ status: '403', body: `Forbidden: DANE client authentication failed (${reason})\n` });
    expect(seen).toEqual([]);
  });
});
