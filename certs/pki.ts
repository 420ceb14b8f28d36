/**
 * Development and test PKI: CAs, intermediates and client/server
 * certificates made in-process with @peculiar/x509 (WebCrypto keys).
 * Nothing made here is ever committed; see certs/README.md.
 */
import { webcrypto, randomBytes } from 'node:crypto';

type CryptoKeyPair = webcrypto.CryptoKeyPair;
type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;
type EcKeyGenParams = webcrypto.EcKeyGenParams;
type RsaHashedKeyGenParams = webcrypto.RsaHashedKeyGenParams;
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

// Node's webcrypto is the WebCrypto the library expects; the cast only bridges Node's and the DOM's type declarations.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export type KeyAlgorithm = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'ed25519';

export interface IssuedCertificate {
  readonly certPem: string;
  /** PKCS#8 PEM of the private key: handle as a secret. */
  readonly keyPem: string;
  readonly der: Buffer;
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
  readonly keyAlgorithm: KeyAlgorithm;
  readonly subjectName: string;
}

export interface CertificateOptions {
  /** Common name; the subject is `CN=<commonName>`. */
  readonly commonName: string;
  readonly dnsNames?: readonly string[];
  /** Signer; omitted = self-signed. */
  readonly issuer?: IssuedCertificate;
  readonly isCA?: boolean;
  readonly pathLength?: number;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly keyAlgorithm?: KeyAlgorithm;
  /** Extended key usage; default 'client' for leaves, none for CAs. */
  readonly extendedKeyUsage?: 'client' | 'server' | 'client+server' | 'none';
  /** Omit basicConstraints entirely (to test an issuer that is not a CA). */
  readonly omitBasicConstraints?: boolean;
}

const DAY_MS = 86_400_000;

function generationParams(alg: KeyAlgorithm): { keyGen: RsaHashedKeyGenParams | EcKeyGenParams | Algorithm; signing: Algorithm | EcdsaParams } {
  switch (alg) {
    case 'ecdsa-p256':
      return { keyGen: { name: 'ECDSA', namedCurve: 'P-256' }, signing: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams };
    case 'ecdsa-p384':
      return { keyGen: { name: 'ECDSA', namedCurve: 'P-384' }, signing: { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams };
    case 'rsa-2048':
      return {
        keyGen: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 },
        signing: { name: 'RSASSA-PKCS1-v1_5' },
      };
    case 'ed25519':
      return { keyGen: { name: 'Ed25519' }, signing: { name: 'Ed25519' } };
  }
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

export async function createCertificate(opts: CertificateOptions): Promise<IssuedCertificate> {
  const keyAlgorithm = opts.keyAlgorithm ?? 'ecdsa-p256';
  const params = generationParams(keyAlgorithm);
  const keys = (await webcrypto.subtle.generateKey(params.keyGen, true, ['sign', 'verify'])) as CryptoKeyPair;
  const subjectName = `CN=${opts.commonName}`;
  const isCA = opts.isCA ?? false;
  const extensions: x509.Extension[] = [];
  if (!opts.omitBasicConstraints) {
    extensions.push(new x509.BasicConstraintsExtension(isCA, isCA ? opts.pathLength : undefined, true));
  }
  extensions.push(new x509.KeyUsagesExtension(isCA ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature, true));
  const eku = opts.extendedKeyUsage ?? (isCA ? 'none' : 'client');
  if (eku !== 'none') {
    const usages: string[] = [];
    if (eku.includes('client')) usages.push(x509.ExtendedKeyUsage.clientAuth);
    if (eku.includes('server')) usages.push(x509.ExtendedKeyUsage.serverAuth);
    extensions.push(new x509.ExtendedKeyUsageExtension(usages));
  }
  if (opts.dnsNames && opts.dnsNames.length > 0) {
    extensions.push(new x509.SubjectAlternativeNameExtension(opts.dnsNames.map((value) => ({ type: 'dns' as const, value }))));
  }
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey));
  if (opts.issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(opts.issuer.keys.publicKey));

  const now = Date.now();
  const signer = opts.issuer;
  const signing = signer ? generationParams(signer.keyAlgorithm).signing : params.signing;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `01${randomBytes(15).toString('hex')}`,
    subject: subjectName,
    issuer: signer ? signer.subjectName : subjectName,
    notBefore: opts.notBefore ?? new Date(now - DAY_MS),
    notAfter: opts.notAfter ?? new Date(now + 365 * DAY_MS),
    signingAlgorithm: signing,
    publicKey: keys.publicKey,
    signingKey: signer ? signer.keys.privateKey : keys.privateKey,
    extensions,
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    certPem: cert.toString('pem') + '\n',
    keyPem: toPem(pkcs8, 'PRIVATE KEY'),
    der: Buffer.from(cert.rawData),
    cert,
    keys,
    keyAlgorithm,
    subjectName,
  };
}

/** A root CA, an intermediate under it and a client leaf under the intermediate. */
export async function createClientChain(opts: {
  clientName: string;
  keyAlgorithm?: KeyAlgorithm;
  leafNotAfter?: Date;
  leafNotBefore?: Date;
}): Promise<{ root: IssuedCertificate; intermediate: IssuedCertificate; leaf: IssuedCertificate }> {
  const keyAlgorithm = opts.keyAlgorithm ?? 'ecdsa-p256';
  const root = await createCertificate({ commonName: 'dancegate test root CA', isCA: true, keyAlgorithm });
  const intermediate = await createCertificate({
    commonName: 'dancegate test intermediate CA',
    isCA: true,
    pathLength: 0,
    issuer: root,
    keyAlgorithm,
  });
  const leaf = await createCertificate({
    commonName: opts.clientName,
    dnsNames: [opts.clientName],
    issuer: intermediate,
    keyAlgorithm,
    notAfter: opts.leafNotAfter,
    notBefore: opts.leafNotBefore,
  });
  return { root, intermediate, leaf };
}
