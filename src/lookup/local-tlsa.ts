/**
 * The local TLSA source: a file of TLSA records in zone-file presentation
 * format that the operator trusts directly, without DNS (pinning, air-gapped
 * sites, the embedded demo). One record per line:
 *
 *   sensor7._device.example.com. 300 IN TLSA 3 1 1 ab12…
 *   *._device.example.com.           TLSA 2 0 1 cd34…   ; a wildcard owner
 *
 * Blank lines and comments ('#' or ';' to the end of the line) are ignored;
 * TTL and class are optional. Owners are written out in full and
 * canonicalised with the client-name rules; `*.suffix` owners answer for
 * names below the suffix that have no records of their own (the nearest
 * wildcard wins, as in DNS). Parsing is pure; reading the file is the edge.
 */
import { readFile, stat } from 'node:fs/promises';
import { canonicalizePattern } from '../allowlist/allowlist.js';
import { BadLines } from '../allowlist/bad-lines.js';
import { parseTlsaResourceRecord, sameTlsaRecord, TlsaParseError, type TlsaRecord } from '../dane/tlsa.js';

export class LocalTlsaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LocalTlsaError';
  }
}

/** Largest local TLSA file read (a million records is about 100 MB; this is far above any real use and well below a DoS). */
export const MAX_LOCAL_TLSA_FILE_BYTES = 16 * 1024 * 1024;

export type LocalTlsa = ReadonlyMap<string, readonly TlsaRecord[]>;

function stripComment(line: string): string {
  const hash = line.indexOf('#');
  const semicolon = line.indexOf(';');
  const cut = [hash, semicolon].filter((i) => i !== -1);
  return cut.length === 0 ? line : line.slice(0, Math.min(...cut));
}

/**
 * Parse the text of a local TLSA file. Pure. Throws one LocalTlsaError
 * naming the source and line of every bad record (the first 20, then how
 * many more), one per line of its message.
 */
export function parseLocalTlsa(text: string, source: string): LocalTlsa {
  const records = new Map<string, TlsaRecord[]>();
  const bad = new BadLines(source);
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = stripComment(lines[i] ?? '').trim();
    if (line.length === 0) continue;
    const where = `${source}, line ${i + 1}`;
    let parsed;
    try {
      parsed = parseTlsaResourceRecord(line);
    } catch (err) {
      if (!(err instanceof TlsaParseError)) throw err;
      bad.add(`${where}: ${err.message}`);
      continue;
    }
    const owner = canonicalizePattern(parsed.owner);
    if (!owner.ok) {
      bad.add(`${where}: owner name ${JSON.stringify(parsed.owner)} is invalid: ${owner.reason}`);
      continue;
    }
    const list = records.get(owner.pattern) ?? [];
    // A duplicate record is one record (an RRset is a set).
    if (!list.some((r) => sameTlsaRecord(r, parsed.record))) list.push(parsed.record);
    records.set(owner.pattern, list);
  }
  if (bad.count > 0) throw new LocalTlsaError(bad.report().join('\n'));
  return records;
}

/** Read and parse a local TLSA file; every failure is a LocalTlsaError naming the file. */
export async function loadLocalTlsa(path: string): Promise<LocalTlsa> {
  let text: string;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new LocalTlsaError(`local TLSA file ${path} is not a regular file`);
    if (info.size > MAX_LOCAL_TLSA_FILE_BYTES) {
      throw new LocalTlsaError(`local TLSA file ${path} is ${info.size} bytes; the limit is ${MAX_LOCAL_TLSA_FILE_BYTES}`);
    }
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof LocalTlsaError) throw err;
    throw new LocalTlsaError(`cannot read local TLSA file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseLocalTlsa(text, path);
}

/** The records for a canonical client name: its own, else those of the nearest `*.` owner above it, else undefined. Pure, O(labels). */
export function lookupLocalTlsa(local: LocalTlsa, name: string): readonly TlsaRecord[] | undefined {
  const own = local.get(name);
  if (own !== undefined) return own;
  for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
    const wildcard = local.get(`*.${name.slice(dot + 1)}`);
    if (wildcard !== undefined) return wildcard;
  }
  return undefined;
}
