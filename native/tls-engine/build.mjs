// Builds the native TLS engine (build/dancegate_tls.node) during `npm ci`.
// The engine is optional: any failure (no compiler, no make, no node headers)
// prints one line and exits 0, and `tls.engine: auto` then uses node:tls.
// DANCEGATE_NATIVE_BUILD=require turns a failure into exit 1 (CI).
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const required = process.env.DANCEGATE_NATIVE_BUILD === 'require';

function fail(why) {
  process.stderr.write(`dancegate: native TLS engine not built (${why}); tls.engine auto will use node:tls\n`);
  process.exit(required ? 1 : 0);
}

// NODE: the node running this script, so the headers match the runtime that will load the addon.
const make = spawnSync('make', ['-C', here, `NODE=${process.execPath}`], { encoding: 'utf8' });
if (make.error !== undefined) {
  fail(make.error.code === 'ENOENT' ? 'make is not installed' : `cannot run make: ${make.error.message}`);
} else if (make.status !== 0) {
  const lines = `${make.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const why = lines.find((l) => /not found|No such file|error:/.test(l)) ?? lines.at(-1) ?? `make exited with ${make.status}`;
  if (required) process.stderr.write(make.stdout + make.stderr);
  fail(why.length > 200 ? `${why.slice(0, 200)}…` : why);
}
