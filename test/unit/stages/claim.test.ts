import { describe, expect, it } from 'vitest';
import { Allowlist } from '../../../src/allowlist/allowlist.js';
import { claimName, type IdentitySource } from '../../../src/connection/stages/claim.js';
import { sanSource as certificateSanSource } from '../../../src/connection/stages/claim-san.js';
import { clientHelloExtensionSource as daneClientIdSource } from '../../../src/connection/stages/claim-clienthello-extension.js';
import { IDENTITY_SOURCES, sourcesOf } from '../../../src/connection/stages/identity-sources.js';
import { certificateExtensionSource } from '../../../src/connection/stages/claim-certificate-extension.js';

const allow = Allowlist.fromList(['*._device.example.test', 'api-client.example.test'], 'allow');
const absent = { present: false } as const;
const named = (name: string) => ({ present: true, name }) as const;

describe('the dane_clientid source (before the handshake)', () => {
  it.each([
    ['absent extension: nothing to say', absent, undefined],
    ['empty extension: the name is in the certificate', named(''), undefined],
    [
      'an allowed name, canonicalised',
      named('Sensor1._DEVICE.example.test.'),
      { ok: true, value: { name: 'sensor1._device.example.test', allowedBy: '*._device.example.test' }, source: 'clienthello-extension', claimedName: 'sensor1._device.example.test' },
    ],
    [
      'a name not allowed',
      named('outsider.example.test'),
      { ok: false, reason: 'not-allowed', detail: 'outsider.example.test is not on the allowlist', source: 'clienthello-extension', claimedName: 'outsider.example.test' },
    ],
    [
      'an invalid name, shown as sent',
      named('bad name'),
      { ok: false, reason: 'invalid-name', detail: expect.stringMatching(/^dane_clientid: /), source: 'clienthello-extension', claimedName: 'bad name' },
    ],
  ] as const)('%s', (_label, daneClientId, expected) => {
    expect(daneClientIdSource.claim({ hello: { daneClientId } }, allow)).toEqual(expected);
  });

  it('shows at most 253 characters of a hostile name', () => {
    const answer = daneClientIdSource.claim({ hello: { daneClientId: named('x'.repeat(1000)) } }, allow);
    expect(answer?.claimedName).toBe('x'.repeat(253));
  });
});

describe('the certificate SAN source (after the handshake)', () => {
  it.each([
    ['no certificate yet: nothing to say', undefined, undefined],
    [
      'one allowlisted SAN',
      ['www.example.test', 'api-client.example.test'],
      { ok: true, value: { name: 'api-client.example.test', allowedBy: 'api-client.example.test' }, source: 'san', claimedName: 'api-client.example.test' },
    ],
    ['no SAN', [], { ok: false, reason: 'no-name', detail: 'no dane_clientid and no SAN dNSName in the certificate', source: 'san', claimedName: undefined }],
    [
      'no allowlisted SAN',
      ['x.other.test'],
      { ok: false, reason: 'not-allowed', detail: 'no SAN dNSName of the certificate is on the allowlist (x.other.test)', source: 'san', claimedName: undefined },
    ],
    [
      'two allowlisted SANs',
      ['a._device.example.test', 'b._device.example.test'],
      {
        ok: false,
        reason: 'ambiguous-name',
        detail: '2 allowlisted SAN dNSNames (a._device.example.test, b._device.example.test); send dane_clientid to choose',
        source: 'san',
        claimedName: undefined,
      },
    ],
  ] as const)('%s', (_label, dnsNames, expected) => {
    const leaf = dnsNames === undefined ? undefined : { dnsNames };
    expect(certificateSanSource.claim({ hello: { daneClientId: absent }, leaf }, allow)).toEqual(expected);
  });
});

describe('claimName over the identity sources', () => {
  const leaf = { dnsNames: ['sensor2._device.example.test'] };

  it('runs only the sources of the phase, in list order', () => {
    expect(claimName(IDENTITY_SOURCES, 'client-hello', { hello: { daneClientId: absent }, leaf }, allow)).toBeUndefined();
    expect(claimName(IDENTITY_SOURCES, 'handshake', { hello: { daneClientId: absent }, leaf }, allow)).toMatchObject({
      ok: true,
      source: 'san',
      value: { name: 'sensor2._device.example.test' },
    });
    expect(claimName(IDENTITY_SOURCES, 'client-hello', { hello: { daneClientId: named('sensor1._device.example.test') } }, allow)).toMatchObject({ ok: true, source: 'clienthello-extension' });
  });

  it('a new source is one more entry: the first that answers decides', () => {
    const calls: string[] = [];
    const fixed: IdentitySource<'fixed'> = {
      source: 'fixed',
      phase: 'handshake',
      claim: () => (
        calls.push('fixed'),
        { ok: true, value: { name: 'meter9._device.example.test', allowedBy: '*._device.example.test' }, source: 'fixed', claimedName: 'meter9._device.example.test' }
      ),
    };
    const answer = claimName([daneClientIdSource, fixed, certificateSanSource], 'handshake', { hello: { daneClientId: absent }, leaf }, allow);
    expect(answer).toMatchObject({ source: 'fixed', value: { name: 'meter9._device.example.test' } });
    expect(calls).toEqual(['fixed']);
  });

  it('the list: the Certificate extension, then the ClientHello extension, then the SAN', () => {
    expect(IDENTITY_SOURCES.map((s) => [s.source, s.phase])).toEqual([
      ['certificate-extension', 'handshake'],
      ['clienthello-extension', 'client-hello'],
      ['san', 'handshake'],
    ]);
  });

  const both = { hello: { daneClientId: named('sensor1._device.example.test') }, leaf, certificateName: Buffer.from('sensor3._device.example.test') };
  it.each([
    ['every source: the Certificate extension wins', ['certificate-extension', 'clienthello-extension', 'san'], 'certificate-extension', 'sensor3._device.example.test'],
    ['no Certificate extension source: the ClientHello wins', ['clienthello-extension', 'san'], 'clienthello-extension', 'sensor1._device.example.test'],
    ['SAN only', ['san'], 'san', 'sensor2._device.example.test'],
  ] as const)('precedence, %s', (_, enabled, source, name) => {
    expect(claimName(sourcesOf(enabled), 'handshake', both, allow)).toMatchObject({ ok: true, source, value: { name } });
  });

  it('a route without the SAN source names nobody from a certificate alone', () => {
    expect(claimName(sourcesOf(['certificate-extension']), 'handshake', { hello: { daneClientId: absent }, leaf }, allow)).toBeUndefined();
  });
});

describe('the dane_clientid source in the TLS 1.3 Certificate message', () => {
  const evidence = (bytes: Buffer | undefined) => ({ hello: { daneClientId: absent }, certificateName: bytes });
  it.each([
    ['absent', undefined, undefined],
    ['empty', Buffer.alloc(0), undefined],
    [
      'an allowed name, canonicalised',
      Buffer.from('Sensor1._DEVICE.example.test.'),
      { ok: true, value: { name: 'sensor1._device.example.test', allowedBy: '*._device.example.test' }, source: 'certificate-extension', claimedName: 'sensor1._device.example.test' },
    ],
    [
      'a name not on the allowlist',
      Buffer.from('outsider.example.test'),
      { ok: false, reason: 'not-allowed', detail: 'outsider.example.test is not on the allowlist', source: 'certificate-extension', claimedName: 'outsider.example.test' },
    ],
    [
      'bytes that are not ASCII are not decoded into a name',
      Buffer.from([0x73, 0xc3, 0xa9, 0x2e, 0x74]),
      { ok: false, reason: 'invalid-name', detail: expect.stringMatching(/^dane_clientid: /), source: 'certificate-extension', claimedName: 's\u00c3\u00a9.t' },
    ],
  ] as const)('%s', (_, bytes, expected) => {
    expect(certificateExtensionSource.claim(evidence(bytes), allow)).toEqual(expected);
  });
});
