/**
 * The embedded demo: a dev PKI under certs/out (made once, never committed),
 * a local TLSA file publishing the demo client's key, an echo backend and
 * the proxy in HTTP mode on 127.0.0.1, configured through an ordinary YAML
 * file so the demo runs the same code path as production.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import { join, relative } from 'node:path';

export const DEMO_CLIENT_NAME = 'demo-client._device.dancegate.test';
export const DEMO_SERVER_NAME = 'localhost';

export interface DemoFiles {
  readonly dir: string;
  readonly configFile: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly serverCa: string;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Make (once) the demo PKI and local TLSA file in `dir`. */
export async function ensureDemoPki(dir: string): Promise<Omit<DemoFiles, 'configFile'>> {
  const files = {
    dir,
    clientCert: join(dir, 'demo-client.pem'),
    clientKey: join(dir, 'demo-client.key'),
    serverCa: join(dir, 'demo-server-ca.pem'),
  };
  if (await exists(join(dir, 'demo-tlsa.txt'))) return files;
  // Imported here so the production CLI does not load the PKI generator unless the demo runs.
  const { createCertificate } = await import('../../certs/pki.js');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await createCertificate({ commonName: 'dancegate demo server CA', isCA: true });
  const server = await createCertificate({ commonName: DEMO_SERVER_NAME, dnsNames: [DEMO_SERVER_NAME], issuer: ca, extendedKeyUsage: 'server' });
  const client = await createCertificate({ commonName: DEMO_CLIENT_NAME, dnsNames: [DEMO_CLIENT_NAME] });
  await writeFile(files.serverCa, ca.certPem);
  await writeFile(join(dir, 'demo-server.pem'), server.certPem + ca.certPem);
  await writeFile(join(dir, 'demo-server.key'), server.keyPem, { mode: 0o600 });
  await writeFile(files.clientCert, client.certPem);
  await writeFile(files.clientKey, client.keyPem, { mode: 0o600 });
  const spki = new X509Certificate(client.der).publicKey.export({ type: 'spki', format: 'der' });
  const digest = createHash('sha256').update(spki).digest('hex');
  await writeFile(join(dir, 'demo-tlsa.txt'), `# The demo client's TLSA record (DANE-EE, SPKI, SHA-256), trusted locally instead of DNS.\n${DEMO_CLIENT_NAME}. 300 IN TLSA 3 1 1 ${digest}\n`);
  return files;
}

export function demoConfigYaml(listenPort: number, backendPort: number): string {
  return `# Written by 'dancegate serve' (embedded demo). Any dancegate.yaml looks like this.
admin:
  listen: 127.0.0.1:0
resolver:
  localTlsaFile: demo-tlsa.txt
listeners:
  - name: demo
    listen: 127.0.0.1:${listenPort}
    mode: http
    tls:
      certificates:
        - certFile: demo-server.pem
          keyFile: demo-server.key
    routes:
      - upstream: http://127.0.0.1:${backendPort}
        allow: ['*._device.dancegate.test']
`;
}

/** A backend that answers every request with the headers it received, as JSON. */
export async function startEchoBackend(port = 0): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers }, null, 2);
    res.writeHead(200, { 'content-type': 'application/json' }).end(`${body}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return { server, port: (server.address() as { port: number }).port };
}

export async function writeDemoConfig(dir: string, listenPort: number, backendPort: number): Promise<DemoFiles> {
  const pki = await ensureDemoPki(dir);
  const configFile = join(dir, 'demo.yaml');
  await writeFile(configFile, demoConfigYaml(listenPort, backendPort));
  return { ...pki, configFile };
}

export function demoCurlCommand(files: DemoFiles, port: number, cwd: string): string {
  const rel = (p: string): string => relative(cwd, p) || p;
  return `curl --cacert ${rel(files.serverCa)} --cert ${rel(files.clientCert)} --key ${rel(files.clientKey)} https://${DEMO_SERVER_NAME}:${port}/`;
}
