import type { DatabaseRoute } from '../credentials/route.js';
import { parseDuration } from '../duration.js';
import type { Db, Role, RoleConditions } from './resources.js';

export type AccessDecision =
  | { allowed: true /** roles that allowed the route */; roles: string[]; maxTtlMs: number }
  | { allowed: false; reason: string };

/** Hard cap on any certificate the authority issues. */
export const MAX_TTL_MS = 24 * 3_600_000;

const regexCache = new Map<string, RegExp | null>();

/**
 * Matches one value against a Teleport pattern: `*` matches anything, a `^...$` pattern is a regular
 * expression, anything else is a glob where `*` matches any run of characters.
 */
export function matchPattern(pattern: string, value: string): boolean {
  if (pattern === '*') return true;
  let re = regexCache.get(pattern);
  if (re === undefined) {
    if (pattern.startsWith('^') && pattern.endsWith('$')) {
      try {
        re = new RegExp(pattern, 'u');
      } catch {
        re = null; // an invalid expression matches nothing rather than everything
      }
    } else {
      re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`, 'su');
    }
    regexCache.set(pattern, re);
  }
  return re ? re.test(value) : false;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Teleport label selector semantics: every key of the selector must match the resource's label;
 * `'*': '*'` matches every resource; an empty or missing selector matches nothing.
 */
export function labelsMatch(
  selector: Readonly<Record<string, string | readonly string[]>> | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  const entries = Object.entries(selector ?? {});
  if (entries.length === 0) return false;
  return entries.every(([key, want]) => {
    const patterns = typeof want === 'string' ? [want] : want;
    if (key === '*') return patterns.includes('*');
    const have = labels[key];
    return have !== undefined && patterns.some((p) => matchPattern(p, have));
  });
}

function listMatches(list: readonly string[] | undefined, value: string): boolean {
  return (list ?? []).some((p) => matchPattern(p, value));
}

function rulesGrant(conditions: RoleConditions | undefined, verb: string): boolean {
  return (conditions?.rules ?? []).some(
    (r) =>
      r.resources.some((res) => res === 'db' || res === '*') && r.verbs.some((v) => v === verb || v === '*'),
  );
}

function describeLabels(labels: Readonly<Record<string, string>>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(', ') : 'no labels';
}

/**
 * Decides whether a bot holding `roles` may get a database certificate for `route`. Pure: no I/O, no clock.
 * Deny wins over allow; allow needs one role whose db_labels, db_names and db_users all match; and the
 * roles together must grant `read` and `list` on `db` (needed to resolve the service).
 * Every denial carries a reason an operator can act on.
 */
export function checkDatabaseAccess(input: {
  bot: string;
  roles: readonly Role[];
  db: Db | undefined;
  route: DatabaseRoute;
}): AccessDecision {
  const { bot, roles, db, route } = input;
  const roleNames = roles.map((r) => r.metadata.name);
  if (roles.length === 0)
    return {
      allowed: false,
      reason: `bot "${bot}" has no roles; add one with \`broker bots update ${bot} --add-roles ROLE\``,
    };
  if (!db) return { allowed: false, reason: `database service "${route.service}" does not exist` };
  const labels = db.metadata.labels ?? {};

  for (const verb of ['read', 'list']) {
    const denier = roles.find((r) => rulesGrant(r.spec.deny, verb));
    if (denier)
      return { allowed: false, reason: `role "${denier.metadata.name}" denies ${verb} on db resources` };
    if (!roles.some((r) => rulesGrant(r.spec.allow, verb)))
      return {
        allowed: false,
        reason: `none of the bot's roles (${roleNames.join(', ')}) allows ${verb} on db resources; add rules: [{ resources: [db_server, db], verbs: [read, list] }]`,
      };
  }

  for (const role of roles) {
    const deny = role.spec.deny;
    if (!deny) continue;
    const name = role.metadata.name;
    if (labelsMatch(deny.db_labels, labels))
      return {
        allowed: false,
        reason: `role "${name}" denies database service "${db.metadata.name}" (${describeLabels(labels)}) by deny.db_labels`,
      };
    if (listMatches(deny.db_names, route.database))
      return {
        allowed: false,
        reason: `role "${name}" denies database name "${route.database}" by deny.db_names`,
      };
    if (listMatches(deny.db_users, route.username))
      return {
        allowed: false,
        reason: `role "${name}" denies database user "${route.username}" by deny.db_users`,
      };
  }

  const byLabels = roles.filter((r) => labelsMatch(r.spec.allow?.db_labels, labels));
  if (byLabels.length === 0)
    return {
      allowed: false,
      reason: `no role of bot "${bot}" (${roleNames.join(', ')}) has allow.db_labels matching database service "${db.metadata.name}" (${describeLabels(labels)})`,
    };
  const byName = byLabels.filter((r) => listMatches(r.spec.allow?.db_names, route.database));
  if (byName.length === 0)
    return {
      allowed: false,
      reason: `database name "${route.database}" is not in allow.db_names of the roles matching "${db.metadata.name}" (${describeAllowed(byLabels, 'db_names')})`,
    };
  const allowing = byName.filter((r) => listMatches(r.spec.allow?.db_users, route.username));
  if (allowing.length === 0)
    return {
      allowed: false,
      reason: `database user "${route.username}" is not in allow.db_users of the roles allowing database "${route.database}" on "${db.metadata.name}" (${describeAllowed(byName, 'db_users')})`,
    };

  // As in Teleport, the shortest max_session_ttl of all the bot's roles applies.
  let maxTtlMs = MAX_TTL_MS;
  for (const role of roles) {
    const ttl = role.spec.options?.max_session_ttl;
    const ms = ttl === undefined ? undefined : parseDuration(ttl);
    if (ms !== undefined && ms > 0) maxTtlMs = Math.min(maxTtlMs, ms);
  }
  return { allowed: true, roles: allowing.map((r) => r.metadata.name), maxTtlMs };
}

function describeAllowed(roles: readonly Role[], field: 'db_names' | 'db_users'): string {
  return roles.map((r) => `${r.metadata.name}: [${(r.spec.allow?.[field] ?? []).join(', ')}]`).join('; ');
}
