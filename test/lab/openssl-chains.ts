/**
 * Certificate chains made with the openssl command line, for tests that
 * need what certs/pki.ts does not make (nameConstraints, policies, unknown
 * critical extensions, cross-signed roots reusing a key), and `openssl
 * verify` as the reference verdict. Everything lives in a temporary
 * directory the caller removes.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface OpensslCert {
  readonly name: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly der: Buffer;
}

export interface IssueOptions {
  /** File-name stem, unique in the directory. */
  readonly name: string;
  readonly subject: string;
  /** Extension lines for the v3 section (openssl x509v3_config syntax). */
  readonly extensions: readonly string[];
  /** Signer; omitted = self-signed. */
  readonly issuer?: OpensslCert;
  /** Reuse this certificate's key (for a cross-signed copy of a root). */
  readonly keyOf?: OpensslCert;
  readonly days?: number;
  /** An RSA key of this many bits instead of ECDSA P-256 (the certificate's own key; its issuer's key decides the signature). */
  readonly rsaBits?: 2048 | 3072 | 4096;
}

let serial = 1000;

export async function issue(dir: string, opts: IssueOptions): Promise<OpensslCert> {
  const keyFile = opts.keyOf?.keyFile ?? join(dir, `${opts.name}.key`);
  if (opts.keyOf === undefined) {
    const algorithm = opts.rsaBits ? ['-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${opts.rsaBits}`] : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    await run('openssl', ['genpkey', ...algorithm, '-out', keyFile]);
  }
  const csr = join(dir, `${opts.name}.csr`);
  await run('openssl', ['req', '-new', '-key', keyFile, '-subj', opts.subject, '-out', csr]);
  const ext = join(dir, `${opts.name}.ext`);
  await writeFile(ext, `[v3]\n${opts.extensions.join('\n')}\n`);
  const certFile = join(dir, `${opts.name}.pem`);
  const signer = opts.issuer === undefined ? ['-signkey', keyFile] : ['-CA', opts.issuer.certFile, '-CAkey', opts.issuer.keyFile];
  serial++;
  await run('openssl', ['x509', '-req', '-in', csr, ...signer, '-set_serial', String(serial), '-days', String(opts.days ?? 30), '-sha256', '-extfile', ext, '-extensions', 'v3', '-out', certFile]);
  const certPem = await readFile(certFile, 'utf8');
  const der = Buffer.from(certPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
  return { name: opts.name, certFile, keyFile, certPem, keyPem: await readFile(keyFile, 'utf8'), der };
}

export const CA_EXTENSIONS = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectKeyIdentifier=hash'];
export const LEAF_EXTENSIONS = (dnsName: string): string[] => [
  'basicConstraints=critical,CA:FALSE',
  'keyUsage=critical,digitalSignature',
  'extendedKeyUsage=clientAuth',
  `subjectAltName=DNS:${dnsName}`,
];

/**
 * `openssl verify` of `leaf` with `anchor` as the only trusted certificate
 * and `untrusted` as intermediates. OpenSSL's defaults: no policy
 * processing (dancegate always does it; policy cases are judged apart).
 */
export async function opensslVerify(dir: string, anchor: OpensslCert, leaf: OpensslCert, untrusted: readonly OpensslCert[]): Promise<{ ok: boolean; output: string }> {
  const args = ['verify', '-no-CApath', '-no-CAstore', '-CAfile', anchor.certFile];
  if (untrusted.length > 0) {
    const bundle = join(dir, `untrusted-${leaf.name}-${untrusted.map((c) => c.name).join('-')}.pem`);
    await writeFile(bundle, untrusted.map((c) => c.certPem).join(''));
    args.push('-untrusted', bundle);
  }
  args.push(leaf.certFile);
  try {
    const { stdout, stderr } = await run('openssl', args);
    return { ok: true, output: `${stdout}${stderr}` };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}
