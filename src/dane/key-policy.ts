/**
 * Which public keys dancegate will verify a signature with. A signature
 * check costs what the key makes it cost: RSA verification time grows with
 * the bit length of the public exponent and (quadratically) with the
 * modulus. OpenSSL accepts an exponent of any size for moduli up to 3072
 * bits: a 3072-bit modulus with a 3070-bit exponent takes ~9 ms per check
 * (~200x an e = 65537 key), so a hostile TLSA record or presented CA could
 * make each connection expensive. Keys outside these bounds are refused
 * before any signature is checked with them. Pure.
 */
import type { KeyObject } from 'node:crypto';

/**
 * Largest RSA public exponent, in bits. Real keys use 65537 (17 bits) or 3;
 * FIPS 186-5 allows up to 256 bits but no interoperable key needs more than
 * 32 (Windows CryptoAPI/CNG cannot use larger ones). At 32 bits a check costs
 * about twice an e = 65537 check.
 */
export const MAX_RSA_EXPONENT_BITS = 32;
/** Largest RSA modulus, in bits: 8192-bit keys exist; OpenSSL's own ceiling is 16384. A check with 8192 bits and a 32-bit exponent: ~0.6 ms. */
export const MAX_RSA_MODULUS_BITS = 8192;
/** Smallest RSA modulus, in bits (OpenSSL security level 1). */
export const MIN_RSA_MODULUS_BITS = 1024;

const ACCEPTED_TYPES: ReadonlySet<string> = new Set(['rsa', 'rsa-pss', 'ec', 'ed25519', 'ed448']);

/** Why `key` may not be used to verify signatures, or undefined when it may. */
export function keyPolicyViolation(key: KeyObject): string | undefined {
  const type = key.asymmetricKeyType;
  if (type === undefined || !ACCEPTED_TYPES.has(type)) return `${type ?? 'unknown'} keys are not accepted for signature checks`;
  if (type === 'rsa' || type === 'rsa-pss') {
    const details = key.asymmetricKeyDetails ?? {};
    const bits = details.modulusLength ?? 0;
    const exponent = details.publicExponent ?? 0n;
    if (bits > MAX_RSA_MODULUS_BITS) return `RSA modulus of ${bits} bits exceeds the limit of ${MAX_RSA_MODULUS_BITS}`;
    if (bits < MIN_RSA_MODULUS_BITS) return `RSA modulus of ${bits} bits is below the minimum of ${MIN_RSA_MODULUS_BITS}`;
    const exponentBits = exponent.toString(2).length;
    if (exponentBits > MAX_RSA_EXPONENT_BITS) return `RSA public exponent of ${exponentBits} bits exceeds the limit of ${MAX_RSA_EXPONENT_BITS}`;
    if (exponent < 3n || exponent % 2n === 0n) return `RSA public exponent ${exponent} is not an odd number of at least 3`;
  }
  return undefined;
}
