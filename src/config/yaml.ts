import { type CST, isMap, isScalar, LineCounter, Parser, parseAllDocuments } from 'yaml';
import type { SourceDocument } from './documents.js';
import { ConfigError } from './errors.js';

export { type SourceDocument, validateDocument } from './documents.js';

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
