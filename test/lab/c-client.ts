/**
 * Builds (once per test process) the small C client that sends dane_clientid
 * in a TLS 1.2 ClientHello with OpenSSL's custom-extension API, and runs it.
 */
import { execFile } from 'node:child_process';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
let built: Promise<string> | undefined;

/**
 * Compiled next to its source (git-ignored), not in a temporary directory, so
 * no test run leaves files behind; written under a unique name and renamed,
 * so two test workers building at once cannot see a half-written binary.
 */
export function buildDaneClientIdClient(): Promise<string> {
  built ??= (async () => {
    const dir = join(import.meta.dirname, 'c');
    const binary = join(dir, 'dane-clientid-client');
    const partial = `${binary}.${process.pid}.tmp`;
    await run('gcc', ['-Wall', '-Wextra', '-Werror', '-O2', '-o', partial, join(dir, 'dane-clientid-client.c'), '-lssl', '-lcrypto']);
    await rename(partial, binary);
    return binary;
  })();
  return built;
}

export interface DaneClientIdRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export async function runDaneClientIdClient(args: { port: number; sni: string; extensionType: number; name: string; certFile: string; keyFile: string; request?: string }): Promise<DaneClientIdRun> {
  const binary = await buildDaneClientIdClient();
  const argv = ['127.0.0.1', String(args.port), args.sni, String(args.extensionType), args.name === '' ? '-' : args.name, args.certFile, args.keyFile];
  if (args.request !== undefined) argv.push(args.request);
  try {
    const { stdout, stderr } = await run(binary, argv, { timeout: 15_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
