/** The client chain limits (issue 10, finding 6): which presented chains are over them, and why. Table-driven, pure. */
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chainLimitViolation, flightViolation, type ChainEntry } from '../../src/connection/client-chain.js';
import { hugeExponentRsaKey } from '../lab/hostile-rsa-chain.js';

const keys = {
  ec: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
  ed25519: generateKeyPairSync('ed25519').publicKey,
  rsa2048: generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
  rsaE3: generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).publicKey,
  rsa512: generateKeyPairSync('rsa', { modulusLength: 512 }).publicKey,
  rsaHugeExponent: createPublicKey(hugeExponentRsaKey(3072)),
  dsa: generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).publicKey,
};
const entry = (subject: string, key: KeyObject): ChainEntry => ({ subject, publicKey: key });
const throwing: ChainEntry = {
  subject: 'CN=odd',
  get publicKey(): KeyObject {
    throw new Error('unsupported algorithm');
  },
};

describe('chainLimitViolation', () => {
  it.each<[string, ChainEntry[], number, string | undefined]>([
    ['an EC leaf alone', [entry('CN=leaf', keys.ec)], 10, undefined],
    ['leaf, intermediate and root of usual keys', [entry('CN=leaf', keys.ed25519), entry('CN=int', keys.rsa2048), entry('CN=root', keys.rsaE3)], 10, undefined],
    ['exactly the limit', Array.from({ length: 3 }, (_, i) => entry(`CN=c${i}`, keys.ec)), 3, undefined],
    ['one certificate too many', Array.from({ length: 4 }, (_, i) => entry(`CN=c${i}`, keys.ec)), 3, 'the client sent more than 3 certificates (limits.handshakes.maxClientCertificates)'],
    ['a huge RSA exponent in the leaf', [entry('CN=leaf', keys.rsaHugeExponent)], 10, 'certificate 1 of 1 (CN=leaf): RSA public exponent of 3070 bits exceeds the limit of 32'],
    [
      'a huge RSA exponent in an issuer',
      [entry('CN=leaf', keys.ec), entry('CN=int\nO=x', keys.rsaHugeExponent)],
      10,
      'certificate 2 of 2 (CN=int): RSA public exponent of 3070 bits exceeds the limit of 32',
    ],
    ['a 512-bit RSA key', [entry('CN=leaf', keys.rsa512)], 10, 'certificate 1 of 1 (CN=leaf): RSA modulus of 512 bits is below the minimum of 1024'],
    ['a DSA key', [entry('CN=leaf', keys.ec), entry('CN=dsa', keys.dsa)], 10, 'certificate 2 of 2 (CN=dsa): dsa keys are not accepted for signature checks'],
    ['a key node:crypto cannot give', [entry('CN=leaf', keys.ec), throwing], 10, 'certificate 2 of 2 (CN=odd): its public key cannot be read (unsupported algorithm)'],
    ['an empty chain (no certificate)', [], 10, undefined],
  ])('%s', (_what, chain, max, expected) => {
    expect(chainLimitViolation(chain, max)).toBe(expected);
  });

  it('a long subject is cut to 80 characters', () => {
    const subject = `CN=${'x'.repeat(200)}`;
    expect(chainLimitViolation([entry(subject, keys.rsaHugeExponent)], 10)).toBe(`certificate 1 of 1 (${subject.slice(0, 80)}…): RSA public exponent of 3070 bits exceeds the limit of 32`);
  });
});

describe('flightViolation', () => {
  it.each<[number, number, string | undefined]>([
    [0, 16_384, undefined],
    [16_384, 16_384, undefined],
    [16_385, 16_384, 'the client sent 16385 bytes of handshake after its ClientHello; at most 16384 are accepted (limits.handshakes.maxClientFlightBytes)'],
  ])('%i bytes against %i', (bytes, max, expected) => {
    expect(flightViolation(bytes, max)).toBe(expected);
  });
});
