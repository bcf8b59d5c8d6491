import { type CST, isMap, isScalar, LineCounter, Parser, parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from './errors.js';

/** One YAML document with a way to find where a path sits in the file, for error messages. */
export interface SourceDocument {
  index: number;
  value: unknown;
  /** `line N, column M` of the node at `path`, or of its closest existing parent. */
  locate(path: readonly PropertyKey[]): string | undefined;
}

/**
 * How deeply collections may nest. Configuration files need a handful of levels; the YAML library composes
 * documents recursively, and a stack overflow inside it can leave V8 unable to compile regular expressions,
 * so that the next deep document aborts the whole process instead of failing.
 */
export const MAX_YAML_NESTING = 100;

/** Offset of the first node nested deeper than MAX_YAML_NESTING, found without recursion. */
function tooDeep(text: string): number | undefined {
  for (const token of new Parser().parse(text)) {
    const stack: [CST.Token, number][] = [[token, 0]];
    for (let next = stack.pop(); next; next = stack.pop()) {
      const [node, depth] = next;
      if (depth > MAX_YAML_NESTING) return node.offset;
      if (node.type === 'document' && node.value) stack.push([node.value, depth]);
      if ('items' in node)
        for (const item of node.items as CST.CollectionItem[])
          for (const child of [item.key, item.value]) if (child) stack.push([child, depth + 1]);
    }
  }
  return undefined;
}

/** Parses every document in a YAML file; a syntax error names the file, line and column. */
export function parseYamlDocuments(text: string, file: string): SourceDocument[] {
  const lineCounter = new LineCounter();
  const deep = tooDeep(text);
  if (deep !== undefined) {
    const before = text.slice(0, deep);
    const line = before.split('\n').length;
    const column = deep - before.lastIndexOf('\n');
    throw new ConfigError(
      `${file}: collections are nested more than ${MAX_YAML_NESTING} levels deep (at line ${line}, column ${column}); a configuration file needs far fewer`,
    );
  }
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (!Array.isArray(docs)) return [];
  const out: SourceDocument[] = [];
  docs.forEach((doc, index) => {
    const err = doc.errors[0];
    if (err) {
      const pos = lineCounter.linePos(err.pos[0]);
      throw new ConfigError(
        `${file}: document ${index + 1}: invalid YAML at line ${pos.line}, column ${pos.col}: ${err.message.split('\n')[0]}`,
      );
    }
    // An empty document, e.g. after a trailing `---`, has no contents or a null scalar.
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      throw new ConfigError(`${file}: document ${index + 1}: ${(err as Error).message}`);
    }
    out.push({
      index: index + 1,
      value,
      locate(path) {
        for (let n = path.length; n >= 0; n--) {
          const node = doc.getIn(path.slice(0, n) as unknown[], true) as
            | { range?: readonly number[] | null }
            | undefined;
          const key =
            n > 0 && n === path.length
              ? findKeyNode(doc.getIn(path.slice(0, n - 1) as unknown[], true), path[n - 1])
              : undefined;
          const range = key?.range ?? node?.range;
          if (range) {
            const pos = lineCounter.linePos(range[0] as number);
            return `line ${pos.line}, column ${pos.col}`;
          }
        }
        return undefined;
      },
    });
  });
  return out;
}

function findKeyNode(
  parent: unknown,
  key: PropertyKey | undefined,
): { range?: readonly number[] | null } | undefined {
  if (!isMap(parent)) return undefined;
  const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === key);
  return pair && isScalar(pair.key) ? (pair.key as { range?: readonly number[] | null }) : undefined;
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
export function validateDocument<S extends z.ZodType>(
  schema: S,
  doc: SourceDocument,
  where: { file: string; label: string; isSecretPath?: (path: readonly PropertyKey[]) => boolean },
): z.output<S> {
  const { file, label, isSecretPath = () => false } = where;
  const result = schema.safeParse(doc.value);
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
function allowedKeys(schema: z.ZodType, path: readonly PropertyKey[], _parent: unknown): string | undefined {
  let cur: unknown = schema;
  for (const key of path) {
    cur = unwrap(cur);
    const shape = (cur as { shape?: Record<string, unknown> }).shape;
    if (shape && typeof key === 'string' && key in shape) cur = shape[key];
    else if ((cur as { element?: unknown }).element) cur = (cur as { element: unknown }).element;
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
