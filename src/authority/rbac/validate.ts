/**
 * Create-time checks of every pattern, template and expression in a role, so that nothing is stored that
 * fails at request time or matches nothing by accident. Teleport parses the same things in ValidateRole
 * (validateRoleExpressions: templates with NewTraitsTemplateExpression, label expressions with
 * parseLabelExpression) and refuses `'*'` with another value in CheckAndSetDefaults (checkWildcardSelector);
 * it only warns about the rest and then skips the value at request time. The broker refuses instead, and
 * also refuses shapes Teleport would take literally although they read as patterns.
 */
import { parseLabelExpression } from './expression.js';
import { isRegexPattern, patternProblem } from './regex.js';
import { parseTemplate, templateProblem } from './templates.js';

export type IssuePath = (string | number)[];
export interface RoleIssue {
  path: IssuePath;
  message: string;
}

interface SideInput {
  db_labels?: Readonly<Record<string, string | readonly string[]>> | undefined;
  db_labels_expression?: string | undefined;
  db_names?: readonly string[] | undefined;
  db_users?: readonly string[] | undefined;
}

/** The literal text of a value: all of it, or the prefix and suffix around its template. */
function literalParts(value: string): string {
  try {
    const t = parseTemplate(value);
    return t.expr.kind === 'literal' ? value : t.prefix + t.suffix;
  } catch {
    return value;
  }
}

function labelValueIssue(value: string): string | undefined {
  const problem = templateProblem(value);
  if (problem) return problem;
  if (parseTemplate(value).expr.kind !== 'literal') return undefined;
  if (isRegexPattern(value)) return patternProblem(value);
  if (value.startsWith('^') !== (value.endsWith('$') && value.length > 1))
    return 'a regular expression must start with ^ and end with $; otherwise Teleport matches the value as a glob, ^ and $ included (write ^\\^...$ to match such text)';
  return undefined;
}

function nameIssue(field: 'db_names' | 'db_users', value: string): string | undefined {
  if (value === '') return `an empty entry in ${field} matches nothing`;
  const problem = templateProblem(value);
  if (problem) return problem;
  const literal = literalParts(value);
  if (value !== '*' && literal.includes('*'))
    return `Teleport matches ${field} literally and only a lone "*" is a wildcard, so this would match only a name spelled with "*"`;
  if (value === literal && isRegexPattern(value) && value.length > 1)
    return `Teleport matches ${field} literally: regular expressions are not supported here`;
  return undefined;
}

function sideIssues(side: 'allow' | 'deny', c: SideInput): RoleIssue[] {
  const issues: RoleIssue[] = [];
  const at = (...path: IssuePath) => ['spec', side, ...path];
  for (const [key, raw] of Object.entries(c.db_labels ?? {})) {
    const values = typeof raw === 'string' ? [raw] : [...raw];
    if (key === '')
      issues.push({ path: at('db_labels', key), message: 'an empty label key matches no database' });
    const keyProblem = templateProblem(key);
    if (keyProblem) issues.push({ path: at('db_labels', key), message: keyProblem });
    if (key === '*' && !(values.length === 1 && values[0] === '*'))
      issues.push({
        path: at('db_labels', key),
        message: `selector *:<val> is not supported: the key '*' only takes the value '*' ('*': '*' matches every database)`,
      });
    values.forEach((v, i) => {
      const problem = labelValueIssue(v);
      if (problem)
        issues.push({
          path: typeof raw === 'string' ? at('db_labels', key) : at('db_labels', key, i),
          message: problem,
        });
    });
  }
  if (c.db_labels_expression !== undefined) {
    try {
      parseLabelExpression(c.db_labels_expression);
    } catch (err) {
      issues.push({
        path: at('db_labels_expression'),
        message: `parsing label expression: ${(err as Error).message}`,
      });
    }
  }
  for (const field of ['db_names', 'db_users'] as const)
    (c[field] ?? []).forEach((v, i) => {
      const problem = nameIssue(field, v);
      if (problem) issues.push({ path: at(field, i), message: problem });
    });
  return issues;
}

/** Every problem with the patterns, templates and expressions of a role's spec. */
export function rolePatternIssues(spec: {
  allow?: SideInput | undefined;
  deny?: SideInput | undefined;
}): RoleIssue[] {
  return [...sideIssues('allow', spec.allow ?? {}), ...sideIssues('deny', spec.deny ?? {})];
}

const NO_PROVISIONING =
  'is not supported: the broker does not create database users, roles or permissions (Teleport automatic user provisioning); grant existing users with db_users';

/** Teleport role fields the broker knows and refuses, with the reason; other unknown fields get the generic message. */
export function unsupportedRoleFields(value: unknown): RoleIssue[] {
  const issues: RoleIssue[] = [];
  const spec = (value as { spec?: Record<string, unknown> } | null)?.spec;
  if (!spec || typeof spec !== 'object') return issues;
  const options = spec.options as Record<string, unknown> | undefined;
  for (const field of ['create_db_user', 'create_db_user_mode'])
    if (options && typeof options === 'object' && field in options)
      issues.push({ path: ['spec', 'options', field], message: `${field} ${NO_PROVISIONING}` });
  for (const side of ['allow', 'deny']) {
    const c = spec[side] as Record<string, unknown> | undefined;
    if (!c || typeof c !== 'object') continue;
    for (const field of ['db_roles', 'db_permissions'])
      if (field in c) issues.push({ path: ['spec', side, field], message: `${field} ${NO_PROVISIONING}` });
    for (const field of ['db_service_labels', 'db_service_labels_expression'])
      if (field in c)
        issues.push({
          path: ['spec', side, field],
          message: `${field} is not supported: the broker has no database service agents; select databases with db_labels`,
        });
    const rules = Array.isArray(c.rules) ? c.rules : [];
    rules.forEach((rule: unknown, i) => {
      for (const field of ['where', 'actions'])
        if (rule && typeof rule === 'object' && field in rule)
          issues.push({
            path: ['spec', side, 'rules', i, field],
            message: `${field} is not supported in rules: the broker evaluates rules by resources and verbs only; remove ${field}`,
          });
    });
  }
  return issues;
}
