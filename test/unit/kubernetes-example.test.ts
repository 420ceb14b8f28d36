/**
 * examples/kubernetes/dancegate.yaml, read as Kubernetes would: the embedded
 * configuration passes dancegate's own check, the ConfigMap is mounted so that
 * updates arrive (no subPath) and are reloaded (reload.watch), and the admin
 * port reaches the probes but is not exposed by the Service.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { createCertificate } from '../../certs/pki.js';
import { parseConfigText } from '../../src/config/load.js';

const EXAMPLE = join(import.meta.dirname, '../../examples/kubernetes/dancegate.yaml');

/** A Kubernetes object as far as this test reads it. */
type K8sObject = { kind: string; metadata: { name: string }; data?: Record<string, string>; spec?: Record<string, unknown> };
interface Mount {
  name: string;
  mountPath: string;
  subPath?: string;
}
interface Container {
  name: string;
  args?: string[];
  ports?: Array<{ name: string; containerPort: number }>;
  readinessProbe?: { httpGet?: { path: string; port: string } };
  livenessProbe?: { httpGet?: { path: string; port: string } };
  volumeMounts?: Mount[];
}
interface PodSpec {
  containers: Container[];
  volumes: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string } }>;
}

let objects: K8sObject[];
let dir: string;

function one(kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` '${name}'` : ''}, found ${found.length}`);
  return found[0] as K8sObject;
}

function podSpec(): PodSpec {
  const spec = one('Deployment').spec as { template: { spec: PodSpec } };
  return spec.template.spec;
}

function dancegateContainer(): Container {
  const c = podSpec().containers.find((x) => x.name === 'dancegate');
  if (!c) throw new Error('no dancegate container');
  return c;
}

beforeAll(async () => {
  const docs = parseAllDocuments(await readFile(EXAMPLE, 'utf8'));
  objects = docs.map((d) => {
    if (d.errors.length > 0) throw new Error(`${EXAMPLE}: ${d.errors[0]?.message}`);
    return d.toJS() as K8sObject;
  });
  dir = await mkdtemp(join(tmpdir(), 'dancegate-k8s-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('examples/kubernetes/dancegate.yaml', () => {
  it('holds exactly the objects its README describes', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'ConfigMap/dancegate-config',
      'ConfigMap/dancegate-unbound',
      'Deployment/dancegate',
      'Service/dancegate',
      'NetworkPolicy/dancegate',
    ]);
  });

  it('embeds a configuration that passes dancegate’s own check, with reload.watch on and admin on the pod address', async () => {
    const text = one('ConfigMap', 'dancegate-config').data?.['dancegate.yaml'];
    expect(text).toBeDefined();
    // The Secret's files, generated here and put where the configuration expects them.
    const server = await createCertificate({ commonName: 'api', dnsNames: ['api.example.test'], extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'tls.crt'), server.certPem);
    await writeFile(join(dir, 'tls.key'), server.keyPem);
    const local = (text ?? '').replaceAll('/etc/dancegate/tls/', `${dir}/`);
    expect(local).not.toBe(text);
    const config = await parseConfigText(local, join(dir, 'dancegate.yaml'));
    expect(config.watchConfig).toBe(true);
    expect(config.admin).toEqual({ host: '0.0.0.0', port: 9901 });
    expect(config.listeners.map((l) => `${l.name} ${l.mode} ${l.host}:${l.port}`)).toEqual(['api http 0.0.0.0:8443']);
  });

  it('mounts the configuration directory without subPath, at the path the container is started with', () => {
    const c = dancegateContainer();
    const volume = podSpec().volumes.find((v) => v.configMap?.name === 'dancegate-config');
    expect(volume).toBeDefined();
    const mount = c.volumeMounts?.find((m) => m.name === volume?.name);
    expect(mount).toEqual({ name: 'config', mountPath: '/etc/dancegate/config', readOnly: true });
    expect(c.args).toEqual(['serve', '-c', '/etc/dancegate/config/dancegate.yaml']);
    expect(c.volumeMounts?.find((m) => m.name === 'tls')?.mountPath).toBe('/etc/dancegate/tls');
  });

  it('probes /readyz and /healthz on the admin port, which the Service does not expose', () => {
    const c = dancegateContainer();
    expect(c.ports).toEqual([
      { name: 'https', containerPort: 8443 },
      { name: 'admin', containerPort: 9901 },
    ]);
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    const service = one('Service').spec as { ports: Array<{ targetPort: string | number }> };
    expect(service.ports.map((p) => p.targetPort)).toEqual(['https']);
  });

  it('admits the TLS port from anywhere and the admin port only from the monitoring namespace', () => {
    const spec = one('NetworkPolicy').spec as {
      podSelector: { matchLabels: Record<string, string> };
      policyTypes: string[];
      ingress: Array<{ from?: unknown[]; ports: Array<{ port: number }> }>;
    };
    expect(spec.podSelector.matchLabels).toEqual({ app: 'dancegate' });
    expect(spec.policyTypes).toEqual(['Ingress']);
    expect(spec.ingress).toEqual([
      { ports: [{ port: 8443, protocol: 'TCP' }] },
      { from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }], ports: [{ port: 9901, protocol: 'TCP' }] },
    ]);
  });
});
