/**
 * RFC 5280 path validation for DANE-TA and PKIX records, judged against
 * `openssl verify` on chains made with the openssl command line, and
 * OpenSSL-danetest-like DANE cases (built here, not copied): a cross-signed
 * root in the presented chain, a PKIX-TA record naming a root the client
 * does not send, and the rule for a PKIX-TA `0 0 0` record's certificate.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCertificateDer, type ParsedCertificate } from '../../src/dane/certificate.js';
import { matchTlsa, type RecordVerdict } from '../../src/dane/match.js';

/** path-validation.ts MAX_SIGNATURE_CHECKS (written out so that this file also runs against code without that module). */
const MAX_SIGNATURE_CHECKS = 48;
/** path-validation.ts MAX_NAME_CONSTRAINT_SUBTREES and MAX_NAME_CONSTRAINT_COMPARISONS, written out for the same reason. */
const MAX_SUBTREES = 64;
const MAX_COMPARISONS = 4096;
/** A nameConstraints extension line with `count` subtrees of `kind`: `count - names.length` others (never matching) and then `names`. */
const constraints = (kind: 'permitted' | 'excluded', count: number, names: readonly string[] = []): string =>
  `nameConstraints=critical,${[...Array.from({ length: count - names.length }, (_, i) => `DNS:o${i}.other.test`), ...names].map((n) => `${kind};${n}`).join(',')}`;
/** Leaf extensions with `count` SAN dNSNames, `name` first and the others inside _device.example.test. */
const manySans = (name: string, count: number): string[] => [
  ...LEAF_EXTENSIONS(name).filter((e) => !e.startsWith('subjectAltName')),
  `subjectAltName=${[name, ...Array.from({ length: count - 1 }, (_, i) => `n${i}._device.example.test`)].map((n) => `DNS:${n}`).join(',')}`,
];
import { tlsaRecordForCertificate, type TlsaRecord } from '../../src/dane/tlsa.js';
import { CA_EXTENSIONS, issue, LEAF_EXTENSIONS, opensslVerify, type OpensslCert } from '../lab/openssl-chains.js';

const NAME = 'victim._device.example.test';
const SUB_NAME = 'dev1.sub._device.example.test';

let dir: string;
const c: Record<string, OpensslCert> = {};
const get = (name: string): OpensslCert => {
  const cert = c[name];
  if (cert === undefined) throw new Error(`no certificate ${name}`);
  return cert;
};
const parsed = (name: string): ParsedCertificate => parseCertificateDer(get(name).der);
const rec = (name: string, u: number, s: number, m: number): TlsaRecord => tlsaRecordForCertificate(parsed(name), u, s, m);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-pathval-'));
  const add = async (o: Parameters<typeof issue>[1]): Promise<OpensslCert> => (c[o.name] = await issue(dir, o));
  const root = await add({ name: 'root', subject: '/CN=Example Root', extensions: CA_EXTENSIONS });
  const inter = await add({ name: 'inter', subject: '/CN=Example Intermediate', issuer: root, extensions: CA_EXTENSIONS });
  await add({ name: 'leaf', subject: `/CN=${NAME}`, issuer: inter, extensions: LEAF_EXTENSIONS(NAME) });
  // nameConstraints: an intermediate limited to sub._device.example.test.
  const subCa = await add({ name: 'subCa', subject: '/CN=Sub CA', issuer: root, extensions: [...CA_EXTENSIONS, 'nameConstraints=critical,permitted;DNS:sub._device.example.test'] });
  await add({ name: 'forged', subject: `/CN=${NAME}`, issuer: subCa, extensions: LEAF_EXTENSIONS(NAME) });
  await add({ name: 'subLeaf', subject: `/CN=${SUB_NAME}`, issuer: subCa, extensions: LEAF_EXTENSIONS(SUB_NAME) });
  const exclCa = await add({ name: 'exclCa', subject: '/CN=Excluding CA', issuer: root, extensions: [...CA_EXTENSIONS, 'nameConstraints=critical,excluded;DNS:_device.example.test'] });
  await add({ name: 'exclLeaf', subject: `/CN=${NAME}`, issuer: exclCa, extensions: LEAF_EXTENSIONS(NAME) });
  // The anchor itself constrained: OpenSSL applies a trust anchor's nameConstraints.
  const ncRoot = await add({ name: 'ncRoot', subject: '/CN=Constrained Root', extensions: [...CA_EXTENSIONS, 'nameConstraints=critical,permitted;DNS:sub._device.example.test'] });
  const ncRootInter = await add({ name: 'ncRootInter', subject: '/CN=Under Constrained Root', issuer: ncRoot, extensions: CA_EXTENSIONS });
  await add({ name: 'ncRootLeaf', subject: `/CN=${NAME}`, issuer: ncRootInter, extensions: LEAF_EXTENSIONS(NAME) });
  // Name-constraint work bounds: exactly at MAX_SUBTREES per certificate and at MAX_COMPARISONS names x subtrees, and one over.
  const nc64Root = await add({ name: 'nc64Root', subject: '/CN=64 Subtrees Root', extensions: [...CA_EXTENSIONS, constraints('permitted', MAX_SUBTREES, ['DNS:_device.example.test'])] });
  const nc64Inter = await add({ name: 'nc64Inter', subject: '/CN=Under 64 Subtrees', issuer: nc64Root, extensions: CA_EXTENSIONS });
  await add({ name: 'nc64Leaf', subject: `/CN=${NAME}`, issuer: nc64Inter, extensions: LEAF_EXTENSIONS(NAME) });
  // 63 SANs + the subject CN = 64 names under 64 subtrees: 4096 comparisons, the limit; 64 SANs: 4160, over it.
  await add({ name: 'sans63Leaf', subject: `/CN=${NAME}`, issuer: nc64Root, extensions: manySans(NAME, MAX_COMPARISONS / MAX_SUBTREES - 1) });
  await add({ name: 'sans64Leaf', subject: `/CN=${NAME}`, issuer: nc64Root, extensions: manySans(NAME, MAX_COMPARISONS / MAX_SUBTREES) });
  const nc64ExclRoot = await add({ name: 'nc64ExclRoot', subject: '/CN=64 Excluded Root', extensions: [...CA_EXTENSIONS, constraints('excluded', MAX_SUBTREES, [`DNS:${NAME}`])] });
  await add({ name: 'nc64ExclLeaf', subject: `/CN=${NAME}`, issuer: nc64ExclRoot, extensions: LEAF_EXTENSIONS(NAME) });
  const nc64InterPermit = await add({
    name: 'nc64InterPermit',
    subject: '/CN=64 Subtrees CA',
    issuer: root,
    extensions: [...CA_EXTENSIONS, constraints('permitted', MAX_SUBTREES, ['DNS:_device.example.test'])],
  });
  await add({ name: 'nc64InterPermitLeaf', subject: `/CN=${NAME}`, issuer: nc64InterPermit, extensions: LEAF_EXTENSIONS(NAME) });
  const nc64InterExcl = await add({ name: 'nc64InterExcl', subject: '/CN=64 Excluded CA', issuer: root, extensions: [...CA_EXTENSIONS, constraints('excluded', MAX_SUBTREES, [`DNS:${NAME}`])] });
  await add({ name: 'nc64InterExclLeaf', subject: `/CN=${NAME}`, issuer: nc64InterExcl, extensions: LEAF_EXTENSIONS(NAME) });
  const nc65Root = await add({ name: 'nc65Root', subject: '/CN=65 Subtrees Root', extensions: [...CA_EXTENSIONS, constraints('permitted', MAX_SUBTREES + 1, ['DNS:_device.example.test'])] });
  await add({ name: 'nc65RootLeaf', subject: `/CN=${NAME}`, issuer: nc65Root, extensions: LEAF_EXTENSIONS(NAME) });
  const nc65Inter = await add({
    name: 'nc65Inter',
    subject: '/CN=65 Subtrees CA',
    issuer: root,
    extensions: [...CA_EXTENSIONS, constraints('permitted', MAX_SUBTREES + 1, ['DNS:_device.example.test'])],
  });
  await add({ name: 'nc65InterLeaf', subject: `/CN=${NAME}`, issuer: nc65Inter, extensions: LEAF_EXTENSIONS(NAME) });
  // The reviewer's shape: an anchor with 1,000 excluded subtrees (~7 KB) over a leaf with 100 SANs, none of them excluded.
  const nc1000Root = await add({ name: 'nc1000Root', subject: '/CN=Hostile Anchor', extensions: [...CA_EXTENSIONS, constraints('excluded', 1000)] });
  await add({ name: 'nc1000Leaf', subject: `/CN=${NAME}`, issuer: nc1000Root, extensions: manySans(NAME, 100) });
  // Unknown critical extensions.
  await add({ name: 'critLeaf', subject: `/CN=${NAME}`, issuer: inter, extensions: [...LEAF_EXTENSIONS(NAME), '1.3.6.1.4.1.55555.1=critical,DER:05:00'] });
  await add({ name: 'noncritLeaf', subject: `/CN=${NAME}`, issuer: inter, extensions: [...LEAF_EXTENSIONS(NAME), '1.3.6.1.4.1.55555.1=DER:05:00'] });
  const critCa = await add({ name: 'critCa', subject: '/CN=Critical CA', issuer: root, extensions: [...CA_EXTENSIONS, '1.3.6.1.4.1.55555.1=critical,DER:05:00'] });
  await add({ name: 'critCaLeaf', subject: `/CN=${NAME}`, issuer: critCa, extensions: LEAF_EXTENSIONS(NAME) });
  // Not a CA; a CA without keyCertSign.
  const notCa = await add({ name: 'notCa', subject: '/CN=Not A CA', issuer: root, extensions: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature'] });
  await add({ name: 'notCaLeaf', subject: `/CN=${NAME}`, issuer: notCa, extensions: LEAF_EXTENSIONS(NAME) });
  const noSign = await add({ name: 'noSign', subject: '/CN=No keyCertSign', issuer: root, extensions: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,digitalSignature'] });
  await add({ name: 'noSignLeaf', subject: `/CN=${NAME}`, issuer: noSign, extensions: LEAF_EXTENSIONS(NAME) });
  // pathLenConstraint.
  const plRoot = await add({ name: 'plRoot', subject: '/CN=Pathlen 1 Root', extensions: ['basicConstraints=critical,CA:TRUE,pathlen:1', 'keyUsage=critical,keyCertSign,cRLSign'] });
  const pl1 = await add({ name: 'pl1', subject: '/CN=Pathlen Level 1', issuer: plRoot, extensions: CA_EXTENSIONS });
  const pl2 = await add({ name: 'pl2', subject: '/CN=Pathlen Level 2', issuer: pl1, extensions: CA_EXTENSIONS });
  await add({ name: 'plOk', subject: `/CN=${NAME}`, issuer: pl1, extensions: LEAF_EXTENSIONS(NAME) });
  await add({ name: 'plDeep', subject: `/CN=${NAME}`, issuer: pl2, extensions: LEAF_EXTENSIONS(NAME) });
  // Policies: requireExplicitPolicy on the intermediate.
  const polCa = await add({
    name: 'polCa',
    subject: '/CN=Policy CA',
    issuer: root,
    extensions: [...CA_EXTENSIONS, 'certificatePolicies=1.3.6.1.4.1.55555.7', 'policyConstraints=critical,requireExplicitPolicy:0'],
  });
  await add({ name: 'polLeafOk', subject: `/CN=${NAME}`, issuer: polCa, extensions: [...LEAF_EXTENSIONS(NAME), 'certificatePolicies=1.3.6.1.4.1.55555.7'] });
  await add({ name: 'polLeafNone', subject: `/CN=${NAME}`, issuer: polCa, extensions: LEAF_EXTENSIONS(NAME) });
  await add({ name: 'polLeafOther', subject: `/CN=${NAME}`, issuer: polCa, extensions: [...LEAF_EXTENSIONS(NAME), 'certificatePolicies=1.3.6.1.4.1.55555.8'] });
  // A leaf naming the intermediate as issuer but signed by another key.
  const fakeInter = await add({ name: 'fakeInter', subject: '/CN=Example Intermediate', extensions: CA_EXTENSIONS });
  await add({ name: 'badSig', subject: `/CN=${NAME}`, issuer: fakeInter, extensions: LEAF_EXTENSIONS(NAME) });

  // Cross-signed root: root2 signs a copy of root (same subject and key).
  const root2 = await add({ name: 'root2', subject: '/CN=Other Root', extensions: CA_EXTENSIONS });
  await add({ name: 'rootCross', subject: '/CN=Example Root', issuer: root2, keyOf: root, extensions: CA_EXTENSIONS });
  await add({ name: 'unrelatedRoot', subject: '/CN=Unrelated Root', extensions: CA_EXTENSIONS });
  // An issuer loop: A is issued by B and B by A (each name has a valid signature from the other's key).
  const loopA0 = await add({ name: 'loopA0', subject: '/CN=Loop A', extensions: CA_EXTENSIONS });
  const loopB = await add({ name: 'loopB', subject: '/CN=Loop B', issuer: loopA0, extensions: CA_EXTENSIONS });
  const loopA = await add({ name: 'loopA', subject: '/CN=Loop A', issuer: loopB, keyOf: loopA0, extensions: CA_EXTENSIONS });
  await add({ name: 'loopLeaf', subject: `/CN=${NAME}`, issuer: loopA, extensions: LEAF_EXTENSIONS(NAME) });
}, 120_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

type OpensslCase = [label: string, anchor: string, leaf: string, untrusted: string[], name: string];

const opensslCases: OpensslCase[] = [
  ['ordinary chain', 'root', 'leaf', ['inter'], NAME],
  ['nameConstraints: permitted subtree violated (the forgery)', 'root', 'forged', ['subCa'], NAME],
  ['nameConstraints: inside the permitted subtree', 'root', 'subLeaf', ['subCa'], SUB_NAME],
  ['nameConstraints: excluded subtree', 'root', 'exclLeaf', ['exclCa'], NAME],
  ['nameConstraints on the trust anchor itself', 'ncRoot', 'ncRootLeaf', ['ncRootInter'], NAME],
  ['unknown critical extension on the leaf', 'root', 'critLeaf', ['inter'], NAME],
  ['unknown non-critical extension on the leaf', 'root', 'noncritLeaf', ['inter'], NAME],
  ['unknown critical extension on the intermediate', 'root', 'critCaLeaf', ['critCa'], NAME],
  ['issuer with basicConstraints CA:FALSE', 'root', 'notCaLeaf', ['notCa'], NAME],
  ['CA without keyCertSign', 'root', 'noSignLeaf', ['noSign'], NAME],
  ['pathlen:1 with one intermediate', 'plRoot', 'plOk', ['pl1'], NAME],
  ['pathlen:1 with two intermediates', 'plRoot', 'plDeep', ['pl2', 'pl1'], NAME],
  ['requireExplicitPolicy, leaf asserts the policy', 'root', 'polLeafOk', ['polCa'], NAME],
  ['signature by another key under the same issuer name', 'root', 'badSig', ['inter'], NAME],
  ['chain to an unrelated root', 'unrelatedRoot', 'leaf', ['inter'], NAME],
  ['cross-signed root presented, self-signed root trusted', 'root', 'leaf', ['inter', 'rootCross', 'root2'], NAME],
  [`nameConstraints: ${MAX_SUBTREES} subtrees on the anchor (the limit), name permitted`, 'nc64Root', 'nc64Leaf', ['nc64Inter'], NAME],
  [`nameConstraints: ${MAX_SUBTREES} subtrees on the anchor (the limit), name excluded`, 'nc64ExclRoot', 'nc64ExclLeaf', [], NAME],
  [`nameConstraints: ${MAX_SUBTREES} subtrees on the intermediate (the limit), name permitted`, 'root', 'nc64InterPermitLeaf', ['nc64InterPermit'], NAME],
  [`nameConstraints: ${MAX_SUBTREES} subtrees on the intermediate (the limit), name excluded`, 'root', 'nc64InterExclLeaf', ['nc64InterExcl'], NAME],
  [`nameConstraints: 63 SANs + CN under ${MAX_SUBTREES} subtrees = ${MAX_COMPARISONS} comparisons (the limit)`, 'nc64Root', 'sans63Leaf', [], NAME],
];

describe('path validation agrees with openssl verify', () => {
  it.each(opensslCases)('%s', async (_label, anchor, leaf, untrusted, name) => {
    const reference = await opensslVerify(dir, get(anchor), get(leaf), untrusted.map(get));
    const chain = [leaf, ...untrusted].map(parsed);
    // DANE-TA with the anchor in the record (not presented) and PKIX-EE to the same anchor as the bundle.
    const daneTa = await matchTlsa({ records: [rec(anchor, 2, 0, 0)], chain, claimedName: name, now: new Date() });
    const pkixEe = await matchTlsa({ records: [rec(leaf, 1, 0, 1)], chain, claimedName: name, now: new Date(), pkixRoots: [parsed(anchor)] });
    expect({ dane: daneTa.authenticated, pkix: pkixEe.authenticated, openssl: reference.ok }, reference.output).toEqual({
      dane: reference.ok,
      pkix: reference.ok,
      openssl: reference.ok,
    });
  });

  // OpenSSL skips policy processing unless asked (-policy_check), and with it (3.0) refuses even the valid chain above
  // ("no explicit policy"): these follow RFC 5280 6.1 instead (requireExplicitPolicy 0 on the CA: the leaf must assert a policy of the CA's).
  it.each<[string, string, boolean]>([
    ['requireExplicitPolicy, leaf asserts no policy', 'polLeafNone', false],
    ['requireExplicitPolicy, leaf asserts another policy', 'polLeafOther', false],
  ])('policy: %s', async (_label, leaf, ok) => {
    const d = await matchTlsa({ records: [rec('root', 2, 0, 0)], chain: [leaf, 'polCa'].map(parsed), claimedName: NAME, now: new Date() });
    expect(d.records.map((r) => r.verdict)).toEqual([ok ? 'matched' : 'policy-violation']);
  });

  it('the nameConstraints forgery is refused with its own reason', async () => {
    const d = await matchTlsa({ records: [rec('root', 2, 0, 1)], chain: ['forged', 'subCa', 'root'].map(parsed), claimedName: NAME, now: new Date() });
    expect(d.records.map((r) => r.verdict)).toEqual(['name-constraints-violated']);
  });

  it('an issuer loop in the presented chain ends the search within its budget', async () => {
    const d = await matchTlsa({ records: [rec('unrelatedRoot', 2, 0, 0)], chain: ['loopLeaf', 'loopA', 'loopB'].map(parsed), claimedName: NAME, now: new Date() });
    expect(d.records.map((r) => r.verdict)).toEqual(['chain-broken']);
    expect(d.records[0]?.detail).toMatch(/path search gave up after/);
    expect(d.signatureChecks).toBeGreaterThan(2);
    expect(d.signatureChecks).toBeLessThanOrEqual(MAX_SIGNATURE_CHECKS + 2);
  });

  it('an unknown critical extension is refused with its own reason', async () => {
    const d = await matchTlsa({ records: [rec('inter', 2, 0, 1)], chain: ['critLeaf', 'inter'].map(parsed), claimedName: NAME, now: new Date() });
    expect(d.records.map((r) => r.verdict)).toEqual(['unknown-critical-extension']);
  });
});

type LimitCase = [label: string, records: () => TlsaRecord[], chain: string[], roots: string[], verdict: RecordVerdict, detail: RegExp];

// Over the limits openssl verify has none for: refused before pkijs compares a single name, with the limit named.
const limitCases: LimitCase[] = [
  ['2 0 0 anchor with 65 subtrees (record)', () => [rec('nc65Root', 2, 0, 0)], ['nc65RootLeaf'], [], 'unusable-anchor', /nameConstraints of more than 64 subtrees \(the limit per certificate\)/],
  [
    '2 0 1 anchor with 65 subtrees (presented)',
    () => [rec('nc65Root', 2, 0, 1)],
    ['nc65RootLeaf', 'nc65Root'],
    [],
    'name-constraints-violated',
    /^untrusted certificate 1: nameConstraints of more than 64 subtrees/,
  ],
  [
    '2 0 0 root, presented intermediate with 65 subtrees',
    () => [rec('root', 2, 0, 0)],
    ['nc65InterLeaf', 'nc65Inter'],
    [],
    'name-constraints-violated',
    /^untrusted certificate 1: nameConstraints of more than 64 subtrees/,
  ],
  ['1 0 1 leaf, bundle root with 65 subtrees', () => [rec('nc65RootLeaf', 1, 0, 1)], ['nc65RootLeaf'], ['nc65Root'], 'name-constraints-violated', /^trust anchor: nameConstraints of more than 64/],
  [
    '2 0 0 anchor with 64 subtrees, leaf with 64 SANs + CN (4160 comparisons)',
    () => [rec('nc64Root', 2, 0, 0)],
    ['sans64Leaf'],
    [],
    'name-constraints-violated',
    /65 names x 64 subtrees = 4160 comparisons, over the limit of 4096/,
  ],
  ["the reviewer's anchor: 1,000 excluded subtrees, leaf with 100 SANs", () => [rec('nc1000Root', 2, 0, 0)], ['nc1000Leaf'], [], 'unusable-anchor', /more than 64 subtrees/],
];

describe('name-constraint work is bounded', () => {
  it.each(limitCases)('%s', async (_label, records, chain, roots, verdict, detail) => {
    const d = await matchTlsa({ records: records(), chain: chain.map(parsed), claimedName: NAME, now: new Date(), pkixRoots: roots.map(parsed) });
    expect(d.records.map((r) => r.verdict)).toEqual([verdict]);
    expect(d.records[0]?.detail).toMatch(detail);
    expect(d.authenticated).toBe(false);
    // Refused before any signature is checked.
    expect(d.signatureChecks).toBe(0);
  });

  it('the raw DER count before any parse agrees with the parsed certificate, and stops at the cap', async () => {
    const { rawNameConstraintSubtrees, nameConstraintSubtrees } = await import('../../src/dane/path-validation.js');
    const pkijs = await import('pkijs');
    for (const [name, count] of [
      ['root', 0],
      ['ncRoot', 1],
      ['nc64Root', 64],
      ['nc65Root', 65],
      ['nc1000Root', 1000],
    ] as const) {
      const der = get(name).der;
      expect(rawNameConstraintSubtrees(der, 5000), name).toBe(count);
      expect(nameConstraintSubtrees(pkijs.Certificate.fromBER(der), 5000), name).toBe(count);
      expect(rawNameConstraintSubtrees(der, MAX_SUBTREES), name).toBe(Math.min(count, MAX_SUBTREES + 1));
    }
  });

  it('validatePath refuses an over-limit anchor handed to it parsed by other means', async () => {
    const { toPathCertificate, validatePath } = await import('../../src/dane/path-validation.js');
    const pkijs = await import('pkijs');
    expect(() => toPathCertificate(get('nc65Root').der)).toThrow(/nameConstraints of more than 64 subtrees/);
    const anchor = { cert: pkijs.Certificate.fromBER(get('nc65Root').der), der: get('nc65Root').der, synthetic: false };
    const r = await validatePath({ leaf: toPathCertificate(get('nc65RootLeaf').der), intermediates: [], anchors: [anchor], now: new Date() });
    expect(r).toMatchObject({ ok: false, failure: 'name-constraints-violated', signatureChecks: 0 });
    expect(r.ok ? '' : r.detail).toMatch(/^trust anchor: nameConstraints of more than 64 subtrees \(the limit per certificate\)/);
  });

  it('openssl verify accepts the over-limit chains (the refusal is our bound, not a path error)', async () => {
    for (const [anchor, leaf, untrusted] of [
      ['nc65Root', 'nc65RootLeaf', []],
      ['root', 'nc65InterLeaf', ['nc65Inter']],
      ['nc64Root', 'sans64Leaf', []],
      ['nc1000Root', 'nc1000Leaf', []],
    ] as const) {
      const reference = await opensslVerify(dir, get(anchor), get(leaf), untrusted.map(get));
      expect(reference.ok, reference.output).toBe(true);
    }
  });
});

type DaneCase = [label: string, records: () => TlsaRecord[], chain: string[], roots: string[], verdict: RecordVerdict];

const daneCases: DaneCase[] = [
  // (a) A cross-signed root in the presented chain must not break DANE-TA.
  ['(a) 2 0 0 self-signed root, chain leaf, CA, root cross-signed by root2, root2', () => [rec('root', 2, 0, 0)], ['leaf', 'inter', 'rootCross', 'root2'], [], 'matched'],
  ['(a) 2 1 1 the root key, the cross-signed copy presented', () => [rec('root', 2, 1, 1)], ['leaf', 'inter', 'rootCross', 'root2'], [], 'matched'],
  ['(a) 2 1 0 the root key, not presented at all', () => [rec('root', 2, 1, 0)], ['leaf', 'inter'], [], 'matched'],
  ['(a) 2 0 1 digest of the self-signed root, which is not presented', () => [rec('root', 2, 0, 1)], ['leaf', 'inter', 'rootCross', 'root2'], [], 'ta-not-found'],
  ['(a) 2 0 0 root2: the path through the cross certificate', () => [rec('root2', 2, 0, 0)], ['leaf', 'inter', 'rootCross'], [], 'matched'],
  // (b) PKIX-TA naming a root the client does not send: the anchor is on the validated path, in the bundle.
  ['(b) 0 0 1 the bundle root, chain leaf + intermediate', () => [rec('root', 0, 0, 1)], ['leaf', 'inter'], ['root'], 'matched'],
  ['(b) 0 1 1 the bundle root, chain leaf + intermediate', () => [rec('root', 0, 1, 1)], ['leaf', 'inter'], ['root'], 'matched'],
  ['(b) 0 0 1 a root not in the bundle', () => [rec('root', 0, 0, 1)], ['leaf', 'inter'], ['unrelatedRoot'], 'ta-not-found'],
  ['(b) 0 0 1 the intermediate, bundle without its root', () => [rec('inter', 0, 0, 1)], ['leaf', 'inter'], ['unrelatedRoot'], 'pkix-untrusted'],
  ['(b) 0 0 1 a root in the bundle that is not on the path', () => [rec('unrelatedRoot', 0, 0, 1)], ['leaf', 'inter'], ['root', 'unrelatedRoot'], 'pkix-untrusted'],
  // (c) The rule: a PKIX-TA 0 0 0 certificate completes the path as an untrusted certificate; the path must still end in the bundle.
  ['(c) 0 0 0 the intermediate, not presented, root in the bundle', () => [rec('inter', 0, 0, 0)], ['leaf'], ['root'], 'matched'],
  ['(c) 0 0 0 the intermediate, not presented, bundle without its root', () => [rec('inter', 0, 0, 0)], ['leaf'], ['unrelatedRoot'], 'pkix-untrusted'],
  ['(c) 2 0 0 the intermediate, not presented: a DANE-TA anchor by itself', () => [rec('inter', 2, 0, 0)], ['leaf'], [], 'matched'],
  ['(c) 0 0 0 with the nameConstraints forgery', () => [rec('subCa', 0, 0, 0)], ['forged'], ['root'], 'name-constraints-violated'],
];

describe('DANE cases in the manner of OpenSSL danetest', () => {
  it.each(daneCases)('%s', async (_label, records, chain, roots, verdict) => {
    const d = await matchTlsa({ records: records(), chain: chain.map(parsed), claimedName: NAME, now: new Date(), pkixRoots: roots.map(parsed) });
    expect(d.records.map((r) => r.verdict)).toEqual([verdict]);
    expect(d.authenticated).toBe(verdict === 'matched');
  });
});
