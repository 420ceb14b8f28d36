import { describe, expect, it } from 'vitest';
import { Allowlist } from '../../../src/allowlist/allowlist.js';
import type { RouteConfig } from '../../../src/config/types.js';
import { routeBySni, routeLabel } from '../../../src/connection/stages/route.js';

const route = (serverNames: string[]): RouteConfig => ({ serverNames, allowlist: Allowlist.fromList(['*.example.test'], 'allow') }) as unknown as RouteConfig; // only the fields routing reads
const exact = route(['api.example.test']);
const wild = route(['*.example.test']);
const fallback = route([]);

describe('routeBySni', () => {
  it.each([
    ['exact name first', [wild, exact], 'api.example.test', exact],
    ['longest wildcard', [exact, wild], 'other.example.test', wild],
    ['the route without serverNames', [exact, fallback], 'else.test', fallback],
    ['no SNI: the default route', [exact, fallback], undefined, fallback],
  ] as const)('%s', (_label, routes, sni, expected) => {
    expect(routeBySni(routes, { serverName: sni })).toEqual({ ok: true, value: expected });
  });

  it.each([
    ['api.other.test', 'no route serves api.other.test'],
    [undefined, 'no route serves (no SNI)'],
  ])('no route for %s: refused as no-route', (sni, detail) => {
    expect(routeBySni([exact, wild], { serverName: sni })).toEqual({ ok: false, reason: 'no-route', detail });
  });
});

describe('routeLabel', () => {
  it.each([
    [['api.example.test', 'b.example.test'], 'api.example.test'],
    [[], 'default'],
  ])('%j → %s', (names, label) => {
    expect(routeLabel({ serverNames: names })).toBe(label);
  });
});
