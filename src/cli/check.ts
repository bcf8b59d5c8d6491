/**
 * The configuration check behind `broker check` and the CDK Bot construct: for every output of a bot
 * configuration, the broker's own access decision (explainDatabaseAccess) against the resources, so an
 * output the authority would refuse is found before anything runs. Pure: no I/O, no clock.
 */
import { requestedRoles } from '../authority/issuance.js';
import { type ExplainStep, explainDatabaseAccess } from '../authority/rbac.js';
import type { Bot, Db, Resource, Role } from '../authority/resources.js';
import { routeOf } from '../bot/bot.js';
import type { BotConfig } from '../bot/config.js';
import type { DatabaseRoute } from '../credentials/route.js';
import { formatDuration } from '../duration.js';

/** The decision for one output: allowed (by which roles), or refused with the deciding role, rule and reason. */
export interface OutputCheck {
  bot: string;
  /** The output's position in `outputs` (0-based), as `outputs[index]` in the config. */
  index: number;
  /** Where it sits when not in `outputs`: a `services.N` database output or database-tunnel. */
  where?: string;
  /** The output as a route: `user@service/database`. */
  output: string;
  route: DatabaseRoute;
  allowed: boolean;
  /** Allowed: the roles that allow it. Refused: the role that decided (`-` when no role did). */
  roles: string[];
  /** Refused: the rule or field that decided, e.g. `allow.db_users`, `deny.db_names`, `bot.spec.roles`. */
  rule: string;
  /** Refused: what the field held or matched. */
  value: string;
  /** Refused: why, in the authority's own words. Allowed: the longest certificate the roles give. */
  reason: string;
}

export interface BotCheck {
  bot: string;
  /** Roles the bot names that the resources do not define (ignored, as the authority ignores them). */
  missingRoles: string[];
  outputs: OutputCheck[];
  /** Whether every output would be issued. */
  ok: boolean;
}

export interface CheckInput {
  /** The authority's resources, as parseResources returns them. */
  resources: readonly Resource[];
  config: BotConfig;
  /** The `kind: bot` resource the configuration runs as. */
  botName: string;
}

/** The step that decided a refusal: a matching deny, an evaluation error, else the last allow that missed. */
function decidingStep(steps: readonly ExplainStep[]): ExplainStep | undefined {
  const last = <T>(xs: readonly T[], ok: (x: T) => boolean) => [...xs].reverse().find(ok);
  return (
    last(steps, (s) => s.outcome === 'error' || (s.outcome === 'matched' && s.field.startsWith('deny'))) ??
    last(steps, (s) => s.outcome === 'no match')
  );
}

const label = (r: DatabaseRoute) => `${r.username}@${r.service}/${r.database}`;

/** Evaluates every output of `config` as the authority would for bot `botName`. */
export function checkBotOutputs({ resources, config, botName }: CheckInput): BotCheck {
  const bot = resources.find((r): r is Bot => r.kind === 'bot' && r.metadata.name === botName);
  const roleOf = (name: string) =>
    resources.find((r): r is Role => r.kind === 'role' && r.metadata.name === name);
  const names = bot?.spec.roles ?? [];
  const roles = names.map(roleOf).filter((r): r is Role => r !== undefined);
  const missingRoles = names.filter((n) => !roleOf(n));
  // Tunnels are checked too: each of their connections gets a certificate for their route.
  const entries = [
    ...config.outputs.map((o) => ({ route: routeOf(o), origin: o.origin, requested: o.roles })),
    ...config.tunnels.map((t) => ({
      route: { service: t.service, database: t.database, username: t.username },
      origin: t.origin,
      requested: t.roles,
    })),
  ];
  const outputs = entries.map(({ route, origin, requested }, index): OutputCheck => {
    const base = {
      bot: botName,
      index,
      output: label(route),
      route,
      ...(origin.startsWith('outputs.') ? {} : { where: origin }),
    };
    if (!bot)
      return {
        ...base,
        allowed: false,
        roles: ['-'],
        rule: 'kind: bot',
        value: botName,
        reason: `the resources define no \`kind: bot\` named "${botName}", so the bot cannot join`,
      };
    // An output's `roles` narrow the evaluation to that subset of the bot's roles, as at issuance.
    const chosen = requestedRoles(botName, names, requested);
    if ('refused' in chosen) {
      const outside = requested?.find((r) => !names.includes(r)) ?? '-';
      return {
        ...base,
        allowed: false,
        roles: [outside],
        rule: `${origin}.roles`,
        value: outside,
        reason: chosen.refused,
      };
    }
    const db = resources.find((r): r is Db => r.kind === 'db' && r.metadata.name === route.service);
    const { decision, steps } = explainDatabaseAccess({
      bot: botName,
      roles: roles.filter((r) => chosen.roles.includes(r.metadata.name)),
      db,
      route,
      traits: bot.spec.traits,
    });
    if (decision.allowed)
      return {
        ...base,
        allowed: true,
        roles: decision.roles,
        rule: '',
        value: '',
        reason: `certificates last at most ${formatDuration(decision.maxTtlMs)}`,
      };
    const step = decidingStep(steps);
    const [role, rule, value] = step
      ? [step.role, step.field, step.detail]
      : !db
        ? ['-', 'service', route.service]
        : ['-', 'bot.spec.roles', JSON.stringify(names)];
    return { ...base, allowed: false, roles: [role], rule, value, reason: decision.reason };
  });
  return { bot: botName, missingRoles, outputs, ok: outputs.every((o) => o.allowed) };
}

/** One line for a refused output: bot, output, role, rule and reason. */
export function describeRefusal(o: OutputCheck): string {
  return `bot "${o.bot}" ${o.where ?? `outputs[${o.index}]`} (${o.output}) would be refused: role ${o.roles[0] === '-' ? '-' : `"${o.roles[0]}"`}, rule ${o.rule} (${o.value}): ${o.reason}`;
}
