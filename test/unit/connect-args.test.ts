import { describe, expect, it } from 'vitest';
import { ALERT_NAMES, describeAlert, parseConnectArgs, type ConnectArgs } from '../../src/cli/connect.js';
import { TLS_ALERTS } from '../../src/reasons.js';

const NAME = 'dev1._device.clients.test';
const REQUIRED = ['--name', NAME, '--cert', 'c.pem', '--key', 'k.pem'];

function args(argv: readonly string[]): ConnectArgs {
  const parsed = parseConnectArgs(argv);
  if (parsed.kind !== 'args') throw new Error(`expected arguments, got ${JSON.stringify(parsed)}`);
  return parsed.args;
}

describe('parseConnectArgs', () => {
  it('defaults: form certificate over TLS 1.3 only, SNI = HOST, type 65500, 10 s, shutdown on stdin end', () => {
    expect(args(['device-gw.example.net:8443', ...REQUIRED])).toEqual({
      host: 'device-gw.example.net',
      port: 8443,
      name: NAME,
      certFile: 'c.pem',
      keyFile: 'k.pem',
      form: 'certificate',
      serverName: 'device-gw.example.net',
      caFile: undefined,
      insecure: false,
      alpn: undefined,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      extensionType: 65500,
      timeoutMs: 10000,
      noShutdown: false,
    });
  });

  it('the name is canonicalised (lower case, no trailing dot)', () => {
    expect(args(['h.test:1', ...REQUIRED, '--name', 'Dev1._Device.Clients.Test.']).name).toBe(NAME);
  });

  it('form clienthello: TLS 1.2 or 1.3; --tls1.2: 1.2 only', () => {
    expect(args(['h.test:1', ...REQUIRED, '--form', 'clienthello'])).toMatchObject({ form: 'clienthello', minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' });
    expect(args(['h.test:1', ...REQUIRED, '--form', 'clienthello', '--tls1.2'])).toMatchObject({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
  });

  it('an IP HOST sends no SNI unless --servername; IPv6 in brackets', () => {
    expect(args(['192.0.2.1:443', ...REQUIRED]).serverName).toBeUndefined();
    expect(args(['[2001:db8::1]:443', ...REQUIRED])).toMatchObject({ host: '2001:db8::1', port: 443, serverName: undefined });
    expect(args(['192.0.2.1:443', ...REQUIRED, '--servername', 'gw.example.net']).serverName).toBe('gw.example.net');
  });

  it('options: --ca, --insecure, repeated --alpn in order, --type, --timeout, --no-shutdown', () => {
    expect(args(['h.test:1', ...REQUIRED, '--ca', 'ca.pem', '--alpn', 'h2', '--alpn', 'http/1.1', '--type', '65280', '--timeout', '2500', '--no-shutdown'])).toMatchObject({
      caFile: 'ca.pem',
      insecure: false,
      alpn: ['h2', 'http/1.1'],
      extensionType: 65280,
      timeoutMs: 2500,
      noShutdown: true,
    });
    expect(args(['h.test:1', ...REQUIRED, '--insecure']).insecure).toBe(true);
  });

  it('--help', () => {
    expect(parseConnectArgs(['--help'])).toEqual({ kind: 'help' });
    expect(parseConnectArgs(['-h'])).toEqual({ kind: 'help' });
  });

  it.each<[readonly string[], string]>([
    [REQUIRED, 'exactly one HOST:PORT is required (dancegate connect HOST:PORT --name NAME --cert FILE --key FILE)'],
    [['a.test:1', 'b.test:2', ...REQUIRED], 'exactly one HOST:PORT is required (dancegate connect HOST:PORT --name NAME --cert FILE --key FILE)'],
    [['h.test', ...REQUIRED], "HOST:PORT expected (an IPv6 address in brackets: [::1]:443), got 'h.test'"],
    [['2001:db8::1:443', ...REQUIRED], "HOST:PORT expected (an IPv6 address in brackets: [::1]:443), got '2001:db8::1:443'"],
    [['[h.test]:443', ...REQUIRED], "'h.test' in brackets is not an IPv6 address"],
    [['h.test:0', ...REQUIRED], 'port must be 1 to 65535, got 0'],
    [['h.test:65536', ...REQUIRED], 'port must be 1 to 65535, got 65536'],
    [['h.test:1', '--cert', 'c.pem', '--key', 'k.pem'], '--name NAME is required (the client name sent in dane_clientid)'],
    [['h.test:1', '--name', NAME, '--key', 'k.pem'], '--cert FILE is required'],
    [['h.test:1', '--name', NAME, '--cert', 'c.pem'], '--key FILE is required'],
    [['h.test:1', ...REQUIRED, '--name', 'device1'], '--name "device1": name has a single label; a client name needs at least two'],
    [['h.test:1', ...REQUIRED, '--name', 'dev!1.example.com'], "--name \"dev!1.example.com\": label 1 contains '!'; only letters, digits, '-' and '_' are allowed"],
    [['h.test:1', ...REQUIRED, '--name', 'dev1..example.com'], '--name "dev1..example.com": label 2 is empty'],
    [['h.test:1', ...REQUIRED, '--form', 'san'], "--form must be certificate or clienthello, got 'san'"],
    [['h.test:1', ...REQUIRED, '--tls1.2'], '--tls1.2: the certificate form is TLS 1.3 only (draft -13); use --form clienthello'],
    [['h.test:1', ...REQUIRED, '--ca', 'ca.pem', '--insecure'], '--ca and --insecure exclude each other'],
    [['h.test:1', ...REQUIRED, '--servername', '192.0.2.1'], "--servername must be a DNS name, got '192.0.2.1'"],
    [['h.test:1', ...REQUIRED, '--servername', 'a b'], "--servername must be a DNS name, got 'a b'"],
    [['h.test:1', ...REQUIRED, '--alpn', ''], "--alpn: a protocol name is 1 to 255 bytes, got ''"],
    [['h.test:1', ...REQUIRED, '--type', '70000'], "--type must be an extension type from 0 to 65535, got '70000'"],
    [['h.test:1', ...REQUIRED, '--type', '0x10'], "--type must be an extension type from 0 to 65535, got '0x10'"],
    [['h.test:1', ...REQUIRED, '--timeout', '0'], "--timeout must be 1 to 3600000 milliseconds, got '0'"],
    [['h.test:1', ...REQUIRED, '--timeout', '1.5'], "--timeout must be 1 to 3600000 milliseconds, got '1.5'"],
  ])('%j: %s', (argv, message) => {
    expect(parseConnectArgs(argv)).toEqual({ kind: 'usage', message });
  });

  it('an unknown option is a usage error naming it', () => {
    const parsed = parseConnectArgs(['h.test:1', ...REQUIRED, '--sni', 'x']);
    expect(parsed.kind).toBe('usage');
    expect(parsed.kind === 'usage' ? parsed.message : '').toMatch(/^Unknown option '--sni'/);
  });
});

describe('alert names', () => {
  it('agree with the reason catalog for the alerts the proxy sends', () => {
    for (const [name, code] of Object.entries(TLS_ALERTS)) expect(ALERT_NAMES.get(code)).toBe(name);
  });

  it('name what a device meets, and say when a number is unknown', () => {
    expect(describeAlert(40)).toBe('handshake_failure (40)');
    expect(describeAlert(116)).toBe('certificate_required (116)');
    expect(describeAlert(48)).toBe('unknown_ca (48)');
    expect(describeAlert(70)).toBe('protocol_version (70)');
    expect(describeAlert(120)).toBe('no_application_protocol (120)');
    expect(describeAlert(250)).toBe('unknown alert (250)');
  });
});
