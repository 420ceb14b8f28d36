import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate, type KeyAlgorithm } from '../../certs/pki.js';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHostileCertificate, createManySanCertificate, createMalformedExtensionCertificate, der, sanValue, SUBJECT_ALT_NAME_OID } from '../fixtures-hostile/certificates.js';
import {
  CertificateParseError,
  dnsNamesFromCertificateDer,
  extractSpki,
  MAX_CERTIFICATE_BYTES,
  MAX_EXTENSIONS,
  MAX_NAME_ATTRIBUTES,
  MAX_SAN_ENTRIES,
  parseCertificateDer,
  parseCertificates,
  parseCertificatesPem,
  parseTlsPeerCertificate,
  type ParsedCertificate,
} from '../../src/dane/certificate.js';
import { DAY_MS, nodeSpki, parsed, wholeSecondNow } from './fixtures/pki-fixtures.js';

interface Pki {
  byAlgorithm: Map<KeyAlgorithm, IssuedCertificate>;
  root: IssuedCertificate;
  intermediate: IssuedCertificate;
  intermediatePathLen2: IssuedCertificate;
  leaf: IssuedCertificate;
  mixedCaseLeaf: IssuedCertificate;
  noSanLeaf: IssuedCertificate;
  noBasicConstraints: IssuedCertificate;
  explicitNotCa: IssuedCertificate;
  impostor: IssuedCertificate;
  misnamedIssuerLeaf: IssuedCertificate;
  otherRoot: IssuedCertificate;
  notBefore: Date;
  notAfter: Date;
}

let pki: Pki;

beforeAll(async () => {
  const now = wholeSecondNow();
  const notBefore = new Date(now - 2 * DAY_MS);
  const notAfter = new Date(now + 30 * DAY_MS);
  const root = await createCertificate({ commonName: 'cert test root', isCA: true });
  const intermediate = await createCertificate({ commonName: 'cert test intermediate', isCA: true, pathLength: 0, issuer: root });
  const otherRoot = await createCertificate({ commonName: 'cert test other root', isCA: true });
  const byAlgorithm = new Map<KeyAlgorithm, IssuedCertificate>();
  for (const keyAlgorithm of ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'ed25519'] as const) {
    byAlgorithm.set(keyAlgorithm, await createCertificate({ commonName: `${keyAlgorithm}.example`, dnsNames: [`${keyAlgorithm}.example`], issuer: intermediate, keyAlgorithm }));
  }
  pki = {
    byAlgorithm,
    root,
    intermediate,
    intermediatePathLen2: await createCertificate({ commonName: 'cert test pathlen 2', isCA: true, pathLength: 2, issuer: root }),
    leaf: await createCertificate({ commonName: 'device73.example.com', dnsNames: ['device73.example.com'], issuer: intermediate, notBefore, notAfter }),
    mixedCaseLeaf: await createCertificate({ commonName: 'mixed', dnsNames: ['Device73.Example.COM', 'SECOND.example', '_smtp-client.Device1.example.com'], issuer: intermediate }),
    noSanLeaf: await createCertificate({ commonName: 'no-san.example', issuer: intermediate }),
    noBasicConstraints: await createCertificate({ commonName: 'no basicConstraints', omitBasicConstraints: true, issuer: root }),
    explicitNotCa: await createCertificate({ commonName: 'explicit cA false', isCA: false, issuer: root, extendedKeyUsage: 'none' }),
    // Names the intermediate as issuer but is signed by otherRoot's key.
    impostor: await createCertificate({ commonName: 'impostor', dnsNames: ['device73.example.com'], issuer: { ...otherRoot, subjectName: intermediate.subjectName } }),
    // Signed by the intermediate's key, but names some other issuer.
    misnamedIssuerLeaf: await createCertificate({ commonName: 'misnamed', issuer: { ...intermediate, subjectName: 'CN=somebody else' } }),
    otherRoot,
    notBefore,
    notAfter,
  };
}, 60_000);

function thrown(fn: () => unknown): { isCertificateParseError: boolean; name: string; message: string } {
  try {
    fn();
  } catch (err) {
    const e = err as Error;
    return { isCertificateParseError: err instanceof CertificateParseError, name: e.name, message: e.message };
  }
  throw new Error('expected an error, nothing was thrown');
}

describe('extractSpki and ParsedCertificate.spki equal node:crypto SPKI export', () => {
  it.each<[KeyAlgorithm, string]>([
    ['ecdsa-p256', '1.2.840.10045.2.1'],
    ['ecdsa-p384', '1.2.840.10045.2.1'],
    ['rsa-2048', '1.2.840.113549.1.1.1'],
    ['ed25519', '1.3.101.112'],
  ])('%s', (alg) => {
    const cert = pki.byAlgorithm.get(alg) as IssuedCertificate;
    const expected = nodeSpki(cert);
    expect(extractSpki(cert.der).toString('hex')).toBe(expected.toString('hex'));
    expect(parsed(cert).spki.toString('hex')).toBe(expected.toString('hex'));
  });

  it.each<[KeyAlgorithm, number]>([
    ['ecdsa-p256', 91],
    ['ecdsa-p384', 120],
    ['rsa-2048', 294],
    ['ed25519', 44],
  ])('%s SPKI has the standard length %i', (alg, length) => {
    expect(parsed(pki.byAlgorithm.get(alg) as IssuedCertificate).spki.length).toBe(length);
  });

  it.each<[string, (der: Buffer) => Buffer, string]>([
    ['empty', () => Buffer.alloc(0), 'truncated DER'],
    ['one byte', () => Buffer.from([0x30]), 'truncated DER'],
    ['cut in half', (der) => der.subarray(0, Math.floor(der.length / 2)), 'truncated DER'],
    ['length of length 4', () => Buffer.from([0x30, 0x84, 0, 0, 0, 1, 0]), 'bad DER length'],
    ['indefinite length', () => Buffer.from([0x30, 0x80, 0, 0]), 'bad DER length'],
  ])('extractSpki rejects %s', (_label, make, message) => {
    const der = (pki.byAlgorithm.get('ecdsa-p256') as IssuedCertificate).der;
    expect(thrown(() => extractSpki(make(der)))).toEqual({ isCertificateParseError: true, name: 'CertificateParseError', message });
  });
});

describe('parseCertificateDer fields', () => {
  it('reads subject, issuer, dates, SAN and hash of a leaf', () => {
    const c = parsed(pki.leaf);
    expect({
      subject: c.subject,
      issuer: c.issuer,
      notBefore: c.notBefore.toISOString(),
      notAfter: c.notAfter.toISOString(),
      dnsNames: c.dnsNames,
      sha256Hex: c.sha256Hex,
      der: c.der.toString('hex'),
    }).toEqual({
      subject: 'CN=device73.example.com',
      issuer: 'CN=cert test intermediate',
      notBefore: pki.notBefore.toISOString(),
      notAfter: pki.notAfter.toISOString(),
      dnsNames: ['device73.example.com'],
      sha256Hex: createHash('sha256').update(pki.leaf.der).digest('hex'),
      der: Buffer.from(new X509Certificate(pki.leaf.certPem).raw).toString('hex'),
    });
  });

  it.each<[string, () => IssuedCertificate, string[]]>([
    ['one name', () => pki.leaf, ['device73.example.com']],
    ['mixed case names are lowercased, order kept', () => pki.mixedCaseLeaf, ['device73.example.com', 'second.example', '_smtp-client.device1.example.com']],
    ['no SAN extension', () => pki.noSanLeaf, []],
    ['CA without SAN', () => pki.root, []],
  ])('dnsNames: %s', (_label, get, expected) => {
    expect(parsed(get()).dnsNames).toEqual(expected);
  });

  it.each<[string, () => IssuedCertificate, { isCA: boolean; pathLength: number | undefined; keyCertSign: boolean | undefined }]>([
    ['root without pathLength', () => pki.root, { isCA: true, pathLength: undefined, keyCertSign: true }],
    ['intermediate pathLength 0', () => pki.intermediate, { isCA: true, pathLength: 0, keyCertSign: true }],
    ['intermediate pathLength 2', () => pki.intermediatePathLen2, { isCA: true, pathLength: 2, keyCertSign: true }],
    ['leaf', () => pki.leaf, { isCA: false, pathLength: undefined, keyCertSign: false }],
    ['no basicConstraints at all', () => pki.noBasicConstraints, { isCA: false, pathLength: undefined, keyCertSign: false }],
    ['basicConstraints cA false', () => pki.explicitNotCa, { isCA: false, pathLength: undefined, keyCertSign: false }],
  ])('CA constraints: %s', (_label, get, expected) => {
    const c = parsed(get());
    expect({ isCA: c.isCA, pathLength: c.pathLength, keyCertSign: c.keyCertSign }).toEqual(expected);
  });

  it('does not keep a reference to the caller buffer', () => {
    const input = Buffer.from(pki.leaf.der);
    const c = parseCertificateDer(input);
    input[10] = (input[10] as number) ^ 0xff;
    expect(c.der.equals(pki.leaf.der)).toBe(true);
  });
});

describe('parseCertificateDer rejects', () => {
  const validDer = (): Buffer => pki.leaf.der;
  it.each<[string, () => Uint8Array, RegExp]>([
    ['empty input', () => new Uint8Array(0), /^not a DER X\.509 certificate: /],
    ['garbage bytes', () => Buffer.from('this is not a certificate'), /^not a DER X\.509 certificate: /],
    ['a SEQUENCE of nothing', () => Buffer.from([0x30, 0x00]), /^not a DER X\.509 certificate: /],
    ['truncated certificate', () => validDer().subarray(0, validDer().length - 10), /^not a DER X\.509 certificate: /],
    ['PEM text given as DER', () => Buffer.from(pki.leaf.certPem), /^not a DER X\.509 certificate: /],
    ['a public key instead of a certificate', () => nodeSpki(pki.leaf), /^not a DER X\.509 certificate: /],
    ['oversize input (limit + 1 bytes)', () => Buffer.alloc(MAX_CERTIFICATE_BYTES + 1, 0x30), /^certificate is 65537 bytes; the limit is 65536$/],
    ['oversize input that starts with a real certificate', () => Buffer.concat([validDer(), Buffer.alloc(MAX_CERTIFICATE_BYTES)]), /^certificate is \d+ bytes; the limit is 65536$/],
    ['input at the limit is parsed (and fails as DER, not for size)', () => Buffer.alloc(MAX_CERTIFICATE_BYTES, 0x00), /^not a DER X\.509 certificate: /],
    // DER is exact: bytes after the certificate's outer SEQUENCE are not part of any certificate.
    ['trailing bytes after the certificate', () => Buffer.concat([validDer(), Buffer.from([0x00, 0x00, 0x00])]), /^/],
  ])('%s', (_label, make, message) => {
    const result = thrown(() => parseCertificateDer(make()));
    expect(result.isCertificateParseError).toBe(true);
    expect(result.name).toBe('CertificateParseError');
    expect(result.message).toMatch(message);
  });

  it('MAX_CERTIFICATE_BYTES is 64 KiB', () => {
    expect(MAX_CERTIFICATE_BYTES).toBe(65536);
  });
});

describe('PEM input', () => {
  const ders = (certs: ParsedCertificate[]): string[] => certs.map((c) => c.der.toString('hex'));
  const hex = (...certs: IssuedCertificate[]): string[] => certs.map((c) => c.der.toString('hex'));

  it.each<[string, () => string, () => string[]]>([
    ['one block', () => pki.leaf.certPem, () => hex(pki.leaf)],
    ['three blocks in order', () => pki.leaf.certPem + pki.intermediate.certPem + pki.root.certPem, () => hex(pki.leaf, pki.intermediate, pki.root)],
    [
      'text around and between blocks (openssl-style bag attributes)',
      () => `subject=CN=device73\n${pki.leaf.certPem}\nissuer=CN=intermediate\n${pki.intermediate.certPem}\ntrailing words\n`,
      () => hex(pki.leaf, pki.intermediate),
    ],
    ['CRLF line ends', () => (pki.leaf.certPem + pki.root.certPem).replace(/\n/g, '\r\n'), () => hex(pki.leaf, pki.root)],
    ['base64 on one line', () => pki.leaf.certPem.replace(/\n(?!-----END)/g, '').replace('-----BEGIN CERTIFICATE-----', '-----BEGIN CERTIFICATE-----\n'), () => hex(pki.leaf)],
  ])('parses %s', (_label, text, expected) => {
    expect(ders(parseCertificatesPem(text()))).toEqual(expected());
    expect(ders(parseCertificates(Buffer.from(text())))).toEqual(expected());
  });

  it.each<[string, () => string, string | undefined, string]>([
    ['a key file', () => pki.leaf.keyPem, 'client.key', "client.key: PEM block 1 is 'PRIVATE KEY', expected 'CERTIFICATE' (is this the key file?)"],
    ['certificate followed by its key', () => pki.leaf.certPem + pki.leaf.keyPem, 'bundle.pem', "bundle.pem: PEM block 2 is 'PRIVATE KEY', expected 'CERTIFICATE' (is this the key file?)"],
    [
      'an EC PRIVATE KEY block',
      () => '-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n',
      undefined,
      "input: PEM block 1 is 'EC PRIVATE KEY', expected 'CERTIFICATE' (is this the key file?)",
    ],
    ['a public key block', () => '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', undefined, "input: PEM block 1 is 'PUBLIC KEY', expected 'CERTIFICATE'"],
    ['no block at all', () => 'hello\n', 'empty.pem', 'empty.pem: no PEM CERTIFICATE block found'],
    ['BEGIN without a matching END', () => '-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n', undefined, 'input: no PEM CERTIFICATE block found'],
    ['invalid base64', () => '-----BEGIN CERTIFICATE-----\nAA*A\n-----END CERTIFICATE-----\n', undefined, 'input: PEM block 1 is not valid base64'],
    ['second block invalid base64', () => `${pki.leaf.certPem}-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n`, undefined, 'input: PEM block 2 is not valid base64'],
  ])('rejects %s', (_label, text, source, message) => {
    const call = source === undefined ? () => parseCertificatesPem(text()) : () => parseCertificatesPem(text(), source);
    expect(thrown(call)).toEqual({ isCertificateParseError: true, name: 'CertificateParseError', message });
  });

  it('names the block of a base64-valid block that is not a certificate', () => {
    const text = `${pki.leaf.certPem}-----BEGIN CERTIFICATE-----\n${Buffer.from('garbage!').toString('base64')}\n-----END CERTIFICATE-----\n`;
    const result = thrown(() => parseCertificatesPem(text, 'chain.pem'));
    expect(result.isCertificateParseError).toBe(true);
    expect(result.message).toMatch(/^chain\.pem: certificate 2: not a DER X\.509 certificate: /);
  });
});

describe('parseCertificates (PEM or DER)', () => {
  it('parses raw DER', () => {
    expect(parseCertificates(pki.leaf.der).map((c) => c.sha256Hex)).toEqual([createHash('sha256').update(pki.leaf.der).digest('hex')]);
  });

  it('says neither PEM nor DER for garbage', () => {
    const result = thrown(() => parseCertificates(Buffer.from([1, 2, 3]), 'x.crt'));
    expect(result.isCertificateParseError).toBe(true);
    expect(result.message).toMatch(/^x\.crt: neither PEM nor DER: not a DER X\.509 certificate: /);
  });

  it('says neither PEM nor DER for oversize input', () => {
    const result = thrown(() => parseCertificates(Buffer.alloc(MAX_CERTIFICATE_BYTES + 1), 'big.der'));
    expect(result.message).toBe('big.der: neither PEM nor DER: certificate is 65537 bytes; the limit is 65536');
  });

  it('routes text with a BEGIN line to the PEM parser (so a key file is named as such)', () => {
    const result = thrown(() => parseCertificates(Buffer.from(pki.leaf.keyPem), 'k.pem'));
    expect(result.message).toBe("k.pem: PEM block 1 is 'PRIVATE KEY', expected 'CERTIFICATE' (is this the key file?)");
  });
});

describe('parseCertificateDer lazy (the proxy hot path)', () => {
  it('gives the same fields as the eager parse, SAN names from OpenSSL included', async () => {
    const cert = await createCertificate({ commonName: 'Multi', dnsNames: ['A.example.test', 'b._device.example.test', 'c.example.test'] });
    const eager = parseCertificateDer(cert.der);
    const lazy = parseCertificateDer(cert.der, { lazy: true });
    expect(lazy.dnsNames).toEqual(['a.example.test', 'b._device.example.test', 'c.example.test']);
    for (const key of ['dnsNames', 'subject', 'issuer', 'notBefore', 'notAfter', 'isCA', 'pathLength', 'keyCertSign', 'sha256Hex'] as const) {
      expect(lazy[key]).toEqual(eager[key]);
    }
    expect(lazy.spki.equals(eager.spki)).toBe(true);
  });

  it('still refuses at once what OpenSSL or the framing refuses', () => {
    expect(() => parseCertificateDer(Buffer.from([0x30, 0x03, 1, 2, 3]), { lazy: true })).toThrow(CertificateParseError);
  });
});

describe('parseTlsPeerCertificate (a certificate OpenSSL already read in the handshake)', () => {
  const fields = ['dnsNames', 'subject', 'issuer', 'notBefore', 'notAfter', 'isCA', 'pathLength', 'keyCertSign', 'sha256Hex'] as const;

  it.each([
    ['several SAN names, mixed case', ['A.example.test', 'b._device.example.test'], ['a.example.test', 'b._device.example.test']],
    ['no SAN extension', undefined, []],
    // OpenSSL quotes a value holding a comma or quote: the names then come from the ASN.1 parse, not the rendering.
    ['a SAN value OpenSSL quotes', ['a.example.test', 'we,ird"x.test'], ['a.example.test', 'we,ird"x.test']],
  ] as const)('%s: the same fields as the full parse', async (_label, dnsNames, expected) => {
    const cert = await createCertificate({ commonName: 'Peer', dnsNames });
    const subjectaltname = new X509Certificate(cert.der).subjectAltName;
    const peer = parseTlsPeerCertificate({ raw: cert.der, subjectaltname });
    const eager = parseCertificateDer(cert.der);
    expect(peer.dnsNames).toEqual(expected);
    for (const key of fields) expect(peer[key]).toEqual(eager[key]);
    expect(peer.spki.equals(eager.spki)).toBe(true);
    expect(peer.node.fingerprint256).toBe(eager.node.fingerprint256);
  });

  it.each([
    ['trailing bytes', (der: Buffer) => Buffer.concat([der, Buffer.from([0])]), 'not a DER X.509 certificate: 1 trailing bytes after the certificate'],
    ['a truncated certificate', (der: Buffer) => der.subarray(0, der.length - 1), 'not a DER X.509 certificate: truncated DER'],
    ['not a SEQUENCE', (der: Buffer) => Buffer.concat([Buffer.from([0x31]), der.subarray(1)]), 'not a DER X.509 certificate: does not start with a SEQUENCE'],
    ['over the size limit', () => Buffer.alloc(MAX_CERTIFICATE_BYTES + 1, 0x30), `certificate is ${MAX_CERTIFICATE_BYTES + 1} bytes; the limit is ${MAX_CERTIFICATE_BYTES}`],
  ] as const)('refuses %s with a CertificateParseError naming it', async (_label, mangle, message) => {
    const cert = await createCertificate({ commonName: 'Peer', dnsNames: ['a.example.test'] });
    expect(() => parseTlsPeerCertificate({ raw: mangle(cert.der) })).toThrow(new CertificateParseError(message));
  });

  it("makes OpenSSL's object only when asked, and says so when it cannot", async () => {
    const cert = await createCertificate({ commonName: 'Peer', dnsNames: ['a.example.test'] });
    // Well framed, TBSCertificate intact, but the signatureValue is an OCTET STRING, not a BIT STRING: OpenSSL refuses it on first use.
    const broken = Buffer.from(cert.der);
    const tbsEnd = 4 + 4 + broken.readUInt16BE(6);
    const sigAlgEnd = tbsEnd + 2 + (broken[tbsEnd + 1] as number);
    expect(broken[sigAlgEnd]).toBe(0x03);
    broken[sigAlgEnd] = 0x04;
    const peer = parseTlsPeerCertificate({ raw: broken });
    expect(peer.dnsNames).toEqual(['a.example.test']);
    expect(() => peer.node).toThrow(CertificateParseError);
  });
});

describe('hostile certificates (issue 10, findings 2 and 3)', () => {
  const peerOf = (der: Buffer): ParsedCertificate => parseTlsPeerCertificate({ raw: der });

  it.each(['certificatePolicies', 'authorityInfoAccess'] as const)('a malformed %s extension (OpenSSL accepts it, @peculiar/x509 throws on it) leaves every field readable', async (which) => {
    const cert = await createMalformedExtensionCertificate('m._device.example.test', which);
    // The trap: OpenSSL reads the certificate, @peculiar/x509 throws as soon as it builds its extension objects.
    expect(new X509Certificate(cert.der).subject).toBe('CN=m._device.example.test');
    expect(() => new x509.X509Certificate(cert.der).getExtension(x509.SubjectAlternativeNameExtension)).toThrow(/AsnSchemaValidationError|Data does not match/);
    for (const c of [parseCertificateDer(cert.der), peerOf(cert.der)]) {
      expect({ subject: c.subject, issuer: c.issuer, dnsNames: c.dnsNames, isCA: c.isCA, pathLength: c.pathLength, keyCertSign: c.keyCertSign, valid: c.notAfter > c.notBefore }).toEqual({
        subject: 'CN=m._device.example.test',
        issuer: 'CN=m._device.example.test',
        dnsNames: ['m._device.example.test'],
        isCA: false,
        pathLength: undefined,
        keyCertSign: undefined,
        valid: true,
      });
    }
  });

  it.each([
    ['basicConstraints', '2.5.29.19', (c: ParsedCertificate) => c.isCA, /^cannot read the basicConstraints extension: /],
    ['keyUsage', '2.5.29.15', (c: ParsedCertificate) => c.keyCertSign, /^cannot read the keyUsage extension: /],
  ] as const)('an unreadable %s extension: that field throws CertificateParseError naming it, the others are described', async (_label, oid, read, message) => {
    const cert = await createHostileCertificate({
      commonName: 'b.example.test',
      basicConstraints: false,
      extensions: [
        { oid: SUBJECT_ALT_NAME_OID, value: sanValue(['b.example.test']) },
        // An OCTET STRING where a SEQUENCE / BIT STRING must be.
        { oid, critical: true, value: der(0x04, Buffer.from([1, 2, 3])) },
      ],
    });
    expect(new X509Certificate(cert.der).subject).toBe('CN=b.example.test');
    const peer = peerOf(cert.der);
    expect({ subject: peer.subject, dnsNames: peer.dnsNames, dated: peer.notAfter > peer.notBefore }).toEqual({ subject: 'CN=b.example.test', dnsNames: ['b.example.test'], dated: true });
    const first = thrown(() => read(peer));
    expect(first.isCertificateParseError).toBe(true);
    expect(first.message).toMatch(message);
    // The failure is kept: asked again, the same error.
    expect(thrown(() => read(peer)).message).toBe(first.message);
    // The eager parse (configuration, TLSA 2 0 0 records) refuses such a certificate, naming the field.
    expect(thrown(() => parseCertificateDer(cert.der)).message).toMatch(message);
  });

  describe('SAN dNSNames by a bounded DER walk', () => {
    const GENERAL = { rfc822: 0x81, uri: 0x86, ip: 0x87 } as const;
    const sanOf = (...entries: Buffer[]): Buffer => der(0x30, ...entries);
    const dns = (name: string): Buffer => der(0x82, Buffer.from(name, 'latin1'));

    it.each<[string, () => Array<{ oid: string; value: Buffer }>, string[] | string]>([
      ['no SAN extension', () => [], []],
      ['quotes, commas and upper case (OpenSSL quotes these)', () => [{ oid: SUBJECT_ALT_NAME_OID, value: sanValue(['"A,b".Example.TEST', 'C.test']) }], ['"a,b".example.test', 'c.test']],
      ['a NUL byte is kept (canonicalisation refuses it later)', () => [{ oid: SUBJECT_ALT_NAME_OID, value: sanValue(['a\0b.test']) }], ['a\0b.test']],
      [
        'other GeneralName types are skipped',
        () => [
          {
            oid: SUBJECT_ALT_NAME_OID,
            value: sanOf(
              der(GENERAL.rfc822, Buffer.from('x@y.test')),
              dns('one.test'),
              der(GENERAL.uri, Buffer.from('https://u.test/')),
              der(GENERAL.ip, Buffer.from([127, 0, 0, 1])),
              der(0xa4, der(0x30)),
              dns('two.test'),
            ),
          },
        ],
        ['one.test', 'two.test'],
      ],
      [
        'exactly MAX_SAN_ENTRIES entries',
        () => [{ oid: SUBJECT_ALT_NAME_OID, value: sanValue(Array.from({ length: MAX_SAN_ENTRIES }, (_, i) => `n${i}.test`)) }],
        Array.from({ length: MAX_SAN_ENTRIES }, (_, i) => `n${i}.test`),
      ],
      [
        'one entry over MAX_SAN_ENTRIES',
        () => [{ oid: SUBJECT_ALT_NAME_OID, value: sanValue(Array.from({ length: MAX_SAN_ENTRIES + 1 }, (_, i) => `n${i}.test`)) }],
        'subjectAltName has more than 100 entries (the limit)',
      ],
      [
        'non-DNS entries count towards the limit',
        () => [{ oid: SUBJECT_ALT_NAME_OID, value: sanOf(...Array.from({ length: MAX_SAN_ENTRIES + 1 }, () => der(GENERAL.ip, Buffer.from([10, 0, 0, 1])))) }],
        'subjectAltName has more than 100 entries (the limit)',
      ],
      [
        'two subjectAltName extensions',
        () => [
          { oid: SUBJECT_ALT_NAME_OID, value: sanValue(['a.test']) },
          { oid: SUBJECT_ALT_NAME_OID, value: sanValue(['b.test']) },
        ],
        '2 subjectAltName extensions (at most one is allowed)',
      ],
      ['a SAN value that is not a SEQUENCE', () => [{ oid: SUBJECT_ALT_NAME_OID, value: der(0x31, dns('a.test')) }], 'subjectAltName is not one SEQUENCE'],
      ['bytes after the GeneralNames', () => [{ oid: SUBJECT_ALT_NAME_OID, value: Buffer.concat([sanValue(['a.test']), Buffer.from([0])]) }], 'subjectAltName is not one SEQUENCE'],
      ['an entry that is not a GeneralName', () => [{ oid: SUBJECT_ALT_NAME_OID, value: sanOf(der(0x16, Buffer.from('a.test'))) }], 'subjectAltName entry 1 is not a GeneralName'],
      ['an entry overrunning its SEQUENCE', () => [{ oid: SUBJECT_ALT_NAME_OID, value: Buffer.from([0x30, 0x04, 0x82, 0x05, 0x61, 0x2e]) }], 'truncated DER'],
      [
        `more than MAX_EXTENSIONS (${MAX_EXTENSIONS}) extensions`,
        () => Array.from({ length: MAX_EXTENSIONS }, (_, i) => ({ oid: `1.3.6.1.4.1.55555.2.${i}`, value: der(0x05) })),
        `more than ${MAX_EXTENSIONS} extensions (the limit)`,
      ],
    ])('%s', async (_label, extensions, expected) => {
      const cert = await createHostileCertificate({ commonName: 'walk', extensions: extensions() });
      if (typeof expected === 'string') {
        expect(thrown(() => dnsNamesFromCertificateDer(cert.der)).message).toBe(expected);
        expect(thrown(() => peerOf(cert.der))).toEqual({ isCertificateParseError: true, name: 'CertificateParseError', message: expected });
        expect(thrown(() => parseCertificateDer(cert.der))).toEqual({ isCertificateParseError: true, name: 'CertificateParseError', message: expected });
      } else {
        expect(dnsNamesFromCertificateDer(cert.der)).toEqual(expected);
        expect(peerOf(cert.der).dnsNames).toEqual(expected);
      }
    });

    it("agrees with OpenSSL's rendering wherever that is unquoted", async () => {
      const names = ['a.example.test', 'B._device.example.test', '*.wild.example.test', 'xn--bcher-kva.example'];
      const cert = await createCertificate({ commonName: 'r', dnsNames: names });
      const rendering = (new X509Certificate(cert.der).subjectAltName ?? '').split(', ').map((e) => e.replace(/^DNS:/, '').toLowerCase());
      expect(dnsNamesFromCertificateDer(cert.der)).toEqual(rendering);
    });

    it("the audit's 63 KB certificate (2,901 quoted SAN dNSNames) is refused by the walk, before any full parse", async () => {
      const cert = await createManySanCertificate();
      expect(cert.der.length).toBeGreaterThan(60_000);
      expect(cert.der.length).toBeLessThanOrEqual(MAX_CERTIFICATE_BYTES);
      expect(thrown(() => peerOf(cert.der))).toEqual({ isCertificateParseError: true, name: 'CertificateParseError', message: 'subjectAltName has more than 100 entries (the limit)' });
    });
  });

  it('mutated certificates: nothing but CertificateParseError ever leaves the parser or a field', async () => {
    const seeds = [pki.leaf.der, pki.intermediate.der, (await createMalformedExtensionCertificate('m.example.test', 'certificatePolicies')).der, (await createManySanCertificate(40)).der];
    // A small deterministic PRNG (xorshift32): the same mutations on every run.
    let state = 0x9e3779b9;
    const next = (n: number): number => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) % n;
    };
    const fields = ['dnsNames', 'subject', 'issuer', 'notBefore', 'notAfter', 'isCA', 'pathLength', 'keyCertSign', 'sha256Hex', 'spki', 'node'] as const;
    const foreign: string[] = [];
    let parsedCount = 0;
    for (const seed of seeds) {
      for (let i = 0; i < 150; i++) {
        const bytes = Buffer.from(seed);
        const kind = next(3);
        if (kind === 0) for (let k = 0; k <= next(4); k++) bytes[next(bytes.length)] = next(256);
        const input = kind === 1 ? bytes.subarray(0, next(bytes.length)) : kind === 2 ? Buffer.concat([bytes.subarray(0, next(bytes.length)), bytes.subarray(next(bytes.length))]) : bytes;
        for (const parse of [() => peerOf(input), () => parseCertificateDer(input, { lazy: true })]) {
          try {
            const c = parse();
            parsedCount++;
            for (const f of fields) {
              try {
                void c[f];
              } catch (err) {
                if (!(err instanceof CertificateParseError)) foreign.push(`${f}: ${(err as Error).name}: ${(err as Error).message}`);
              }
            }
          } catch (err) {
            if (!(err instanceof CertificateParseError)) foreign.push(`parse: ${(err as Error).name}: ${(err as Error).message}`);
          }
        }
      }
    }
    expect(foreign).toEqual([]);
    expect(parsedCount).toBeGreaterThan(50);
  });
});

describe('subject and issuer are rendered as @peculiar/x509 renders them, from the Name bytes alone', () => {
  it.each<[string, () => Promise<Buffer>]>([
    ['a leaf under an intermediate', async () => pki.leaf.der],
    ['a root', async () => pki.root.der],
    ['several RDNs, escaped characters', async () => (await createHostileCertificate({ commonName: 'a\\, b+OU=unit, O=Org \\"Q\\", C=DE', extensions: [] })).der],
    ['a malformed certificatePolicies extension', async () => (await createMalformedExtensionCertificate('p.example.test', 'certificatePolicies')).der],
  ])('%s', async (_label, make) => {
    const der = await make();
    const reference = new x509.X509Certificate(der);
    for (const c of [parseTlsPeerCertificate({ raw: der }), parseCertificateDer(der)]) {
      expect({ subject: c.subject, issuer: c.issuer }).toEqual({ subject: reference.subject, issuer: reference.issuer });
    }
  });
});

describe('Names with too many attributes are refused before any parse (found by npm run fuzz)', () => {
  /** A self-signed certificate made by openssl whose subject (and so issuer) has `count` O= attributes. */
  function manyAttributes(count: number): Buffer {
    const subject = `/CN=n._device.example.test${'/O=x'.repeat(count - 1)}`;
    const pem = execFileSync('sh', ['-c', `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj '${subject}' -days 1 2>/dev/null`]).toString();
    return Buffer.from(new X509Certificate(pem).raw);
  }

  it.each([
    [MAX_NAME_ATTRIBUTES, undefined],
    [MAX_NAME_ATTRIBUTES + 1, `issuer has more than ${MAX_NAME_ATTRIBUTES} attributes (the limit)`],
    [400, `issuer has more than ${MAX_NAME_ATTRIBUTES} attributes (the limit)`],
  ])('%i attributes -> %s', (count, error) => {
    const der = manyAttributes(count);
    for (const parse of [() => parseCertificateDer(der), () => parseCertificateDer(der, { lazy: true }), () => parseTlsPeerCertificate({ raw: der })]) {
      if (error === undefined) expect(parse().subject.split(', ').length).toBe(count);
      else expect(parse).toThrow(new CertificateParseError(error));
    }
  });
});
