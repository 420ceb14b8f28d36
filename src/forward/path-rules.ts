/**
 * Per-path authorisation on the verified identity (routes[].rules): the
 * first rule whose path and method match the request decides. Rules match
 * the percent-decoded path, so a request whose path another parser could
 * read differently (encoded slashes, dot segments, path parameters, empty
 * segments, double encoding) is refused before any rule: the backend must
 * act on the path the rule saw. Everything is compiled once per
 * configuration; a request costs one scan of its target and, when it
 * carries percent escapes, one decoded string. Pure.
 */
import { canonicalizePattern } from '../allowlist/allowlist.js';
import { canonicalizeClientName } from '../dane/name.js';
import type { PathRuleConfig } from '../config/types.js';

export type RuleVerdict = { allowed: true } | { allowed: false; reason: 'path-not-allowed' | 'bad-request'; detail: string };

type PathMatcher = { kind: 'any' } | { kind: 'exact'; path: string } | { kind: 'prefix'; prefix: string };

/** A first label with one '*' inside it: prefix + one or more characters (never a '.') + suffix, then '.' + rest. */
interface LabelWildcard {
  readonly prefix: string;
  readonly suffix: string;
  readonly rest: string;
}

interface IdentityMatcher {
  readonly exact: ReadonlySet<string>;
  /** '*.suffix' stored as '.suffix': any name strictly below. */
  readonly below: readonly string[];
  readonly labels: readonly LabelWildcard[];
}

interface CompiledRule {
  readonly path: PathMatcher;
  readonly methods: ReadonlySet<string> | undefined;
  readonly identities: IdentityMatcher;
  readonly allowUnauthenticated: boolean;
  /** Names the rule in refusals: "rules[1] (/admin/*)". */
  readonly label: string;
}

export interface CompiledRules {
  readonly rules: readonly CompiledRule[];
}

export class PathRuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathRuleError';
  }
}

const ALLOWED: RuleVerdict = { allowed: true };
const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Why a rule's path pattern is not one, or undefined. A pattern is written decoded and normalised: it could never match a path we let through otherwise. */
export function pathPatternProblem(pattern: string): string | undefined {
  if (pattern === '*') return undefined;
  if (!pattern.startsWith('/')) return "a path pattern is '*', '/exact' or '/prefix/*'";
  const body = pattern.endsWith('/*') ? pattern.slice(0, -1) : pattern;
  if (body.includes('*')) return "'*' is allowed only as the whole pattern or as its last segment ('/prefix/*')";
  const problem = decodedPathProblem(body);
  if (problem !== undefined) return `the pattern contains ${problem}; write the path decoded and normalised`;
  if (body.includes('%')) return "the pattern contains '%'; write the path decoded (requests with an encoded '%' are refused)";
  if (body.includes('?') || body.includes('#')) return "the pattern contains '?' or '#'; rules match the path only";
  return undefined;
}

/** The canonical form of an allow pattern, or why it is not one: a name, '*.suffix' (as in the allowlist), or one '*' inside the first label. */
export function identityPatternProblem(pattern: string): { ok: true; pattern: string } | { ok: false; reason: string } {
  const star = pattern.indexOf('*');
  if (star === -1 || pattern === '*' || pattern.startsWith('*.')) return canonicalizePattern(pattern);
  const dot = pattern.indexOf('.');
  if (pattern.indexOf('*', star + 1) !== -1 || dot === -1 || star > dot) return { ok: false, reason: "only one '*' is allowed, in the first label (as in 'ops-*._device.example.com')" };
  // The '*' stands for at least one character: check the rest as a name with one letter in its place (lower-casing ASCII keeps every index).
  const name = canonicalizeClientName(`${pattern.slice(0, star)}a${pattern.slice(star + 1)}`);
  if (!name.ok) return { ok: false, reason: name.reason };
  return { ok: true, pattern: `${name.name.slice(0, star)}*${name.name.slice(star + 1)}` };
}

function compilePath(pattern: string): PathMatcher {
  if (pattern === '*') return { kind: 'any' };
  if (pattern.endsWith('/*')) return { kind: 'prefix', prefix: pattern.slice(0, -2) };
  return { kind: 'exact', path: pattern };
}

function compileIdentities(patterns: readonly string[], where: string): IdentityMatcher {
  const exact = new Set<string>();
  const below: string[] = [];
  const labels: LabelWildcard[] = [];
  patterns.forEach((raw, i) => {
    const result = identityPatternProblem(raw);
    if (!result.ok) throw new PathRuleError(`${where}.allow[${i}]: invalid identity pattern ${JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}…` : raw)}: ${result.reason}`);
    const p = result.pattern;
    if (p.startsWith('*.')) below.push(p.slice(1));
    else if (p.includes('*')) {
      const star = p.indexOf('*');
      const dot = p.indexOf('.');
      labels.push({ prefix: p.slice(0, star), suffix: p.slice(star + 1, dot), rest: p.slice(dot + 1) });
    } else exact.add(p);
  });
  return { exact, below, labels };
}

/** Compile a route's rules; throws PathRuleError naming the rule for a bad one (the config loader checks the same with the two *Problem functions). */
export function compileRules(rules: readonly PathRuleConfig[]): CompiledRules {
  return {
    rules: rules.map((rule, i) => {
      const where = `rules[${i}]`;
      const pathProblem = pathPatternProblem(rule.path);
      if (pathProblem !== undefined) throw new PathRuleError(`${where}.path: invalid path pattern ${JSON.stringify(rule.path)}: ${pathProblem}`);
      if (rule.methods !== undefined) {
        if (rule.methods.length === 0) throw new PathRuleError(`${where}.methods: an empty list matches no request; leave it out for every method`);
        const bad = rule.methods.find((m) => !METHOD_TOKEN.test(m));
        if (bad !== undefined) throw new PathRuleError(`${where}.methods: ${JSON.stringify(bad)} is not a method name`);
      }
      const methods = rule.methods === undefined ? undefined : new Set(rule.methods);
      return {
        path: compilePath(rule.path),
        methods,
        identities: compileIdentities(rule.allow, where),
        allowUnauthenticated: rule.allowUnauthenticated,
        label: `rules[${i}] (${rule.path}${rule.methods === undefined ? '' : ` ${rule.methods.join(',')}`})`,
      };
    }),
  };
}

function pathMatches(m: PathMatcher, path: string): boolean {
  switch (m.kind) {
    case 'any':
      return true;
    case 'exact':
      return path === m.path;
    case 'prefix':
      // '/admin/*': '/admin', '/admin/' and below; never '/adminx'.
      return path.startsWith(m.prefix) && (path.length === m.prefix.length || path.charCodeAt(m.prefix.length) === 0x2f);
  }
}

/** `name` is canonical (the verified name); no substring is allocated. */
function identityMatches(m: IdentityMatcher, name: string): boolean {
  if (m.exact.has(name)) return true;
  for (const suffix of m.below) {
    // '.suffix' at the end, with at least one character before its dot: strictly below.
    if (name.length > suffix.length && name.endsWith(suffix)) return true;
  }
  if (m.labels.length > 0) {
    const dot = name.indexOf('.');
    if (dot === -1) return false;
    for (const w of m.labels) {
      if (name.length - dot - 1 !== w.rest.length || !name.startsWith(w.rest, dot + 1)) continue;
      // The '*' takes one or more characters of the first label.
      if (dot < w.prefix.length + w.suffix.length + 1) continue;
      if (name.startsWith(w.prefix) && name.startsWith(w.suffix, dot - w.suffix.length)) return true;
    }
  }
  return false;
}

const HEX = (code: number): number => {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
};

/**
 * Why the raw path (the target up to '?') is ambiguous, or undefined. One
 * pass over the characters; the escapes are judged by the byte they encode.
 */
function rawPathProblem(raw: string): string | undefined {
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return 'a control character or space';
    if (c > 0x7e) return 'a character outside ASCII (send it percent-encoded)';
    if (c === 0x5c) return "a '\\'";
    if (c === 0x3b) return "a ';' (path parameters)";
    if (c === 0x23) return "a '#'";
    if (c !== 0x25) continue;
    const hi = HEX(raw.charCodeAt(i + 1));
    const lo = HEX(raw.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return 'a malformed percent escape';
    const byte = hi * 16 + lo;
    if (byte === 0x2f || byte === 0x5c) return "an encoded '/' or '\\'";
    if (byte < 0x20 || byte === 0x7f) return 'an encoded control character';
    if (byte === 0x3b) return "an encoded ';' (path parameters)";
    if (byte === 0x25) return "an encoded '%' (a backend that decodes twice would see another path)";
    if (byte === 0x3f || byte === 0x23) return "an encoded '?' or '#' (a backend that decodes before splitting would see another path)";
    i += 2;
  }
  return undefined;
}

/** Why a decoded path has dot or empty segments (or is not a path), or undefined. */
function decodedPathProblem(path: string): string | undefined {
  if (path.charCodeAt(0) !== 0x2f) return "a target that does not start with '/'";
  // Each segment starts after a '/': look at what follows each one.
  for (let slash = 0; slash !== -1; slash = path.indexOf('/', slash + 1)) {
    const next = path.indexOf('/', slash + 1);
    const end = next === -1 ? path.length : next;
    const length = end - slash - 1;
    // An empty segment is fine only as the last one (a trailing '/').
    if (length === 0 && next !== -1) return "an empty segment ('//')";
    if (length === 1 && path.charCodeAt(slash + 1) === 0x2e) return "a dot segment ('.')";
    if (length === 2 && path.charCodeAt(slash + 1) === 0x2e && path.charCodeAt(slash + 2) === 0x2e) return "a dot segment ('..')";
  }
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return 'a control character';
    if (c === 0x5c) return "a '\\'";
    if (c === 0x3b) return "a ';' (path parameters)";
  }
  return undefined;
}

function badRequest(what: string): RuleVerdict {
  return { allowed: false, reason: 'bad-request', detail: `the request path contains ${what}` };
}

/**
 * The verdict for one request. `target` is the request target as received
 * (it may carry a query); `identity` the canonical verified name, undefined
 * when unauthenticated (policy optional). No rules: allowed.
 */
/** A method token with no lower-case letter (RFC 9110 tchar otherwise; nghttp2 and node:http have checked the token). */
const UPPER_CASE_METHOD = /^[^a-z]+$/;

export function authorize(compiled: CompiledRules, method: string, target: string, identity: string | undefined): RuleVerdict {
  const { rules } = compiled;
  if (rules.length === 0) return ALLOWED;
  // Methods are case-sensitive, and a rule names them in upper case; but HTTP/2 carries any token in :method and
  // many backends (Django, Flask, ASP.NET Core) upper-case it: 'delete' would pass a DELETE rule and still delete.
  if (!UPPER_CASE_METHOD.test(method)) {
    return { allowed: false, reason: 'bad-request', detail: `the method ${JSON.stringify(method.slice(0, 32))} is not in upper case (rules compare methods exactly)` };
  }
  if (target.charCodeAt(0) !== 0x2f) return { allowed: false, reason: 'bad-request', detail: "the request target does not start with '/'" };
  const query = target.indexOf('?');
  const raw = query === -1 ? target : target.slice(0, query);
  const rawProblem = rawPathProblem(raw);
  if (rawProblem !== undefined) return badRequest(rawProblem);
  let path = raw;
  if (raw.includes('%')) {
    try {
      path = decodeURIComponent(raw);
    } catch {
      // Well-formed escapes (checked above) that are not UTF-8: overlong forms such as %C0%AE among them.
      return badRequest('percent escapes that are not UTF-8');
    }
  }
  const decodedProblem = decodedPathProblem(path);
  if (decodedProblem !== undefined) return badRequest(decodedProblem);

  for (const rule of rules) {
    if (!pathMatches(rule.path, path)) continue;
    if (rule.methods !== undefined && !rule.methods.has(method)) continue;
    if (identity === undefined) {
      return rule.allowUnauthenticated ? ALLOWED : { allowed: false, reason: 'path-not-allowed', detail: `${rule.label} does not allow unauthenticated clients` };
    }
    return identityMatches(rule.identities, identity) ? ALLOWED : { allowed: false, reason: 'path-not-allowed', detail: `${rule.label} does not allow ${identity}` };
  }
  return { allowed: false, reason: 'path-not-allowed', detail: 'no rule matches this path and method' };
}
