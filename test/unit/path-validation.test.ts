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
  const polCa = await add({ name: 'polCa', subject: '/CN=Policy CA', issuer: root, extensions: [...CA_EXTENSIONS, 'certificatePolicies=1.3.6.1.4.1.55555.7', 'policyConstraints=critical,requireExplicitPolicy:0'] });
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
  ["nameConstraints on the trust anchor itself", 'ncRoot', 'ncRootLeaf', ['ncRootInter'], NAME],
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
