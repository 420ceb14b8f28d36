import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCertificate, type KeyAlgorithm } from '../../certs/pki.js';
import { CertificateParseError, MAX_CERTIFICATE_BYTES, parseCertificateDer, parseCertificates, parseCertificatesPem } from '../../src/dane/certificate.js';

describe('parseCertificateDer', () => {
  it.each<KeyAlgorithm>(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'ed25519'])('extracts the exact SPKI bytes for %s', async (keyAlgorithm) => {
    const c = await createCertificate({ commonName: 'x', keyAlgorithm });
    const parsed = parseCertificateDer(c.der);
    expect(parsed.spki.equals(new X509Certificate(c.der).publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
  });

  it('reads SAN dNSNames (lowercased), CA flags and dates', async () => {
    const notAfter = new Date(Date.UTC(2030, 0, 1));
    const ca = await createCertificate({ commonName: 'ca', isCA: true, pathLength: 2 });
    const leaf = await createCertificate({ commonName: 'leaf', dnsNames: ['A._Device.Example.test', 'b.example.test'], issuer: ca, notAfter });
    const l = parseCertificateDer(leaf.der);
    expect(l.dnsNames).toEqual(['a._device.example.test', 'b.example.test']);
    expect([l.isCA, l.pathLength, l.keyCertSign, l.subject, l.issuer]).toEqual([false, undefined, false, 'CN=leaf', 'CN=ca']);
    expect(l.notAfter.toISOString()).toBe('2030-01-01T00:00:00.000Z');
    const c = parseCertificateDer(ca.der);
    expect([c.isCA, c.pathLength, c.keyCertSign, c.dnsNames]).toEqual([true, 2, true, []]);
  });

  it.each([
    [Buffer.alloc(0), 'not a DER X.509 certificate'],
    [Buffer.from('30820100', 'hex'), 'not a DER X.509 certificate'],
    [Buffer.alloc(MAX_CERTIFICATE_BYTES + 1, 0x30), `certificate is ${MAX_CERTIFICATE_BYTES + 1} bytes; the limit is ${MAX_CERTIFICATE_BYTES}`],
  ])('rejects bad DER %#', (der, message) => {
    expect(() => parseCertificateDer(der)).toThrow(CertificateParseError);
    expect(() => parseCertificateDer(der)).toThrow(message);
  });
});

describe('PEM', () => {
  it('reads every CERTIFICATE block in order', async () => {
    const a = await createCertificate({ commonName: 'a' });
    const b = await createCertificate({ commonName: 'b' });
    const certs = parseCertificatesPem(`junk before\n${a.certPem}\n${b.certPem}`, 'chain.pem');
    expect(certs.map((c) => c.subject)).toEqual(['CN=a', 'CN=b']);
    expect(parseCertificates(a.der, 'a.der').map((c) => c.subject)).toEqual(['CN=a']);
  });

  it.each([
    ['no blocks at all', 'chain.pem: no PEM CERTIFICATE block found'],
    ['-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n', 'chain.pem: PEM block 1 is not valid base64'],
    ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'chain.pem: certificate 1: not a DER X.509 certificate'],
    ['-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n', "chain.pem: PEM block 1 is 'EC PRIVATE KEY', expected 'CERTIFICATE' (is this the key file?)"],
  ])('rejects %j', (text, message) => {
    expect(() => parseCertificatesPem(text, 'chain.pem')).toThrow(message);
  });
});
