/**
 * Schema problems in the operator's words: an unknown key names the nearest
 * key allowed at that place ("did you mean \"listeners\"?"), and a value
 * that fits none of a union's shapes reports the problems of the one shape
 * it was evidently meant to be. Pure functions over zod schemas and issues.
 */
import { z } from 'zod';

/** Optimal-string-alignment distance (an adjacent swap costs 1), case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  let prev2: number[] = [];
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const row = [i];
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) d = Math.min(d, (prev2[j - 2] as number) + 1);
      row.push(d);
    }
    prev2 = prev;
    prev = row;
  }
  return prev[t.length] as number;
}

/**
 * The allowed key nearest to `key`, if near enough to be a typo: at most a
 * third of the key's length in edits, rounded up (at least 1, at most 3:
 * `maxEntry` → `maxEntries`). Ties go to the
 * first in `allowed`.
 */
export function nearestKey(key: string, allowed: readonly string[]): string | undefined {
  const limit = Math.min(3, Math.max(1, Math.ceil(key.length / 3)));
  let best: { key: string; distance: number } | undefined;
  for (const candidate of allowed) {
    const distance = editDistance(key, candidate);
    if (distance <= limit && (best === undefined || distance < best.distance)) best = { key: candidate, distance };
  }
  return best?.key;
}

/** The object schemas a value at `path` below `schema` is checked against (several under a union). */
function objectsAt(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): z.ZodObject[] {
  if (schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault || schema instanceof z.ZodOptional || schema instanceof z.ZodNullable) {
    return objectsAt(schema.def.innerType as z.ZodType, path);
  }
  if (schema instanceof z.ZodUnion) return (schema.options as z.ZodType[]).flatMap((option) => objectsAt(option, path));
  const [head, ...rest] = path;
  if (head === undefined) return schema instanceof z.ZodObject ? [schema] : [];
  if (schema instanceof z.ZodArray && typeof head === 'number') return objectsAt(schema.element as z.ZodType, rest);
  if (schema instanceof z.ZodObject && typeof head === 'string') {
    const child = (schema.shape as Record<string, z.ZodType>)[head];
    return child === undefined ? [] : objectsAt(child, rest);
  }
  return [];
}

/** The keys allowed in the object at `path` below `schema` (empty when the path leads to no object). */
export function allowedKeysAt(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): string[] {
  return [...new Set(objectsAt(schema, path).flatMap((o) => Object.keys(o.shape)))];
}

export interface KeyedProblem {
  readonly path: ReadonlyArray<PropertyKey>;
  readonly message: string;
}

/**
 * Turn zod issues into problems: one per unknown key, with the nearest
 * allowed key when there is one; a union none of whose shapes fits reports
 * the problems of the single shape that failed only below its top level
 * (e.g. `penaltyBox: { failurs: 3 }` is an object with a typo, not "not
 * false"), or zod's own message when that is not clear.
 */
export function describeIssues(schema: z.ZodType, issues: readonly z.core.$ZodIssue[], base: ReadonlyArray<PropertyKey> = []): KeyedProblem[] {
  const out: KeyedProblem[] = [];
  for (const issue of issues) {
    const path = [...base, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      const allowed = allowedKeysAt(schema, path);
      for (const key of issue.keys) {
        const near = nearestKey(key, allowed);
        out.push({ path, message: `Unrecognized key: ${JSON.stringify(key)}${near === undefined ? '' : ` (did you mean ${JSON.stringify(near)}?)`}` });
      }
    } else if (issue.code === 'invalid_union') {
      // Branches that failed below their top level: the value had that branch's shape.
      const deep = issue.errors.filter((branch) => branch.length > 0 && branch.every((i) => i.path.length > 0 || i.code === 'unrecognized_keys'));
      if (deep.length === 1) out.push(...describeIssues(schema, deep[0] as z.core.$ZodIssue[], path));
      else out.push({ path, message: issue.message });
    } else {
      out.push({ path, message: issue.message });
    }
  }
  return out;
}
