/**
 * Per-path rules: the first rule whose path and method match decides by the
 * identity; ambiguous paths are refused before any rule, with a detail
 * naming the form.
 */
import { describe, expect, it } from 'vitest';
import type { PathRuleConfig } from '../../src/config/types.js';
import { authorize, compileRules, identityPatternProblem, pathPatternProblem, PathRuleError, type RuleVerdict } from '../../src/forward/path-rules.js';

const OPS = 'ops-7._device.example.com';
const ROOT = 'root._device.example.com';
const SENSOR = 'sensor1._device.example.com';
const FLEET = 'a.b.fleet.example.net';

const RULES: PathRuleConfig[] = [
  { path: '/admin/*', methods: ['GET'], allow: ['ops-*._device.example.com'], allowUnauthenticated: false },
  { path: '/admin/*', methods: undefined, allow: [ROOT], allowUnauthenticated: false },
  { path: '/public/*', methods: undefined, allow: ['*._device.example.com'], allowUnauthenticated: true },
  { path: '/status', methods: ['GET'], allow: ['*._device.example.com'], allowUnauthenticated: true },
  { path: '/write', methods: ['POST'], allow: ['Writer.Example.COM'], allowUnauthenticated: false },
  { path: '/deny/*', methods: undefined, allow: [], allowUnauthenticated: false },
  { path: '*', methods: ['GET'], allow: ['*.fleet.example.net'], allowUnauthenticated: false },
];
const compiled = compileRules(RULES);

const ok: RuleVerdict = { allowed: true };
const denied = (detail: string): RuleVerdict => ({ allowed: false, reason: 'path-not-allowed', detail });
const bad = (what: string): RuleVerdict => ({ allowed: false, reason: 'bad-request', detail: `the request path contains ${what}` });
const noRule = denied('no rule matches this path and method');
const R0 = 'rules[0] (/admin/* GET)';
const R1 = 'rules[1] (/admin/*)';
const R6 = 'rules[6] (* GET)';

describe('authorize: rules by path, method and identity', () => {
  it.each<[string, string, string | undefined, RuleVerdict]>([
    // '/admin/*' covers the prefix itself, '/admin/' and below, never '/adminx'.
    ['GET', '/admin', OPS, ok],
    ['GET', '/admin/', OPS, ok],
    ['GET', '/admin/users/3', OPS, ok],
    ['GET', '/admin/users?x=1', OPS, ok],
    ['GET', '/adminx', OPS, denied(`${R6} does not allow ${OPS}`)],
    ['GET', '/adminx', FLEET, ok],
    // 'ops-*': one or more characters in the first label, never a dot, never empty.
    ['GET', '/admin/x', 'ops-abc-9._device.example.com', ok],
    ['GET', '/admin/x', 'ops-._device.example.com', denied(`${R0} does not allow ops-._device.example.com`)],
    ['GET', '/admin/x', 'x.ops-7._device.example.com', denied(`${R0} does not allow x.ops-7._device.example.com`)],
    ['GET', '/admin/x', 'ops-7._device.example.com.evil', denied(`${R0} does not allow ops-7._device.example.com.evil`)],
    ['GET', '/admin/x', 'xops-7._device.example.com', denied(`${R0} does not allow xops-7._device.example.com`)],
    ['GET', '/admin/x', 'ops-7.device.example.com', denied(`${R0} does not allow ops-7.device.example.com`)],
    // The first matching rule decides: root is refused by rule 0 for GET even though rule 1 would allow it.
    ['GET', '/admin/x', ROOT, denied(`${R0} does not allow ${ROOT}`)],
    ['POST', '/admin/x', ROOT, ok],
    ['POST', '/admin/x', OPS, denied(`${R1} does not allow ${OPS}`)],
    // HEAD is not GET; a method not in upper case is refused where rules apply (HTTP/2 carries any token, and
    // backends that upper-case it would run 'delete' as the DELETE a rule denies).
    ['HEAD', '/admin/x', OPS, denied(`${R1} does not allow ${OPS}`)],
    ['get', '/admin/x', OPS, { allowed: false, reason: 'bad-request', detail: 'the method "get" is not in upper case (rules compare methods exactly)' }],
    ['Delete', '/admin/x', ROOT, { allowed: false, reason: 'bad-request', detail: 'the method "Delete" is not in upper case (rules compare methods exactly)' }],
    ['M-SEARCH', '/admin/x', ROOT, ok],
    // Paths are case-sensitive: '/ADMIN' is another path (here: the catch-all GET rule).
    ['GET', '/ADMIN/x', OPS, denied(`${R6} does not allow ${OPS}`)],
    ['GET', '/ADMIN/x', FLEET, ok],
    // Unauthenticated.
    ['GET', '/admin/x', undefined, denied(`${R0} does not allow unauthenticated clients`)],
    ['GET', '/public/a.css', undefined, ok],
    ['DELETE', '/public/a.css', SENSOR, ok],
    ['GET', '/status', undefined, ok],
    ['GET', '/status', SENSOR, ok],
    ['GET', '/status', '_device.example.com', denied('rules[3] (/status GET) does not allow _device.example.com')],
    ['GET', '/status/', FLEET, ok],
    ['GET', '/status/', SENSOR, denied(`${R6} does not allow ${SENSOR}`)],
    ['POST', '/status', SENSOR, noRule],
    ['HEAD', '/status', SENSOR, noRule],
    ['POST', '/write', 'writer.example.com', ok],
    ['POST', '/write', undefined, denied('rules[4] (/write POST) does not allow unauthenticated clients')],
    ['POST', '/write/', 'writer.example.com', noRule],
    ['GET', '/deny/x', ROOT, denied(`rules[5] (/deny/*) does not allow ${ROOT}`)],
    ['GET', '/deny', undefined, denied('rules[5] (/deny/*) does not allow unauthenticated clients')],
    ['GET', '/anything', FLEET, ok],
    ['GET', '/anything', 'fleet.example.net', denied(`${R6} does not allow fleet.example.net`)],
    ['PUT', '/anything', FLEET, noRule],
    ['GET', '/', FLEET, ok],
    // Percent-decoded before matching: an encoded letter is the letter.
    ['GET', '/%61dmin/x', OPS, ok],
    ['GET', '/%61dmin/x', FLEET, denied(`${R0} does not allow ${FLEET}`)],
    ['GET', '/public/caf%C3%A9', undefined, ok],
    ['GET', '/public/file%2etxt', undefined, ok],
    ['GET', '/public/my%20file', undefined, ok],
    ['GET', '/public/...', undefined, ok],
    ['GET', '/public/.well-known', undefined, ok],
  ])('%s %s as %s', (method, target, identity, expected) => {
    expect(authorize(compiled, method, target, identity)).toEqual(expected);
  });
});

describe('authorize: ambiguous paths are refused before any rule', () => {
  it.each<[string, RuleVerdict]>([
    ['/public/..%2fadmin', bad("an encoded '/' or '\\'")],
    ['/public%2Fadmin', bad("an encoded '/' or '\\'")],
    ['/public%5cadmin', bad("an encoded '/' or '\\'")],
    ['/public/%2e%2e/admin', bad("a dot segment ('..')")],
    ['/public/%2E%2E/admin', bad("a dot segment ('..')")],
    ['/public/.%2e/admin', bad("a dot segment ('..')")],
    ['/public/../admin', bad("a dot segment ('..')")],
    ['/public/./x', bad("a dot segment ('.')")],
    ['/public/%2e/x', bad("a dot segment ('.')")],
    ['/public/..', bad("a dot segment ('..')")],
    ['/public/.', bad("a dot segment ('.')")],
    ['/..', bad("a dot segment ('..')")],
    ['/public/..?x=1', bad("a dot segment ('..')")],
    ['/admin;x', bad("a ';' (path parameters)")],
    ['/public/x;jsessionid=1', bad("a ';' (path parameters)")],
    ['/public/..;/admin', bad("a ';' (path parameters)")],
    ['/public/%3b', bad("an encoded ';' (path parameters)")],
    ['//admin', bad("an empty segment ('//')")],
    ['/public//x', bad("an empty segment ('//')")],
    ['/public/x//', bad("an empty segment ('//')")],
    ['/public\\..\\admin', bad("a '\\'")],
    ['/public/%00', bad('an encoded control character')],
    ['/public/%1f', bad('an encoded control character')],
    ['/public/%7F', bad('an encoded control character')],
    ['/public/a\u0000', bad('a control character or space')],
    ['/public/a\tb', bad('a control character or space')],
    ['/public/a b', bad('a control character or space')],
    ['/public/a\u007f', bad('a control character or space')],
    ['/public/caf\u00e9', bad('a character outside ASCII (send it percent-encoded)')],
    ['/public/%', bad('a malformed percent escape')],
    ['/public/%2', bad('a malformed percent escape')],
    ['/public/%zz', bad('a malformed percent escape')],
    ['/public/%%32%65', bad('a malformed percent escape')],
    ['/public/%252e%252e/admin', bad("an encoded '%' (a backend that decodes twice would see another path)")],
    ['/public/%3f/../admin', bad("an encoded '?' or '#' (a backend that decodes before splitting would see another path)")],
    ['/public/%23', bad("an encoded '?' or '#' (a backend that decodes before splitting would see another path)")],
    ['/admin#/../public', bad("a '#'")],
    // Overlong UTF-8 for '.' and '/': well-formed escapes, not UTF-8.
    ['/public/%c0%ae%c0%ae/admin', bad('percent escapes that are not UTF-8')],
    ['/public/%c0%af', bad('percent escapes that are not UTF-8')],
    ['/public/%ff', bad('percent escapes that are not UTF-8')],
  ])('%s', (target, expected) => {
    // Refused whoever asks, before any rule (rule 2 would allow everyone on /public/*).
    for (const identity of [OPS, undefined]) expect(authorize(compiled, 'GET', target, identity)).toEqual(expected);
  });

  it.each([['*'], ['http://api.example.com/admin'], [''], ['?x=/admin'], ['admin']])('target %j does not start with /', (target) => {
    expect(authorize(compiled, 'GET', target, OPS)).toEqual({ allowed: false, reason: 'bad-request', detail: "the request target does not start with '/'" });
  });

  it('a query is not part of the path: its dots, slashes and escapes are not judged', () => {
    expect(authorize(compiled, 'GET', '/public/x?a=../..&b=%2F%00;#', undefined)).toEqual(ok);
  });

  it('no rules: everything is allowed, unchecked (the caller skips)', () => {
    expect(authorize(compileRules([]), 'GET', '/a/../b;%2f', undefined)).toEqual(ok);
  });
});

describe('compileRules refuses what could never match or is ambiguous', () => {
  const rule = (over: Partial<PathRuleConfig>): PathRuleConfig => ({ path: '/x', methods: undefined, allow: [], allowUnauthenticated: false, ...over });
  it.each<[Partial<PathRuleConfig>, string]>([
    [{ path: 'admin' }, `rules[0].path: invalid path pattern "admin": a path pattern is '*', '/exact' or '/prefix/*'`],
    [{ path: '/admin*' }, `rules[0].path: invalid path pattern "/admin*": '*' is allowed only as the whole pattern or as its last segment ('/prefix/*')`],
    [{ path: '/*/x' }, `rules[0].path: invalid path pattern "/*/x": '*' is allowed only as the whole pattern or as its last segment ('/prefix/*')`],
    [{ path: '/a/../b' }, `rules[0].path: invalid path pattern "/a/../b": the pattern contains a dot segment ('..'); write the path decoded and normalised`],
    [{ path: '//a/*' }, `rules[0].path: invalid path pattern "//a/*": the pattern contains an empty segment ('//'); write the path decoded and normalised`],
    [{ path: '/a;b' }, `rules[0].path: invalid path pattern "/a;b": the pattern contains a ';' (path parameters); write the path decoded and normalised`],
    [{ path: '/a%2fb' }, `rules[0].path: invalid path pattern "/a%2fb": the pattern contains '%'; write the path decoded (requests with an encoded '%' are refused)`],
    [{ path: '/a?b' }, `rules[0].path: invalid path pattern "/a?b": the pattern contains '?' or '#'; rules match the path only`],
    [{ methods: [] }, 'rules[0].methods: an empty list matches no request; leave it out for every method'],
    [{ methods: ['GET', 'BAD METHOD'] }, 'rules[0].methods: "BAD METHOD" is not a method name'],
    [
      { allow: ['ok.example.com', 'a.*.example.com'] },
      `rules[0].allow[1]: invalid identity pattern "a.*.example.com": only one '*' is allowed, in the first label (as in 'ops-*._device.example.com')`,
    ],
    [{ allow: ['o*s-*.example.com'] }, `rules[0].allow[0]: invalid identity pattern "o*s-*.example.com": only one '*' is allowed, in the first label (as in 'ops-*._device.example.com')`],
    [{ allow: ['*.*.example.com'] }, `rules[0].allow[0]: invalid identity pattern "*.*.example.com": a wildcard is only allowed as the whole first label, as in '*.example.com'`],
    [{ allow: ['*'] }, `rules[0].allow[0]: invalid identity pattern "*": '*' alone would allow every name; list names or '*.suffix' patterns`],
    [{ allow: ['ops-*'] }, `rules[0].allow[0]: invalid identity pattern "ops-*": only one '*' is allowed, in the first label (as in 'ops-*._device.example.com')`],
    [{ allow: ['*.com'] }, 'rules[0].allow[0]: invalid identity pattern "*.com": name has a single label; a client name needs at least two'],
    [{ allow: ['bad name.example.com'] }, 'rules[0].allow[0]: invalid identity pattern "bad name.example.com": name contains a space or control character at position 3'],
  ])('%j', (over, message) => {
    expect(() => compileRules([rule(over)])).toThrow(new PathRuleError(message));
  });

  it.each([['*'], ['/'], ['/*'], ['/a/b/'], ['/a/b/*'], ['/my file'], ['/caf\u00e9/*']])('path %j is a pattern', (path) => {
    expect(pathPatternProblem(path)).toBeUndefined();
  });

  it.each([
    ['Exact.Example.COM.', 'exact.example.com'],
    ['*.Example.com', '*.example.com'],
    ['OPS-*._Device.Example.com', 'ops-*._device.example.com'],
    ['*-ops._device.example.com', '*-ops._device.example.com'],
    ['a*b.example.com', 'a*b.example.com'],
  ])('identity pattern %j is canonical %j', (input, pattern) => {
    expect(identityPatternProblem(input)).toEqual({ ok: true, pattern });
  });

  it('patterns are canonicalised: upper case in the configuration matches the canonical name', () => {
    const rules = compileRules([rule({ allow: ['OPS-*._Device.Example.com', 'Writer.Example.COM', '*.Fleet.Example.NET'] })]);
    for (const name of ['ops-1._device.example.com', 'writer.example.com', 'x.fleet.example.net']) expect(authorize(rules, 'GET', '/x', name)).toEqual(ok);
  });

  it("'*' inside the first label: prefix and suffix around one or more characters", () => {
    const rules = compileRules([rule({ allow: ['a*b.example.com', '*-ops.example.org'] })]);
    const verdicts = ['axb.example.com', 'ab.example.com', 'a.b.example.com', 'axxb.example.com', 'xb.example.com', 'x-ops.example.org', '-ops.example.org', 'a-ops.x.example.org'].map(
      (name) => authorize(rules, 'GET', '/x', name).allowed,
    );
    expect(verdicts).toEqual([true, false, false, true, false, true, false, false]);
  });
});
