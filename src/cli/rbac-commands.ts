import type { Command } from 'commander';
import type { Authority } from '../authority/authority.js';
import { NotFoundError } from '../authority/errors.js';
import {
  type AllowedNamesAndUsers,
  allowedDatabaseNamesAndUsers,
  explainDatabaseAccess,
} from '../authority/rbac.js';
import type { Bot, Db, Role } from '../authority/resources.js';
import { formatDuration, parseDuration } from '../duration.js';
import { openAuthority } from './authority-commands.js';
import { UsageError } from './errors.js';
import { table } from './output.js';

type Out = (line: string) => void;

async function optional<T>(get: () => Promise<T[]>): Promise<T | undefined> {
  try {
    return (await get())[0];
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** A bot with the roles it names that still exist, and those that do not. */
async function loadBot(
  authority: Authority,
  botName: string,
): Promise<{ bot: Bot; roles: Role[]; missing: string[] }> {
  const bot = await optional(() => authority.getResources('bot', botName));
  if (!bot) throw new NotFoundError(`bot "${botName}" not found`);
  const roles: Role[] = [];
  const missing: string[] = [];
  for (const name of bot.spec.roles) {
    const role = await optional(() => authority.getResources('role', name));
    if (role) roles.push(role);
    else missing.push(name);
  }
  return { bot, roles, missing };
}

/** What `broker rbac allowed` prints, and from what. */
export interface AllowedInput {
  bot: Bot;
  roles: readonly Role[];
  /** Roles the bot names that no longer exist. */
  missing: readonly string[];
  /** `--ttl` in milliseconds; absent: every role counts (Teleport's overrideTTL, as its web UI lists them). */
  ttlMs?: number | undefined;
  format: 'text' | 'json';
}

/** The core of `broker rbac allowed`: the allowed database names and users of the bot's roles, as lines. */
export function allowedLines(input: AllowedInput): string[] {
  const { bot, roles, missing, ttlMs } = input;
  const result: AllowedNamesAndUsers = allowedDatabaseNamesAndUsers({
    roles,
    ttlMs: ttlMs ?? 0,
    overrideTtl: ttlMs === undefined,
    traits: bot.spec.traits,
    bot: bot.metadata.name,
  });
  const ttl = ttlMs === undefined ? undefined : formatDuration(ttlMs);
  if (input.format === 'json')
    return [
      JSON.stringify({ bot: bot.metadata.name, ttl: ttl ?? null, missingRoles: missing, result }, null, 2),
    ];
  const show = (values: readonly string[]) => (values.length ? values.join(', ') : '(none)');
  const out = [
    `bot "${bot.metadata.name}" (roles: ${show(bot.spec.roles)}), ${ttl ? `TTL ${ttl}` : 'any TTL'}`,
  ];
  if (missing.length) out.push(`roles that no longer exist (ignored): ${missing.join(', ')}`);
  if (result.allowed)
    out.push(`database names: ${show(result.names)}`, `database users: ${show(result.users)}`);
  else out.push(`NOT ALLOWED: ${result.reason}`);
  if (result.ignored.length)
    out.push(
      `roles left out, max_session_ttl shorter than ${ttl}: ${result.ignored
        .map((r) => `${r.role} (${formatDuration(r.maxSessionTtlMs)})`)
        .join(', ')}`,
    );
  const { names, users } = result.denied;
  if (names.length || users.length)
    out.push(`deny lists (taken out of the lists above): names ${show(names)}; users ${show(users)}`);
  if (result.allowed && (names.includes('*') || users.includes('*')))
    out.push(
      'a deny list holds "*": as in Teleport it takes out only an allowed "*" here, but when connecting it refuses every user (or every name, where the protocol checks names); see `broker rbac explain`',
    );
  return out;
}

/** Registers `broker rbac explain` and `broker rbac allowed`. */
export function registerRbacCommands(program: Command, out: Out): void {
  const rbac = program.command('rbac').description('inspect role-based access decisions');
  rbac
    .command('explain')
    .description(
      'show whether BOT may get a certificate for USER on DATABASE of SERVICE, and which role, field and value decided it',
    )
    .argument('<bot>')
    .argument('<service>', 'database service (a db resource)')
    .argument('<database>', 'database name')
    .argument('<user>', 'database user')
    .option('--format <format>', 'text or json', 'text')
    .action(async (...args: [string, string, string, string, { format: string }]) => {
      const [botName, service, database, username, opts] = args;
      const authority = await openAuthority(program.opts<{ stateDir: string }>().stateDir);
      const { bot, roles, missing } = await loadBot(authority, botName);
      const db: Db | undefined = await optional(() => authority.getResources('db', service));
      const route = { service, database, username };
      const { decision, steps } = explainDatabaseAccess({
        bot: botName,
        roles,
        db,
        route,
        traits: bot.spec.traits,
      });
      if (opts.format === 'json') {
        out(JSON.stringify({ route, bot: botName, missingRoles: missing, decision, steps }, null, 2));
        return;
      }
      out(`bot "${botName}" → ${username}@${service}/${database}${db ? ` (${db.spec.protocol})` : ''}`);
      if (missing.length) out(`roles that no longer exist (ignored): ${missing.join(', ')}`);
      out(
        decision.allowed
          ? `ALLOWED by role(s) ${decision.roles.join(', ')}; certificates last at most ${formatDuration(decision.maxTtlMs)}`
          : `DENIED: ${decision.reason}`,
      );
      if (steps.length)
        out(
          table(
            ['Role', 'Field', 'Outcome', 'Detail'],
            steps.map((s) => [s.role, s.field, s.outcome, s.detail]),
          ),
        );
    });

  rbac
    .command('allowed')
    .description(
      "list the database names and users BOT's roles allow in all (Teleport's CheckDatabaseNamesAndUsers); with --ttl, only roles whose max_session_ttl covers it count",
    )
    .argument('<bot>')
    .option('--ttl <duration>', 'certificate TTL to check against max_session_ttl, e.g. 1h (default: any)')
    .option('--format <format>', 'text or json', 'text')
    .action(async (botName: string, opts: { ttl?: string; format: string }) => {
      if (opts.format !== 'text' && opts.format !== 'json')
        throw new UsageError(`--format must be text or json, not ${JSON.stringify(opts.format)}`);
      const ttlMs = opts.ttl === undefined ? undefined : parseDuration(opts.ttl);
      if (opts.ttl !== undefined && ttlMs === undefined)
        throw new UsageError(`--ttl must be a duration such as 30m or 1h, not ${JSON.stringify(opts.ttl)}`);
      const authority = await openAuthority(program.opts<{ stateDir: string }>().stateDir);
      const loaded = await loadBot(authority, botName);
      for (const line of allowedLines({ ...loaded, ttlMs, format: opts.format })) out(line);
    });
}
