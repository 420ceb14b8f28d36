import { createPublicKey, randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseCertificateDer, type ParsedCertificate } from '../../src/dane/certificate.js';
import { DEFAULT_MAX_TLSA_RECORDS, matchTlsa, MAX_CHAIN_LENGTH, MAX_PATH_VALIDATIONS, prepareTlsaSet, type DecisionReason, type RecordVerdict } from '../../src/dane/match.js';
import { tlsaRecordForCertificate, type TlsaRecord } from '../../src/dane/tlsa.js';

const DAY = 86_400_000;
const NAME = 'sensor7._device.example.test';

interface Fixture {
  root: IssuedCertificate;
  intermediate: IssuedCertificate;
  leaf: IssuedCertificate;
  expiredLeaf: IssuedCertificate;
  futureLeaf: IssuedCertificate;
  expiredIntermediate: IssuedCertificate;
  leafOfExpiredIntermediate: IssuedCertificate;
  impostor: IssuedCertificate;
  notCa: IssuedCertificate;
  leafOfNotCa: IssuedCertificate;
  pathLenZeroRoot: IssuedCertificate;
  subCa: IssuedCertificate;
  subSubCa: IssuedCertificate;
  leafTooDeep: IssuedCertificate;
  otherRoot: IssuedCertificate;
  edLeaf: IssuedCertificate;
  edRoot: IssuedCertificate;
  edIntermediate: IssuedCertificate;
  edChainLeaf: IssuedCertificate;
}

let f: Fixture;
const p = (c: IssuedCertificate): ParsedCertificate => parseCertificateDer(c.der);
const rec = (c: IssuedCertificate, u: number, s: number, m: number): TlsaRecord => tlsaRecordForCertificate(p(c), u, s, m);
const wrong = (u: number, s: number, m: number): TlsaRecord => ({ usage: u, selector: s, matchingType: m, data: Buffer.alloc(m === 2 ? 64 : 32, 0x5a) });

beforeAll(async () => {
  const root = await createCertificate({ commonName: 'root', isCA: true });
  const intermediate = await createCertificate({ commonName: 'intermediate', isCA: true, issuer: root });
  const leafOpts = { commonName: NAME, dnsNames: [NAME] };
  const expiredIntermediate = await createCertificate({ commonName: 'old intermediate', isCA: true, issuer: root, notAfter: new Date(Date.now() - DAY) });
  const notCa = await createCertificate({ commonName: 'not a CA', isCA: false, issuer: root, extendedKeyUsage: 'none' });
  const pathLenZeroRoot = await createCertificate({ commonName: 'pathlen0 root', isCA: true, pathLength: 0 });
  const subCa = await createCertificate({ commonName: 'sub CA', isCA: true, issuer: pathLenZeroRoot });
  const subSubCa = await createCertificate({ commonName: 'sub-sub CA', isCA: true, issuer: subCa });
  const edRoot = await createCertificate({ commonName: 'ed root', isCA: true, keyAlgorithm: 'ed25519' });
  const edIntermediate = await createCertificate({ commonName: 'ed intermediate', isCA: true, issuer: edRoot, keyAlgorithm: 'ed25519' });
  f = {
    root,
    intermediate,
    leaf: await createCertificate({ ...leafOpts, issuer: intermediate }),
    expiredLeaf: await createCertificate({ ...leafOpts, issuer: intermediate, notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) }),
    futureLeaf: await createCertificate({ ...leafOpts, issuer: intermediate, notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 10 * DAY) }),
    expiredIntermediate,
    leafOfExpiredIntermediate: await createCertificate({ ...leafOpts, issuer: expiredIntermediate }),
    // Same subject as a real leaf, names the real intermediate as issuer, but signed by another key.
    impostor: await createCertificate({ ...leafOpts, issuer: { ...(await createCertificate({ commonName: 'intermediate', isCA: true })), subjectName: intermediate.subjectName } }),
    notCa,
    leafOfNotCa: await createCertificate({ ...leafOpts, issuer: notCa }),
    pathLenZeroRoot,
    subCa,
    subSubCa,
    leafTooDeep: await createCertificate({ ...leafOpts, issuer: subSubCa }),
    otherRoot: await createCertificate({ commonName: 'other root', isCA: true }),
    edLeaf: await createCertificate({ ...leafOpts, issuer: intermediate, keyAlgorithm: 'ed25519' }),
    edRoot,
    edIntermediate,
    edChainLeaf: await createCertificate({ ...leafOpts, issuer: edIntermediate, keyAlgorithm: 'ed25519' }),
  };
}, 60_000);

type Scenario = [label: string, build: () => { records: TlsaRecord[]; chain: IssuedCertificate[]; name?: string; roots?: IssuedCertificate[] }, reason: DecisionReason, verdicts: RecordVerdict[]];

const scenarios: Scenario[] = [
  ['DANE-EE 3 1 1', () => ({ records: [rec(f.leaf, 3, 1, 1)], chain: [f.leaf] }), 'authenticated', ['matched']],
  ['DANE-EE 3 1 0 (full SPKI)', () => ({ records: [rec(f.leaf, 3, 1, 0)], chain: [f.leaf] }), 'authenticated', ['matched']],
  ['DANE-EE ignores the name', () => ({ records: [rec(f.leaf, 3, 1, 1)], chain: [f.leaf], name: 'unrelated.example.test' }), 'authenticated', ['matched']],
  ['DANE-EE ignores expiry', () => ({ records: [rec(f.expiredLeaf, 3, 0, 2)], chain: [f.expiredLeaf] }), 'authenticated', ['matched']],
  ['DANE-EE with Ed25519', () => ({ records: [rec(f.edLeaf, 3, 1, 2)], chain: [f.edLeaf, f.intermediate] }), 'authenticated', ['matched']],
  ['DANE-EE wrong data', () => ({ records: [wrong(3, 1, 1)], chain: [f.leaf] }), 'no-matching-record', ['ee-mismatch']],
  ['DANE-TA 2 0 1 intermediate presented', () => ({ records: [rec(f.intermediate, 2, 0, 1)], chain: [f.leaf, f.intermediate] }), 'authenticated', ['matched']],
  ['DANE-TA 2 1 2 root presented', () => ({ records: [rec(f.root, 2, 1, 2)], chain: [f.leaf, f.intermediate, f.root] }), 'authenticated', ['matched']],
  ['DANE-TA 2 0 0 carries the root, not presented', () => ({ records: [rec(f.root, 2, 0, 0)], chain: [f.leaf, f.intermediate] }), 'authenticated', ['matched']],
  ['DANE-TA 2 1 0 carries the root key, not presented', () => ({ records: [rec(f.root, 2, 1, 0)], chain: [f.leaf, f.intermediate] }), 'authenticated', ['matched']],
  ['DANE-TA 2 1 0 key of the direct issuer', () => ({ records: [rec(f.intermediate, 2, 1, 0)], chain: [f.leaf] }), 'authenticated', ['matched']],
  ['DANE-TA digest of the root, root not presented', () => ({ records: [rec(f.root, 2, 0, 1)], chain: [f.leaf, f.intermediate] }), 'no-matching-record', ['ta-not-found']],
  ['DANE-TA name not in SAN', () => ({ records: [rec(f.intermediate, 2, 0, 1)], chain: [f.leaf, f.intermediate], name: 'other._device.example.test' }), 'no-matching-record', ['name-mismatch']],
  ['DANE-TA expired leaf', () => ({ records: [rec(f.intermediate, 2, 0, 1)], chain: [f.expiredLeaf, f.intermediate] }), 'no-matching-record', ['certificate-expired']],
  ['DANE-TA leaf not yet valid', () => ({ records: [rec(f.intermediate, 2, 0, 1)], chain: [f.futureLeaf, f.intermediate] }), 'no-matching-record', ['certificate-not-yet-valid']],
  [
    'DANE-TA expired intermediate on the path',
    () => ({ records: [rec(f.root, 2, 0, 1)], chain: [f.leafOfExpiredIntermediate, f.expiredIntermediate, f.root] }),
    'no-matching-record',
    ['certificate-expired'],
  ],
  ['DANE-TA record matching the EE itself', () => ({ records: [rec(f.leaf, 2, 0, 1)], chain: [f.leaf, f.intermediate] }), 'no-matching-record', ['ta-not-found']],
  ['DANE-TA impostor leaf beside the real intermediate', () => ({ records: [rec(f.intermediate, 2, 0, 1)], chain: [f.impostor, f.intermediate] }), 'no-matching-record', ['chain-broken']],
  ['DANE-TA issuer without basicConstraints cA', () => ({ records: [rec(f.notCa, 2, 0, 1)], chain: [f.leafOfNotCa, f.notCa] }), 'no-matching-record', ['issuer-not-ca']],
  ['DANE-TA with Ed25519 signatures all the way', () => ({ records: [rec(f.edRoot, 2, 1, 1)], chain: [f.edChainLeaf, f.edIntermediate, f.edRoot] }), 'authenticated', ['matched']],
  ['DANE-TA 2 1 0 Ed25519 root key, not presented', () => ({ records: [rec(f.edRoot, 2, 1, 0)], chain: [f.edChainLeaf, f.edIntermediate] }), 'authenticated', ['matched']],
  ['DANE-EE is tried before path validation', () => ({ records: [rec(f.root, 2, 1, 0), rec(f.leaf, 3, 1, 1)], chain: [f.leaf, f.intermediate] }), 'authenticated', ['not-evaluated', 'matched']],
  [
    'stops at the first matching DANE-TA record',
    () => ({ records: [rec(f.root, 2, 0, 0), rec(f.intermediate, 2, 0, 1)], chain: [f.leaf, f.intermediate] }),
    'authenticated',
    ['matched', 'not-evaluated'],
  ],
  [
    'a failing DANE-TA record does not stop the next',
    () => ({ records: [rec(f.otherRoot, 2, 0, 0), rec(f.intermediate, 2, 0, 1)], chain: [f.leaf, f.intermediate] }),
    'authenticated',
    ['chain-broken', 'matched'],
  ],
  [
    'DANE-TA pathLenConstraint 0 exceeded',
    () => ({ records: [rec(f.pathLenZeroRoot, 2, 0, 1)], chain: [f.leafTooDeep, f.subSubCa, f.subCa, f.pathLenZeroRoot] }),
    'no-matching-record',
    ['issuer-not-ca'],
  ],
  ['agility: correct SHA-256 beside wrong SHA-512', () => ({ records: [rec(f.leaf, 3, 1, 1), wrong(3, 1, 2)], chain: [f.leaf] }), 'no-matching-record', ['weaker-digest', 'ee-mismatch']],
  ['agility: correct SHA-512 beside wrong SHA-256', () => ({ records: [wrong(3, 1, 1), rec(f.leaf, 3, 1, 2)], chain: [f.leaf] }), 'authenticated', ['weaker-digest', 'matched']],
  ['agility: Full(0) takes no part', () => ({ records: [rec(f.leaf, 3, 1, 0), wrong(3, 1, 2)], chain: [f.leaf] }), 'authenticated', ['matched', 'not-evaluated']],
  ['agility is per usage+selector', () => ({ records: [wrong(3, 1, 2), rec(f.leaf, 3, 0, 1)], chain: [f.leaf] }), 'authenticated', ['ee-mismatch', 'matched']],
  [
    'a malformed SHA-512 record does not suppress SHA-256',
    () => ({ records: [{ ...wrong(3, 1, 2), data: Buffer.alloc(10) }, rec(f.leaf, 3, 1, 1)], chain: [f.leaf] }),
    'authenticated',
    ['bad-digest-length', 'matched'],
  ],
  [
    'unknown parameters are unusable, not fatal',
    () => ({ records: [{ ...wrong(4, 1, 1) }, wrong(3, 2, 1), wrong(3, 1, 3), { ...wrong(3, 1, 1), data: Buffer.alloc(31) }, rec(f.leaf, 3, 1, 1)], chain: [f.leaf] }),
    'authenticated',
    ['unknown-usage', 'unknown-selector', 'unknown-matching-type', 'bad-digest-length', 'matched'],
  ],
  ['only unusable records', () => ({ records: [wrong(4, 1, 1), wrong(3, 1, 3)], chain: [f.leaf] }), 'no-usable-records', ['unknown-usage', 'unknown-matching-type']],
  [
    'several records, the second matches',
    () => ({ records: [wrong(3, 1, 1), rec(f.leaf, 3, 1, 1), rec(f.leaf, 3, 0, 1)], chain: [f.leaf] }),
    'authenticated',
    ['ee-mismatch', 'matched', 'not-evaluated'],
  ],
  ['no records', () => ({ records: [], chain: [f.leaf] }), 'no-records', []],
  ['no certificate', () => ({ records: [rec(f.leaf, 3, 1, 1)], chain: [] }), 'no-certificate', []],
  ['PKIX-EE without a CA bundle', () => ({ records: [rec(f.leaf, 1, 1, 1)], chain: [f.leaf, f.intermediate] }), 'no-matching-record', ['pkix-not-configured']],
  ['PKIX-EE with the right root', () => ({ records: [rec(f.leaf, 1, 1, 1)], chain: [f.leaf, f.intermediate], roots: [f.root] }), 'authenticated', ['matched']],
  ['PKIX-EE with an unrelated root', () => ({ records: [rec(f.leaf, 1, 1, 1)], chain: [f.leaf, f.intermediate], roots: [f.otherRoot] }), 'no-matching-record', ['pkix-untrusted']],
  ['PKIX-EE name mismatch', () => ({ records: [rec(f.leaf, 1, 1, 1)], chain: [f.leaf, f.intermediate], roots: [f.root], name: 'x.example.test' }), 'no-matching-record', ['name-mismatch']],
  ['PKIX-TA anchor on the validated path', () => ({ records: [rec(f.intermediate, 0, 0, 1)], chain: [f.leaf, f.intermediate], roots: [f.root] }), 'authenticated', ['matched']],
  ['PKIX-TA with an unrelated root', () => ({ records: [rec(f.intermediate, 0, 0, 1)], chain: [f.leaf, f.intermediate], roots: [f.otherRoot] }), 'no-matching-record', ['pkix-untrusted']],
];

describe('matchTlsa', () => {
  it.each(scenarios)('%s', async (_label, build, reason, verdicts) => {
    const s = build();
    const decision = await matchTlsa({
      records: s.records,
      chain: s.chain.map(p),
      claimedName: s.name ?? NAME,
      now: new Date(),
      pkixRoots: s.roots?.map(p),
    });
    expect(decision.reason).toBe(reason);
    expect(decision.authenticated).toBe(reason === 'authenticated');
    expect(decision.records.map((r) => r.verdict)).toEqual(verdicts);
    expect(decision.matched?.index).toBe(verdicts.indexOf('matched') === -1 ? undefined : verdicts.indexOf('matched'));
  });

  it('checks no signature when a DANE-EE record matches, whatever TA records come first', async () => {
    const decision = await matchTlsa({ records: [rec(f.root, 2, 1, 0), rec(f.root, 2, 0, 0), rec(f.leaf, 3, 1, 1)], chain: [f.leaf, f.intermediate].map(p), claimedName: NAME, now: new Date() });
    expect(decision.authenticated).toBe(true);
    expect(decision.signatureChecks).toBe(0);
  });

  it('refuses chains longer than MAX_CHAIN_LENGTH', async () => {
    const chain = Array.from({ length: MAX_CHAIN_LENGTH + 1 }, () => p(f.leaf));
    expect((await matchTlsa({ records: [rec(f.leaf, 3, 1, 1)], chain, claimedName: NAME, now: new Date() })).reason).toBe('chain-too-long');
  });
});

/** An RSA SubjectPublicKeyInfo with a random modulus of `bits` and an exponent of `exponentBits` (17 = 65537). */
function rsaSpki(bits: number, exponentBits: number): Buffer {
  const n = randomBytes(bits / 8);
  n[0] = (n[0] as number) | 0x80;
  n[n.length - 1] = (n[n.length - 1] as number) | 1;
  let e: Buffer;
  if (exponentBits === 17) e = Buffer.from([1, 0, 1]);
  else {
    e = randomBytes(Math.ceil(exponentBits / 8));
    const top = exponentBits % 8 === 0 ? 8 : exponentBits % 8;
    e[0] = ((e[0] as number) & ((1 << top) - 1)) | (1 << (top - 1));
    e[e.length - 1] = (e[e.length - 1] as number) | 1;
  }
  return createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') }, format: 'jwk' }).export({ format: 'der', type: 'spki' });
}

describe('the cost of hostile RRsets is bounded', () => {
  const keyRecord = (spki: Buffer): TlsaRecord => ({ usage: 2, selector: 1, matchingType: 0, data: spki });

  it.each<[string, () => Buffer, RecordVerdict]>([
    ['RSA-3072 with a 3070-bit exponent', () => rsaSpki(3072, 3070), 'unusable-anchor'],
    ['RSA-4096 with a 33-bit exponent', () => rsaSpki(4096, 33), 'unusable-anchor'],
    ['RSA-16384 with e = 65537', () => rsaSpki(16384, 17), 'unusable-anchor'],
    ['RSA-512 with e = 65537', () => rsaSpki(512, 17), 'unusable-anchor'],
    ['RSA-4096 with a 32-bit exponent (allowed, does not verify)', () => rsaSpki(4096, 32), 'chain-broken'],
    ['RSA-8192 with e = 65537 (allowed, does not verify)', () => rsaSpki(8192, 17), 'chain-broken'],
    ['not a key at all', () => Buffer.from('30030201', 'hex'), 'unusable-anchor'],
  ])('2 1 0 %s', async (_label, spki, verdict) => {
    const decision = await matchTlsa({ records: [keyRecord(spki())], chain: [f.leaf, f.intermediate].map(p), claimedName: NAME, now: new Date() });
    expect(decision.records.map((r) => r.verdict)).toEqual([verdict]);
    // A refused key is never used; an allowed one is tried against the presented chain.
    if (verdict === 'unusable-anchor') expect(decision.signatureChecks).toBe(0);
    else expect(decision.signatureChecks).toBeGreaterThan(0);
  });

  it('60 huge-exponent keys cost no signature check, and a good record after them still matches', async () => {
    const hostile = Array.from({ length: 60 }, () => keyRecord(rsaSpki(3072, 3070)));
    const refused = await matchTlsa({ records: hostile, chain: [f.leaf, f.intermediate].map(p), claimedName: NAME, now: new Date() });
    expect(refused.reason).toBe('no-usable-records');
    expect(refused.signatureChecks).toBe(0);
    const verdicts = refused.records.map((r) => r.verdict);
    expect(verdicts.filter((v) => v === 'unusable-anchor')).toHaveLength(DEFAULT_MAX_TLSA_RECORDS);
    expect(verdicts.filter((v) => v === 'over-record-limit')).toHaveLength(60 - DEFAULT_MAX_TLSA_RECORDS);
    const withGood = await matchTlsa({ records: [...hostile.slice(0, 10), rec(f.root, 2, 0, 1)], chain: [f.leaf, f.intermediate, f.root].map(p), claimedName: NAME, now: new Date() });
    expect(withGood.authenticated).toBe(true);
    expect(withGood.matched?.index).toBe(10);
  });

  it.each<[string, number | undefined, DecisionReason, number]>([
    ['default cap: the 17th record is not considered', undefined, 'no-matching-record', DEFAULT_MAX_TLSA_RECORDS],
    ['cap raised to 17', 17, 'authenticated', 17],
    ['cap of 1', 1, 'no-matching-record', 1],
  ])('%s', async (_label, maxRecords, reason, considered) => {
    const records = [...Array.from({ length: 16 }, () => wrong(3, 1, 1)), rec(f.leaf, 3, 1, 1), wrong(3, 1, 1)];
    const decision = await matchTlsa({ records, maxRecords, chain: [p(f.leaf)], claimedName: NAME, now: new Date() });
    expect(decision.reason).toBe(reason);
    expect(decision.records.filter((r) => r.verdict === 'over-record-limit')).toHaveLength(records.length - considered);
  });

  it('validates at most MAX_PATH_VALIDATIONS paths per decision; DANE-EE records are still tried', async () => {
    const failing = Array.from({ length: MAX_PATH_VALIDATIONS + 2 }, () => rec(f.otherRoot, 2, 0, 0));
    const chain = [f.leaf, f.intermediate].map(p);
    const refused = await matchTlsa({ records: [...failing, rec(f.root, 2, 0, 0)], chain, claimedName: NAME, now: new Date() });
    expect(refused.records.map((r) => r.verdict)).toEqual([...Array(MAX_PATH_VALIDATIONS).fill('chain-broken'), ...Array(3).fill('over-validation-budget')]);
    const withEe = await matchTlsa({ records: [...failing, rec(f.leaf, 3, 1, 1)], chain, claimedName: NAME, now: new Date() });
    expect(withEe.authenticated).toBe(true);
  });

  it('digest agility counts only the records within the cap', async () => {
    // A stronger (wrong) SHA-512 record beyond the cap does not disqualify the SHA-256 record within it.
    const decision = await matchTlsa({ records: [rec(f.leaf, 3, 1, 1), wrong(3, 1, 2)], maxRecords: 1, chain: [p(f.leaf)], claimedName: NAME, now: new Date() });
    expect(decision.records.map((r) => r.verdict)).toEqual(['matched', 'over-record-limit']);
  });

  it('prepares an RRset once: anchors are parsed once per records array', () => {
    const records = [rec(f.root, 2, 0, 0), rec(f.root, 2, 1, 0)];
    const first = prepareTlsaSet(records);
    expect(prepareTlsaSet(records)).toBe(first);
    expect(first.entries.map((e) => e.anchor?.kind)).toEqual(['certificate', 'key']);
    expect(prepareTlsaSet([...records])).not.toBe(first);
    expect(prepareTlsaSet(records, 1)).not.toBe(first);
    expect(() => prepareTlsaSet(records, 0)).toThrow(RangeError);
  });
});
