/**
 * What a reload keeps and drops: the admission state (penalty box, per-IP
 * and per-identity counts) survives when `limits` did not change, so a
 * reload forgives nothing, and starts afresh under changed limits; a
 * prepared but uncommitted reload (the cluster's first phase) is aborted by
 * a drain, so the listener it started does not outlive the shutdown.
 */
import * as net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort } from '../lab/dnssec-lab.js';

const ATTACKER = '192.0.2.7';

describe('reload and admission state', () => {
  let dir: string;
  let proxy: RunningProxy;
  const configFile = (): string => join(dir, 'dancegate.yaml');
  const write = (allow: string, failures: number, extraListener = ''): Promise<void> =>
    writeFile(
      configFile(),
      `resolver: { localTlsaFile: tlsa.txt }
limits:
  penaltyBox: { failures: ${failures}, windowMs: 60000, banMs: 60000 }
listeners:
  - name: api
    listen: 127.0.0.1:0
    mode: http
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstream: http://127.0.0.1:9
        allow: ['${allow}']
${extraListener}`,
    );

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-reload-admission-'));
    const server = await createCertificate({ commonName: 'proxy.test', dnsNames: ['proxy.test'], extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'server.pem'), server.certPem);
    await writeFile(join(dir, 'server.key'), server.keyPem);
    await writeFile(join(dir, 'tlsa.txt'), '');
    await write('*._device.a.test', 3);
    proxy = await startProxy(await loadConfig(configFile()), { log: () => undefined });
  });
  afterAll(async () => {
    await proxy?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a banned address stays banned across a reload with the same limits', async () => {
    for (let i = 0; i < 3; i++) proxy.admission.recordFailure(ATTACKER);
    expect(proxy.admission.admitConnection(ATTACKER)).toMatchObject({ ok: false, reason: 'penalty-box' });

    await write('*._device.b.test', 3);
    expect(await proxy.reload(await loadConfig(configFile()))).toMatchObject({ ok: true, generation: 2 });
    expect(proxy.config.listeners[0]?.routes[0]?.allowlist.patterns).toEqual(['*._device.b.test']);
    expect(proxy.admission.admitConnection(ATTACKER)).toMatchObject({ ok: false, reason: 'penalty-box' });
  });

  it('changed limits start a fresh admission state under the new limits', async () => {
    await write('*._device.b.test', 5);
    expect(await proxy.reload(await loadConfig(configFile()))).toMatchObject({ ok: true, generation: 3 });
    const admitted = proxy.admission.admitConnection(ATTACKER);
    expect(admitted.ok).toBe(true);
    if (admitted.ok) admitted.release();
    for (let i = 0; i < 4; i++) proxy.admission.recordFailure(ATTACKER);
    const fourth = proxy.admission.admitConnection(ATTACKER);
    expect(fourth.ok).toBe(true);
    if (fourth.ok) fourth.release();
    proxy.admission.recordFailure(ATTACKER);
    expect(proxy.admission.admitConnection(ATTACKER)).toMatchObject({ ok: false, reason: 'penalty-box' });
  });

  it('a drain aborts a prepared reload: the listener it bound is closed, the old generation stays', async () => {
    const port = await freePort();
    await write(
      '*._device.b.test',
      5,
      `  - name: extra
    listen: 127.0.0.1:${port}
    mode: tcp
    tls: { certificates: [{ certFile: server.pem, keyFile: server.key }] }
    routes:
      - upstream: tcp://127.0.0.1:9
        allow: ['*._device.b.test']
`,
    );
    const prepared = await proxy.prepareReload(await loadConfig(configFile()));
    if ('error' in prepared) throw new Error(prepared.error);
    const accepts = (): Promise<boolean> =>
      new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
    expect(await accepts()).toBe(true);
    expect(await proxy.drain(1000)).toBe(true);
    expect(await accepts()).toBe(false);
    expect(proxy.generation).toBe(3);
    expect(prepared.commit()).toMatchObject({ ok: false, error: 'this reload was already settled' });
  });
});
