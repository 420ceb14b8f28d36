/**
 * draft-ietf-dance-client-auth-13 end to end: a real OpenSSL C client that
 * sends its name only in the dane_clientid extension of its TLS 1.3
 * Certificate message (asked for, empty, in our CertificateRequest), zones
 * signed for real and served by NSD behind a validating Unbound, dancegate
 * in HTTP and TCP mode in front of backends that count what reaches them.
 *
 * The client certificates are chosen so that only the extension can have
 * named the client: the DANE-EE device has no SAN at all; the DANE-TA device
 * (whose SAN must hold its name: DANE-TA binds the name through the SAN)
 * holds two allowlisted names, which the SAN source would refuse as
 * ambiguous.
 *
 * On node:tls (DANCEGATE_NATIVE=0, or an addon that did not build) the same
 * clients are run against the documented fallback instead: node:tls never
 * asks for the extension, so a draft -13 client never sends it and is known
 * by its SAN or refused; a strict route is a configuration error there.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import type { DecisionRecord } from '../../src/connection/decision-log.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { loadNativeEngine } from '../../src/tls/native-engine.js';
import { runDaneClientIdClient, type DaneClientIdForm, type DaneClientIdRun } from '../lab/c-client.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { curlWithCertificate, sClient, startCountingHttpBackend, startCountingTcpBackend, type CountingHttpBackend, type CountingTcpBackend } from '../lab/draft13-kit.js';
import { TEST_ENGINE } from '../lab/engine.js';
import { certificateMessage, records, stallingTls12Hello } from '../lab/client-hello-builder.js';
import { waitUntil } from '../lab/wait.js';

/** The listeners' dane_clientid codepoint (the default, daneClientIdType). */
const EXTENSION_TYPE = 65500;
const HANDSHAKE_FAILURE = 40;
const PROTOCOL_VERSION = 70;

/** DANE-EE (3 1 1); its certificate has no SAN. */
const EE = 'ee._device.clients.test';
/** DANE-TA (2 0 1, the fleet CA); its certificate's SAN holds it and TA_TWIN. */
const TA = 'ta._device.clients.test';
const TA_TWIN = 'ta-twin._device.clients.test';
/** DANE-EE (3 1 1) with the name as its one SAN dNSName: what curl and today's clients use. */
const SAN_ONLY = 'san._device.clients.test';
/** Allowlisted; the zone is signed but its TLSA record was tampered with after signing. */
const BOGUS = 'dev.bogus.test';
/** Allowlisted; the zone is unsigned. */
const INSECURE = 'dev.plain.test';
/** Not on any allowlist. */
const OUTSIDER = 'x.outsider.test';

const ALLOW = `['*._device.clients.test', '*.bogus.test', '*.plain.test']`;

/** What every test in this file shares: certificates, the DNSSEC lab, the counting backends. */
interface Bench {
  readonly dir: string;
  readonly lab: DnsLab;
  readonly httpBackend: CountingHttpBackend;
  readonly tcpBackend: CountingTcpBackend;
  readonly certs: Record<'ee' | 'ta' | 'sanOnly' | 'impostor', IssuedCertificate>;
}

async function startBench(): Promise<Bench> {
  const dir = await mkdtemp(join(tmpdir(), 'dancegate-draft13-'));
  const file = (name: string): string => join(dir, name);
  const serverCa = await createCertificate({ commonName: 'server CA', isCA: true });
  const server = await createCertificate({
    commonName: 'api.proxy.test',
    dnsNames: ['api.proxy.test', 'strict.proxy.test', 'tcp.proxy.test'],
    issuer: serverCa,
    extendedKeyUsage: 'server',
  });
  const fleetCa = await createCertificate({ commonName: 'fleet CA', isCA: true });
  const certs = {
    ee: await createCertificate({ commonName: 'device without a SAN' }),
    ta: await createCertificate({ commonName: 'fleet device', dnsNames: [TA, TA_TWIN], issuer: fleetCa }),
    sanOnly: await createCertificate({ commonName: SAN_ONLY, dnsNames: [SAN_ONLY] }),
    impostor: await createCertificate({ commonName: 'impostor without a SAN' }),
  };
  await writeFile(file('server.pem'), server.certPem + serverCa.certPem);
  await writeFile(file('server.key'), server.keyPem);
  await writeFile(file('server-ca.pem'), serverCa.certPem);
  for (const [name, c] of Object.entries(certs)) {
    // DANE-TA: the CA is sent after the leaf.
    await writeFile(file(`${name}.pem`), name === 'ta' ? c.certPem + fleetCa.certPem : c.certPem);
    await writeFile(file(`${name}.key`), c.keyPem);
  }
  const tlsa = (c: IssuedCertificate, usage: 2 | 3, selector: 0 | 1): string => formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(c.der), usage, selector, 1));
  const lab = await startDnssecLab([
    {
      origin: 'clients.test',
      signing: { algorithm: 13 },
      records: [`ee._device 300 IN TLSA ${tlsa(certs.ee, 3, 1)}`, `ta._device 300 IN TLSA ${tlsa(fleetCa, 2, 0)}`, `san._device 300 IN TLSA ${tlsa(certs.sanOnly, 3, 1)}`],
    },
    { origin: 'bogus.test', signing: { algorithm: 13 }, tamper: true, records: [`dev 300 IN TLSA ${tlsa(certs.ee, 3, 1)}`] },
    { origin: 'plain.test', signing: 'unsigned', records: [`dev 300 IN TLSA ${tlsa(certs.ee, 3, 1)}`] },
  ]);
  return { dir, lab, httpBackend: await startCountingHttpBackend(), tcpBackend: await startCountingTcpBackend(), certs };
}

async function stopBench(bench: Bench | undefined): Promise<void> {
  await bench?.httpBackend.close();
  await bench?.tcpBackend.close();
  await bench?.lab.stop();
  if (bench) await rm(bench.dir, { recursive: true, force: true });
}

const listenerYaml = (a: { name: string; port: number; mode: 'http' | 'tcp'; routes: string; engine?: string }): string => `  - name: ${a.name}
    listen: 127.0.0.1:${a.port}
    mode: ${a.mode}
    tls:
${a.engine === undefined ? '' : `      engine: ${a.engine}\n`}      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
${a.routes}`;

const strictHttpRoute = (backendPort: number): string => `      - serverNames: [strict.proxy.test]
        upstream: http://127.0.0.1:${backendPort}
        allow: ${ALLOW}
        strict: true
`;
const defaultHttpRoute = (backendPort: number): string => `      - upstream: http://127.0.0.1:${backendPort}
        allow: ${ALLOW}
`;
const defaultTcpRoute = (backendPort: number): string => `      - upstream: tcp://127.0.0.1:${backendPort}
        allow: ${ALLOW}
        proxyHeader: v2
`;

const configYaml = (lab: DnsLab, listeners: string, limits = ''): string => `resolver:
  servers:
    - address: 127.0.0.1:${lab.resolver.port}
limits:
  # Many refusals from 127.0.0.1 in a row: the penalty box would ban the tests' own address.
  penaltyBox: false
${limits}listeners:
${listeners}`;

const httpGet = (host: string): string => `GET /c HTTP/1.0\r\nHost: ${host}\r\n\r\n`;

/** Run the C client with the named certificate (a file of the bench) in `form`. */
function cClient(bench: Bench, a: { port: number; sni: string; name: string; cert: keyof Bench['certs']; form: DaneClientIdForm; request?: string }): Promise<DaneClientIdRun> {
  return runDaneClientIdClient({
    port: a.port,
    sni: a.sni,
    extensionType: EXTENSION_TYPE,
    name: a.name,
    certFile: join(bench.dir, `${a.cert}.pem`),
    keyFile: join(bench.dir, `${a.cert}.key`),
    request: a.request ?? 'ping\n',
    form: a.form,
  });
}

/** The decision fields these tests assert on. */
const brief = (d: DecisionRecord) => ({ outcome: d.outcome, reason: d.reason, nameSource: d.nameSource, claimedName: d.claimedName, tlsVersion: d.tlsVersion });

/** Hold a TLS 1.3 connection authenticated by SAN (node:tls client) open until `close()`. */
async function holdConnection(port: number, sni: string, cert: IssuedCertificate): Promise<{ close(): Promise<void> }> {
  const socket = tls.connect({ port, host: '127.0.0.1', servername: sni, cert: cert.certPem, key: cert.keyPem, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
  socket.on('error', () => undefined);
  await once(socket, 'secureConnect');
  return {
    async close() {
      if (socket.destroyed) return;
      socket.destroy();
      await once(socket, 'close');
    },
  };
}

if (TEST_ENGINE === 'native') {
  describe('draft -13 on the native engine: the name in the TLS 1.3 Certificate message', () => {
    let bench: Bench;
    let proxy: RunningProxy;
    let limited: RunningProxy;
    const ports = { http: 0, tcp: 0, limited: 0 };
    const decisions: DecisionRecord[] = [];
    const limitedDecisions: DecisionRecord[] = [];

    beforeAll(async () => {
      bench = await startBench();
      ports.http = await freePort();
      ports.tcp = await freePort();
      ports.limited = await freePort();
      const { httpBackend, tcpBackend, lab, dir } = bench;
      await writeFile(
        join(dir, 'dancegate.yaml'),
        configYaml(
          lab,
          listenerYaml({ name: 'api', port: ports.http, mode: 'http', routes: strictHttpRoute(httpBackend.port) + defaultHttpRoute(httpBackend.port) }) +
            listenerYaml({ name: 'tcp', port: ports.tcp, mode: 'tcp', routes: defaultTcpRoute(tcpBackend.port) }),
        ),
      );
      proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
      // A second proxy whose identities may hold one connection each (the limit is process-wide).
      await writeFile(
        join(dir, 'limited.yaml'),
        configYaml(lab, listenerYaml({ name: 'limited', port: ports.limited, mode: 'tcp', routes: defaultTcpRoute(tcpBackend.port) }), '  maxConnectionsPerIdentity: 1\n'),
      );
      limited = await startProxy(await loadConfig(join(dir, 'limited.yaml')), { log: (d) => limitedDecisions.push(d) });
    }, 120_000);

    afterAll(async () => {
      await proxy?.close();
      await limited?.close();
      await stopBench(bench);
    });

    beforeEach(async () => {
      decisions.length = 0;
      limitedDecisions.length = 0;
      bench.httpBackend.requests.length = 0;
      bench.tcpBackend.reset();
      await bench.lab.resetQueryLog();
    });

    describe('a client named only in its Certificate message authenticates', () => {
      it.each([
        ['DANE-EE (3 1 1), no SAN', EE, 'ee', '3 1 1'],
        ['DANE-TA (2 0 1), the CA after the leaf, two allowlisted SAN names', TA, 'ta', '2 0 1'],
      ] as const)('HTTP mode, strict route: %s', async (_label, name, cert, tlsa) => {
        const r = await cClient(bench, { port: ports.http, sni: 'strict.proxy.test', name, cert, form: 'certificate', request: httpGet('strict.proxy.test') });
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
        expect(r.stdout.endsWith(`hello ${name}\n`)).toBe(true);
        expect(bench.httpBackend.requests.map((h) => [h['x-dane-client-id'], h['x-dane-status']])).toEqual([[name, 'authenticated']]);
        expect(decisions).toHaveLength(1);
        expect(decisions[0]).toMatchObject({
          listener: 'api',
          route: 'strict.proxy.test',
          outcome: 'forwarded',
          reason: 'authenticated',
          claimedName: name,
          nameSource: 'certificate-extension',
          tlsVersion: 'TLSv1.3',
          tlsa,
        });
      });

      it.each([
        ['DANE-EE (3 1 1), no SAN', EE, 'ee', '3 1 1'],
        ['DANE-TA (2 0 1), the CA after the leaf, two allowlisted SAN names', TA, 'ta', '2 0 1'],
      ] as const)('HTTP mode, default route (the extension takes precedence over the SAN): %s', async (_label, name, cert, tlsa) => {
        const r = await cClient(bench, { port: ports.http, sni: 'api.proxy.test', name, cert, form: 'certificate', request: httpGet('api.proxy.test') });
        expect(r.code).toBe(0);
        expect(r.stdout.endsWith(`hello ${name}\n`)).toBe(true);
        expect(bench.httpBackend.requests.map((h) => h['x-dane-client-id'])).toEqual([name]);
        expect(decisions.map(brief)).toEqual([{ outcome: 'forwarded', reason: 'authenticated', nameSource: 'certificate-extension', claimedName: name, tlsVersion: 'TLSv1.3' }]);
        expect(decisions[0]?.tlsa).toBe(tlsa);
      });

      it('the twin SAN name of the DANE-TA device is chosen by the extension as well (and it has no record of its own: dns-no-tlsa)', async () => {
        const r = await cClient(bench, { port: ports.http, sni: 'strict.proxy.test', name: TA_TWIN, cert: 'ta', form: 'certificate', request: httpGet('strict.proxy.test') });
        expect([r.code, r.alert, r.stdout]).toEqual([3, HANDSHAKE_FAILURE, '']);
        expect(decisions.map(brief)).toEqual([{ outcome: 'refused', reason: 'dns-no-tlsa', nameSource: 'certificate-extension', claimedName: TA_TWIN, tlsVersion: 'TLSv1.3' }]);
        expect(bench.httpBackend.requests).toEqual([]);
      });

      it.each([
        ['DANE-EE (3 1 1), no SAN', EE, 'ee', '3 1 1'],
        ['DANE-TA (2 0 1), the CA after the leaf, two allowlisted SAN names', TA, 'ta', '2 0 1'],
      ] as const)('TCP mode: %s; the backend reads the name from the PROXY v2 TLV', async (_label, name, cert, tlsa) => {
        const r = await cClient(bench, { port: ports.tcp, sni: 'tcp.proxy.test', name, cert, form: 'certificate', request: 'ping\n' });
        expect(r.code).toBe(0);
        expect(r.stdout).toBe(`${name}: PING\n`);
        expect(bench.tcpBackend.names()).toEqual([name]);
        expect(bench.tcpBackend.headers[0]?.header.ssl).toMatchObject({ version: 'TLSv1.3' });
        expect(bench.tcpBackend.headers[0]?.header.tlvs.find((t) => t.type === 0xe6)?.value).toEqual(Buffer.from(tlsa.split(' ').map(Number)));
        expect(decisions).toHaveLength(1);
        expect(decisions[0]).toMatchObject({ listener: 'tcp', outcome: 'forwarded', reason: 'authenticated', claimedName: name, nameSource: 'certificate-extension', tlsVersion: 'TLSv1.3', tlsa });
      });
    });

    describe('refusals are handshake_failure in the handshake, and a refused client is never served', () => {
      const targets = [
        ['HTTP strict route', 'strict.proxy.test'],
        ['TCP default route', 'tcp.proxy.test'],
      ] as const;
      const portOf = (sni: string): number => (sni === 'tcp.proxy.test' ? ports.tcp : ports.http);
      const reached = (): number => bench.httpBackend.requests.length + bench.tcpBackend.accepted() + bench.tcpBackend.payloadBytes();

      it.each(
        targets.flatMap(([target, sni]) =>
          (
            [
              ['a key with no matching record for the name', EE, 'impostor', 'no-matching-record'],
              ['a name on no allowlist', OUTSIDER, 'ee', 'not-allowed'],
              ['a bogus DNSSEC answer', BOGUS, 'ee', 'dns-bogus'],
              ['an insecure (unsigned) zone', INSECURE, 'ee', 'dns-insecure'],
            ] as const
          ).map(([label, name, cert, reason]) => [target, label, sni, name, cert, reason] as const),
        ),
      )('%s: %s', async (_target, _label, sni, name, cert, reason) => {
        const r = await cClient(bench, { port: portOf(sni), sni, name, cert, form: 'certificate', request: sni === 'tcp.proxy.test' ? 'ping\n' : httpGet(sni) });
        // TLS 1.3: the client's handshake is done when it sends its Finished; the alert arrives on its first read.
        expect([r.code, r.alert]).toEqual([3, HANDSHAKE_FAILURE]);
        expect(r.stderr).toContain('alert: handshake_failure (40)');
        expect(r.stdout).toBe('');
        expect(decisions.map(brief)).toEqual([{ outcome: 'refused', reason, nameSource: 'certificate-extension', claimedName: name, tlsVersion: 'TLSv1.3' }]);
        expect(reached()).toBe(0);
        // Not allowlisted: refused before any DNS query. The others asked for their own name only (once, unless cached).
        const queried = await bench.lab.clientQueries();
        if (reason === 'not-allowed') expect(queried).toEqual([]);
        else expect(queried.filter((q) => q.name !== name || q.type !== 'TLSA')).toEqual([]);
      });

      it('the identity limit: a second connection of a name already connected is refused with handshake_failure', async () => {
        // The first connection, named by its SAN (node:tls cannot send the extension), holds the name's one slot.
        const holder = await holdConnection(ports.limited, 'tcp.proxy.test', bench.certs.sanOnly);
        try {
          await waitUntil('the first connection to be authenticated', () => limitedDecisions.length === 1);
          expect(limitedDecisions.map(brief)).toEqual([{ outcome: 'forwarded', reason: 'authenticated', nameSource: 'san', claimedName: SAN_ONLY, tlsVersion: 'TLSv1.3' }]);
          // The decision is logged before the forwarder's upstream connection is accepted.
          await waitUntil('the backend to accept the first connection', () => bench.tcpBackend.accepted() === 1);
          const acceptedBefore = bench.tcpBackend.accepted();
          const r = await cClient(bench, { port: ports.limited, sni: 'tcp.proxy.test', name: SAN_ONLY, cert: 'sanOnly', form: 'certificate' });
          expect([r.code, r.alert, r.stdout]).toEqual([3, HANDSHAKE_FAILURE, '']);
          expect(limitedDecisions.slice(1).map(brief)).toEqual([{ outcome: 'refused', reason: 'identity-limit', nameSource: 'certificate-extension', claimedName: SAN_ONLY, tlsVersion: 'TLSv1.3' }]);
          expect(bench.tcpBackend.accepted()).toBe(acceptedBefore);
          expect(bench.tcpBackend.payloadBytes()).toBe(0);
        } finally {
          await holder.close();
        }
        // Its slot is free again once the first connection is gone.
        await waitUntil('the slot to be released', async () => (await cClient(bench, { port: ports.limited, sni: 'tcp.proxy.test', name: SAN_ONLY, cert: 'sanOnly', form: 'certificate' })).code === 0);
      });
      it('a verification accepted inside the handshake gives the identity slot back when the handshake then fails (no leak)', async () => {
        // TLS 1.2, raw: ClientHello naming the client, then only its Certificate (a real certificate with a
        // matching record; no key needed), then nothing: accepted in the pause, the slot taken, and the
        // handshake never finishes. The client goes away; the one slot of the name must be free again.
        const raw = net.connect({ port: ports.limited, host: '127.0.0.1' });
        raw.on('error', () => undefined);
        await once(raw, 'connect');
        let received = Buffer.alloc(0);
        raw.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
        raw.write(stallingTls12Hello('tcp.proxy.test', SAN_ONLY));
        await waitUntil('ServerHelloDone', () => received.subarray(-4).equals(Buffer.from([14, 0, 0, 0])));
        raw.write(records(certificateMessage([bench.certs.sanOnly.der]), 16_384, 0x0303));
        // Accepted in the pause (the lookup and match ran), then the rest of the handshake is awaited: give it the time.
        await new Promise((resolve) => setTimeout(resolve, 300));
        raw.destroy();
        await waitUntil('the stalled connection to be decided', () => limitedDecisions.length === 1);
        expect(limitedDecisions.map(brief)).toEqual([{ outcome: 'refused', reason: 'client-closed', nameSource: 'clienthello-extension', claimedName: SAN_ONLY, tlsVersion: 'TLSv1.2' }]);
        const r = await cClient(bench, { port: ports.limited, sni: 'tcp.proxy.test', name: SAN_ONLY, cert: 'sanOnly', form: 'certificate' });
        expect(r.code).toBe(0);
        expect(limitedDecisions.slice(1).map(brief)).toEqual([{ outcome: 'forwarded', reason: 'authenticated', nameSource: 'certificate-extension', claimedName: SAN_ONLY, tlsVersion: 'TLSv1.3' }]);
      });
    });

    describe('a strict route is draft -13 only', () => {
      it('refuses a TLS 1.2 client (the C client, name in its ClientHello) with protocol_version, before any certificate', async () => {
        const r = await cClient(bench, { port: ports.http, sni: 'strict.proxy.test', name: EE, cert: 'ee', form: 'hello12', request: httpGet('strict.proxy.test') });
        expect([r.code, r.alert, r.stdout]).toEqual([2, PROTOCOL_VERSION, '']);
        await waitUntil('the decision', () => decisions.length === 1);
        expect(decisions.map((d) => [d.outcome, d.reason, d.route])).toEqual([['refused', 'handshake-failed', 'strict.proxy.test']]);
        expect(bench.httpBackend.requests).toEqual([]);
        expect(await bench.lab.clientQueries()).toEqual([]);
      });

      it('refuses openssl s_client -tls1_2 with protocol_version', async () => {
        const r = await sClient({
          port: ports.http,
          sni: 'strict.proxy.test',
          certFile: join(bench.dir, 'sanOnly.pem'),
          keyFile: join(bench.dir, 'sanOnly.key'),
          line: 'GET / HTTP/1.0\r\n',
          extra: ['-tls1_2'],
        });
        expect(r.code).not.toBe(0);
        expect(r.stdout).toBe('');
        expect(r.stderr).toContain('alert protocol version');
        await waitUntil('the decision', () => decisions.length === 1);
        expect(decisions.map((d) => [d.outcome, d.reason, d.route])).toEqual([['refused', 'handshake-failed', 'strict.proxy.test']]);
        expect(bench.httpBackend.requests).toEqual([]);
      });

      it('refuses a TLS 1.3 client without the extension (form none) whose SAN names an allowlisted, published identity: no-name', async () => {
        const r = await cClient(bench, { port: ports.http, sni: 'strict.proxy.test', name: SAN_ONLY, cert: 'sanOnly', form: 'none', request: httpGet('strict.proxy.test') });
        expect([r.code, r.alert, r.stdout]).toEqual([3, HANDSHAKE_FAILURE, '']);
        // The route's one source (certificate-extension) had nothing to say.
        expect(decisions.map(brief)).toEqual([{ outcome: 'refused', reason: 'no-name', nameSource: undefined, claimedName: undefined, tlsVersion: 'TLSv1.3' }]);
        expect(bench.httpBackend.requests).toEqual([]);
        expect(await bench.lab.clientQueries()).toEqual([]);
      });

      it('a TLS 1.3 client with the name in its ClientHello only (form hello13) is not served: it knows the extension as a ClientHello one and aborts on our CertificateRequest', async () => {
        const r = await cClient(bench, { port: ports.http, sni: 'strict.proxy.test', name: EE, cert: 'ee', form: 'hello13', request: httpGet('strict.proxy.test') });
        // RFC 8446 4.2: an extension recognised in a message it is not specified for is illegal_parameter (the client's OpenSSL: "bad extension").
        expect([r.code, r.alert, r.stdout]).toEqual([2, undefined, '']);
        expect(r.stderr).toContain('bad extension');
        await waitUntil('the decision', () => decisions.length === 1);
        // OpenSSL 3.0 (Node 20) says "sslv3 alert", 3.5 (Node 22 and later) "ssl/tls alert".
        expect(decisions.map((d) => [d.outcome, d.reason, d.detail])).toEqual([
          ['refused', 'handshake-failed', expect.stringMatching(/^(sslv3|ssl\/tls) alert illegal parameter \(alert received 47\)$/)],
        ]);
        expect(bench.httpBackend.requests).toEqual([]);
        expect(await bench.lab.clientQueries()).toEqual([]);
      });

      it('refuses curl (its name only in its SAN) with handshake_failure, never a 403', async () => {
        const r = await curlWithCertificate({
          port: ports.http,
          host: 'strict.proxy.test',
          caFile: join(bench.dir, 'server-ca.pem'),
          certFile: join(bench.dir, 'sanOnly.pem'),
          keyFile: join(bench.dir, 'sanOnly.key'),
        });
        expect(r.code).toBe(56);
        expect(r.stderr).toContain('alert handshake failure');
        expect(r.body).toBe('');
        expect(decisions.map(brief)).toEqual([{ outcome: 'refused', reason: 'no-name', nameSource: undefined, claimedName: undefined, tlsVersion: 'TLSv1.3' }]);
        expect(bench.httpBackend.requests).toEqual([]);
      });
    });

    describe('default mode on the same listener still serves the older forms', () => {
      it.each([
        ['hello12', 'TLSv1.2'],
        ['hello13', 'TLSv1.3'],
      ] as const)('the name in the ClientHello (%s)', async (form, tlsVersion) => {
        const r = await cClient(bench, { port: ports.http, sni: 'api.proxy.test', name: EE, cert: 'ee', form, request: httpGet('api.proxy.test') });
        expect(r.code).toBe(0);
        expect(r.stdout.endsWith(`hello ${EE}\n`)).toBe(true);
        expect(bench.httpBackend.requests.map((h) => h['x-dane-client-id'])).toEqual([EE]);
        expect(decisions.map(brief)).toEqual([{ outcome: 'forwarded', reason: 'authenticated', nameSource: 'clienthello-extension', claimedName: EE, tlsVersion }]);
      });

      it('the name in the ClientHello over TCP mode (hello13)', async () => {
        const r = await cClient(bench, { port: ports.tcp, sni: 'tcp.proxy.test', name: EE, cert: 'ee', form: 'hello13' });
        expect([r.code, r.stdout]).toEqual([0, `${EE}: PING\n`]);
        expect(decisions.map(brief)).toEqual([{ outcome: 'forwarded', reason: 'authenticated', nameSource: 'clienthello-extension', claimedName: EE, tlsVersion: 'TLSv1.3' }]);
      });

      it.each([['--tlsv1.3', 'TLSv1.3'] as const, ['--tls-max', 'TLSv1.2'] as const])('curl with the name in its SAN (%s)', async (flag, tlsVersion) => {
        const r = await curlWithCertificate({
          port: ports.http,
          host: 'api.proxy.test',
          caFile: join(bench.dir, 'server-ca.pem'),
          certFile: join(bench.dir, 'sanOnly.pem'),
          keyFile: join(bench.dir, 'sanOnly.key'),
          extra: flag === '--tls-max' ? ['--tls-max', '1.2'] : ['--tlsv1.3'],
        });
        expect([r.code, r.status, r.body]).toEqual([0, '200', `hello ${SAN_ONLY}`]);
        expect(decisions.map(brief)).toEqual([{ outcome: 'forwarded', reason: 'authenticated', nameSource: 'san', claimedName: SAN_ONLY, tlsVersion }]);
      });

      it('a default HTTP route answers a refused draft -13 client in HTTP (403), as refuseWith403 asks, and the backend sees nothing', async () => {
        const r = await cClient(bench, { port: ports.http, sni: 'api.proxy.test', name: EE, cert: 'impostor', form: 'certificate', request: httpGet('api.proxy.test') });
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
        expect(r.stdout.endsWith('Forbidden: DANE client authentication failed (no-matching-record)\n')).toBe(true);
        expect(decisions.map(brief)).toEqual([{ outcome: 'refused', reason: 'no-matching-record', nameSource: 'certificate-extension', claimedName: EE, tlsVersion: 'TLSv1.3' }]);
        expect(bench.httpBackend.requests).toEqual([]);
      });
    });
  });
} else {
  describe('draft -13 clients on node:tls (the fallback): never asked for the extension', () => {
    let bench: Bench;
    let proxy: RunningProxy;
    const ports = { http: 0, tcp: 0 };
    const decisions: DecisionRecord[] = [];

    beforeAll(async () => {
      bench = await startBench();
      ports.http = await freePort();
      ports.tcp = await freePort();
      const { httpBackend, tcpBackend, lab, dir } = bench;
      await writeFile(
        join(dir, 'dancegate.yaml'),
        configYaml(
          lab,
          listenerYaml({ name: 'api', port: ports.http, mode: 'http', routes: defaultHttpRoute(httpBackend.port) }) +
            listenerYaml({ name: 'tcp', port: ports.tcp, mode: 'tcp', routes: defaultTcpRoute(tcpBackend.port) }),
        ),
      );
      proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: (d) => decisions.push(d) });
    }, 120_000);

    afterAll(async () => {
      await proxy?.close();
      await stopBench(bench);
    });

    beforeEach(async () => {
      decisions.length = 0;
      bench.httpBackend.requests.length = 0;
      bench.tcpBackend.reset();
      await bench.lab.resetQueryLog();
    });

    it('the listeners run on node:tls', () => {
      expect(proxy.listeners.map((l) => [l.name, l.tlsEngine])).toEqual([
        ['api', 'node'],
        ['tcp', 'node'],
      ]);
    });

    it('HTTP: a draft -13 client whose SAN is allowlisted is known by its SAN, not by the name it would have sent', async () => {
      const r = await cClient(bench, { port: ports.http, sni: 'api.proxy.test', name: EE, cert: 'sanOnly', form: 'certificate', request: httpGet('api.proxy.test') });
      expect(r.code).toBe(0);
      expect(r.stdout.endsWith(`hello ${SAN_ONLY}\n`)).toBe(true);
      expect(bench.httpBackend.requests.map((h) => h['x-dane-client-id'])).toEqual([SAN_ONLY]);
      expect(decisions.map(brief)).toEqual([{ outcome: 'forwarded', reason: 'authenticated', nameSource: 'san', claimedName: SAN_ONLY, tlsVersion: 'TLSv1.3' }]);
    });

    it('TCP: the same, the PROXY v2 TLV carries the SAN name', async () => {
      const r = await cClient(bench, { port: ports.tcp, sni: 'tcp.proxy.test', name: EE, cert: 'sanOnly', form: 'certificate' });
      expect([r.code, r.stdout]).toEqual([0, `${SAN_ONLY}: PING\n`]);
      expect(bench.tcpBackend.names()).toEqual([SAN_ONLY]);
      expect(decisions.map(brief)).toEqual([{ outcome: 'forwarded', reason: 'authenticated', nameSource: 'san', claimedName: SAN_ONLY, tlsVersion: 'TLSv1.3' }]);
    });

    it('HTTP: a draft -13 client without a SAN is refused (no-name, 403) and the backend sees nothing', async () => {
      const r = await cClient(bench, { port: ports.http, sni: 'api.proxy.test', name: EE, cert: 'ee', form: 'certificate', request: httpGet('api.proxy.test') });
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
      expect(r.stdout.endsWith('Forbidden: DANE client authentication failed (no-name)\n')).toBe(true);
      // The SAN source answered (no allowlisted SAN dNSName): the record names it.
      expect(decisions.map(brief)).toEqual([{ outcome: 'refused', reason: 'no-name', nameSource: 'san', claimedName: undefined, tlsVersion: 'TLSv1.3' }]);
      expect(bench.httpBackend.requests).toEqual([]);
      expect(await bench.lab.clientQueries()).toEqual([]);
    });

    it('TCP: a draft -13 client without a SAN is refused (no-name): no application data, the backend sees nothing', async () => {
      const r = await cClient(bench, { port: ports.tcp, sni: 'tcp.proxy.test', name: EE, cert: 'ee', form: 'certificate' });
      // node:tls ends a refused TCP client without an alert: its first read meets the end of the stream.
      expect([r.code, r.alert, r.stdout]).toEqual([3, undefined, '']);
      expect(decisions.map(brief)).toEqual([{ outcome: 'refused', reason: 'no-name', nameSource: 'san', claimedName: undefined, tlsVersion: 'TLSv1.3' }]);
      expect(bench.tcpBackend.accepted()).toBe(0);
    });

    it('the ClientHello form still works (hello13): node:tls reads it from the ClientHello', async () => {
      const r = await cClient(bench, { port: ports.http, sni: 'api.proxy.test', name: EE, cert: 'ee', form: 'hello13', request: httpGet('api.proxy.test') });
      expect(r.code).toBe(0);
      expect(r.stdout.endsWith(`hello ${EE}\n`)).toBe(true);
      expect(decisions.map(brief)).toEqual([{ outcome: 'forwarded', reason: 'authenticated', nameSource: 'clienthello-extension', claimedName: EE, tlsVersion: 'TLSv1.3' }]);
    });

    it('a strict route on tls.engine auto does not start on node:tls: the listener names the route and why', async () => {
      const port = await freePort();
      await writeFile(join(bench.dir, 'strict-auto.yaml'), configYaml(bench.lab, listenerYaml({ name: 'sa', port, mode: 'http', routes: strictHttpRoute(bench.httpBackend.port) })));
      const load = loadNativeEngine();
      const started = await startProxy(await loadConfig(join(bench.dir, 'strict-auto.yaml')), { log: () => undefined }).then(
        async (p) => {
          await p.close();
          return undefined;
        },
        (err: unknown) => err,
      );
      expect((started as Error | undefined)?.message).toBe(
        `listener sa: routes[0] takes names only from the TLS 1.3 Certificate message (draft -13), which needs the native TLS engine, and it is unavailable: ${load.ok ? '' : load.reason}`,
      );
      // Nothing listens on its address.
      const refused = await new Promise<string>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve('connected');
        });
        s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      expect(refused).toBe('ECONNREFUSED');
    });

    it('a strict route on tls.engine node is a configuration error: the listener does not start', async () => {
      await writeFile(
        join(bench.dir, 'strict-node.yaml'),
        configYaml(bench.lab, listenerYaml({ name: 'api', port: ports.http, mode: 'http', engine: 'node', routes: strictHttpRoute(bench.httpBackend.port) })),
      );
      const error = await loadConfig(join(bench.dir, 'strict-node.yaml')).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toEqual([
        'listeners[0].routes[0].strict: needs the native TLS engine (tls.engine: native or auto): node:tls cannot ask for dane_clientid in its CertificateRequest',
        'listeners[0].routes[0].identitySources: certificate-extension alone needs the native TLS engine (tls.engine: native or auto): node:tls never asks for the name',
      ]);
    });
  });
}
