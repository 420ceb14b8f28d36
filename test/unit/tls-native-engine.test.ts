/**
 * Loading the native TLS engine (src/tls/native-engine.ts): which runtimes
 * may try (a pure check with exact reasons), where the addon file is found
 * (DANCEGATE_NATIVE_ADDON, or walking up to the package root), and what the
 * loader says about a file that is not an addon or an addon of another
 * version. The real build loads (the test fails when it is not built).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADDON_RELATIVE_PATH, SUPPORTED_NODE_MAJORS, findAddon, loadNativeEngine, runtimeRefusal } from '../../src/tls/native-engine.js';

const ROOT = resolve(import.meta.dirname, '../..');
const GOOD = { node: '20.20.2', openssl: '3.0.19', napi: '9' } as const;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-native-engine-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('runtimeRefusal', () => {
  it('the supported range is Node 20 to 26', () => {
    expect(SUPPORTED_NODE_MAJORS).toEqual({ min: 20, max: 26 });
    expect(ADDON_RELATIVE_PATH).toBe(join('native', 'tls-engine', 'build', 'dancegate_tls.node'));
  });

  it.each<[string, Record<string, string | undefined>, Record<string, string | undefined>, string | undefined]>([
    ['a supported runtime', {}, GOOD, undefined],
    ['Node 26 with OpenSSL 3.5', {}, { node: '26.12.1', openssl: '3.5.9', napi: '10' }, undefined],
    ['Node 22 (the lower and upper bounds hold)', {}, { node: '22.23.5', openssl: '3.5.9', napi: '10' }, undefined],
    ['DANCEGATE_NATIVE=0', { DANCEGATE_NATIVE: '0' }, GOOD, 'disabled by DANCEGATE_NATIVE=0'],
    ['DANCEGATE_NATIVE=1 is no refusal', { DANCEGATE_NATIVE: '1' }, GOOD, undefined],
    ['DANCEGATE_NATIVE=0 wins over a bad runtime', { DANCEGATE_NATIVE: '0' }, { node: '19.0.0' }, 'disabled by DANCEGATE_NATIVE=0'],
    ['Node 19', {}, { ...GOOD, node: '19.9.0' }, 'node 19.9.0 is outside the supported range 20–26'],
    ['Node 27', {}, { ...GOOD, node: '27.0.0' }, 'node 27.0.0 is outside the supported range 20–26'],
    ['a garbage version', {}, { ...GOOD, node: 'garbage' }, 'node garbage is outside the supported range 20–26'],
    ['an empty version', {}, { ...GOOD, node: '' }, 'node  is outside the supported range 20–26'],
    ['no version', {}, { ...GOOD, node: undefined }, 'node (unknown) is outside the supported range 20–26'],
    ['OpenSSL 1.1', {}, { ...GOOD, openssl: '1.1.1w' }, "node's OpenSSL is 1.1.1w; the engine needs OpenSSL 3.x"],
    ['OpenSSL 4.0', {}, { ...GOOD, openssl: '4.0.0' }, "node's OpenSSL is 4.0.0; the engine needs OpenSSL 3.x"],
    ['OpenSSL 30.0 (not 3.x)', {}, { ...GOOD, openssl: '30.0.0' }, "node's OpenSSL is 30.0.0; the engine needs OpenSSL 3.x"],
    ['no OpenSSL', {}, { ...GOOD, openssl: undefined }, "node's OpenSSL is (none); the engine needs OpenSSL 3.x"],
    ['N-API 7', {}, { ...GOOD, napi: '7' }, "node's N-API version is 7; the engine needs 8 or later"],
    ['N-API 8', {}, { ...GOOD, napi: '8' }, undefined],
    ['no N-API', {}, { ...GOOD, napi: undefined }, "node's N-API version is (none); the engine needs 8 or later"],
    ['a garbage N-API version', {}, { ...GOOD, napi: 'x' }, "node's N-API version is x; the engine needs 8 or later"],
  ])('%s', (_what, env, versions, expected) => {
    expect(runtimeRefusal(env, versions)).toBe(expected);
  });
});

describe('findAddon', () => {
  it('DANCEGATE_NATIVE_ADDON names the file, found or not', () => {
    expect(findAddon({ DANCEGATE_NATIVE_ADDON: '/nowhere/x.node' }, dir)).toBe('/nowhere/x.node');
  });

  it('an empty DANCEGATE_NATIVE_ADDON is not set', async () => {
    const root = join(dir, 'empty-env');
    await mkdir(join(root, 'src', 'tls'), { recursive: true });
    expect(findAddon({ DANCEGATE_NATIVE_ADDON: '' }, join(root, 'src', 'tls'))).toBe(undefined);
  });

  it('walks up from a nested folder to the package root (dist/src/tls is three below it)', async () => {
    const root = join(dir, 'pkg');
    const nested = join(root, 'dist', 'src', 'tls');
    await mkdir(nested, { recursive: true });
    await mkdir(join(root, 'native', 'tls-engine', 'build'), { recursive: true });
    await writeFile(join(root, ADDON_RELATIVE_PATH), 'not really an addon');
    expect(findAddon({}, nested)).toBe(join(root, 'native', 'tls-engine', 'build', 'dancegate_tls.node'));
    expect(findAddon({}, root)).toBe(join(root, 'native', 'tls-engine', 'build', 'dancegate_tls.node'));
    // Four levels up is the last place looked; five is too far.
    await mkdir(join(root, 'a', 'b', 'c', 'd', 'e'), { recursive: true });
    expect(findAddon({}, join(root, 'a', 'b', 'c', 'd'))).toBe(join(root, ADDON_RELATIVE_PATH));
    expect(findAddon({}, join(root, 'a', 'b', 'c', 'd', 'e'))).toBe(undefined);
  });

  it('none found', async () => {
    const root = join(dir, 'bare');
    await mkdir(join(root, 'src', 'tls'), { recursive: true });
    expect(findAddon({}, join(root, 'src', 'tls'))).toBe(undefined);
  });
});

describe('loadNativeEngine', () => {
  it('refuses with the runtime reason before looking for the file', () => {
    expect(loadNativeEngine({ env: { DANCEGATE_NATIVE: '0' }, versions: GOOD, from: ROOT })).toEqual({ ok: false, reason: 'disabled by DANCEGATE_NATIVE=0' });
    expect(loadNativeEngine({ env: {}, versions: { ...GOOD, node: '27.1.0' }, from: ROOT })).toEqual({ ok: false, reason: 'node 27.1.0 is outside the supported range 20–26' });
  });

  it('no build: says how to build it', async () => {
    const bare = join(dir, 'no-build', 'src', 'tls');
    await mkdir(bare, { recursive: true });
    expect(loadNativeEngine({ env: {}, versions: GOOD, from: bare })).toEqual({
      ok: false,
      reason: `the addon is not built (no ${ADDON_RELATIVE_PATH}; run \`node native/tls-engine/build.mjs\`, which needs gcc and make)`,
    });
  });

  it('a file that is not an addon: did not load, with the first line of the error', async () => {
    const path = join(dir, 'garbage.node');
    await writeFile(path, 'this is not an ELF file\n'.repeat(40));
    expect(loadNativeEngine({ env: { DANCEGATE_NATIVE_ADDON: path }, versions: GOOD, from: dir })).toEqual({ ok: false, reason: `${path} did not load: ${path}: invalid ELF header` });
  });

  it('a missing DANCEGATE_NATIVE_ADDON file: did not load', () => {
    const path = join(dir, 'absent.node');
    expect(loadNativeEngine({ env: { DANCEGATE_NATIVE_ADDON: path }, versions: GOOD, from: dir })).toEqual({ ok: false, reason: `${path} did not load: Cannot find module '${path}'` });
  });

  it('a module without the functions: lacks them, by name', async () => {
    const path = join(dir, 'fake-addon.cjs');
    await writeFile(path, "module.exports = { opensslVersion: () => 'OpenSSL 3.0.0', createContext: () => ({}), Connection: 'not a class' };\n");
    expect(loadNativeEngine({ env: { DANCEGATE_NATIVE_ADDON: path }, versions: GOOD, from: dir })).toEqual({
      ok: false,
      reason: `${path} lacks limitPausedHandshakes, Connection (an addon of another version?)`,
    });
  });

  it('a module with all four functions loads, and reports its OpenSSL', async () => {
    const path = join(dir, 'complete-fake.cjs');
    await writeFile(path, "module.exports = { opensslVersion: () => 'OpenSSL 3.9.9 fake', limitPausedHandshakes: () => false, createContext: () => ({}), Connection: function Connection() {} };\n");
    const load = loadNativeEngine({ env: { DANCEGATE_NATIVE_ADDON: path }, versions: GOOD, from: dir });
    expect(load.ok && { openssl: load.openssl, path: load.path }).toEqual({ openssl: 'OpenSSL 3.9.9 fake', path });
  });

  it("the real build loads from the package root and runs on node's own OpenSSL", () => {
    const load = loadNativeEngine({ env: {}, versions: process.versions, from: join(ROOT, 'src', 'tls') });
    if (!load.ok) throw new Error(`the native engine must be built for this test: ${load.reason}`);
    expect(load.path).toBe(join(ROOT, ADDON_RELATIVE_PATH));
    expect(load.openssl.startsWith(`OpenSSL ${process.versions.openssl} `)).toBe(true);
    expect(Object.keys(load.binding).sort()).toEqual(['Connection', 'createContext', 'limitPausedHandshakes', 'opensslVersion']);
  });

  it('without arguments: the process environment, loaded once', () => {
    const first = loadNativeEngine();
    expect(loadNativeEngine()).toBe(first);
    expect(first.ok).toBe(process.env.DANCEGATE_NATIVE !== '0');
  });
});
