import { describe, expect, it } from 'vitest';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { flightPenalty, judgeHandshakeError, judgeSecured, judgeStall, judgeVerificationTimeout } from '../../../src/connection/stages/handshake-judge.js';

const OVER = (bytes: number): string => `the client sent ${bytes} bytes of handshake after its ClientHello; at most 16384 are accepted (limits.handshakes.maxClientFlightBytes)`;

describe('flightPenalty', () => {
  it.each([
    [0, 1],
    [-5, 1],
    [4095, 1],
    [4096, 2],
    [16384, 5],
  ])('%i bytes → weight %i', (bytes, weight) => {
    expect(flightPenalty(bytes)).toBe(weight);
  });
});

describe('judgeHandshakeError', () => {
  it.each([
    [100, 'wrong version', { reason: 'handshake-failed', detail: 'wrong version', weight: 1 }],
    [9000, 'bad signature', { reason: 'handshake-failed', detail: 'bad signature', weight: 3 }],
    [20000, 'bad signature', { reason: 'chain-over-limits', detail: `${OVER(20000)}, then failed: bad signature` }],
    [0, 'e'.repeat(300), { reason: 'handshake-failed', detail: 'e'.repeat(200), weight: 1 }],
    [20000, 'e'.repeat(300), { reason: 'chain-over-limits', detail: `${OVER(20000)}, then failed: ${'e'.repeat(100)}` }],
  ] as const)('%i bytes, %s', (sent, message, expected) => {
    expect(judgeHandshakeError(sent, 16384, message)).toEqual(expected);
  });
});

describe('judgeStall', () => {
  it.each([
    [0, { reason: 'handshake-timeout', detail: 'handshake and verification not done within 5000 ms', weight: 1 }],
    [8192, { reason: 'handshake-timeout', detail: 'handshake and verification not done within 5000 ms', weight: 3 }],
    [16385, { reason: 'chain-over-limits', detail: `${OVER(16385)}, then stalled` }],
  ] as const)('%i bytes', (sent, expected) => {
    expect(judgeStall(sent, 16384, 5000)).toEqual(expected);
  });
});

describe('judgeVerificationTimeout', () => {
  it('the handshake was over: waiting on our lookup is not the client doing, no penalty weight', () => {
    expect(judgeVerificationTimeout(5000)).toEqual({ reason: 'handshake-timeout', detail: 'handshake done, but the TLSA lookup and verification not done within 5000 ms', weight: 0 });
  });
});

describe('judgeSecured', () => {
  const ec = { subject: 'CN=ec', publicKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey };
  const dsa = { subject: 'CN=old dsa\nO=x', publicKey: createPublicKey(generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).publicKey.export({ type: 'spki', format: 'pem' })) };
  const limits = { maxCertificates: 2, maxFlightBytes: 16384 };

  it.each([
    ['a small good chain', 1000, [ec, ec], undefined],
    ['flight over the limit first', 20000, [ec, ec, ec], OVER(20000)],
    ['too many certificates', 1000, [ec, ec, ec], 'the client sent more than 2 certificates (limits.handshakes.maxClientCertificates)'],
    ['a key outside the policy', 1000, [ec, dsa], expect.stringMatching(/^certificate 2 of 2 \(CN=old dsa\): /)],
  ] as const)('%s', (_label, sent, chain, expected) => {
    expect(judgeSecured(sent, chain, limits)).toEqual(expected);
  });
});
