/**
 * Which database names and users a bot's roles allow in all, as Teleport's RoleSet.CheckDatabaseNamesAndUsers
 * (lib/services/role.go) computes them for the db_names and db_users of a user certificate. Unlike the access
 * decision (decision.ts), this looks at no database: labels, namespaces and protocols play no part, only the
 * lists themselves and each role's max_session_ttl. Pure: no I/O, no clock.
 */
import { formatDuration, parseDuration } from '../../duration.js';
import { type Role, roleWithDefaults } from '../resources-schema.js';
import { mergeTraits, prepareRole } from './prepare.js';

/** What to enumerate: the bot's roles and traits, and the certificate TTL asked for. */
export interface AllowedQuery {
  roles: readonly Role[];
  /** Teleport's `ttl`: the TTL asked for, in milliseconds. */
  ttlMs: number;
  /** Teleport's `overrideTTL`: every role counts, whatever its max_session_ttl. */
  overrideTtl?: boolean | undefined;
  /** The bot's `spec.traits`, for templates in db_names and db_users. */
  traits?: readonly { name: string; values: readonly string[] }[] | undefined;
  /** Named in refusals; "this bot" when absent. */
  bot?: string | undefined;
}

/** A role and its max_session_ttl after defaults. */
export interface RoleTtl {
  role: string;
  maxSessionTtlMs: number;
}

interface Considered {
  /** Roles whose allow lists counted (max_session_ttl long enough, or overrideTtl). */
  counted: string[];
  /** Roles left out because their max_session_ttl is shorter than the TTL asked for. */
  ignored: RoleTtl[];
  /** deny.db_names and deny.db_users of every role after templates, as taken out of the allow lists. */
  denied: { names: string[]; users: string[] };
}

/**
 * The allowed names and users, or a refusal with Teleport's error class: `access-denied` (trace.AccessDenied:
 * no role's max_session_ttl covers the TTL) or `not-found` (trace.NotFound: nothing is left to allow).
 */
export type AllowedNamesAndUsers =
  | ({ allowed: true; names: string[]; users: string[] } & Considered)
  | ({ allowed: false; refusal: 'access-denied' | 'not-found'; reason: string } & Considered);

/** defaults.MaxCertDuration: RoleV6.CheckAndSetDefaults gives it to a max_session_ttl of 0. */
const MAX_CERT_DURATION_MS = 30 * 3_600_000;

/** RoleOptions.MaxSessionTTL.Value() after CheckAndSetDefaults (unset or 0 becomes 30h). */
function maxSessionTtlMs(role: Role): number {
  const text = roleWithDefaults(role).spec.options?.max_session_ttl;
  const ms = text === undefined ? undefined : parseDuration(text);
  return ms === undefined || ms === 0 ? MAX_CERT_DURATION_MS : ms;
}

/**
 * RoleSet.CheckDatabaseNamesAndUsers(ttl, overrideTTL), rule by rule:
 * 1. ApplyTraits first (FetchRoles does it before the role set exists): templates in db_names and db_users
 *    are expanded with the bot's traits; values that do not expand are dropped.
 * 2. A role counts when overrideTTL is set or `ttl <= max_session_ttl && max_session_ttl != 0`; the allow
 *    db_names and db_users of every counting role are gathered into one set each.
 * 3. The deny db_names and db_users of every role, counting or not, are then deleted from those sets by exact
 *    string (Go's delete on a map): a denied `*` removes only an allowed `*`, a denied name never removes an
 *    allowed `*`. (The access decision, decision.ts, reads a denied `*` as matching every name or user.)
 * 4. No counting role at all: trace.AccessDenied("this user cannot request database access for <ttl>"). This is
 *    checked after the deny pass, and before emptiness.
 * 5. Both sets empty: trace.NotFound("this user cannot request database access, has no assigned database
 *    names or users"). One empty set alone is not a refusal.
 * Teleport's NewRoleSet also appends the implicit role (max_session_ttl MaxDuration, no names or users), which
 * makes rule 4 unreachable for a real user; the broker has no implicit role here, as Teleport's own test of
 * this function has none, so a TTL longer than every role's max_session_ttl is refused and says so.
 */
export function allowedDatabaseNamesAndUsers(query: AllowedQuery): AllowedNamesAndUsers {
  const who = query.bot === undefined ? 'this bot' : `bot "${query.bot}"`;
  const traits = mergeTraits(query.traits);
  const names = new Set<string>();
  const users = new Set<string>();
  const considered: Considered = { counted: [], ignored: [], denied: { names: [], users: [] } };
  const prepared = query.roles.map((role) => {
    const d = roleWithDefaults(role);
    return prepareRole({ name: d.metadata.name, allow: d.spec.allow, deny: d.spec.deny }, traits);
  });

  prepared.forEach((role, i) => {
    const max = maxSessionTtlMs(query.roles[i] as Role);
    if (query.overrideTtl || (query.ttlMs <= max && max !== 0)) {
      considered.counted.push(role.name);
      for (const n of role.allow.names) names.add(n);
      for (const u of role.allow.users) users.add(u);
    } else considered.ignored.push({ role: role.name, maxSessionTtlMs: max });
  });
  for (const role of prepared) {
    for (const n of role.deny.names) {
      names.delete(n);
      if (!considered.denied.names.includes(n)) considered.denied.names.push(n);
    }
    for (const u of role.deny.users) {
      users.delete(u);
      if (!considered.denied.users.includes(u)) considered.denied.users.push(u);
    }
  }

  if (considered.counted.length === 0) {
    const ttl = formatDuration(query.ttlMs);
    const reason =
      prepared.length === 0
        ? `${who} has no roles, so it cannot request database access`
        : `${who} cannot request database access for ${ttl}: every role's max_session_ttl is shorter (${considered.ignored
            .map((r) => `${r.role}: ${formatDuration(r.maxSessionTtlMs)}`)
            .join(', ')})`;
    return { allowed: false, refusal: 'access-denied', reason, ...considered };
  }
  if (names.size === 0 && users.size === 0)
    return {
      allowed: false,
      refusal: 'not-found',
      reason: `${who} is not allowed to access any databases: roles ${considered.counted.join(', ')} leave no database names or users in allow.db_names/allow.db_users once deny.db_names/deny.db_users are taken out`,
      ...considered,
    };
  return { allowed: true, names: [...names], users: [...users], ...considered };
}
