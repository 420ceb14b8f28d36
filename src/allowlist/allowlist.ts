/**
 * The allowlist decides, before any DNS query, which client names a route
 * accepts. Patterns are exact names (`sensor7._device.example.com`) or
 * `*.suffix` (any name strictly below the suffix, at any depth). Matching
 * costs O(labels of the name), however long the list.
 */
import { readFile } from 'node:fs/promises';
import { canonicalizeClientName } from '../dane/name.js';
import { BadLines } from './bad-lines.js';

export class AllowlistError extends Error {
  /** One entry per problem (each bad line, bounded; or the one read failure); the message is them joined by newlines. */
  readonly problems: readonly string[];
  constructor(message: string | readonly string[]) {
    const problems = typeof message === 'string' ? [message] : message;
    super(problems.join('\n'));
    this.name = 'AllowlistError';
    this.problems = problems;
  }
}

export interface AllowlistSource {
  /** Where the patterns came from, for error messages: a file name or a config key path. */
  readonly source: string;
  readonly patterns: ReadonlyArray<{ readonly pattern: string; readonly line: number }>;
}

/** Canonical form of a pattern, or why it is not one. Pure. */
export function canonicalizePattern(pattern: string): { ok: true; pattern: string } | { ok: false; reason: string } {
  const wildcard = pattern.startsWith('*.');
  const body = wildcard ? pattern.slice(2) : pattern;
  if (pattern === '*') return { ok: false, reason: "'*' alone would allow every name; list names or '*.suffix' patterns" };
  if (body.includes('*')) {
    return { ok: false, reason: "a wildcard is only allowed as the whole first label, as in '*.example.com'" };
  }
  const name = canonicalizeClientName(body);
  if (!name.ok) return { ok: false, reason: name.reason };
  return { ok: true, pattern: wildcard ? `*.${name.name}` : name.name };
}

export class Allowlist {
  private readonly exact = new Set<string>();
  private readonly suffixes = new Set<string>();

  private constructor(readonly patterns: readonly string[]) {
    for (const p of patterns) {
      if (p.startsWith('*.')) this.suffixes.add(p.slice(2));
      else this.exact.add(p);
    }
  }

  /** Build from patterns; throws AllowlistError naming the source and line of every bad one (the first 20, then how many more). */
  static fromPatterns(input: AllowlistSource): Allowlist {
    const canonical: string[] = [];
    const bad = new BadLines(input.source);
    for (const { pattern, line } of input.patterns) {
      const result = canonicalizePattern(pattern);
      if (!result.ok) bad.add(`${input.source}, line ${line}: invalid allowlist pattern ${JSON.stringify(pattern)}: ${result.reason}`);
      else canonical.push(result.pattern);
    }
    if (bad.count > 0) throw new AllowlistError(bad.report());
    return new Allowlist([...new Set(canonical)]);
  }

  /** From a list in the configuration; `keyPath` names it in errors (e.g. `listeners[0].routes[1].allow`). */
  static fromList(patterns: readonly string[], keyPath: string): Allowlist {
    return Allowlist.fromPatterns({
      source: keyPath,
      patterns: patterns.map((pattern, i) => ({ pattern, line: i + 1 })),
    });
  }

  /** From file text: one pattern per line; blank lines and '#' comments are ignored. */
  static fromText(text: string, source: string): Allowlist {
    const patterns: Array<{ pattern: string; line: number }> = [];
    text.split(/\r?\n/).forEach((raw, i) => {
      const hash = raw.indexOf('#');
      const pattern = (hash === -1 ? raw : raw.slice(0, hash)).trim();
      if (pattern.length > 0) patterns.push({ pattern, line: i + 1 });
    });
    return Allowlist.fromPatterns({ source, patterns });
  }

  static async fromFile(path: string): Promise<Allowlist> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new AllowlistError(`cannot read allowlist file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    return Allowlist.fromText(text, path);
  }

  /** The pattern that allows `name` (already canonical), or undefined. */
  match(name: string): string | undefined {
    if (this.exact.has(name)) return name;
    // Strictly below: try each proper suffix, nearest first.
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      const suffix = name.slice(dot + 1);
      if (this.suffixes.has(suffix)) return `*.${suffix}`;
    }
    return undefined;
  }

  allows(name: string): boolean {
    return this.match(name) !== undefined;
  }

  get size(): number {
    return this.patterns.length;
  }
}
