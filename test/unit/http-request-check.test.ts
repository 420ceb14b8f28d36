import { describe, expect, it } from 'vitest';
import { Allowlist } from '../../src/allowlist/allowlist.js';
import { IDENTITY_SOURCE_NAMES, type RouteConfig } from '../../src/config/types.js';
import { checkRequest, type RequestShape } from '../../src/forward/http-request-check.js';
import { poolOf } from './forward-fixtures.js';

const route = (serverNames: string[]): RouteConfig => ({
  serverNames,
  upstreams: poolOf(['http://127.0.0.1:8080']),
  allowlist: Allowlist.fromList(['*._device.example.test'], 'test'),
  allowlistSource: 'test',
  identity: { sources: [...IDENTITY_SOURCE_NAMES], strict: false },
  alpn: undefined,
});
const api = route(['api.example.test']);
const admin = route(['admin.example.test']);
const routes = [api, admin];

const h1 = (over: Partial<RequestShape>): RequestShape => ({
  protocol: 'h1',
  target: '/x',
  authority: 'api.example.test',
  hostCount: 1,
  transferEncoding: undefined,
  contentLength: undefined,
  endedWithHeaders: false,
  ...over,
});
const h2 = (over: Partial<RequestShape>): RequestShape => h1({ protocol: 'h2', hostCount: 0, endedWithHeaders: true, ...over });

describe('checkRequest', () => {
  const cases: Array<[string, RequestShape, unknown]> = [
    ['plain GET', h1({}), { ok: true, hasBody: false, contentLength: undefined }],
    ['Host with port and trailing dot', h1({ authority: 'API.example.test.:443' }), { ok: true, hasBody: false, contentLength: undefined }],
    ['HTTP/1.0 without Host: the SNI decides', h1({ authority: undefined, hostCount: 0 }), { ok: true, hasBody: false, contentLength: undefined }],
    ['absolute-form target', h1({ target: 'http://admin.example.test/x' }), { ok: false, refusal: 'bad-request', status: 400 }],
    ['asterisk-form', h1({ target: '*' }), { ok: false, refusal: 'bad-request', status: 400 }],
    ['network-path reference', h1({ target: '//admin.example.test/x' }), { ok: false, refusal: 'bad-request', status: 400 }],
    ['backslash network path', h1({ target: '/\\admin.example.test/x' }), { ok: false, refusal: 'bad-request', status: 400 }],
    ['two Host headers', h1({ hostCount: 2 }), { ok: false, refusal: 'bad-request', status: 400 }],
    ['Host with userinfo', h1({ authority: 'x@admin.example.test' }), { ok: false, refusal: 'bad-request', status: 400 }],
    ['Host of another route', h1({ authority: 'admin.example.test' }), { ok: false, refusal: 'misdirected', status: 421 }],
    ['gzip, chunked', h1({ transferEncoding: 'gzip, chunked' }), { ok: false, refusal: 'not-implemented', status: 501 }],
    ['chunked', h1({ transferEncoding: 'chunked' }), { ok: true, hasBody: true, contentLength: undefined }],
    ['Content-Length 5', h1({ contentLength: '5' }), { ok: true, hasBody: true, contentLength: '5' }],
    ['Content-Length 0', h1({ contentLength: '0' }), { ok: true, hasBody: false, contentLength: undefined }],
    ['Content-Length signed', h1({ contentLength: '+5' }), { ok: false, refusal: 'bad-request', status: 400 }],
    ['h2 GET', h2({}), { ok: true, hasBody: false, contentLength: undefined }],
    ['h2 :authority of another route', h2({ authority: 'admin.example.test' }), { ok: false, refusal: 'misdirected', status: 421 }],
    ['h2 :authority malformed', h2({ authority: 'api.example.test:99999' }), { ok: false, refusal: 'bad-request', status: 400 }],
    ['h2 body without length', h2({ endedWithHeaders: false }), { ok: true, hasBody: true, contentLength: undefined }],
    ['h2 body with length', h2({ endedWithHeaders: false, contentLength: '12' }), { ok: true, hasBody: true, contentLength: '12' }],
    ['h2 bad length', h2({ endedWithHeaders: false, contentLength: '1e3' }), { ok: false, refusal: 'bad-request', status: 400 }],
  ];
  it.each(cases)('%s', (_name, shape, expected) => {
    expect(checkRequest(shape, routes, api)).toMatchObject(expected as object);
  });

  it('names the header the client used in the 421 body', () => {
    const one = checkRequest(h1({ authority: 'admin.example.test' }), routes, api);
    const two = checkRequest(h2({ authority: 'admin.example.test' }), routes, api);
    expect(one.ok ? '' : one.body).toBe('Misdirected Request: the Host header does not belong to the TLS server name of this connection\n');
    expect(two.ok ? '' : two.body).toBe('Misdirected Request: the :authority does not belong to the TLS server name of this connection\n');
  });
});
