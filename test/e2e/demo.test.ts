/**
 * The embedded demo and the config command, through the built CLI exactly
 * as a user runs them: `dancegate serve` with no configuration prints a curl
 * command; running that command shows the backend receiving
 * X-Dane-Client-Id; SIGTERM stops it cleanly. `config check` validates.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');

describe('dancegate serve (embedded demo)', () => {
  let cwd: string;
  beforeAll(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dancegate-demo-'));
  });
  afterAll(async () => rm(cwd, { recursive: true, force: true }));

  it('prints a curl command that shows the backend receiving the verified identity, and stops on SIGTERM', async () => {
    const child = spawn(process.execPath, [CLI, 'serve', '--demo-port', '0'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let stderr = '';
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const deadline = Date.now() + 20_000;
      while (!/\n {2}curl [^\n]+\n/.test(stderr)) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`demo did not start: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const command = /\n {2}(curl [^\n]+)\n/.exec(stderr)?.[1] ?? '';
      expect(command).toMatch(/^curl --cacert certs\/out\/demo-server-ca\.pem --cert certs\/out\/demo-client\.pem --key certs\/out\/demo-client\.key https:\/\/localhost:\d+\/$/);
      const { stdout: body } = await run('bash', ['-c', command], { cwd });
      const echoed = JSON.parse(body) as { headers: Record<string, string> };
      expect(echoed.headers['x-dane-client-id']).toBe('demo-client._device.dancegate.test');
      expect(echoed.headers['x-dane-status']).toBe('authenticated');
      // One decision line and one access-log line on stdout, as JSON, joined by the connection id. The request's
      // line is written when its response has closed, which may be just after curl has its answer: wait for it.
      const lineDeadline = Date.now() + 5000;
      while (!stdout.includes('"event":"request"') && Date.now() < lineDeadline) await new Promise((r) => setTimeout(r, 25));
      const lines = stdout
        .trim()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const decisions = lines.filter((l) => l.msg === 'connection decision');
      const requests = lines.filter((l) => l.event === 'request');
      expect(decisions).toHaveLength(1);
      expect(decisions[0]).toMatchObject({ listener: 'demo', outcome: 'forwarded', reason: 'authenticated', claimedName: 'demo-client._device.dancegate.test', nameSource: 'san' });
      expect(requests).toHaveLength(1);
      expect(requests[0]).toMatchObject({ connectionId: decisions[0]?.connectionId, identity: 'demo-client._device.dancegate.test', method: 'GET', path: '/', status: 200 });
      // The dev PKI: private keys are written with mode 0600 and never printed.
      expect((await readdir(join(cwd, 'certs', 'out'))).sort()).toEqual(
        ['demo-client.key', 'demo-client.pem', 'demo-server-ca.pem', 'demo-server.key', 'demo-server.pem', 'demo-tlsa.txt', 'demo.yaml'].sort(),
      );
      expect(stderr + stdout).not.toContain('PRIVATE KEY');
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
      expect(stdout).toContain('"msg":"drained cleanly"');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

describe('dancegate config check', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-cfg-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  async function check(text: string): Promise<{ code: number; stdout: string; stderr: string }> {
    await writeFile(join(dir, 'c.yaml'), text);
    try {
      const r = await run(process.execPath, [CLI, 'config', 'check', '-c', join(dir, 'c.yaml')]);
      return { code: 0, ...r };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  it('exits 2 and lists every problem with its key path', async () => {
    const r = await check('resolver: {}\nlisteners:\n  - name: x\n    listen: 127.0.0.1\n    mode: tls\n');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('listeners[0].mode: Invalid option: expected one of "http"|"tcp"');
    expect(r.stderr).toContain('listeners[0].tls: Invalid input: expected object, received undefined');
    expect(r.stderr).toContain('listeners[0].routes: Invalid input: expected array, received undefined');
  });

  it('exits 0 for a valid file and says what it holds', async () => {
    const { createCertificate } = await import('../../certs/pki.js');
    const cert = await createCertificate({ commonName: 'x', dnsNames: ['x.test'] });
    await writeFile(join(dir, 's.pem'), cert.certPem);
    await writeFile(join(dir, 's.key'), cert.keyPem);
    await writeFile(join(dir, 't.txt'), `a.x.test TLSA 3 1 1 ${'ab'.repeat(32)}\n`);
    const r = await check(
      'resolver: { localTlsaFile: t.txt }\nlisteners:\n  - name: x\n    listen: 127.0.0.1:1\n    mode: tcp\n    tls: { certificates: [{ certFile: s.pem, keyFile: s.key }] }\n    routes: [{ upstream: "tcp://127.0.0.1:2", allow: ["*.x.test"] }]\n',
    );
    expect(r).toEqual({ code: 0, stdout: `${join(dir, 'c.yaml')}: valid (1 listener(s), 1 route(s))\n`, stderr: '' });
  });
});
