import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { Allowlist } from '../../src/allowlist/allowlist.js';
import type { HttpModeConfig } from '../../src/config/types.js';
import { responseHeadersForClient, rewriteIdentityHeaders, type ForwardedIdentity } from '../../src/forward/http-headers.js';
import { nameFromCertificate, nameFromExtension } from '../../src/connection/identity.js';
import { fatalAlertRecord } from '../../src/connection/peek.js';
import { selectBySni } from '../../src/protocol/sni.js';

const allow = Allowlist.fromList(['*._device.example.test', 'api-client.example.test'], 'allow');

describe('nameFromExtension', () => {
  it.each([
    ['Sensor1._DEVICE.example.test.', { ok: true, name: 'sensor1._device.example.test', source: 'clienthello-extension', allowedBy: '*._device.example.test' }],
    ['outsider.example.test', { ok: false, reason: 'not-allowed', detail: 'outsider.example.test is not on the allowlist', source: 'clienthello-extension' }],
    ['a..b', { ok: false, reason: 'invalid-name', detail: 'dane_clientid: label 2 is empty', source: 'clienthello-extension' }],
    ['_device.example.test', { ok: false, reason: 'not-allowed', detail: '_device.example.test is not on the allowlist', source: 'clienthello-extension' }],
  ])('%j', (raw, expected) => {
    expect(nameFromExtension(raw, allow, 'clienthello-extension')).toEqual(expected);
  });
});

describe('nameFromCertificate', () => {
  it.each([
    [['sensor1._device.example.test'], { ok: true, name: 'sensor1._device.example.test', source: 'san', allowedBy: '*._device.example.test' }],
    [['www.example.test', 'api-client.example.test'], { ok: true, name: 'api-client.example.test', source: 'san', allowedBy: 'api-client.example.test' }],
    [['*.example.test', 'api-client.example.test'], { ok: true, name: 'api-client.example.test', source: 'san', allowedBy: 'api-client.example.test' }],
    [['api-client.example.test', 'API-CLIENT.example.test'], { ok: true, name: 'api-client.example.test', source: 'san', allowedBy: 'api-client.example.test' }],
    [[], { ok: false, reason: 'no-name', detail: 'no dane_clientid and no SAN dNSName in the certificate', source: 'san' }],
    [['www.example.test'], { ok: false, reason: 'not-allowed', detail: 'no SAN dNSName of the certificate is on the allowlist (www.example.test)', source: 'san' }],
    [
      ['a._device.example.test', 'b._device.example.test'],
      { ok: false, reason: 'ambiguous-name', detail: '2 allowlisted SAN dNSNames (a._device.example.test, b._device.example.test); send dane_clientid to choose', source: 'san' },
    ],
  ])('%j', (names, expected) => {
    expect(nameFromCertificate(names, allow)).toEqual(expected);
  });
});

describe('selectBySni', () => {
  const items = [
    { id: 'api', serverNames: ['api.example.test'] },
    { id: 'wild', serverNames: ['*.iot.example.test'] },
    { id: 'deep', serverNames: ['*.eu.iot.example.test'] },
    { id: 'default', serverNames: [] },
  ];
  it.each([
    ['api.example.test', 'api'],
    ['API.example.test', 'api'],
    ['x.iot.example.test', 'wild'],
    ['a.b.iot.example.test', 'wild'],
    ['x.eu.iot.example.test', 'deep'],
    ['iot.example.test', 'default'],
    ['other.test', 'default'],
    [undefined, 'default'],
  ])('%s -> %s', (sni, id) => {
    expect(selectBySni(items, sni, false)?.id).toBe(id);
  });
  it('without a default: undefined, or the first when asked', () => {
    const noDefault = items.slice(0, 2);
    expect(selectBySni(noDefault, 'other.test', false)).toBeUndefined();
    expect(selectBySni(noDefault, undefined, true)?.id).toBe('api');
  });
});

describe('rewriteIdentityHeaders', () => {
  const config: HttpModeConfig = {
    identityHeader: 'X-Client-Name',
    statusHeader: 'X-Dane-Status',
    forwardClientCert: true,
    forwardXfcc: true,
    tlsaHeader: 'X-Dane-Tlsa',
    refuseWith403: true,
    headersTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    upstreamConnections: 256,
    upstreamMaxPerClient: 64,
    upstreamQueueTimeoutMs: 5000,
    alpn: ['h2', 'http/1.1'],
    http2: { maxConcurrentStreams: 100, maxResetsPerSecond: 100, maxHeaderListBytes: 16384 },
    requestRatePerIdentity: undefined,
    accessLog: { enabled: true, sampleRate: 1, includeQuery: false },
  };
  const identity: ForwardedIdentity = {
    name: 'sensor1._device.example.test',
    status: 'authenticated',
    certificateDer: Buffer.from([1, 2, 3]),
    certificateSha256Hex: 'ab'.repeat(32),
    certificateSubject: 'CN=sensor1, O="Acme\\, Inc"',
    tlsa: [3, 1, 1],
    clientAddress: '192.0.2.7',
  };
  it('strips every incoming identity header and sets exactly ours', () => {
    const headers: IncomingHttpHeaders = {
      host: 'api.example.test',
      'x-client-name': 'forged',
      'x-dane-client-id': 'forged',
      'client-cert': ':Zm9v:',
      'client-cert-chain': ':Zm9v:',
      'x-forwarded-client-cert': 'By=forged',
      'x-forwarded-tls-client-cert': 'forged',
      'x-forwarded-tls-client-cert-info': 'forged',
      'x-forwarded-for': '203.0.113.1',
      forwarded: 'for=203.0.113.1',
      'x-dane-tlsa': '0 0 0',
      accept: '*/*',
    };
    rewriteIdentityHeaders(headers, identity, config);
    expect(headers).toEqual({
      host: 'api.example.test',
      accept: '*/*',
      'x-client-name': 'sensor1._device.example.test',
      'x-dane-status': 'authenticated',
      'x-forwarded-for': '192.0.2.7',
      'x-forwarded-proto': 'https',
      'client-cert': ':AQID:',
      'x-forwarded-client-cert': `Hash=${'ab'.repeat(32)};Subject="CN=sensor1, O=\\"Acme\\\\, Inc\\"";DNS=sensor1._device.example.test`,
      'x-dane-tlsa': '3 1 1',
    });
  });
  it('an unauthenticated client (policy optional) gets only the status header', () => {
    const headers: IncomingHttpHeaders = { 'x-client-name': 'forged', 'client-cert': ':Zm9v:' };
    rewriteIdentityHeaders(headers, { ...identity, name: undefined, status: 'dns-no-tlsa' }, config);
    expect(headers).toEqual({ 'x-dane-status': 'dns-no-tlsa', 'x-forwarded-for': '192.0.2.7', 'x-forwarded-proto': 'https' });
  });
});

describe('rewriteIdentityHeaders against smuggling', () => {
  const config: HttpModeConfig = {
    identityHeader: 'X-Dane-Client-Id',
    statusHeader: 'X-Dane-Status',
    forwardClientCert: false,
    forwardXfcc: true,
    tlsaHeader: undefined,
    refuseWith403: true,
    headersTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    upstreamConnections: 256,
    upstreamMaxPerClient: 64,
    upstreamQueueTimeoutMs: 5000,
    alpn: ['h2', 'http/1.1'],
    http2: { maxConcurrentStreams: 100, maxResetsPerSecond: 100, maxHeaderListBytes: 16384 },
    requestRatePerIdentity: undefined,
    accessLog: { enabled: true, sampleRate: 1, includeQuery: false },
  };
  const unauthenticated: ForwardedIdentity = {
    name: undefined,
    status: 'no-certificate',
    certificateDer: undefined,
    certificateSha256Hex: undefined,
    certificateSubject: undefined,
    tlsa: undefined,
    clientAddress: '192.0.2.7',
  };
  const base = { 'x-dane-status': 'no-certificate', 'x-forwarded-for': '192.0.2.7', 'x-forwarded-proto': 'https' };

  it.each([
    ['underscore variants (CGI/WSGI fold _ into -)', { 'x-dane_client-id': 'admin', x_dane_status: 'authenticated', client_cert: ':Zm9v:', 'x-forwarded_for': '1.2.3.4' }],
    ['hop-by-hop headers', { 'keep-alive': 'timeout=5', 'proxy-connection': 'keep-alive', 'proxy-authorization': 'Basic eA==' }],
    ['Connection naming headers, ours among them', { connection: 'X-Dane-Status, x-custom', 'x-custom': 'gone' }],
  ])('strips %s', (_label, sent) => {
    const headers: IncomingHttpHeaders = { accept: '*/*', ...sent };
    rewriteIdentityHeaders(headers, unauthenticated, config);
    expect(headers).toEqual({ accept: '*/*', ...base });
  });

  it.each([
    ['keep-alive (Node answers the client itself)', { connection: 'Keep-Alive, X-Dane-Status', 'x-dane-status': 'forged' }],
    ['close', { connection: 'close, X-Dane-Status' }],
    ['a WebSocket upgrade (the upstream client sets its own)', { connection: 'Upgrade, X-Dane-Client-Id', upgrade: 'websocket' }],
    ['TE other than trailers, and every proxy-* header', { te: 'gzip', 'proxy-foo': 'x', proxy_authorization: 'Basic eA==' }],
  ])('removes Connection and what it names: %s', (_label, sent) => {
    const headers: IncomingHttpHeaders = { ...sent };
    rewriteIdentityHeaders(headers, unauthenticated, config);
    expect(headers).toEqual(base);
  });

  it.each([
    ['Content-Length', { connection: 'keep-alive, Content-Length', 'content-length': '5' }, { 'content-length': '5' }],
    ['Transfer-Encoding', { connection: 'keep-alive, Transfer-Encoding', 'transfer-encoding': 'chunked' }, { 'transfer-encoding': 'chunked' }],
    ['Host', { connection: 'Host, content_length', host: 'api.example.test' }, { host: 'api.example.test' }],
  ])('Connection can never remove %s', (_label, sent, kept) => {
    const headers: IncomingHttpHeaders = { ...sent };
    rewriteIdentityHeaders(headers, unauthenticated, config);
    expect(headers).toEqual({ ...kept, ...base });
  });

  it.each([
    ['content_length', '5'],
    ['transfer_encoding', 'chunked'],
    ['Content_Length', '7'],
  ])('drops a %s header a CGI stack would fold into a framing header', (name, value) => {
    const headers: IncomingHttpHeaders = { [name]: value, accept: '*/*' };
    rewriteIdentityHeaders(headers, unauthenticated, config);
    expect(headers).toEqual({ accept: '*/*', ...base });
  });

  it('reports TE: trailers (the one TE value passed on)', () => {
    expect(rewriteIdentityHeaders({ te: 'trailers, deflate;q=0.5' }, unauthenticated, config)).toEqual({ teTrailers: true });
    expect(rewriteIdentityHeaders({ te: 'deflate' }, unauthenticated, config)).toEqual({ teTrailers: false });
  });

  it('escapes a non-ASCII or control character in a certificate subject instead of sending it raw', () => {
    const headers: IncomingHttpHeaders = {};
    rewriteIdentityHeaders(
      headers,
      { ...unauthenticated, name: 'd._device.example.test', status: 'authenticated', certificateDer: Buffer.from([1]), certificateSha256Hex: '00', certificateSubject: 'CN=dev€\r\nX: y' },
      config,
    );
    expect(headers['x-forwarded-client-cert']).toBe('Hash=00;Subject="CN=dev\\xe2\\x82\\xac\\x0d\\x0aX: y";DNS=d._device.example.test');
  });
});

describe('responseHeadersForClient', () => {
  it.each([
    [
      'hop-by-hop headers and what Connection names',
      { connection: 'X-Internal', 'x-internal': 's', 'keep-alive': 'timeout=1', 'proxy-authenticate': 'Basic', upgrade: 'h2c', te: 'x', 'content-type': 'text/plain' },
      { 'content-type': 'text/plain' },
    ],
    ['Content-Length survives Connection naming it', { connection: 'Content-Length', 'content-length': '3' }, { 'content-length': '3' }],
    ['Transfer-Encoding goes, and a Content-Length beside it', { 'transfer-encoding': 'chunked', 'content-length': '3', 'set-cookie': ['a=1', 'b=2'] }, { 'set-cookie': ['a=1', 'b=2'] }],
  ])('%s', (_label, upstream, expected) => {
    const input: Record<string, string | string[] | undefined> = { ...upstream };
    expect(responseHeadersForClient(input)).toEqual(expected);
    expect(input).toEqual(upstream);
  });
});

describe('fatalAlertRecord', () => {
  it('is a TLS alert record: fatal handshake_failure', () => {
    expect([...fatalAlertRecord()]).toEqual([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40]);
    expect([...fatalAlertRecord(112)]).toEqual([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]);
  });
});
