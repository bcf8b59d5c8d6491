/**
 * `db_labels_expression`: Teleport's label expression language, parsed and type-checked once when a role is
 * created, evaluated per request against the database's labels and the bot's traits. Mirrors
 * lib/services/label_expressions.go (newLabelExpressionParser: the variables `labels` and `user.spec.traits`,
 * the functions labels_matching, contains, contains_any, contains_all, regexp.match, regexp.replace,
 * email.local, strings.upper, strings.lower) and the typing rules of lib/utils/typical/parser.go (coerce: a
 * string is accepted where a list of strings is expected; == and != compare strings or integers; the whole
 * expression must be boolean).
 */
import { parseEmailLocalPart } from './email.js';
import {
  compileRegexp,
  matchString,
  PatternError,
  patternProblem,
  regexMatchesAny,
  regexpReplace,
} from './regex.js';
import { ExpressionError, type Node, parseExpression } from './syntax.js';
import type { Traits } from './templates.js';

type Type = 'bool' | 'string' | 'int' | 'list' | 'traits' | 'labels';

/** What an expression is evaluated against. */
export interface ExpressionEnv {
  labels: Readonly<Record<string, string>>;
  traits: Traits;
}

type Value = boolean | string | number | readonly string[];
type Compiled = { type: Type; eval: (env: ExpressionEnv) => Value; literal?: string };

/** A parsed, type-checked label expression. */
export interface LabelExpression {
  source: string;
  evaluate(env: ExpressionEnv): boolean;
}

const lit = (type: Type, value: Value): Compiled => ({
  type,
  eval: () => value,
  ...(typeof value === 'string' ? { literal: value } : {}),
});

function compile(node: Node): Compiled {
  switch (node.type) {
    case 'string':
      return lit('string', node.value);
    case 'int':
      return lit('int', node.value);
    case 'ident':
      return identifier(node.path);
    case 'index': {
      const target = compile(node.target);
      const key = as(compile(node.key), 'string', 'key of index expression');
      return index(target, key);
    }
    case 'not': {
      const operand = as(compile(node.operand), 'bool', 'target of (!) operator');
      return { type: 'bool', eval: (env) => !operand(env) };
    }
    case 'binary':
      return binary(node);
    case 'call':
      return call(node.name, node.args.map(compile));
  }
}

/** getIdentifier: `labels`, `labels.KEY`, `user.spec.traits`, `user.spec.traits.NAME`. */
function identifier(path: string[]): Compiled {
  const joined = path.join('.');
  if (joined === 'labels') return lit('labels', []);
  if (joined === 'user.spec.traits') return lit('traits', []);
  if (path.length === 2 && path[0] === 'labels') return index(lit('labels', []), () => path[1] as string);
  if (path.length === 4 && joined.startsWith('user.spec.traits.'))
    return index(lit('traits', []), () => path[3] as string);
  throw new ExpressionError(`unknown identifier: ${JSON.stringify(joined)}`);
}

function index(target: Compiled, key: (env: ExpressionEnv) => string): Compiled {
  // A missing label is "" and a missing trait is an empty list, as Go's map lookups give.
  if (target.type === 'labels')
    return {
      type: 'string',
      eval: (env) => (Object.hasOwn(env.labels, key(env)) ? env.labels[key(env)] : '') ?? '',
    };
  if (target.type === 'traits')
    return {
      type: 'list',
      eval: (env) => (Object.hasOwn(env.traits, key(env)) ? env.traits[key(env)] : []) ?? [],
    };
  throw new ExpressionError(`cannot take index of unexpected type ${target.type}`);
}

/** coerce: the expression must have the wanted type; a string is wrapped where a list is wanted. */
function as(c: Compiled, want: 'bool', what: string): (env: ExpressionEnv) => boolean;
function as(c: Compiled, want: 'string', what: string): (env: ExpressionEnv) => string;
function as(c: Compiled, want: 'list', what: string): (env: ExpressionEnv) => readonly string[];
function as(c: Compiled, want: 'int', what: string): (env: ExpressionEnv) => number;
function as(c: Compiled, want: Type, what: string): (env: ExpressionEnv) => Value {
  if (c.type === want) return c.eval;
  if (want === 'list' && c.type === 'string') return (env) => [c.eval(env) as string];
  throw new ExpressionError(`parsing ${what}: expected type ${typeName(want)}, got ${typeName(c.type)}`);
}

function typeName(t: Type): string {
  return {
    bool: 'bool',
    string: 'string',
    int: 'int',
    list: '[]string',
    traits: 'map[string][]string',
    labels: 'labels',
  }[t];
}

function binary(node: Extract<Node, { type: 'binary' }>): Compiled {
  const left = compile(node.left);
  const right = compile(node.right);
  if (node.op === '&&' || node.op === '||') {
    const l = as(left, 'bool', `lhs of (${node.op}) operator`);
    const r = as(right, 'bool', `rhs of (${node.op}) operator`);
    // Short-circuit, as typical's and/or do: the right side is not evaluated (nor can it fail) otherwise.
    return node.op === '&&'
      ? { type: 'bool', eval: (env) => l(env) && r(env) }
      : { type: 'bool', eval: (env) => l(env) || r(env) };
  }
  if (left.type !== 'string' && left.type !== 'int')
    throw new ExpressionError(`operator (${node.op}) not supported for type: ${typeName(left.type)}`);
  const l =
    left.type === 'string'
      ? as(left, 'string', `lhs of (${node.op})`)
      : as(left, 'int', `lhs of (${node.op})`);
  const r =
    left.type === 'string'
      ? as(right, 'string', `rhs of (${node.op})`)
      : as(right, 'int', `rhs of (${node.op})`);
  return node.op === '=='
    ? { type: 'bool', eval: (env) => l(env) === r(env) }
    : { type: 'bool', eval: (env) => l(env) !== r(env) };
}

function arity(name: string, args: Compiled[], n: number): void {
  if (args.length !== n)
    throw new ExpressionError(`function (${name}) accepts ${n} argument(s), given ${args.length}`);
}

/** A regular expression given as a literal is checked when the role is created, not on every request. */
function checkLiteral(c: Compiled, problem: (literal: string) => string | undefined): void {
  const p = c.literal === undefined ? undefined : problem(c.literal);
  if (p) throw new ExpressionError(p);
}

/** Go's unicode.ToUpper/ToLower map one code point to one code point; JavaScript's full mappings may not. */
function goCase(s: string, upper: boolean): string {
  let out = '';
  for (const ch of s) {
    if (!upper && ch === '\u0130') {
      out += 'i';
      continue;
    }
    const mapped = upper ? ch.toUpperCase() : ch.toLowerCase();
    out += [...mapped].length === 1 ? mapped : ch;
  }
  return out;
}

function call(name: string, args: Compiled[]): Compiled {
  const what = (i: number) => `argument ${i + 1} to (${name})`;
  const list = (i: number) => as(args[i] as Compiled, 'list', what(i));
  const str = (i: number) => as(args[i] as Compiled, 'string', what(i));
  const listOf = (f: (env: ExpressionEnv) => readonly string[]): Compiled => ({ type: 'list', eval: f });
  const bool = (f: (env: ExpressionEnv) => boolean): Compiled => ({ type: 'bool', eval: f });
  switch (name) {
    case 'labels_matching': {
      arity(name, args, 1);
      const key = str(0);
      checkLiteral(args[0] as Compiled, patternProblem);
      // labelsMatching: values of every label whose key the glob or ^regex$ matches.
      return listOf((env) =>
        Object.entries(env.labels).flatMap(([k, v]) => (matchString(k, key(env)) ? [v] : [])),
      );
    }
    case 'contains': {
      arity(name, args, 2);
      const [l, item] = [list(0), str(1)];
      return bool((env) => l(env).includes(item(env)));
    }
    case 'contains_any': {
      arity(name, args, 2);
      const [l, items] = [list(0), list(1)];
      return bool((env) => items(env).some((i) => l(env).includes(i)));
    }
    case 'contains_all': {
      arity(name, args, 2);
      const [l, items] = [list(0), list(1)];
      // containsAll: an empty second list is false, so unrelated resources do not match.
      return bool((env) => items(env).length > 0 && items(env).every((i) => l(env).includes(i)));
    }
    case 'regexp.match': {
      arity(name, args, 2);
      const [l, re] = [list(0), str(1)];
      checkLiteral(args[1] as Compiled, patternProblem);
      return bool((env) => regexMatchesAny(l(env), re(env)));
    }
    case 'regexp.replace': {
      arity(name, args, 3);
      const [l, match, repl] = [list(0), str(1), str(2)];
      checkLiteral(args[1] as Compiled, (re) => {
        const c = compileRegexp(re);
        return c instanceof PatternError ? c.message : undefined;
      });
      return listOf((env) => regexpReplace(l(env), match(env), repl(env)));
    }
    case 'email.local': {
      arity(name, args, 1);
      const l = list(0);
      return listOf((env) =>
        l(env)
          .map(parseEmailLocalPart)
          .filter((v) => v !== ''),
      );
    }
    case 'strings.upper':
    case 'strings.lower': {
      arity(name, args, 1);
      const l = list(0);
      return listOf((env) => l(env).map((s) => goCase(s, name === 'strings.upper')));
    }
    default:
      throw new ExpressionError(`unsupported function: ${name}`);
  }
}

/**
 * Parses and type-checks a label expression (parseLabelExpression); throws ExpressionError naming the
 * problem. Evaluation can still fail (a bad email in a trait, a regular expression taken from a label):
 * evaluate() then throws, and the caller denies, as Teleport's error does.
 */
export function parseLabelExpression(source: string): LabelExpression {
  if (source === '') throw new ExpressionError('empty expression');
  const compiled = compile(parseExpression(source));
  const evaluate = as(compiled, 'bool', 'expression (it must be a boolean)');
  return { source, evaluate };
}

const parsed = new Map<string, LabelExpression>();

/** parseLabelExpression with a cache, for evaluation of stored roles. */
export function labelExpression(source: string): LabelExpression {
  let e = parsed.get(source);
  if (!e) {
    e = parseLabelExpression(source);
    if (parsed.size > 1000) parsed.clear();
    parsed.set(source, e);
  }
  return e;
}
