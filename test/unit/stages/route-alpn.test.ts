/**
 * Routing by ALPN (issue 14): the protocol the handshake will choose is
 * ours in our order of preference (the first of ours the client offers); a
 * client offering ALPN but none of ours is refused before any route
 * (no_application_protocol); a route that names ALPN protocols is chosen
 * only for connections that negotiate one of them, before any route
 * without alpn.
 */
import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../../../src/config/types.js';
import { alpnAgreed, negotiatedAlpn, routeBySni } from '../../../src/connection/stages/route.js';

/** Only the fields routing reads. */
const route = (label: string, serverNames: string[], alpn?: string[]): RouteConfig => ({ label, serverNames, alpn }) as unknown as RouteConfig;

describe('negotiatedAlpn: the server chooses, in its own order', () => {
  it.each<[string, string[], string[] | undefined, string | undefined]>([
    ['our first when the client offers both', ['x-other', 'mqtt'], ['mqtt', 'x-other'], 'mqtt'],
    ['our first even when the client lists it last', ['h2', 'http/1.1', 'x-other', 'mqtt'], ['mqtt', 'x-other'], 'mqtt'],
    ['our second when the client lacks our first', ['x-other', 'h2'], ['mqtt', 'x-other'], 'x-other'],
    ['none in common', ['h2', 'http/1.1'], ['mqtt', 'x-other'], undefined],
    ['the client offers nothing', [], ['mqtt'], undefined],
    ['we offer nothing (no alpn on the listener)', ['mqtt'], undefined, undefined],
    ['exact bytes: case matters', ['MQTT'], ['mqtt'], undefined],
    ['exact bytes: no prefix match', ['radius/1'], ['radius/1.1', 'radius/1.0'], undefined],
    ['radius/1.0 when that is all the client speaks', ['radius/1.0'], ['radius/1.1', 'radius/1.0'], 'radius/1.0'],
  ])('%s', (_label, offered, ours, expected) => {
    expect(negotiatedAlpn(offered, ours)).toBe(expected);
  });
});

describe('alpnAgreed: RFC 7301, refused only when the client offered ALPN and none of ours', () => {
  const refused = (detail: string): unknown => ({ ok: false, reason: 'no-application-protocol', detail });
  it.each<[string, string[], string[] | undefined, unknown]>([
    ['we offer nothing: any client passes', ['h2'], undefined, { ok: true, value: undefined }],
    ['the client offers nothing: it passes (and gets no ALPN)', [], ['mqtt'], { ok: true, value: undefined }],
    ['one in common', ['h2', 'mqtt'], ['mqtt'], { ok: true, value: undefined }],
    ['none in common', ['h2'], ['mqtt', 'x-other'], refused('the client offered "h2"; this listener speaks mqtt, x-other')],
    ['case matters', ['MQTT'], ['mqtt'], refused('the client offered "MQTT"; this listener speaks mqtt')],
    [
      'eight offers are shown, then the count',
      Array.from({ length: 10 }, (_, i) => `p${i}`),
      ['mqtt'],
      refused('the client offered "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", … (10); this listener speaks mqtt'),
    ],
    ['eight offers exactly: no count', Array.from({ length: 8 }, (_, i) => `p${i}`), ['mqtt'], refused('the client offered "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"; this listener speaks mqtt')],
    ['quotes and control bytes in an offer are escaped', ['a"b', 'c\u0000d'], ['mqtt'], refused('the client offered "a\\"b", "c\\u0000d"; this listener speaks mqtt')],
  ])('%s', (_label, offered, ours, expected) => {
    expect(alpnAgreed(offered, ours, negotiatedAlpn(offered, ours))).toEqual(expected);
  });
});

describe('routeBySni with ALPN', () => {
  const mqttExact = route('mqtt-exact', ['broker.example.test'], ['mqtt']);
  const otherExact = route('other-exact', ['broker.example.test'], ['x-other']);
  const plainExact = route('plain-exact', ['broker.example.test']);
  const mqttWild = route('mqtt-wild', ['*.example.test'], ['mqtt']);
  const mqttDefault = route('mqtt-default', [], ['mqtt']);
  const plainDefault = route('plain-default', []);
  const both = route('both', ['broker.example.test'], ['mqtt', 'x-other']);

  it.each<[string, RouteConfig[], string | undefined, string | undefined, RouteConfig]>([
    ['the ALPN route before a route without alpn of the same name (listed first)', [plainExact, mqttExact], 'broker.example.test', 'mqtt', mqttExact],
    ['the ALPN route before a route without alpn of the same name (listed last)', [mqttExact, plainExact], 'broker.example.test', 'mqtt', mqttExact],
    ['the route of the negotiated protocol among two of the same name', [mqttExact, otherExact], 'broker.example.test', 'x-other', otherExact],
    ['a route naming several protocols serves each', [both, plainExact], 'broker.example.test', 'x-other', both],
    ['another protocol than the ALPN route names: the route without alpn', [mqttExact, plainExact], 'broker.example.test', 'x-other', plainExact],
    ['no ALPN negotiated: the route without alpn', [mqttExact, plainExact], 'broker.example.test', undefined, plainExact],
    ['an ALPN wildcard route before an exact route without alpn', [plainExact, mqttWild], 'broker.example.test', 'mqtt', mqttWild],
    ['an ALPN default route before an exact route without alpn', [plainExact, mqttDefault], 'broker.example.test', 'mqtt', mqttDefault],
    ['within the ALPN routes: exact before wildcard before default', [mqttDefault, mqttWild, mqttExact], 'broker.example.test', 'mqtt', mqttExact],
    ['within the ALPN routes: wildcard before default', [mqttDefault, mqttWild], 'other.example.test', 'mqtt', mqttWild],
    ['no SNI: the ALPN default route', [plainDefault, mqttDefault], undefined, 'mqtt', mqttDefault],
    ['no SNI and no ALPN: the default route without alpn', [mqttDefault, plainDefault], undefined, undefined, plainDefault],
    ['SNI in upper case', [plainExact, mqttExact], 'BROKER.example.TEST', 'mqtt', mqttExact],
  ])('%s', (_label, routes, sni, alpn, expected) => {
    expect(routeBySni(routes, { serverName: sni }, alpn)).toEqual({ ok: true, value: expected });
  });

  it.each<[string, RouteConfig[], string | undefined, string | undefined, string]>([
    ['a route whose alpn does not match is never chosen', [mqttExact, mqttDefault], 'broker.example.test', 'x-other', 'no route serves broker.example.test with ALPN x-other'],
    ['an ALPN route is never chosen without ALPN', [mqttExact, mqttWild, mqttDefault], 'broker.example.test', undefined, 'no route serves broker.example.test'],
    ['no SNI, no ALPN, only ALPN routes', [mqttDefault], undefined, undefined, 'no route serves (no SNI)'],
    ['no SNI with ALPN, and no default for it', [mqttExact, otherExact], undefined, 'mqtt', 'no route serves (no SNI) with ALPN mqtt'],
    ['a name no route serves, whatever the ALPN', [mqttExact, plainExact], 'api.other.test', 'mqtt', 'no route serves api.other.test with ALPN mqtt'],
  ])('%s: refused as no-route', (_label, routes, sni, alpn, detail) => {
    expect(routeBySni(routes, { serverName: sni }, alpn)).toEqual({ ok: false, reason: 'no-route', detail });
  });

  it('the whole chain: negotiated against the listener, then routed', () => {
    const listenerAlpn = ['mqtt', 'x-other'];
    const routes = [otherExact, mqttExact, plainExact];
    const pick = (offered: string[]): unknown => {
      const r = routeBySni(routes, { serverName: 'broker.example.test' }, negotiatedAlpn(offered, listenerAlpn));
      return r.ok ? (r.value as unknown as { label: string }).label : r.detail;
    };
    expect([pick(['x-other', 'mqtt']), pick(['x-other']), pick(['h2']), pick([])]).toEqual(['mqtt-exact', 'other-exact', 'plain-exact', 'plain-exact']);
  });
});
