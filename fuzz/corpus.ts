/** The committed seed corpus: fuzz/corpus/<target>/*.bin, captures of real tools (see fuzz/build-corpus.ts). */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The repository root, found from this file whether it runs from fuzz/ (vitest) or from a build directory. */
export function repositoryRoot(): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && existsSync(join(dir, 'fuzz', 'corpus'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no repository root with fuzz/corpus above ${import.meta.dirname}`);
  }
}

export const corpusDirectory = (target: string): string => join(repositoryRoot(), 'fuzz', 'corpus', target);

export interface SeedFile {
  readonly name: string;
  readonly bytes: Buffer;
}

/** Every seed of a target, sorted by file name so that runs with the same fast-check seed are identical. */
export function loadSeeds(target: string): SeedFile[] {
  const dir = corpusDirectory(target);
  if (!existsSync(dir)) throw new Error(`seed corpus ${dir} is missing: run npm run fuzz:corpus`);
  const seeds = readdirSync(dir)
    .filter((f) => f.endsWith('.bin'))
    .sort()
    .map((name) => ({ name, bytes: readFileSync(join(dir, name)) }));
  if (seeds.length === 0) throw new Error(`seed corpus ${dir} holds no .bin file`);
  return seeds;
}

/**
 * Inputs that once broke a parser (fuzz/regressions/<target>/*.bin), kept so that the CI pass
 * checks them every time whatever the seed; none is an error.
 */
export function loadRegressions(target: string): SeedFile[] {
  const dir = join(repositoryRoot(), 'fuzz', 'regressions', target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.bin'))
    .sort()
    .map((name) => ({ name, bytes: readFileSync(join(dir, name)) }));
}
