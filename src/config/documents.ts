import type * as core from 'zod/v4/core';
import { ConfigError } from './errors.js';
import * as z from './zod.js';

// Kept free of the YAML library: a Lambda cold start reads the JSON its stack wrote and never loads it.

/** One configuration document with a way to find where a path sits in the file, for error messages. */
export interface SourceDocument {
  index: number;
  value: unknown;
  /** `line N, column M` of the node at `path`, or of its closest existing parent. */
  locate(path: readonly PropertyKey[]): string | undefined;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let cur = value;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * Validates one document against a zod schema and turns the first problems into one message that names the
 * file, document, path, bad value and what is allowed. `isSecretPath` hides values (and unknown key names)
 * that must not be printed.
 */
export function validateDocument<S extends core.$ZodType>(
  schema: S,
  doc: SourceDocument,
  where: { file: string; label: string; isSecretPath?: (path: readonly PropertyKey[]) => boolean },
): core.output<S> {
  const { file, label, isSecretPath = () => false } = where;
  const result = z.safeParse(schema, doc.value);
  if (result.success) return result.data;
  const problems = result.error.issues.slice(0, 5).map((issue) => {
    let path = issue.path as PropertyKey[];
    let shown = path;
    let what = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0] as string;
      // A secret pasted where a key belongs (`onboarding: { join_method: token, <token> }`) is a key.
      const hidden = issue.keys.some((k) => isSecretPath([...path, k]));
      shown = [...path, hidden ? '[redacted]' : key];
      path = [...path, key];
      const parent = valueAt(doc.value, issue.path as PropertyKey[]);
      const allowed = allowedKeys(schema, issue.path as PropertyKey[], parent);
      const others =
        issue.keys.length > 1 && !hidden ? ` (also unknown: ${issue.keys.slice(1).join(', ')})` : '';
      what = `unknown field${others}${allowed ? `; allowed fields here: ${allowed}` : ''}`;
    } else {
      const bad = valueAt(doc.value, path);
      what = `${what} (got ${isSecretPath(path) ? '[redacted]' : describeValue(bad)})`;
    }
    const where = doc.locate(path);
    return `${shown.length ? shown.join('.') : '(document)'}: ${what}${where ? ` at ${where}` : ''}`;
  });
  const more = result.error.issues.length > 5 ? ` (and ${result.error.issues.length - 5} more)` : '';
  throw new ConfigError(
    `${file}: document ${doc.index}${label ? ` (${label})` : ''}: ${problems.join('; ')}${more}`,
  );
}

/** Lists the keys a strict object schema allows at `path`, when the schema is simple enough to walk. */
function allowedKeys(
  schema: core.$ZodType,
  path: readonly PropertyKey[],
  _parent: unknown,
): string | undefined {
  let cur: unknown = schema;
  for (const key of path) {
    cur = unwrap(cur);
    const shape = (cur as { shape?: Record<string, unknown> }).shape;
    // An array's element is in its definition (zod/mini schemas have no `element` property).
    const element = (cur as { def?: { element?: unknown } }).def?.element;
    if (shape && typeof key === 'string' && key in shape) cur = shape[key];
    else if (element) cur = element;
    else return undefined;
  }
  const shape = (unwrap(cur) as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape).join(', ') : undefined;
}

function unwrap(schema: unknown): unknown {
  let cur = schema as { def?: { innerType?: unknown; type?: string } } | undefined;
  for (let i = 0; i < 10 && cur?.def?.innerType; i++) cur = cur.def.innerType as typeof cur;
  return cur;
}

/**
 * The documents of a text written as JSON, one per part between `---` lines (as the stack writes Lambda
 * configuration; YAML 1.2 reads the same text to the same values), or undefined when any part is not JSON.
 * Positions are not tracked: errors name the path and value without a line.
 */
export function parseJsonDocuments(text: string): SourceDocument[] | undefined {
  if (!/^\s*[{[]/.test(text)) return undefined;
  const out: SourceDocument[] = [];
  const parts = text.split(/^---[ \t]*$/m);
  for (const [i, part] of parts.entries()) {
    if (part.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(part);
    } catch {
      return undefined;
    }
    // As parseYamlDocuments: a document that is only `null` is an empty one.
    if (value !== null) out.push({ index: i + 1, value, locate: () => undefined });
  }
  return out;
}
