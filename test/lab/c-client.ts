/**
 * Builds (once per test process) the small C client that sends dane_clientid
 * with OpenSSL's custom-extension API, and runs it. Forms: in a TLS 1.2
 * ClientHello (the default, tls-clientid), in a TLS 1.3 ClientHello, in the
 * end-entity entry of a TLS 1.3 Certificate message when the server's
 * CertificateRequest asks for it (draft-ietf-dance-client-auth-13), or not at
 * all over TLS 1.3.
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

/** Where the client puts dane_clientid; hello12 is TLS 1.2, the others TLS 1.3 only. */
export type DaneClientIdForm = 'hello12' | 'hello13' | 'certificate' | 'none';

export interface DaneClientIdRun {
  /**
   * 0 handshake done and the response read, 2 handshake failed, 3 handshake
   * done but the first read failed (a refused TLS 1.3 client), 1 usage or
   * setup error; -1 when it did not exit by itself (killed by the 15 s timeout).
   */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The alert the server sent, from the client's "alert: <name> (<number>)" line (printed on codes 2 and 3 only). */
  readonly alert?: number;
}

/** The number on the client's one "alert: <name> (<number>)" line, if there is one. */
export function parseAlert(stderr: string): number | undefined {
  const match = /^alert: [a-z_]+ \((\d{1,3})\)$/m.exec(stderr);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

export async function runDaneClientIdClient(args: {
  port: number;
  sni: string;
  extensionType: number;
  name: string;
  certFile: string;
  keyFile: string;
  request?: string;
  /** Default 'hello12'. */
  form?: DaneClientIdForm;
}): Promise<DaneClientIdRun> {
  const binary = await buildDaneClientIdClient();
  const argv = ['127.0.0.1', String(args.port), args.sni, String(args.extensionType), args.name === '' ? '-' : args.name, args.certFile, args.keyFile];
  // FORM is the 9th argument, so it needs REQUEST before it: the client's own default.
  if (args.request !== undefined || args.form !== undefined) argv.push(args.request ?? 'ping\n');
  if (args.form !== undefined) argv.push(args.form);
  try {
    const { stdout, stderr } = await run(binary, argv, { timeout: 15_000 });
    return withAlert({ code: 0, stdout, stderr });
  } catch (err) {
    // execFile's error: code is the exit status, or null (with signal set) when killed, e.g. by the timeout.
    const e = err as { code: number | null | string; signal?: string | null; stdout: string; stderr: string };
    return withAlert({ code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout, stderr: e.stderr });
  }
}

function withAlert(result: { code: number; stdout: string; stderr: string }): DaneClientIdRun {
  const alert = parseAlert(result.stderr);
  return alert === undefined ? result : { ...result, alert };
}
