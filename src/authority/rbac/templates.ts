/**
 * Role templates: `{{internal.db_users}}`, `{{external.team}}`, `prefix-{{email.local(external.email)}}`.
 * Mirrors lib/utils/parse/parse.go (NewTraitsTemplateExpression, Interpolate, EmailLocal, RegexpReplace),
 * the template language lib/utils/typical builds there (variables `internal` and `external`, the alias of
 * any other `a.b` to `external.b`, functions email.local and regexp.replace), and ApplyValueTraits,
 * applyValueTraitsSlice and applyLabelsTraits of lib/services/role.go.
 */
import { parseEmailLocalPart } from './email.js';
import { compileRegexp, PatternError, regexpReplace } from './regex.js';
import { ExpressionError, type Node, parseExpression } from './syntax.js';

/** A bot's traits: name → values, as Teleport's user traits. */
export type Traits = Readonly<Record<string, readonly string[]>>;

/** The internal traits Teleport lets templates read (ApplyValueTraits' varValidation). */
export const INTERNAL_TRAITS = [
  'logins',
  'windows_logins',
  'kubernetes_groups',
  'kubernetes_users',
  'db_names',
  'db_users',
  'db_roles',
  'aws_role_arns',
  'azure_identities',
  'gcp_service_accounts',
  'jwt',
] as const;

/** Template AST after type checking: every node evaluates to a list of strings. */
type ListExpr =
  | { kind: 'literal'; values: string[] }
  | { kind: 'trait'; namespace: string; name: string }
  | { kind: 'email.local'; arg: ListExpr }
  | { kind: 'regexp.replace'; arg: ListExpr; match: string; replacement: string };

/** A parsed template: a literal value, or prefix + expression + suffix. */
export interface Template {
  prefix: string;
  suffix: string;
  expr: ListExpr;
}

// reVariable of parse.go: one {{...}} with no braces anywhere else.
const VARIABLE = /^([^}{]*)\{\{(\s*[^}{]*\s*)\}\}([^}{]*)$/;

/** NewTraitsTemplateExpression: parses a role value; throws ExpressionError when it is not valid. */
export function parseTemplate(value: string): Template {
  const m = VARIABLE.exec(value);
  if (!m) {
    if (value.includes('{{') || value.includes('}}'))
      throw new ExpressionError(
        `${JSON.stringify(value)} is using template brackets '{{' or '}}', however expression does not parse, make sure the format is {{expression}}`,
      );
    return { prefix: '', suffix: '', expr: { kind: 'literal', values: [value] } };
  }
  const [, prefix = '', body = '', suffix = ''] = m;
  return { prefix: prefix.trimStart(), suffix: suffix.trimEnd(), expr: toList(parseExpression(body)) };
}

/** True when the value holds a `{{...}}` template rather than a literal. */
export function isTemplate(value: string): boolean {
  return parseTemplate(value).expr.kind !== 'literal';
}

function toList(node: Node): ListExpr {
  switch (node.type) {
    case 'string':
      // typical wraps a string where a list of strings is expected.
      return { kind: 'literal', values: [node.value] };
    case 'ident':
      return traitOf(node.path, undefined);
    case 'index': {
      if (node.target.type !== 'ident' || node.key.type !== 'string')
        throw new ExpressionError('only internal["name"] or external["name"] can be indexed, with a string');
      return traitOf(node.target.path, node.key.value);
    }
    case 'call':
      return callOf(node);
    default:
      throw new ExpressionError(`expected a list of strings, got ${describeNode(node)}`);
  }
}

/** `internal.x`, `external.x`, `external["x"]`; any other `ns.x` is an alias of `external.x` (typical's invalid namespace hack). */
function traitOf(path: string[], key: string | undefined): ListExpr {
  const full = key === undefined ? path : [...path, key];
  if (full.length !== 2)
    throw new ExpressionError(
      full.length < 2
        ? `incomplete variable ${path.join('.')}: use internal.NAME or external.NAME`
        : `unknown variable ${full.join('.')}: use internal.NAME or external.NAME`,
    );
  const [namespace, name] = full as [string, string];
  return { kind: 'trait', namespace: namespace === 'internal' ? 'internal' : 'external', name };
}

function callOf(node: Extract<Node, { type: 'call' }>): ListExpr {
  const arity = (n: number) => {
    if (node.args.length !== n)
      throw new ExpressionError(
        `function (${node.name}) accepts ${n} argument(s), given ${node.args.length}`,
      );
  };
  if (node.name === 'email.local') {
    arity(1);
    return { kind: 'email.local', arg: toList(node.args[0] as Node) };
  }
  if (node.name === 'regexp.replace') {
    arity(3);
    const [arg, match, replacement] = node.args as [Node, Node, Node];
    if (match.type !== 'string' || replacement.type !== 'string')
      throw new ExpressionError('regexp.replace takes a string literal as its second and third arguments');
    const re = compileRegexp(match.value);
    if (re instanceof PatternError) throw new ExpressionError(re.message);
    return { kind: 'regexp.replace', arg: toList(arg), match: match.value, replacement: replacement.value };
  }
  throw new ExpressionError(`unsupported function: ${node.name}`);
}

function describeNode(node: Node): string {
  return node.type === 'int' ? `the number ${node.value}` : `an expression of type ${node.type}`;
}

/** Why a template value cannot be used, or undefined. Internal trait names are checked as Teleport does. */
export function templateProblem(value: string): string | undefined {
  try {
    const t = parseTemplate(value);
    const bad = internalNames(t.expr).find((n) => !(INTERNAL_TRAITS as readonly string[]).includes(n));
    return bad === undefined
      ? undefined
      : `unsupported variable internal.${bad}: internal traits are ${INTERNAL_TRAITS.join(', ')}`;
  } catch (err) {
    return (err as Error).message;
  }
}

function internalNames(e: ListExpr): string[] {
  if (e.kind === 'trait') return e.namespace === 'internal' ? [e.name] : [];
  if (e.kind === 'literal') return [];
  return internalNames(e.arg);
}

/** The outcome of ApplyValueTraits: values, or why there are none (NotFound or BadParameter in Teleport). */
export type Interpolated = { values: string[] } | { error: string };

function evaluate(e: ListExpr, traits: Traits, checkInternal: boolean): string[] {
  switch (e.kind) {
    case 'literal':
      return e.values;
    case 'trait': {
      if (
        checkInternal &&
        e.namespace === 'internal' &&
        !(INTERNAL_TRAITS as readonly string[]).includes(e.name)
      )
        throw new ExpressionError(`unsupported variable "${e.name}"`);
      // Teleport keeps one trait map for both namespaces; external.X and internal.X read the same trait.
      const values = Object.hasOwn(traits, e.name) ? traits[e.name] : undefined;
      if (!values) throw new ExpressionError(`trait not found: ${e.namespace}.${e.name}`);
      return [...values];
    }
    case 'email.local':
      return evaluate(e.arg, traits, checkInternal)
        .map((v) => parseEmailLocalPart(v))
        .filter((v) => v !== '');
    case 'regexp.replace':
      return regexpReplace(evaluate(e.arg, traits, checkInternal), e.match, e.replacement);
  }
}

/**
 * ApplyValueTraits: interpolates one value; an empty result is an error (NotFound), as in Teleport.
 * `checkInternal: false` is Interpolate without ApplyValueTraits' check of internal trait names.
 */
export function applyValueTraits(
  value: string,
  traits: Traits,
  options = { checkInternal: true },
): Interpolated {
  try {
    const t = parseTemplate(value);
    const values = evaluate(t.expr, traits, options.checkInternal)
      .filter((v) => v.length > 0)
      .map((v) => `${t.prefix}${v}${t.suffix}`);
    return values.length
      ? { values }
      : { error: `${JSON.stringify(value)}: variable interpolation result is empty` };
  } catch (err) {
    return { error: `${JSON.stringify(value)}: ${(err as Error).message}` };
  }
}

/** applyValueTraitsSlice + apiutils.Deduplicate: values that fail to interpolate are dropped. */
export function applyValueTraitsSlice(values: readonly string[], traits: Traits): string[] {
  const out: string[] = [];
  for (const value of values) {
    const r = applyValueTraits(value, traits);
    if ('values' in r) for (const v of r.values) if (!out.includes(v)) out.push(v);
  }
  return out;
}

/** A label selector after templating: pairs, since two template keys can expand to the same key. */
export type LabelPairs = Array<readonly [key: string, values: readonly string[]]>;

/**
 * applyLabelsTraits: a key takes the first value it expands to, or "" when it fails; each value expands to
 * all its values, or to "" when it fails (an empty value only matches an empty label value).
 */
export function applyLabelsTraits(
  selector: Readonly<Record<string, string | readonly string[]>>,
  traits: Traits,
): LabelPairs {
  const out: LabelPairs = [];
  for (const [key, raw] of Object.entries(selector)) {
    const keyValues = applyValueTraits(key, traits);
    const newKey = 'values' in keyValues ? (keyValues.values[0] as string) : '';
    const values: string[] = [];
    for (const v of typeof raw === 'string' ? [raw] : raw) {
      const r = applyValueTraits(v, traits);
      for (const x of 'values' in r ? r.values : ['']) if (!values.includes(x)) values.push(x);
    }
    out.push([newKey, values]);
  }
  return out;
}
