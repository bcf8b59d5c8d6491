/**
 * The database access decision, as Teleport makes it for a Machine ID bot: the bot can see the database
 * service (CheckAccessToRule on db_server list and read), then RoleSet.checkAccess with the database
 * matchers of lib/srv/db/common/role (GetDatabaseRoleMatchers): deny rules first across every role (labels
 * or expression, then db_users or db_names, each enough to deny), then one role whose labels, db_users and
 * (where the protocol checks them) db_names all match. The shortest max_session_ttl of all roles caps the
 * certificate (AdjustSessionTTL). Pure: no I/O, no clock. Every step is recorded for `broker rbac explain`.
 */
import type { DatabaseRoute } from '../../credentials/route.js';
import { parseDuration } from '../../duration.js';
import { type Db, type Role, roleWithDefaults } from '../resources-schema.js';
import { checkLabelsMatch } from './labels.js';
import { checksDatabaseNames, foldsUserCase, matchDatabaseName, matchDatabaseUser } from './matchers.js';
import { mergeTraits, type PreparedRole, type PreparedSide, prepareRole } from './prepare.js';
import { checkAccessToRule, DISCOVERY_KIND, DISCOVERY_VERBS } from './rules.js';

export type AccessDecision =
  | { allowed: true /** roles that allowed the route */; roles: string[]; maxTtlMs: number }
  | { allowed: false; reason: string };

/** Hard cap on any certificate the authority issues. */
export const MAX_TTL_MS = 24 * 3_600_000;

/** What to decide: the bot, its roles and traits, the database service and the route. */
export interface AccessRequest {
  bot: string;
  roles: readonly Role[];
  db: Db | undefined;
  route: DatabaseRoute;
  /** The bot's `spec.traits`, for templates and db_labels_expression. */
  traits?: readonly { name: string; values: readonly string[] }[] | undefined;
}

/** One step of the decision: which role, which field, what it held and what came of it. */
export interface ExplainStep {
  role: string;
  field: string;
  outcome: 'matched' | 'no match' | 'error' | 'not applicable';
  detail: string;
}

export interface Explanation {
  decision: AccessDecision;
  steps: ExplainStep[];
}

const list = (values: readonly string[]) => `[${values.map((v) => JSON.stringify(v)).join(', ')}]`;

function describeLabels(labels: Readonly<Record<string, string>>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(', ') : 'no labels';
}

/** Decides whether the bot may get a certificate for the route, and records why. */
export function explainDatabaseAccess(input: AccessRequest): Explanation {
  const { bot, roles, db, route } = input;
  const steps: ExplainStep[] = [];
  const deny = (reason: string): Explanation => ({ decision: { allowed: false, reason }, steps });
  if (roles.length === 0)
    return deny(`bot "${bot}" has no roles; add one with \`broker bots update ${bot} --add-roles ROLE\``);
  if (!db) return deny(`database service "${route.service}" does not exist`);
  const traits = mergeTraits(input.traits);
  const prepared = roles.map((r) => {
    const d = roleWithDefaults(r);
    return prepareRole({ name: d.metadata.name, allow: d.spec.allow, deny: d.spec.deny }, traits);
  });

  for (const verb of DISCOVERY_VERBS) {
    const rule = checkAccessToRule(
      prepared.map((p) => ({
        role: p.name,
        allow: p.allow.rules,
        deny: p.deny.rules,
        allowNamespace: p.allow.namespace,
        denyNamespace: p.deny.namespace,
      })),
      DISCOVERY_KIND,
      verb,
    );
    if (!rule.allowed) {
      const by = rule.denied
        ? `role "${rule.denied.role}" denies ${verb} on ${DISCOVERY_KIND} by deny.rules (resources ${list(rule.denied.rule.resources)}, verbs ${list(rule.denied.rule.verbs)})`
        : `no role allows ${verb} on ${DISCOVERY_KIND}`;
      steps.push({ role: rule.denied?.role ?? '-', field: 'deny.rules', outcome: 'matched', detail: by });
      return deny(`${by}; the bot cannot look up database service "${db.metadata.name}"`);
    }
    steps.push({
      role: rule.by,
      field: 'rules',
      outcome: 'matched',
      detail: `${verb} on ${DISCOVERY_KIND} allowed`,
    });
  }

  const labels = db.metadata.labels ?? {};
  const env = { labels, traits };
  const protocol = db.spec.protocol;
  const fold = foldsUserCase(protocol);
  const namesChecked = checksDatabaseNames(protocol);
  const where = `database service "${db.metadata.name}" (${describeLabels(labels)})`;

  // Deny rules are greedy: any one of labels, user or name in any role denies.
  for (const role of prepared) {
    if (!role.deny.namespace) continue;
    try {
      const m = checkLabelsMatch('deny', role.deny.labels, env);
      if (m.match) {
        steps.push({ role: role.name, field: 'deny.db_labels', outcome: 'matched', detail: m.why });
        return deny(
          `role "${role.name}" denies ${where} by deny.db_labels${role.deny.labels.expression ? '/db_labels_expression' : ''} (${m.why})`,
        );
      }
    } catch (err) {
      return evaluationError(role.name, 'deny.db_labels', err);
    }
    const user = matchDatabaseUser(role.deny.users, route.username, fold);
    if (user !== undefined) {
      steps.push({
        role: role.name,
        field: 'deny.db_users',
        outcome: 'matched',
        detail: JSON.stringify(user),
      });
      return deny(
        `role "${role.name}" denies database user "${route.username}" by deny.db_users entry ${JSON.stringify(user)}`,
      );
    }
    const name = namesChecked ? matchDatabaseName(role.deny.names, route.database) : undefined;
    if (name !== undefined) {
      steps.push({
        role: role.name,
        field: 'deny.db_names',
        outcome: 'matched',
        detail: JSON.stringify(name),
      });
      return deny(
        `role "${role.name}" denies database name "${route.database}" by deny.db_names entry ${JSON.stringify(name)}`,
      );
    }
  }

  // Allow: one role must match everything; Teleport stops at the first such role.
  const allowing: string[] = [];
  const byLabels: PreparedRole[] = [];
  const byUser: PreparedRole[] = [];
  for (const role of prepared) {
    if (!role.allow.namespace) continue;
    let labelled: boolean;
    try {
      const m = checkLabelsMatch('allow', role.allow.labels, env);
      steps.push({
        role: role.name,
        field: 'allow.db_labels',
        outcome: m.match ? 'matched' : 'no match',
        detail: m.why,
      });
      labelled = m.match;
    } catch (err) {
      if (allowing.length) break;
      return evaluationError(role.name, 'allow.db_labels', err);
    }
    if (!labelled) continue;
    byLabels.push(role);
    const user = matchDatabaseUser(role.allow.users, route.username, fold);
    steps.push(matchStep(role, 'allow.db_users', user, fold ? ' (case-insensitive)' : ''));
    if (user === undefined) continue;
    byUser.push(role);
    if (namesChecked) {
      const name = matchDatabaseName(role.allow.names, route.database);
      steps.push(matchStep(role, 'allow.db_names', name, ''));
      if (name === undefined) continue;
    } else
      steps.push({
        role: role.name,
        field: 'allow.db_names',
        outcome: 'not applicable',
        detail: `${protocol} does not check db_names`,
      });
    allowing.push(role.name);
  }
  if (allowing.length === 0)
    return deny(allowFailure({ bot, roles: prepared, byLabels, byUser, route, where, namesChecked }));
  return { decision: { allowed: true, roles: allowing, maxTtlMs: maxTtl(roles, steps) }, steps };

  function evaluationError(role: string, field: string, err: unknown): Explanation {
    const reason = `evaluating ${field} of role "${role}" failed: ${(err as Error).message}`;
    steps.push({ role, field, outcome: 'error', detail: (err as Error).message });
    return deny(reason);
  }
}

function matchStep(
  role: PreparedRole,
  field: 'allow.db_users' | 'allow.db_names',
  hit: string | undefined,
  note: string,
): ExplainStep {
  const values = field === 'allow.db_users' ? role.allow.users : role.allow.names;
  return hit === undefined
    ? { role: role.name, field, outcome: 'no match', detail: `${list(values)}${note}` }
    : { role: role.name, field, outcome: 'matched', detail: `${JSON.stringify(hit)}${note}` };
}

function allowFailure(o: {
  bot: string;
  roles: PreparedRole[];
  byLabels: PreparedRole[];
  byUser: PreparedRole[];
  route: DatabaseRoute;
  where: string;
  namesChecked: boolean;
}): string {
  const names = o.roles.map((r) => r.name).join(', ');
  const show = (rs: PreparedRole[], pick: (s: PreparedSide) => string[]) =>
    rs.map((r) => `${r.name}: ${list(pick(r.allow))}`).join('; ');
  if (o.byLabels.length === 0)
    return `no role of bot "${o.bot}" (${names}) has allow.db_labels or db_labels_expression matching ${o.where}`;
  if (o.byUser.length === 0)
    return `database user "${o.route.username}" is not in allow.db_users of the roles matching ${o.where} (${show(o.byLabels, (s) => s.users)})`;
  return `database name "${o.route.database}" is not in allow.db_names of the roles allowing user "${o.route.username}" on ${o.where} (${show(o.byUser, (s) => s.names)})`;
}

/** AdjustSessionTTL: the shortest max_session_ttl of every role of the bot, and never more than 24 h. */
function maxTtl(roles: readonly Role[], steps: ExplainStep[]): number {
  let ms = MAX_TTL_MS;
  for (const role of roles) {
    const ttl = roleWithDefaults(role).spec.options?.max_session_ttl;
    const value = ttl === undefined ? undefined : parseDuration(ttl);
    if (value !== undefined && value > 0 && value < ms) {
      ms = value;
      steps.push({
        role: role.metadata.name,
        field: 'options.max_session_ttl',
        outcome: 'matched',
        detail: ttl as string,
      });
    }
  }
  return ms;
}

/** The decision alone. */
export function checkDatabaseAccess(input: AccessRequest): AccessDecision {
  return explainDatabaseAccess(input).decision;
}
