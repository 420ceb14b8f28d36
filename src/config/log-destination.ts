/**
 * Can the process log to this file? Checked without creating anything: the
 * file, if it exists, must be a writable regular file (or device); if not,
 * the nearest existing directory above it must be writable (the logger
 * creates the missing directories and the file). Serving with a destination
 * that fails here ends the process at its first log line.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

const code = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/** Undefined when `path` (absolute) can be logged to; else what is wrong. */
export async function logFileProblem(path: string): Promise<string | undefined> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    if (code(err) !== 'ENOENT' && code(err) !== 'ENOTDIR') return `cannot use ${path}: ${code(err)}`;
  }
  if (info !== undefined) {
    if (info.isDirectory()) return `${path} is a directory; name a file`;
    try {
      await access(path, constants.W_OK);
    } catch (err) {
      return `cannot write to ${path}: ${code(err)}`;
    }
    return undefined;
  }
  // Not there yet: the nearest existing ancestor must be a directory we may create entries in.
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    let dirInfo;
    try {
      dirInfo = await stat(dir);
    } catch (err) {
      if (code(err) !== 'ENOENT') return `cannot create ${path}: ${dir}: ${code(err)}`;
      if (dirname(dir) === dir) return `cannot create ${path}: no existing directory above it`;
      continue;
    }
    if (!dirInfo.isDirectory()) return `cannot create ${path}: ${dir} is not a directory`;
    try {
      await access(dir, constants.W_OK | constants.X_OK);
    } catch (err) {
      return `cannot create ${path}: ${dir} is not writable (${code(err)})`;
    }
    return undefined;
  }
}
