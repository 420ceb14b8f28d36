import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalTlsaError, loadLocalTlsa, lookupLocalTlsa, MAX_LOCAL_TLSA_FILE_BYTES, parseLocalTlsa } from '../../src/lookup/local-tlsa.js';
import { formatTlsaRdata } from '../../src/dane/tlsa.js';

const A = 'aa'.repeat(32);
const B = 'bb'.repeat(32);

describe('parseLocalTlsa', () => {
  it('reads owners (canonicalised), optional TTL and class, comments, duplicates and wildcards', () => {
    const text = [
      '# pinned devices',
      `Sensor7._DEVICE.example.com. 300 IN TLSA 3 1 1 ${A}`,
      `sensor7._device.example.com TLSA 3 1 1 ${A} ; same record again`,
      `sensor7._device.example.com IN 60 TLSA 3 1 2 ( ${B}${B} )`,
      '',
      `*._device.example.com. TLSA 2 0 1 ${B}`,
      '   ',
    ].join('\r\n');
    const local = parseLocalTlsa(text, 'pins.txt');
    expect([...local.keys()]).toEqual(['sensor7._device.example.com', '*._device.example.com']);
    expect(local.get('sensor7._device.example.com')?.map(formatTlsaRdata)).toEqual([`3 1 1 ${A}`, `3 1 2 ${B}${B}`]);
    expect(local.get('*._device.example.com')?.map(formatTlsaRdata)).toEqual([`2 0 1 ${B}`]);
  });

  it.each([
    [`x.example TLSA 3 1 1 ${A}\nbad.example TLSA 3 1 1 zz`, 'pins.txt, line 2: '],
    [`x.example TXT 3 1 1 ${A}`, "pins.txt, line 1: expected TTL, class IN or type TLSA, found 'TXT'"],
    [`a..example TLSA 3 1 1 ${A}`, 'pins.txt, line 1: owner name "a..example" is invalid: '],
    [`*.*.example TLSA 3 1 1 ${A}`, 'pins.txt, line 1: owner name "*.*.example" is invalid: a wildcard is only allowed as the whole first label'],
    ['x.example TLSA 3 1 1', 'pins.txt, line 1: '],
  ])('names the line of a bad record: %j', (text, prefix) => {
    expect(() => parseLocalTlsa(text, 'pins.txt')).toThrow(LocalTlsaError);
    expect(() => parseLocalTlsa(text, 'pins.txt')).toThrow(prefix);
  });
});

describe('lookupLocalTlsa', () => {
  const local = parseLocalTlsa([`a._device.example.com TLSA 3 1 1 ${A}`, `*._device.example.com TLSA 2 0 1 ${B}`, `*.deep._device.example.com TLSA 3 1 1 ${B}`].join('\n'), 'x');
  it.each([
    ['a._device.example.com', `3 1 1 ${A}`],
    ['b._device.example.com', `2 0 1 ${B}`],
    ['x.y._device.example.com', `2 0 1 ${B}`],
    ['x.deep._device.example.com', `3 1 1 ${B}`],
    ['deep._device.example.com', `2 0 1 ${B}`],
    ['_device.example.com', undefined],
    ['example.com', undefined],
  ])('%s → %s', (name, expected) => {
    expect(lookupLocalTlsa(local, name)?.map(formatTlsaRdata)[0]).toBe(expected);
  });
});

describe('loadLocalTlsa', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-local-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('reads a file', async () => {
    await writeFile(join(dir, 'ok.txt'), `a.example TLSA 3 1 1 ${A}\n`);
    expect((await loadLocalTlsa(join(dir, 'ok.txt'))).size).toBe(1);
  });
  it('names a missing file', async () => {
    await expect(loadLocalTlsa(join(dir, 'missing.txt'))).rejects.toThrow(`cannot read local TLSA file ${join(dir, 'missing.txt')}: ENOENT`);
  });
  it('refuses a directory', async () => {
    await expect(loadLocalTlsa(dir)).rejects.toThrow(`local TLSA file ${dir} is not a regular file`);
  });
  it('refuses a file over the size limit before reading it', async () => {
    await writeFile(join(dir, 'big.txt'), Buffer.alloc(MAX_LOCAL_TLSA_FILE_BYTES + 1, 0x20));
    await expect(loadLocalTlsa(join(dir, 'big.txt'))).rejects.toThrow(`is ${MAX_LOCAL_TLSA_FILE_BYTES + 1} bytes; the limit is ${MAX_LOCAL_TLSA_FILE_BYTES}`);
  });
});

describe('parseLocalTlsa reports every bad line', () => {
  it('one message line per bad record, good records between them do not stop it', () => {
    const text = [`a..example TLSA 3 1 1 ${A}`, `ok.example TLSA 3 1 1 ${A}`, 'x.example TXT 1', `*.*.example TLSA 3 1 1 ${A}`].join('\n');
    expect(() => parseLocalTlsa(text, 'pins.txt')).toThrow(LocalTlsaError);
    const lines = (() => {
      try {
        parseLocalTlsa(text, 'pins.txt');
      } catch (e) {
        return (e as Error).message.split('\n');
      }
      return [];
    })();
    expect(lines).toEqual([
      'pins.txt, line 1: owner name "a..example" is invalid: label 2 is empty',
      "pins.txt, line 3: expected TTL, class IN or type TLSA, found 'TXT'",
      'pins.txt, line 4: owner name "*.*.example" is invalid: a wildcard is only allowed as the whole first label, as in \'*.example.com\'',
    ]);
  });

  it('at most 20 listed, then how many more', () => {
    const text = Array.from({ length: 30 }, (_, i) => `h${i}..example TLSA 3 1 1 ${A}`).join('\n');
    const lines = (() => {
      try {
        parseLocalTlsa(text, 'pins.txt');
      } catch (e) {
        return (e as Error).message.split('\n');
      }
      return [];
    })();
    expect(lines).toHaveLength(21);
    expect(lines[19]).toBe('pins.txt, line 20: owner name "h19..example" is invalid: label 2 is empty');
    expect(lines[20]).toBe('pins.txt: and 10 more bad lines');
  });
});
