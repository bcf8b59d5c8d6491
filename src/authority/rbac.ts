/**
 * Role-based access control for database certificates, decided as Teleport decides it. The rules live in
 * rbac/: regex (RE2 patterns), syntax, templates and email (trait templates), expression
 * (db_labels_expression), labels, matchers (db_names, db_users, per protocol), rules (resource rules),
 * prepare (traits applied to a role), decision (the whole decision and its explanation), enumerate (every
 * database name and user the roles allow, RoleSet.CheckDatabaseNamesAndUsers) and validate (create-time
 * checks). This file is the entry point the rest of the authority imports.
 */
import { matchLabels } from './rbac/labels.js';
import { compilePattern, PatternError } from './rbac/regex.js';

export {
  type AccessDecision,
  type AccessRequest,
  checkDatabaseAccess,
  type ExplainStep,
  type Explanation,
  explainDatabaseAccess,
  MAX_TTL_MS,
} from './rbac/decision.js';
export {
  type AllowedNamesAndUsers,
  type AllowedQuery,
  allowedDatabaseNamesAndUsers,
  type RoleTtl,
} from './rbac/enumerate.js';
export { PatternError } from './rbac/regex.js';

/**
 * Teleport's utils.MatchString: `^...$` is an RE2 regular expression, anything else a glob where only `*` is
 * special. An invalid expression matches nothing here (Teleport returns an error, which refuses as well).
 */
export function matchPattern(pattern: string, value: string): boolean {
  const compiled = compilePattern(pattern);
  return compiled instanceof PatternError ? false : compiled.test(value);
}

/**
 * Teleport's MatchLabels for a selector as written (no traits): empty matches nothing, `'*': '*'` matches
 * everything, every other key must match. Throws PatternError for an invalid regular expression.
 */
export function labelsMatch(
  selector: Readonly<Record<string, string | readonly string[]>> | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  const pairs = Object.entries(selector ?? {}).map(([k, v]) => [k, typeof v === 'string' ? [v] : v] as const);
  // Stryker disable next-line StringLiteral: keys of an object are unique, and then allow and deny agree.
  return matchLabels(pairs, labels, 'allow').match;
}
