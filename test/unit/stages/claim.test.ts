import { describe, expect, it } from 'vitest';
import { Allowlist } from '../../../src/allowlist/allowlist.js';
import { claimName, type IdentitySource } from '../../../src/connection/stages/claim.js';
import { certificateSanSource } from '../../../src/connection/stages/claim-certificate.js';
import { daneClientIdSource } from '../../../src/connection/stages/claim-dane-clientid.js';
import { IDENTITY_SOURCES } from '../../../src/connection/stages/identity-sources.js';

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
      { ok: true, value: { name: 'sensor1._device.example.test', allowedBy: '*._device.example.test' }, source: 'extension', claimedName: 'sensor1._device.example.test' },
    ],
    [
      'a name not allowed',
      named('outsider.example.test'),
      { ok: false, reason: 'not-allowed', detail: 'outsider.example.test is not on the allowlist', source: 'extension', claimedName: 'outsider.example.test' },
    ],
    ['an invalid name, shown as sent', named('bad name'), { ok: false, reason: 'invalid-name', detail: expect.stringMatching(/^dane_clientid: /), source: 'extension', claimedName: 'bad name' }],
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
      { ok: true, value: { name: 'api-client.example.test', allowedBy: 'api-client.example.test' }, source: 'certificate', claimedName: 'api-client.example.test' },
    ],
    ['no SAN', [], { ok: false, reason: 'no-name', detail: 'no dane_clientid and no SAN dNSName in the certificate', source: 'certificate', claimedName: undefined }],
    [
      'no allowlisted SAN',
      ['x.other.test'],
      { ok: false, reason: 'not-allowed', detail: 'no SAN dNSName of the certificate is on the allowlist (x.other.test)', source: 'certificate', claimedName: undefined },
    ],
    [
      'two allowlisted SANs',
      ['a._device.example.test', 'b._device.example.test'],
      {
        ok: false,
        reason: 'ambiguous-name',
        detail: '2 allowlisted SAN dNSNames (a._device.example.test, b._device.example.test); send dane_clientid to choose',
        source: 'certificate',
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
      source: 'certificate',
      value: { name: 'sensor2._device.example.test' },
    });
    expect(claimName(IDENTITY_SOURCES, 'client-hello', { hello: { daneClientId: named('sensor1._device.example.test') } }, allow)).toMatchObject({ ok: true, source: 'extension' });
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

  it('the list today: dane_clientid, then the certificate', () => {
    expect(IDENTITY_SOURCES.map((s) => [s.source, s.phase])).toEqual([
      ['extension', 'client-hello'],
      ['certificate', 'handshake'],
    ]);
  });
});
