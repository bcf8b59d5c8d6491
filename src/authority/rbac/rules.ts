/**
 * Resource rules (`rules: [{ resources, verbs }]`). A bot finds its database the way tbot does: it lists
 * `db_server` resources (tbot's getDatabase → ServerWithRoles.ListResources, which requires the `list` and
 * `read` verbs on `db_server`). Mirrors lib/services/role.go: RuleSet.Match (rules naming the resource, then
 * rules for `*`; the verb or `*`), CheckAccessToRule (any matching deny rule denies; else any allow rule,
 * including the implicit role's, allows) and DefaultImplicitRules (every role set may list and read
 * `db_server` and `db`), so allow rules are not needed and deny rules are what can refuse.
 */

export interface Rule {
  resources: readonly string[];
  verbs: readonly string[];
}

/** The kind and verbs ListResources checks before a bot can see a database service. */
export const DISCOVERY_KIND = 'db_server';
export const DISCOVERY_VERBS = ['list', 'read'] as const;

/** DefaultImplicitRules entries for databases: RO() on db_server and db. */
const IMPLICIT_RULES: readonly Rule[] = [
  { resources: ['db_server'], verbs: ['list', 'read'] },
  { resources: ['db'], verbs: ['list', 'read'] },
];

/** RuleSet.Match for one resource and verb (without `where`, which the broker refuses). */
export function ruleMatches(rules: readonly Rule[], resource: string, verb: string): Rule | undefined {
  const hasVerb = (r: Rule) => r.verbs.includes('*') || r.verbs.includes(verb);
  return (
    rules.find((r) => r.resources.includes(resource) && hasVerb(r)) ??
    rules.find((r) => r.resources.includes('*') && hasVerb(r))
  );
}

/** A role's rules on one side, and whether that side applies in the default namespace. */
export interface RoleRules {
  role: string;
  allow: readonly Rule[];
  deny: readonly Rule[];
  allowNamespace: boolean;
  denyNamespace: boolean;
}

export type RuleDecision =
  | { allowed: true; by: string }
  | { allowed: false; denied?: { role: string; rule: Rule } };

/** CheckAccessToRule(namespace default, resource, verb) with the implicit role appended to the set. */
export function checkAccessToRule(roles: readonly RoleRules[], resource: string, verb: string): RuleDecision {
  for (const r of roles) {
    const rule = r.denyNamespace ? ruleMatches(r.deny, resource, verb) : undefined;
    if (rule) return { allowed: false, denied: { role: r.role, rule } };
  }
  for (const r of roles)
    if (r.allowNamespace && ruleMatches(r.allow, resource, verb)) return { allowed: true, by: r.role };
  if (ruleMatches(IMPLICIT_RULES, resource, verb)) return { allowed: true, by: 'the implicit default role' };
  return { allowed: false };
}

/** MatchNamespace for the `default` namespace: a missing list is the default, `*` matches everything. */
export function matchesDefaultNamespace(namespaces: readonly string[] | undefined): boolean {
  return namespaces === undefined || namespaces.includes('default') || namespaces.includes('*');
}
