/**
 * Teleport's label-value patterns, evaluated with RE2 semantics (Teleport compiles them with Go's regexp,
 * which is RE2; JavaScript's RegExp accepts other syntax, rejects some of RE2's, and can backtrack).
 * Mirrors lib/utils/replace.go (GlobToRegexp, MatchString, SliceMatchesRegex, RegexMatchesAny) and the
 * regexp.replace template function of lib/utils/parse/parse.go (RegexpReplace).
 */
import { createRequire } from 'node:module';
import type { RE2JS } from 're2js';

/** A pattern that is not a valid RE2 expression. Evaluating it denies access, as Teleport's error does. */
export class PatternError extends Error {
  override name = 'PatternError';
  constructor(
    readonly pattern: string,
    reason: string,
  ) {
    super(`invalid regular expression ${JSON.stringify(pattern)}: ${reason}`);
  }
}

/** A compiled pattern: an RE2 expression, or a glob matched without one. */
export interface Matcher {
  test(input: string): boolean;
}

let engine: typeof RE2JS | undefined;

/**
 * re2js, loaded on the first regular expression: it is the largest part of the authority Lambda beside the
 * AWS SDK, and roles whose values are literals and `*` globs never need it. Synchronous, so RBAC stays so.
 * In the Lambda bundles `require` is the bundle's own and the build moves re2js to re2js.cjs beside it
 * (scripts/own-file-plugin.mjs), so importing the bundle does not even parse it; unbundled ESM, where
 * `require` is not defined, resolves the package here.
 */
function re2(): typeof RE2JS {
  engine ??= (
    (typeof require === 'function' ? require('re2js') : createRequire(import.meta.url)('re2js')) as {
      RE2JS: typeof RE2JS;
    }
  ).RE2JS;
  return engine;
}

/**
 * `^glob$` as GlobToRegexp makes it, without a regular expression engine: every `*` matches any run of code
 * points but a newline (RE2's `.`), everything else only itself, code point by code point as re2js compares.
 * A set-of-positions simulation, so it is linear in the input for a given glob, like RE2.
 */
function globMatcher(glob: string): Matcher {
  const tokens = Array.from(glob);
  const end = tokens.length;
  // Positions reachable without consuming input: a `*` may match nothing.
  const close = (at: Uint8Array) => {
    for (let i = 0; i < end; i++) if (at[i] === 1 && tokens[i] === '*') at[i + 1] = 1;
    return at;
  };
  return {
    test(input: string): boolean {
      let at = close(Uint8Array.of(1, ...tokens.map(() => 0)));
      for (const c of input) {
        const next = new Uint8Array(end + 1);
        for (let i = 0; i < end; i++) {
          if (at[i] !== 1) continue;
          if (tokens[i] === '*') next[i] = c === '\n' ? 0 : 1;
          else if (tokens[i] === c) next[i + 1] = 1;
        }
        at = close(next);
      }
      return at[end] === 1;
    },
  };
}

const MAX_CACHE = 2000;
const cache = new Map<string, Matcher | PatternError>();

function remember<T extends Matcher | PatternError>(key: string, value: T): T {
  if (cache.size >= MAX_CACHE) cache.delete(cache.keys().next().value as string);
  cache.set(key, value);
  return value;
}

/** Go's regexp.QuoteMeta: escapes every character that is special in a regular expression. */
export function quoteMeta(text: string): string {
  return text.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

/** GlobToRegexp (lib/utils/replace.go): quotes the text and turns each `*` into `(.*)`. */
export function globToRegexp(glob: string): string {
  return quoteMeta(glob).replaceAll('\\*', '(.*)');
}

/** True when Teleport reads the pattern as a regular expression: it starts with `^` and ends with `$`. */
export function isRegexPattern(pattern: string): boolean {
  return pattern.startsWith('^') && pattern.endsWith('$');
}

/** Compiles a raw RE2 expression (unanchored), or returns why it does not compile. */
export function compileRegexp(expression: string): RE2JS | PatternError {
  const key = `raw\u0000${expression}`;
  const hit = cache.get(key) as RE2JS | PatternError | undefined;
  if (hit) return hit;
  try {
    return remember(key, re2().compile(expression));
  } catch (err) {
    return remember(key, new PatternError(expression, (err as Error).message));
  }
}

/**
 * CompileExpression (lib/utils/replace.go): a `^...$` pattern is a regular expression as written; anything
 * else is a glob, anchored at both ends, where only `*` is special.
 */
export function compilePattern(pattern: string): Matcher | PatternError {
  if (isRegexPattern(pattern)) return compileRegexp(pattern);
  const key = `glob\u0000${pattern}`;
  return cache.get(key) ?? remember(key, globMatcher(pattern));
}

/** Why a pattern does not compile, or undefined when it does. */
export function patternProblem(pattern: string): string | undefined {
  const compiled = compilePattern(pattern);
  return compiled instanceof PatternError ? compiled.message : undefined;
}

/**
 * MatchString (lib/utils/replace.go): Go's MatchString searches, so `^a|b$` matches `xb` as it does in
 * Teleport. Throws PatternError for an invalid expression, where Teleport returns an error.
 */
export function matchString(input: string, pattern: string): boolean {
  const compiled = compilePattern(pattern);
  if (compiled instanceof PatternError) throw compiled;
  return compiled.test(input);
}

/** SliceMatchesRegex (lib/utils/replace.go): the first pattern that errors or matches decides, in order. */
export function sliceMatchesRegex(input: string, patterns: readonly string[]): boolean {
  for (const pattern of patterns) if (matchString(input, pattern)) return true;
  return false;
}

/** RegexMatchesAny (lib/utils/replace.go): whether the glob or `^regex$` matches any of the inputs. */
export function regexMatchesAny(inputs: readonly string[], pattern: string): boolean {
  return inputs.some((input) => matchString(input, pattern));
}

/**
 * RegexpReplace (lib/utils/parse/parse.go): replaces every match of the (unanchored) expression in each
 * input, Go-style (`$1`, `${1}`, `$name`, `${name}`, `$$`); inputs the expression does not match at all are
 * dropped, as are results that are empty.
 */
export function regexpReplace(inputs: readonly string[], expression: string, replacement: string): string[] {
  const re = compileRegexp(expression);
  if (re instanceof PatternError) throw re;
  const out: string[] = [];
  for (const input of inputs) {
    if (!re.test(input)) continue;
    const replaced = goReplaceAll(re, input, replacement);
    if (replaced !== '') out.push(replaced);
  }
  return out;
}

/** Go's Regexp.ReplaceAllString, including its rule that an empty match right after a match is skipped. */
function goReplaceAll(re: RE2JS, src: string, template: string): string {
  const m = re.matcher(src);
  const names = re.namedGroups();
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= src.length && m.find(searchPos)) {
    const start = m.start();
    const end = m.end();
    out += src.slice(lastMatchEnd, start);
    if (end > lastMatchEnd || start === 0) out += expand(template, (group) => groupText(m, names, group));
    lastMatchEnd = end;
    // Advance past this match; always advance at least one character (a whole code point).
    const width = (src.codePointAt(searchPos) ?? 0) > 0xffff ? 2 : 1;
    searchPos = Math.max(searchPos + width, end);
  }
  return out + src.slice(lastMatchEnd);
}

type GroupMatcher = ReturnType<RE2JS['matcher']>;

function groupText(m: GroupMatcher, names: Record<string, number>, group: string): string {
  const index = /^\d+$/.test(group) ? Number(group) : names[group];
  if (index === undefined || index > m.groupCount()) return '';
  return m.group(index) ?? '';
}

/** Go's Regexp.Expand template syntax: `$$`, `$name`, `${name}`; a malformed `$` is kept as text. */
function expand(template: string, group: (name: string) => string): string {
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i] as string;
    if (c !== '$') {
      out += c;
      continue;
    }
    if (template[i + 1] === '$') {
      out += '$';
      i++;
      continue;
    }
    const braced = template[i + 1] === '{';
    const rest = template.slice(i + (braced ? 2 : 1));
    const name = /^[\p{L}\p{Nd}_]+/u.exec(rest)?.[0];
    if (!name || (braced && rest[name.length] !== '}')) {
      out += '$';
      continue;
    }
    out += group(name);
    i += name.length + (braced ? 2 : 0);
  }
  return out;
}
