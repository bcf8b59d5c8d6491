import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { FileAuditLog, readAuditLog } from '../authority/audit.js';
import { Authority, DEFAULT_TOKEN_TTL_MS } from '../authority/authority.js';
import { parseKind, parseResources } from '../authority/resources.js';
import { ConfigError } from '../config/errors.js';
import { formatDuration, parseDuration } from '../duration.js';
import { KEY_ALGORITHMS } from '../pki/keys.js';
import { FileStateStore } from '../state/file-store.js';
import { registerAuthCommands } from './auth-commands.js';
import {
  addBotWithTraits,
  type TraitFlags,
  traitOptions,
  traitsFromFlags,
  updatedTraits,
  writeBotTraits,
} from './bot-traits.js';
import { UsageError } from './errors.js';
import { table } from './output.js';
import { botTokenJson, kindAndName, registerBotInstances, textOrJson } from './tctl-compat.js';

export const DEFAULT_STATE_DIR = 'var/authority';

/** Opens the authority of a state directory (checks permissions and that it was initialised). */
export async function openAuthority(stateDir: string): Promise<Authority> {
  const store = await FileStateStore.open(stateDir);
  const authority = new Authority({ store, audit: new FileAuditLog(path.join(stateDir, 'audit.log')) });
  await authority.ca('bot'); // fails early, with advice, on a directory that was never initialised
  return authority;
}

export function durationOption(text: string, flag: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0)
    throw new UsageError(`${flag} ${JSON.stringify(text)} is not a duration; use e.g. 30m, 1h, 8h`);
  return ms;
}

function list(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

type Out = (line: string) => void;

/** Registers the operator commands (`tctl`-shaped) on the program. */
export function registerAuthorityCommands(program: Command, out: Out): void {
  const stateDir = () => program.opts<{ stateDir: string }>().stateDir;
  const open = () => openAuthority(stateDir());

  program
    .command('init')
    .description(
      'create a new authority: the bot, database client and database server CAs, in the state directory',
    )
    .option('--cluster-name <name>', 'name shown in CA subjects', 'broker')
    .option('--ca-key-algorithm <algorithm>', `the CA keys: ${KEY_ALGORITHMS.join(' or ')}`, 'rsa2048')
    .action(async (opts: { clusterName: string; caKeyAlgorithm: string }) => {
      const caKeyAlgorithm = KEY_ALGORITHMS.find((a) => a === opts.caKeyAlgorithm);
      if (!caKeyAlgorithm)
        throw new UsageError(
          `--ca-key-algorithm ${JSON.stringify(opts.caKeyAlgorithm)} is not a key algorithm; use ${KEY_ALGORITHMS.join(' or ')}`,
        );
      const store = await FileStateStore.create(stateDir());
      const authority = new Authority({
        store,
        audit: new FileAuditLog(path.join(stateDir(), 'audit.log')),
        caKeyAlgorithm,
      });
      await authority.initialize(opts.clusterName);
      const status = await authority.status();
      out(`Initialised authority "${status.cluster}" in ${stateDir()}`);
      for (const ca of status.cas) out(`  ${ca.type.padEnd(10)} CA  ${ca.pin}`);
      out('Next: broker create -f resources.yaml, then broker bots add NAME --roles ROLE');
    });

  program
    .command('create')
    .description(
      'create or update resources (role, db, bot, token) from a YAML file with one or more documents',
    )
    .argument('[filename]', 'resource file (tctl create FILE)')
    .option('--file <file>', 'resource file (the same as the positional FILE)')
    .option('-f, --force', 'overwrite resources that already exist (as in tctl)', false)
    .action(async (filename: string | undefined, opts: { file?: string; force: boolean }) => {
      const file = opts.file ?? filename;
      if (!file) throw new UsageError('give the resource file: broker create [-f] FILE');
      if (opts.file && filename && opts.file !== filename)
        throw new UsageError(`two resource files given (${filename} and --file ${opts.file}); give one`);
      opts = { ...opts, file };
      let text: string;
      try {
        text = await fs.readFile(file, 'utf8');
      } catch (err) {
        throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`);
      }
      const resources = parseResources(text, file);
      const authority = await open();
      await authority.createResources(resources, { force: opts.force });
      for (const r of resources)
        out(
          r.kind === 'token'
            ? `${r.spec.join_method} join token for bot "${r.spec.bot_name}" has been created`
            : `${r.kind} "${r.metadata.name}" has been ${opts.force ? 'written' : 'created'}`,
        );
    });

  program
    .command('get')
    .description('show resources as YAML (kinds: role, db, bot)')
    .argument('<kind>', 'role, db or bot; or KIND/NAME as in tctl')
    .argument('[name]', 'one resource; all when omitted')
    .option('--format <format>', 'yaml or json', 'yaml')
    .action(async (ref: string, nameArg: string | undefined, opts: { format: string }) => {
      const [kindText, name] = kindAndName(ref, nameArg);
      const kind = parseKind(kindText);
      if (!kind || kind === 'token')
        throw new UsageError(
          `cannot get ${JSON.stringify(kindText)}; kinds: role, db, bot (tokens: broker tokens ls)`,
        );
      const resources = await (await open()).getResources(kind, name);
      if (opts.format === 'json') out(JSON.stringify(resources, null, 2));
      else
        out(
          resources
            .map((r) => stringify(r))
            .join('---\n')
            .trimEnd(),
        );
    });

  program
    .command('rm')
    .description('delete a resource (kinds: role, db, bot)')
    .argument('<kind>', 'role, db or bot; or KIND/NAME as in tctl')
    .argument('[name]')
    .action(async (ref: string, nameArg: string | undefined) => {
      const [kindText, name] = kindAndName(ref, nameArg);
      if (!name) throw new UsageError('give the resource: broker rm KIND/NAME (or KIND NAME)');
      const kind = parseKind(kindText);
      if (!kind || kind === 'token')
        throw new UsageError(
          `cannot rm ${JSON.stringify(kindText)}; kinds: role, db, bot (tokens: broker tokens rm)`,
        );
      await (await open()).removeResource(kind, name);
      out(`${kind} "${name}" has been deleted`);
    });

  const bots = program.command('bots').description('manage bots (machine identities)');
  traitOptions(bots.command('add'), 'add')
    .description('create a bot and print a one-time join token for it')
    .argument('<name>')
    .option('--roles <roles>', 'comma-separated roles', '')
    .option('--ttl <duration>', 'how long the join token stays valid', formatDuration(DEFAULT_TOKEN_TTL_MS))
    .option('--format <format>', 'text or json (as in tctl)', 'text')
    .action(async (name: string, opts: { roles: string; ttl: string; format: string } & TraitFlags) => {
      const format = textOrJson(opts.format);
      const authority = await open();
      const { token, expires } = await addBotWithTraits(authority, {
        name,
        roles: list(opts.roles),
        traits: traitsFromFlags(opts),
        tokenTtlMs: durationOption(opts.ttl, '--ttl'),
      });
      if (format === 'json') {
        out(JSON.stringify(botTokenJson(name, token, durationOption(opts.ttl, '--ttl')), null, 2));
        return;
      }
      out(`The bot token: ${token}`);
      out(`This token will expire at ${expires} and can be used once.`);
      out('');
      out('Put it in the bot configuration, e.g.:');
      out(`  onboarding: { join_method: token, token: ${token} }`);
      out('then run: broker start -c bot.yaml');
    });
  traitOptions(bots.command('update'), 'update')
    .description("change a bot's roles and traits")
    .argument('<name>')
    .option('--add-roles <roles>', 'comma-separated roles to add')
    .option('--remove-roles <roles>', 'comma-separated roles to remove')
    .option('--set-roles <roles>', "replace the bot's roles with these (as in tctl)")
    .action(
      async (
        name: string,
        opts: { addRoles?: string; removeRoles?: string; setRoles?: string } & Record<string, string>,
      ) => {
        const authority = await open();
        const [current] = await authority.getResources('bot', name);
        const traits = updatedTraits(current?.spec.traits, opts);
        if (!opts.addRoles && !opts.removeRoles && opts.setRoles === undefined && !traits)
          throw new UsageError(
            'give --set-roles, --add-roles, --remove-roles and/or trait flags (see --help)',
          );
        if (opts.setRoles !== undefined && (opts.addRoles || opts.removeRoles))
          throw new UsageError(
            '--set-roles replaces the roles; give it without --add-roles and --remove-roles',
          );
        const set = opts.setRoles === undefined ? undefined : list(opts.setRoles);
        let bot = await authority.updateBot(name, {
          add: set ?? list(opts.addRoles),
          remove: set ? (current?.spec.roles ?? []).filter((r) => !set.includes(r)) : list(opts.removeRoles),
        });
        if (traits) bot = await writeBotTraits(authority, name, traits);
        const shown = (bot.spec.traits ?? []).map((t) => `${t.name}=${t.values.join(',')}`).join(' ');
        out(
          `bot "${name}" has been updated; roles: ${bot.spec.roles.join(', ') || '(none)'}${shown ? `; traits: ${shown}` : ''}`,
        );
      },
    );
  bots
    .command('ls')
    .description('list bots with their roles, identity generation and locks')
    .option('--format <format>', 'text or json (as in tctl)', 'text')
    .action(async (opts: { format: string }) => {
      const bots = await (await open()).listBots();
      if (textOrJson(opts.format) === 'json') {
        out(JSON.stringify(bots, null, 2));
        return;
      }
      const rows = bots.map((b) => [
        b.metadata.name,
        b.spec.roles.join(',') || '-',
        b.status.generation === undefined ? 'not joined' : String(b.status.generation),
        b.status.identityExpires ?? '-',
        b.status.locked === undefined ? '' : `LOCKED: ${b.status.locked}`,
      ]);
      out(table(['Bot', 'Roles', 'Generation', 'Identity expires', 'Lock'], rows));
    });
  bots
    .command('rm')
    .description('delete a bot, its join tokens and its renewal state')
    .argument('<name>')
    .action(async (name: string) => {
      await (await open()).removeResource('bot', name);
      out(`bot "${name}" has been deleted`);
    });

  registerBotInstances(bots, open, out);

  const tokens = program.command('tokens').description('manage join tokens');
  tokens
    .command('add')
    .description('create a one-time join token for an existing bot (prints the secret once)')
    .requiredOption('--type <type>', 'token type; only "bot"')
    .requiredOption('--bot <name>', 'the bot that joins with it')
    .option('--ttl <duration>', 'validity', formatDuration(DEFAULT_TOKEN_TTL_MS))
    .action(async (opts: { type: string; bot: string; ttl: string }) => {
      if (opts.type !== 'bot') throw new UsageError('--type must be "bot"');
      const { token, id, expires } = await (await open()).addToken(
        opts.bot,
        durationOption(opts.ttl, '--ttl'),
      );
      out(`The bot token: ${token}`);
      out(`Token id ${id.slice(0, 12)}, for bot "${opts.bot}", expires at ${expires}, single use.`);
    });
  tokens
    .command('ls')
    .description('list join tokens (by id: secrets are stored only as hashes)')
    .action(async () => {
      const rows = (await (await open()).listTokens()).map((t) => [
        t.id.slice(0, 12),
        t.joinMethod,
        t.botName,
        t.expires ?? 'never',
        t.name ?? '',
      ]);
      out(table(['Id', 'Join method', 'Bot', 'Expires', 'Name'], rows));
    });
  tokens
    .command('rm')
    .description('delete a join token, given its id (or id prefix) or the token itself')
    .argument('<id>')
    .action(async (ref: string) => {
      const t = await (await open()).removeToken(ref);
      out(`token ${t.id.slice(0, 12)} for bot "${t.botName}" has been deleted`);
    });

  const locks = program
    .command('locks')
    .description('lock bots out: a locked bot can neither renew nor get certificates');
  locks
    .command('add')
    .description('lock a bot')
    .requiredOption('--bot <name>')
    .option('--reason <text>', 'shown to the bot and in the audit log', 'locked by an operator')
    .action(async (opts: { bot: string; reason: string }) => {
      await (await open()).addLock(opts.bot, opts.reason);
      out(`bot "${opts.bot}" is locked`);
    });
  locks
    .command('ls')
    .description('list locks')
    .action(async () => {
      out(
        table(
          ['Bot', 'Since', 'Reason'],
          (await (await open()).listLocks()).map((l) => [l.bot, l.createdAt, l.reason]),
        ),
      );
    });
  locks
    .command('rm')
    .description('unlock a bot')
    .argument('[bot]')
    .option('--bot <name>')
    .action(async (bot: string | undefined, opts: { bot?: string }) => {
      const name = opts.bot ?? bot;
      if (!name) throw new UsageError('give the bot: broker locks rm --bot NAME');
      await (await open()).removeLock(name);
      out(`bot "${name}" is unlocked`);
    });

  registerAuthCommands(program, out, open);

  program
    .command('status')
    .description('show the authority: CAs and their pins, resource counts')
    .action(async () => {
      const s = await (await open()).status();
      out(`Cluster     ${s.cluster}`);
      out(`State dir   ${stateDir()}`);
      // One row per active key: during a rotation a CA has two, the signing one first (src/authority/status.ts).
      const rows = (name: string, c: (typeof s.cas)[number]) =>
        c.activeKeys.map((k, i) => [i === 0 ? name : '', i === 0 ? c.phase : '', k.role, k.expires, k.pin]);
      out(
        table(
          ['CA', 'Phase', 'Key', 'Expires', 'Pin'],
          [
            ...s.cas.flatMap((c) => rows(c.type, c)),
            ...s.serviceCas.flatMap((c) => rows(`db-client/${c.service}`, { ...c, type: 'db-client' })),
          ],
        ),
      );
      out(`Roles ${s.roles}, databases ${s.dbs}, bots ${s.bots}, join tokens ${s.tokens}, locks ${s.locks}`);
    });

  program
    .command('audit')
    .description('show the newest audit events (JSON lines)')
    .option('-n, --lines <n>', 'how many', '20')
    .action(async (opts: { lines: string }) => {
      await open();
      const events = await readAuditLog(path.join(stateDir(), 'audit.log'));
      for (const e of events.slice(-Number(opts.lines))) out(JSON.stringify(e));
    });
}
