/**
 * examples/iot-fleet/mqtt as a test, every part real: 200 devices, each with
 * its own key published as a TLSA 3 1 1 record in a zone signed for real and
 * served by NSD behind a validating Unbound; mosquitto_pub/mosquitto_sub as
 * the devices; dancegate in MQTT mode loaded from the example's
 * dancegate.yaml; Mosquitto 2.0 from the example's mosquitto.conf and acl.
 * Every reading must reach the broker on its device's topic; a device that
 * claims another's client id is refused before the broker hears of it; the
 * broker's ACL (username = verified name) keeps a device off another's
 * topics; a device whose record is removed loses its open connection when
 * the record's TTL runs out, while the others keep theirs.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { parseConfigText } from '../../src/config/load.js';
import { loggerSink, type DecisionRecord } from '../../src/connection/decision-log.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { mqttConnectChannel, type MqttConnectEvent } from '../../src/forward/channels.js';
import { createLogger, settleLog } from '../../src/process/logging.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { logSessions } from '../../src/process/session-log.js';
import { freePort, startDnssecLab, type DnsLab } from '../lab/dnssec-lab.js';
import { runMosquittoPub, startMosquitto, startMosquittoSub, type ClientResult, type RunningMosquitto, type RunningSubscriber } from '../lab/mosquitto.js';
import { waitUntil } from '../lab/wait.js';

const DEVICES = 200;
const CONCURRENCY = 16;
const ZONE = 'fleet.test';
/** Every device record's TTL: how long a revocation may take to reach an open connection (plus jitter). */
const TLSA_TTL_SECONDS = 4;
const JITTER_SECONDS = 2;
/** Measured: lookup, re-signing and NSD reload, timer granularity, the client noticing the close. */
const SLACK_SECONDS = 4;
const EXAMPLE = join(import.meta.dirname, '../../examples/iot-fleet/mqtt');

/** One line of dancegate's log (pino JSON). */
type LogLine = Record<string, unknown> & { readonly msg: string };

interface Device {
  readonly label: string;
  readonly name: string;
  readonly cert: IssuedCertificate;
  readonly record: string;
}

/** The example's text with each `from` replaced; a `from` the example no longer has fails the test (the example changed: update the test with it). */
function substitute(text: string, file: string, pairs: ReadonlyArray<readonly [string, string]>): string {
  let out = text;
  for (const [from, to] of pairs) {
    if (!out.includes(from)) throw new Error(`examples/iot-fleet/mqtt/${file} no longer contains ${JSON.stringify(from)}`);
    out = out.split(from).join(to);
  }
  return out;
}

/** `fn` over `items`, at most `limit` at a time; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i] as T);
      }
    }),
  );
  return results;
}

const reading = (i: number): string => `{"celsius":${(15 + i / 10).toFixed(1)}}`;

describe('examples/iot-fleet/mqtt: 200 devices through dancegate to Mosquitto', () => {
  let dir: string;
  let lab: DnsLab;
  let broker: RunningMosquitto;
  let proxy: RunningProxy;
  let proxyPort: number;
  let monitor: RunningSubscriber;
  const devices: Device[] = [];
  const decisions: DecisionRecord[] = [];
  const mqttEvents: MqttConnectEvent[] = [];
  let logger: ReturnType<typeof createLogger>;
  const unsubscribe: Array<() => void> = [];
  const subscribers: RunningSubscriber[] = [];
  let markers = 0;

  const device = (n: number): Device => devices[n - 1] as Device;

  /** dancegate's log so far (the process logger, as `dancegate serve` writes it: decisions and session lines). */
  async function logLines(): Promise<LogLine[]> {
    await settleLog(logger);
    const text = await readFile(join(dir, 'dancegate.log'), 'utf8');
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as LogLine);
  }

  /** TLS to dancegate as `d`: the server verified against the test CA under the name localhost. */
  const asDevice = (d: Device, alpn: string | false = 'mqtt'): string[] => [
    '-h',
    'localhost',
    '-p',
    String(proxyPort),
    '--cafile',
    join(dir, 'server-ca.pem'),
    '--cert',
    join(dir, 'devices', `${d.label}.pem`),
    '--key',
    join(dir, 'devices', `${d.label}.key`),
    ...(alpn === false ? [] : ['--tls-alpn', alpn]),
  ];
  const straightToBroker = (user: string): string[] => ['-h', '127.0.0.1', '-p', String(broker.port), '-u', user, '-i', `${user}-sender`];

  const publish = (d: Device, payload: string): Promise<ClientResult> => runMosquittoPub([...asDevice(d), '-i', d.name, '-q', '1', '-t', `telemetry/${d.name}/temp`, '-m', payload]);

  /** mosquitto_sub through dancegate as `d`, on its commands topic; resolves once the broker has answered its SUBSCRIBE. */
  async function listenAs(d: Device): Promise<RunningSubscriber> {
    const from = broker.lines().length;
    const s = startMosquittoSub([...asDevice(d), '-i', d.name, '-q', '1', '-v', '-t', `commands/${d.name}/#`]);
    subscribers.push(s);
    await broker.waitForLine(new RegExp(`: Sending SUBACK to ${d.name.replace(/\./g, '\\.')}$`), from);
    return s;
  }

  /** Send a command to `d` straight to the broker, as the backend service (monitor). */
  async function command(d: Device, payload: string): Promise<void> {
    const sent = await runMosquittoPub([...straightToBroker('monitor'), '-q', '1', '-t', `commands/${d.name}/reboot`, '-m', payload]);
    expect(sent.code, sent.stderr).toBe(0);
  }

  /**
   * dev001 publishes a marker on its own topic and the monitor waits for it:
   * everything the broker accepted before it has reached the monitor by then.
   * Returns the monitor's lines since `from`, the marker excluded.
   */
  async function linesUntilMarker(from: number): Promise<string[]> {
    const marker = `marker-${++markers}`;
    const sent = await runMosquittoPub([...asDevice(device(1)), '-i', device(1).name, '-q', '1', '-t', `telemetry/${device(1).name}/marker`, '-m', marker]);
    expect(sent.code, sent.stderr).toBe(0);
    const line = `telemetry/${device(1).name}/marker ${marker}`;
    await waitUntil(`the monitor to see ${line}`, () => monitor.lines.includes(line));
    const seen = monitor.lines.slice(from);
    expect(seen.at(-1)).toBe(line);
    return seen.slice(0, -1);
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-mqtt-'));
    await mkdir(join(dir, 'devices'));
    const serverCa = await createCertificate({ commonName: 'fleet server CA', isCA: true });
    const server = await createCertificate({ commonName: 'mqtt.fleet.test', dnsNames: ['mqtt.fleet.test', 'localhost'], issuer: serverCa, extendedKeyUsage: 'server' });
    await writeFile(join(dir, 'server-ca.pem'), serverCa.certPem);
    await writeFile(join(dir, 'mqtt.pem'), server.certPem);
    await writeFile(join(dir, 'mqtt.key'), server.keyPem);
    const made = await Promise.all(
      Array.from({ length: DEVICES }, async (_, i) => {
        const label = `dev${String(i + 1).padStart(3, '0')}`;
        const name = `${label}._device.${ZONE}`;
        const cert = await createCertificate({ commonName: name, dnsNames: [name] });
        await writeFile(join(dir, 'devices', `${label}.pem`), cert.certPem);
        await writeFile(join(dir, 'devices', `${label}.key`), cert.keyPem);
        const record = `${label}._device ${TLSA_TTL_SECONDS} IN TLSA ${formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(cert.der), 3, 1, 1))}`;
        return { label, name, cert, record };
      }),
    );
    devices.push(...made);
    lab = await startDnssecLab([{ origin: ZONE, signing: { algorithm: 13 }, records: devices.map((d) => d.record) }]);

    // The broker: the example's mosquitto.conf and acl, on a free port, logging everything to stderr.
    const brokerPort = await freePort();
    await writeFile(join(dir, 'acl'), await readFile(join(EXAMPLE, 'acl'), 'utf8'));
    const mosquittoConf = substitute(await readFile(join(EXAMPLE, 'mosquitto.conf'), 'utf8'), 'mosquitto.conf', [
      ['listener 1883 127.0.0.1', `listener ${brokerPort} 127.0.0.1`],
      ['acl_file /etc/mosquitto/fleet/acl', `acl_file ${join(dir, 'acl')}`],
      ['log_dest file /var/log/mosquitto/mosquitto.log', 'log_dest stderr'],
      ['log_type information', 'log_type information\nlog_type all'],
    ]);
    broker = await startMosquitto({ dir, config: mosquittoConf, port: brokerPort });
    monitor = startMosquittoSub(['-h', '127.0.0.1', '-p', String(brokerPort), '-u', 'monitor', '-i', 'monitor', '-q', '1', '-v', '-t', 'telemetry/#']);
    subscribers.push(monitor);
    await broker.waitForLine(/: Sending SUBACK to monitor$/);

    // dancegate: the example's dancegate.yaml, pointed at this lab, this broker, and fast revalidation.
    proxyPort = await freePort();
    const text = substitute(await readFile(join(EXAMPLE, 'dancegate.yaml'), 'utf8'), 'dancegate.yaml', [
      ['listen: 127.0.0.1:9901', 'listen: 127.0.0.1:0'],
      ['address: 127.0.0.1:53 ', `address: "127.0.0.1:${lab.resolver.port}" `],
      ['maxPositiveTtlSeconds: 300', 'maxPositiveTtlSeconds: 2'],
      ['listen: 0.0.0.0:8883', `listen: 127.0.0.1:${proxyPort}`],
      [
        'revalidate: { mode: ttl, floorSeconds: 30, ceilingSeconds: 3600, jitterSeconds: 30, graceSeconds: 300 }',
        `revalidate: { mode: ttl, floorSeconds: 1, ceilingSeconds: 60, jitterSeconds: ${JITTER_SECONDS}, graceSeconds: 30 }`,
      ],
      ['upstream: tcp://127.0.0.1:1883', `upstream: tcp://127.0.0.1:${brokerPort}`],
      ["allow: ['*._device.fleet.example']", `allow: ['*._device.${ZONE}']`],
    ]);
    const config = await parseConfigText(text, join(dir, 'dancegate.yaml'));
    unsubscribe.push(mqttConnectChannel.subscribe((e) => mqttEvents.push(e)));
    logger = createLogger({ level: 'debug', destination: join(dir, 'dancegate.log') });
    unsubscribe.push(logSessions(logger));
    const logDecision = loggerSink(logger);
    proxy = await startProxy(config, {
      log: (d) => {
        decisions.push(d);
        logDecision(d);
      },
    });
  }, 60_000);

  afterAll(async () => {
    for (const u of unsubscribe) u();
    await new Promise<void>((resolve) => (logger ? logger.flush(() => resolve()) : resolve()));
    await Promise.all(subscribers.map((s) => s.stop()));
    await proxy?.close();
    await broker?.stop();
    await lab?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('200 devices publish through dancegate (16 at a time): the monitor gets exactly their 200 readings, each on its own topic', async () => {
    const results = await mapLimit(devices, CONCURRENCY, (d) => publish(d, reading(devices.indexOf(d) + 1)));
    expect(results.filter((r) => r.code !== 0).map((r) => r.stderr)).toEqual([]);
    const seen = await linesUntilMarker(0);
    const expected = devices.map((d, i) => `telemetry/${d.name}/temp ${reading(i + 1)}`);
    expect(seen).toHaveLength(DEVICES);
    expect([...seen].sort()).toEqual([...expected].sort());
    // The broker saw each device under its verified name, as client id and as username.
    const connected = broker.lines().filter((l) => / New client connected from 127\.0\.0\.1:\d+ as dev\d{3}\._device/.test(l));
    const who = connected.map((l) => / as (\S+) \(p2, c1, k60, u'([^']*)'\)\.$/.exec(l)?.slice(1, 3));
    expect(
      who
        .slice(0, DEVICES)
        .map((w) => w?.[0])
        .sort(),
    ).toEqual(devices.map((d) => d.name).sort());
    expect(who.every((w) => w !== undefined && w[0] === w[1])).toBe(true);
    // One decision per connection (the marker's too), each authenticated by its own record, ALPN mqtt.
    expect(decisions).toHaveLength(DEVICES + 1);
    expect(decisions.every((d) => d.outcome === 'forwarded' && d.reason === 'authenticated' && d.tlsa === '3 1 1' && d.alpn === 'mqtt')).toBe(true);
    expect(new Set(decisions.map((d) => d.claimedName)).size).toBe(DEVICES);
    expect(mqttEvents.filter((e) => e.outcome === 'forwarded')).toHaveLength(DEVICES + 1);
    expect(mqttEvents.every((e) => e.clientId === e.identity)).toBe(true);
  }, 120_000);

  it.each([
    ['MQTT 3.1.1', 2, 'Connection error: Connection Refused: identifier rejected.', []],
    ['MQTT 5', 0x85, 'Connection error: Client Identifier not valid', ['-V', 'mqttv5']],
  ] as const)('%s: dev001 claiming client id dev002 is refused (CONNACK %i) and the broker never hears of it', async (_v, code, message, version) => {
    const [dev1, dev2] = [device(1), device(2)];
    const brokerMark = broker.lines().length;
    const monitorMark = monitor.lines.length;
    const logMark = (await logLines()).length;
    const r = await runMosquittoPub([...asDevice(dev1), ...version, '-i', dev2.name, '-q', '1', '-t', `telemetry/${dev2.name}/temp`, '-m', '99.9']);
    expect(r.code).toBe(code);
    expect(r.stderr.split('\n')[0]).toBe(message);
    // No TCP connection reached the broker for it.
    expect(
      broker
        .lines()
        .slice(brokerMark)
        .filter((l) => /New connection|dev002/.test(l)),
    ).toEqual([]);
    const refusals = (await logLines()).slice(logMark).filter((l) => l.msg === 'mqtt connect refused');
    expect(refusals).toEqual([
      expect.objectContaining({
        level: 'warn',
        listener: 'mqtt',
        identity: dev1.name,
        clientId: dev2.name,
        reason: 'client-id-not-identity',
        detail: `client id "${dev2.name}" is not the identity ${dev1.name}`,
      }),
    ]);
    expect(await linesUntilMarker(monitorMark)).toEqual([]);
  });

  it("dev001 with its own client id, claiming username monitor, publishing on dev002's topic: the broker knows it as dev001 and its ACL drops it", async () => {
    const [dev1, dev2] = [device(1), device(2)];
    const brokerMark = broker.lines().length;
    const monitorMark = monitor.lines.length;
    const eventMark = mqttEvents.length;
    const r = await runMosquittoPub([...asDevice(dev1), '-i', dev1.name, '-u', 'monitor', '-P', 'guess', '-q', '1', '-t', `telemetry/${dev2.name}/temp`, '-m', '99.9']);
    expect(r.code, r.stderr).toBe(0);
    const since = broker.lines().slice(brokerMark);
    expect(since.filter((l) => l.includes(' New client connected ')).map((l) => l.replace(/^\d+: New client connected from 127\.0\.0\.1:\d+/, ''))).toEqual([
      ` as ${dev1.name} (p2, c1, k60, u'${dev1.name}').`,
    ]);
    expect(since.filter((l) => l.includes('Denied PUBLISH')).map((l) => l.replace(/^\d+: /, ''))).toEqual([
      `Denied PUBLISH from ${dev1.name} (d0, q1, r0, m1, 'telemetry/${dev2.name}/temp', ... (4 bytes))`,
    ]);
    expect(mqttEvents.slice(eventMark, eventMark + 1).map((e) => [e.identity, e.clientId, e.outcome, e.detail])).toEqual([
      [dev1.name, dev1.name, 'forwarded', 'username "monitor" replaced by the identity; password dropped'],
    ]);
    expect(await linesUntilMarker(monitorMark)).toEqual([]);
  });

  it('ALPN: the decision log line names mqtt when the device offered it, none when it offered none; offering only h2 is refused (no_application_protocol)', async () => {
    const d = device(3);
    const logMark = (await logLines()).length;
    const monitorMark = monitor.lines.length;
    const withAlpn = await publish(d, 'alpn');
    const without = await runMosquittoPub([...asDevice(d, false), '-i', d.name, '-q', '1', '-t', `telemetry/${d.name}/temp`, '-m', 'no-alpn']);
    const wrong = await runMosquittoPub([...asDevice(d, 'h2'), '-i', d.name, '-q', '1', '-t', `telemetry/${d.name}/temp`, '-m', 'h2']);
    expect([withAlpn.code, without.code]).toEqual([0, 0]);
    // mosquitto_pub reports the alert only as a TLS error, in connect (exit 1) or in its loop (MOSQ_ERR_TLS, exit 8) depending on timing.
    expect(wrong.code === 1 || wrong.code === 8).toBe(true);
    expect(wrong.stderr).toMatch(/^(Unable to connect \(A TLS error occurred\.\)\.|Error: A TLS error occurred\.)\n$/);
    const lines = (await logLines()).slice(logMark).filter((l) => l.msg === 'connection decision');
    expect(lines.map((l) => [l.claimedName ?? null, l.outcome, l.reason, 'alpn' in l ? l.alpn : '(none)'])).toEqual([
      [d.name, 'forwarded', 'authenticated', 'mqtt'],
      [d.name, 'forwarded', 'authenticated', '(none)'],
      [null, 'refused', 'no-application-protocol', '(none)'],
    ]);
    expect(await linesUntilMarker(monitorMark)).toEqual([`telemetry/${d.name}/temp alpn`, `telemetry/${d.name}/temp no-alpn`]);
  });

  it('one connection per device (newest-wins): a device that went silent and connects again replaces its old connection; the new one gets the commands', async () => {
    const d = device(198);
    const stale = await listenAs(d);
    const staleId = decisions.filter((x) => x.claimedName === d.name).at(-1)?.connectionId;
    // The device loses power: its process is frozen, its TCP connection stays open with nobody behind it.
    stale.signal('SIGSTOP');
    const logMark = (await logLines()).length;
    const fresh = await listenAs(d);
    const replaced = (await logLines()).slice(logMark).filter((l) => l.event === 'connection-replaced');
    expect(replaced).toEqual([
      expect.objectContaining({
        level: 'info',
        listener: 'mqtt',
        connectionId: staleId,
        identity: d.name,
        msg: 'connection replaced by a newer one of the same identity',
        detail: `a newer connection of ${d.name} took its place (maxConnectionsPerIdentity 1, newest-wins)`,
      }),
    ]);
    await command(d, 'after-replace');
    await fresh.waitForLines(1);
    expect(fresh.lines).toEqual([`commands/${d.name}/reboot after-replace`]);
    stale.signal('SIGKILL');
    expect((await stale.exit).signal).toBe('SIGKILL');
    expect(stale.lines).toEqual([]);
    await fresh.stop();
  });

  it('revocation: removing a device record closes its open connection within TTL + jitter; another device keeps its connection', async () => {
    const [revoked, kept] = [device(199), device(200)];
    const [revokedSub, keptSub] = await Promise.all([listenAs(revoked), listenAs(kept)]);

    await lab.updateZone(
      ZONE,
      devices.filter((d) => d !== revoked).map((d) => d.record),
    );
    const revokedAt = Date.now();
    const logMark = (await logLines()).length;
    const revalidationLines = async (): Promise<LogLine[]> => (await logLines()).slice(logMark).filter((l) => l.event === 'revalidation');
    const limitMs = (TLSA_TTL_SECONDS + JITTER_SECONDS + SLACK_SECONDS) * 1000;
    const exit = await Promise.race([revokedSub.exit, new Promise<undefined>((r) => setTimeout(() => r(undefined), limitMs + 2000))]);
    expect(exit, `${revoked.name}'s mosquitto_sub still running ${limitMs + 2000} ms after the revocation`).toBeDefined();
    expect((exit?.at ?? Infinity) - revokedAt).toBeLessThanOrEqual(limitMs);
    expect([exit?.code, revokedSub.stderr()]).toEqual([7, 'Error: The connection was lost.\n']);
    expect((await revalidationLines()).filter((l) => l.msg !== 'connection revalidated')).toEqual([
      expect.objectContaining({
        level: 'warn',
        msg: 'connection closed by revalidation',
        listener: 'mqtt',
        identity: revoked.name,
        outcome: 'revoked',
        reason: 'revoked',
        detail: `dns-no-tlsa: secure NXDOMAIN from udp://127.0.0.1:${lab.resolver.port}`,
      }),
    ]);
    // The other device was checked again after the revocation too, and kept.
    let keptChecks: LogLine[] = [];
    await waitUntil(`a revalidation of ${kept.name} after the revocation`, async () => (keptChecks = (await revalidationLines()).filter((l) => l.identity === kept.name)).length > 0, limitMs);
    expect(new Set(keptChecks.map((l) => [l.msg, l.outcome].join(' / ')))).toEqual(new Set(['connection revalidated / kept']));
    expect(keptSub.exited).toBe(false);
    await command(kept, 'now');
    await keptSub.waitForLines(1);
    expect(keptSub.lines).toEqual([`commands/${kept.name}/reboot now`]);
    expect(revokedSub.lines).toEqual([]);
  }, 40_000);
});
