import type { Command } from 'commander';
import { NotFoundError } from '../authority/errors.js';
import { explainDatabaseAccess } from '../authority/rbac.js';
import type { Db, Role } from '../authority/resources.js';
import { formatDuration } from '../duration.js';
import { openAuthority } from './authority-commands.js';
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

/** Registers `broker rbac explain`. */
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
      const bot = await optional(() => authority.getResources('bot', botName));
      if (!bot) throw new NotFoundError(`bot "${botName}" not found`);
      const roles: Role[] = [];
      const missing: string[] = [];
      for (const name of bot.spec.roles) {
        const role = await optional(() => authority.getResources('role', name));
        if (role) roles.push(role);
        else missing.push(name);
      }
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
}
