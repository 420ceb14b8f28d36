/**
 * Hostile client chains for issue 10 (finding 6): RSA keys whose public
 * exponent is as long as the modulus (OpenSSL accepts any exponent for
 * moduli up to 3072 bits), so each signature OpenSSL verifies with them
 * costs a full-length modular exponentiation (~8 ms for RSA-3072, ~170x a
 * normal e = 65537 verification), and chains of certificates signed with
 * them. The keys are made with node:crypto (primes, BigInt arithmetic, JWK
 * import); the certificates are signed by @peculiar/x509. Used by e2e tests
 * and bench/hostile-chain.ts; it depends on packages only, so it runs
 * against any checkout.
 */
import { createPrivateKey, generatePrimeSync, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

// Node's webcrypto is the WebCrypto the library expects; the cast only bridges Node's and the DOM's type declarations.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const DAY_MS = 86_400_000;
const RSA_PKCS1 = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;

function base64url(n: bigint): string {
  let hex = n.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  return Buffer.from(hex, 'hex').toString('base64url');
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

function modInverse(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [a % m, m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return ((s0 % m) + m) % m;
}

/**
 * An RSA private key of `modulusBits` whose public exponent has
 * `modulusBits - 2` bits (odd, coprime to phi(n)). Valid RSA: it signs and
 * verifies; only verification is expensive.
 */
export function hugeExponentRsaKey(modulusBits = 3072): KeyObject {
  for (;;) {
    const p = generatePrimeSync(modulusBits / 2, { bigint: true });
    const q = generatePrimeSync(modulusBits / 2, { bigint: true });
    const n = p * q;
    if (p === q || n.toString(2).length !== modulusBits) continue;
    const phi = (p - 1n) * (q - 1n);
    let e: bigint;
    do {
      e = BigInt(`0x${randomBytes(modulusBits / 8).toString('hex')}`) % (1n << BigInt(modulusBits - 2));
      e |= (1n << BigInt(modulusBits - 3)) | 1n;
    } while (gcd(e, phi) !== 1n);
    const d = modInverse(e, phi);
    const jwk = {
      kty: 'RSA',
      n: base64url(n),
      e: base64url(e),
      d: base64url(d),
      p: base64url(p),
      q: base64url(q),
      dp: base64url(d % (p - 1n)),
      dq: base64url(d % (q - 1n)),
      qi: base64url(modInverse(q, p)),
    };
    return createPrivateKey({ key: jwk, format: 'jwk' });
  }
}

export interface HostileChain {
  /** Leaf first, then every issuer up to a self-signed top, PEM (what a client sends). */
  readonly chainPem: string;
  /** The leaf's PKCS#8 private key, PEM. */
  readonly keyPem: string;
  readonly leafDer: Buffer;
  /** Certificates in the chain (leaf included). */
  readonly length: number;
  /** Total DER bytes of the chain. */
  readonly bytes: number;
}

async function webKeys(key: KeyObject): Promise<{ privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey }> {
  const jwk = key.export({ format: 'jwk' });
  const privateKey = await webcrypto.subtle.importKey('jwk', jwk, RSA_PKCS1, true, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('jwk', { kty: 'RSA', n: jwk.n, e: jwk.e }, RSA_PKCS1, true, ['verify']);
  return { privateKey, publicKey };
}

/**
 * A chain of `length` certificates (leaf for `leafName`, then CAs, the last
 * self-signed) every one of them carrying and signed by a huge-exponent RSA
 * key, so that verifying the chain costs `length` expensive verifications.
 * One key is shared by all certificates (the cost is per signature, not per
 * key), unless `distinctKeys` is set.
 */
export async function createHostileRsaChain(opts: { leafName: string; length: number; modulusBits?: number; distinctKeys?: boolean }): Promise<HostileChain> {
  const bits = opts.modulusBits ?? 3072;
  const shared = opts.distinctKeys ? undefined : hugeExponentRsaKey(bits);
  const keys: KeyObject[] = Array.from({ length: opts.length }, () => shared ?? hugeExponentRsaKey(bits));
  const web = await Promise.all(keys.map(webKeys));
  const subject = (i: number): string => (i === 0 ? `CN=${opts.leafName}` : `CN=hostile CA ${i}`);
  const now = Date.now();
  const ders: Buffer[] = [];
  for (let i = 0; i < opts.length; i++) {
    const top = i === opts.length - 1;
    const issuerIndex = top ? i : i + 1;
    const own = web[i] as (typeof web)[number];
    const issuer = web[issuerIndex] as (typeof web)[number];
    const extensions: x509.Extension[] =
      i === 0
        ? [
            new x509.BasicConstraintsExtension(false, undefined, true),
            new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
            new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
            new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: opts.leafName }]),
          ]
        : [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)];
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: `01${randomBytes(15).toString('hex')}`,
      subject: subject(i),
      issuer: subject(issuerIndex),
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(now + 30 * DAY_MS),
      signingAlgorithm: RSA_PKCS1,
      publicKey: own.publicKey,
      signingKey: issuer.privateKey,
      extensions,
    });
    ders.push(Buffer.from(cert.rawData));
  }
  const pem = (der: Buffer): string =>
    `-----BEGIN CERTIFICATE-----\n${der
      .toString('base64')
      .replace(/(.{64})/g, '$1\n')
      .replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
  return {
    chainPem: ders.map(pem).join(''),
    keyPem: (keys[0] as KeyObject).export({ format: 'pem', type: 'pkcs8' }).toString(),
    leafDer: ders[0] as Buffer,
    length: opts.length,
    bytes: ders.reduce((sum, d) => sum + d.length, 0),
  };
}
