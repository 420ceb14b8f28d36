import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyPolicyViolation, MAX_RSA_EXPONENT_BITS, MAX_RSA_MODULUS_BITS } from '../../src/dane/key-policy.js';

/** An RSA public key with a random modulus of `bits` and the given exponent (no private key exists or is needed). */
function rsa(bits: number, exponent: bigint): KeyObject {
  const n = randomBytes(bits / 8);
  n[0] = (n[0] as number) | 0x80;
  n[n.length - 1] = (n[n.length - 1] as number) | 1;
  let hex = exponent.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: Buffer.from(hex, 'hex').toString('base64url') }, format: 'jwk' });
}

describe('keyPolicyViolation', () => {
  it.each<[string, () => KeyObject, string | undefined]>([
    ['RSA-2048, e = 65537', () => rsa(2048, 65537n), undefined],
    ['RSA-8192, e = 65537', () => rsa(MAX_RSA_MODULUS_BITS, 65537n), undefined],
    ['RSA-4096, e = 3', () => rsa(4096, 3n), undefined],
    ['RSA-4096, e = 2^32 - 1 (32 bits)', () => rsa(4096, 2n ** 32n - 1n), undefined],
    ['RSA-4096, e = 2^32 + 1 (33 bits)', () => rsa(4096, 2n ** 32n + 1n), `RSA public exponent of 33 bits exceeds the limit of ${MAX_RSA_EXPONENT_BITS}`],
    ['RSA-3072, 3070-bit exponent', () => rsa(3072, 2n ** 3069n + 1n), 'RSA public exponent of 3070 bits exceeds the limit of 32'],
    ['RSA-8200', () => rsa(8200, 65537n), 'RSA modulus of 8200 bits exceeds the limit of 8192'],
    ['RSA-16384', () => rsa(16384, 65537n), 'RSA modulus of 16384 bits exceeds the limit of 8192'],
    ['RSA-512', () => rsa(512, 65537n), 'RSA modulus of 512 bits is below the minimum of 1024'],
    ['RSA-2048, even exponent', () => rsa(2048, 65536n), 'RSA public exponent 65536 is not an odd number of at least 3'],
    ['RSA-2048, e = 1', () => rsa(2048, 1n), 'RSA public exponent 1 is not an odd number of at least 3'],
    ['ECDSA P-256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, undefined],
    ['Ed25519', () => generateKeyPairSync('ed25519').publicKey, undefined],
    ['Ed448', () => generateKeyPairSync('ed448').publicKey, undefined],
    ['X25519 (not a signature key)', () => generateKeyPairSync('x25519').publicKey, 'x25519 keys are not accepted for signature checks'],
    ['DSA', () => generateKeyPairSync('dsa', { modulusLength: 1024, divisorLength: 160 }).publicKey, 'dsa keys are not accepted for signature checks'],
  ])('%s', (_label, key, expected) => {
    expect(keyPolicyViolation(key())).toBe(expected);
  });
});
