import { beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseCertificateDer, type ParsedCertificate } from '../../src/dane/certificate.js';
import { matchTlsa, MAX_CHAIN_LENGTH, type DecisionReason, type RecordVerdict } from '../../src/dane/match.js';
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
  };
}, 60_000);

type Scenario = [
  label: string,
  build: () => { records: TlsaRecord[]; chain: IssuedCertificate[]; name?: string; roots?: IssuedCertificate[] },
  reason: DecisionReason,
  verdicts: RecordVerdict[],
];

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
  ['DANE-TA expired intermediate on the path', () => ({ records: [rec(f.root, 2, 0, 1)], chain: [f.leafOfExpiredIntermediate, f.expiredIntermediate, f.root] }), 'no-matching-record', ['certificate-expired']],
  ['DANE-TA record matching the EE itself', () => ({ records: [rec(f.leaf, 2, 0, 1)], chain: [f.leaf, f.intermediate] }), 'no-matching-record', ['ta-not-found']],
  ['DANE-TA impostor leaf beside the real intermediate', () => ({ records: [rec(f.intermediate, 2, 0, 1)], chain: [f.impostor, f.intermediate] }), 'no-matching-record', ['chain-broken']],
  ['DANE-TA issuer without basicConstraints cA', () => ({ records: [rec(f.notCa, 2, 0, 1)], chain: [f.leafOfNotCa, f.notCa] }), 'no-matching-record', ['issuer-not-ca']],
  ['DANE-TA pathLenConstraint 0 exceeded', () => ({ records: [rec(f.pathLenZeroRoot, 2, 0, 1)], chain: [f.leafTooDeep, f.subSubCa, f.subCa, f.pathLenZeroRoot] }), 'no-matching-record', ['issuer-not-ca']],
  ['agility: correct SHA-256 beside wrong SHA-512', () => ({ records: [rec(f.leaf, 3, 1, 1), wrong(3, 1, 2)] , chain: [f.leaf] }), 'no-matching-record', ['weaker-digest', 'ee-mismatch']],
  ['agility: correct SHA-512 beside wrong SHA-256', () => ({ records: [wrong(3, 1, 1), rec(f.leaf, 3, 1, 2)], chain: [f.leaf] }), 'authenticated', ['weaker-digest', 'matched']],
  ['agility: Full(0) takes no part', () => ({ records: [rec(f.leaf, 3, 1, 0), wrong(3, 1, 2)], chain: [f.leaf] }), 'authenticated', ['matched', 'ee-mismatch']],
  ['agility is per usage+selector', () => ({ records: [wrong(3, 1, 2), rec(f.leaf, 3, 0, 1)], chain: [f.leaf] }), 'authenticated', ['ee-mismatch', 'matched']],
  ['a malformed SHA-512 record does not suppress SHA-256', () => ({ records: [{ ...wrong(3, 1, 2), data: Buffer.alloc(10) }, rec(f.leaf, 3, 1, 1)], chain: [f.leaf] }), 'authenticated', ['bad-digest-length', 'matched']],
  [
    'unknown parameters are unusable, not fatal',
    () => ({ records: [{ ...wrong(4, 1, 1) }, wrong(3, 2, 1), wrong(3, 1, 3), { ...wrong(3, 1, 1), data: Buffer.alloc(31) }, rec(f.leaf, 3, 1, 1)], chain: [f.leaf] }),
    'authenticated',
    ['unknown-usage', 'unknown-selector', 'unknown-matching-type', 'bad-digest-length', 'matched'],
  ],
  ['only unusable records', () => ({ records: [wrong(4, 1, 1), wrong(3, 1, 3)], chain: [f.leaf] }), 'no-usable-records', ['unknown-usage', 'unknown-matching-type']],
  ['several records, the second matches', () => ({ records: [wrong(3, 1, 1), rec(f.leaf, 3, 1, 1), rec(f.leaf, 3, 0, 1)], chain: [f.leaf] }), 'authenticated', ['ee-mismatch', 'matched', 'matched']],
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
  it.each(scenarios)('%s', (_label, build, reason, verdicts) => {
    const s = build();
    const decision = matchTlsa({
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

  it('refuses chains longer than MAX_CHAIN_LENGTH', () => {
    const chain = Array.from({ length: MAX_CHAIN_LENGTH + 1 }, () => p(f.leaf));
    expect(matchTlsa({ records: [rec(f.leaf, 3, 1, 1)], chain, claimedName: NAME, now: new Date() }).reason).toBe('chain-too-long');
  });
});
