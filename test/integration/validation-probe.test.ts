/**
 * The resolver-validation probe against real parts: NSD serving a signed
 * and an unsigned zone, the lab's validating Unbound, and a second Unbound
 * that resolves the same zones without validating (no trust anchor, no
 * validator module): the operator's "dancegate starts silently while every
 * client is refused" case.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDnsQuery } from '../../src/lookup/build.js';
import { defaultProbeName, probeValidation } from '../../src/lookup/validation-probe.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { startSilentDns, type SilentDns } from '../lab/silent-dns.js';
import { stopProcess } from '../lab/process.js';

const run = promisify(execFile);
const DIGEST = 'ab'.repeat(32);

/** Unbound without the validator module or a trust anchor, stub zones pointing at the lab's NSD. */
async function startPlainUnbound(lab: DnsLab, zones: readonly string[]): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const conf = join(lab.dir, 'unbound-plain.conf');
  await writeFile(
    conf,
    [
      'server:',
      `  interface: 127.0.0.1@${port}`,
      `  port: ${port}`,
      '  do-ip6: no',
      '  username: ""',
      '  chroot: ""',
      `  directory: "${lab.dir}"`,
      `  pidfile: "${join(lab.dir, 'unbound-plain.pid')}"`,
      '  do-not-query-localhost: no',
      '  module-config: "iterator"',
      '  local-zone: "test." nodefault',
      `  logfile: "${join(lab.dir, 'unbound-plain.log')}"`,
      '  use-syslog: no',
      '  verbosity: 1',
      '  num-threads: 1',
      '  qname-minimisation: no',
      '  access-control: 127.0.0.0/8 allow',
      ...zones.flatMap((z) => ['stub-zone:', `  name: "${z}"`, `  stub-addr: ${lab.authoritative.host}@${lab.authoritative.port}`]),
      '',
    ].join('\n'),
  );
  await run('unbound-checkconf', [conf]);
  const child = spawn('unbound', ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'ignore'] });
  // Killed with the test process if afterAll never runs.
  process.once('exit', () => child.kill('SIGKILL'));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the plain Unbound exited with ${child.exitCode}`);
    const up = await run('dig', ['+time=1', '+tries=1', '@127.0.0.1', '-p', String(port), `${zones[0]}.`, 'SOA'])
      .then(({ stdout }) => /status: NOERROR/.test(stdout))
      .catch(() => false);
    if (up) return { port, child };
    if (Date.now() > deadline) {
      await stopProcess(child);
      throw new Error(`the plain Unbound did not answer on port ${port}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('validation probe against real resolvers', () => {
  let lab: DnsLab;
  let plain: { port: number; child: ChildProcess } | undefined;
  let silent: SilentDns | undefined;

  beforeAll(async () => {
    lab = await startDnssecLab([
      { origin: 'signed.test', signing: { algorithm: 13 }, records: [`sensor1._device IN TLSA 3 1 1 ${DIGEST}`] },
      { origin: 'plain.test', signing: 'unsigned', records: [`sensor1._device IN TLSA 3 1 1 ${DIGEST}`] },
    ]);
    plain = await startPlainUnbound(lab, ['signed.test', 'plain.test']);
    silent = await startSilentDns('drop');
  }, 120_000);

  afterAll(async () => {
    if (plain) await stopProcess(plain.child);
    await silent?.stop();
    await lab?.stop();
  });

  const validating = () => buildDnsQuery({ servers: [{ host: '127.0.0.1', port: lab.resolver.port, transport: 'udp' }], attemptTimeoutMs: 1500, totalTimeoutMs: 4000 });
  const notValidating = () => buildDnsQuery({ servers: [{ host: '127.0.0.1', port: plain?.port ?? 0, transport: 'udp' }], attemptTimeoutMs: 1500, totalTimeoutMs: 4000 });

  const derived = defaultProbeName({ resolver: {}, listeners: [{ routes: [{ allowlist: { patterns: ['*._device.signed.test'] } }] }] });

  it('derives the probe name from the allowlist', () => {
    expect(derived).toBe('_dancegate-probe._device.signed.test');
  });

  it('a validating resolver: ok with a secure NXDOMAIN for the derived name', async () => {
    const result = await probeValidation(validating(), derived as string);
    expect(result).toEqual({
      ok: true,
      detail: `the resolver validates DNSSEC (secure denial for _dancegate-probe._device.signed.test: secure NXDOMAIN from udp://127.0.0.1:${lab.resolver.port})`,
    });
  });

  it('a validating resolver: ok with a secure answer for a name with TLSA records', async () => {
    const result = await probeValidation(validating(), 'sensor1._device.signed.test');
    expect(result).toEqual({
      ok: true,
      detail: `the resolver validates DNSSEC (secure answer for sensor1._device.signed.test: 1 TLSA record(s) from udp://127.0.0.1:${lab.resolver.port})`,
    });
  });

  it('a resolver without the trust anchor: not-validating, said in words', async () => {
    for (const name of [derived as string, 'sensor1._device.signed.test']) {
      const result = await probeValidation(notValidating(), name);
      expect(result.ok).toBe(false);
      expect(!result.ok && result.problem).toBe('not-validating');
      expect(!result.ok && result.message).toMatch(
        new RegExp(
          `^your resolver does not validate DNSSEC \\(answer for ${name.replaceAll('.', '\\.')} without the AD bit: answer is not DNSSEC-validated \\(AD=0, (NXDOMAIN|NOERROR)\\) from udp://127\\.0\\.0\\.1:${plain?.port}\\); dancegate refuses every client until it does\\.`,
        ),
      );
    }
  });

  it('a validating resolver asked for a name in an unsigned zone: not-validating, pointing at the probe name', async () => {
    const result = await probeValidation(validating(), '_dancegate-probe._device.plain.test');
    expect(result.ok).toBe(false);
    expect(!result.ok && result.problem).toBe('not-validating');
    expect(!result.ok && result.message).toContain('set resolver.validationProbe.name to a name in a signed zone');
  });

  it('a resolver that does not answer: unreachable', async () => {
    const dns = buildDnsQuery({ servers: [{ host: '127.0.0.1', port: silent?.port ?? 0, transport: 'udp' }], attemptTimeoutMs: 200, totalTimeoutMs: 500 });
    const result = await probeValidation(dns, derived as string);
    expect(result).toEqual({
      ok: false,
      problem: 'unreachable',
      message: `the resolver did not answer the validation probe for _dancegate-probe._device.signed.test: no answer from udp://127.0.0.1:${silent?.port} within 200 ms`,
    });
  });
});
