/** Bot traits on the command line, as `tctl bots add --logins` and `tctl bots update --add-logins` set them. */
import type { Command } from 'commander';
import type { Authority } from '../authority/authority.js';
import { type Bot, botSchema } from '../authority/resources.js';
import { UsageError } from './errors.js';

export type BotTraits = NonNullable<Bot['spec']['traits']>;

/** The trait flags of `broker bots add`: tctl's --logins, and the database traits templates read. */
const SHORTHANDS = [
  ['logins', 'logins'],
  ['dbUsers', 'db_users'],
  ['dbNames', 'db_names'],
] as const;

export interface TraitFlags {
  logins?: string;
  dbUsers?: string;
  dbNames?: string;
  trait?: string[];
}

const splitList = (text: string | undefined) =>
  (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `NAME=V1,V2` → [NAME, [V1, V2]]. */
function parseTrait(text: string, flag: string): [string, string[]] {
  const i = text.indexOf('=');
  const name = text.slice(0, i).trim();
  if (i <= 0 || !name) throw new UsageError(`${flag} ${JSON.stringify(text)}: write NAME=VALUE[,VALUE...]`);
  return [name, splitList(text.slice(i + 1))];
}

/** Adds the trait flags of `bots add` (set) or `bots update` (set-/add-) to a command. */
export function traitOptions(cmd: Command, mode: 'add' | 'update'): Command {
  const prefix = mode === 'add' ? '' : 'set-';
  const verb = mode === 'add' ? 'sets' : 'replaces';
  cmd
    .option(`--${prefix}logins <list>`, `comma-separated; ${verb} the logins trait ({{internal.logins}})`)
    .option(
      `--${prefix}db-users <list>`,
      `comma-separated; ${verb} the db_users trait ({{internal.db_users}})`,
    )
    .option(
      `--${prefix}db-names <list>`,
      `comma-separated; ${verb} the db_names trait ({{internal.db_names}})`,
    )
    .option(`--${prefix}trait <name=values>`, `${verb} any trait ({{external.NAME}}); repeatable`, collect);
  if (mode === 'update')
    cmd
      .option('--add-logins <list>', 'comma-separated logins to add')
      .option('--add-db-users <list>', 'comma-separated database users to add to db_users')
      .option('--add-db-names <list>', 'comma-separated database names to add to db_names')
      .option('--add-trait <name=values>', 'values to add to a trait; repeatable', collect)
      .option('--remove-trait <name>', 'remove a trait; repeatable', collect);
  return cmd;
}

/** Traits from the `bots add` flags, in Teleport's `spec.traits` shape. */
export function traitsFromFlags(flags: TraitFlags): BotTraits {
  const out: BotTraits = [];
  for (const [flag, name] of SHORTHANDS)
    if (flags[flag] !== undefined) out.push({ name, values: splitList(flags[flag]) });
  for (const t of flags.trait ?? []) {
    const [name, values] = parseTrait(t, '--trait');
    out.push({ name, values });
  }
  return out;
}

type UpdateFlags = Record<string, string | string[] | undefined>;

/** Applies `bots update` trait flags to a bot's traits; undefined when no trait flag was given. */
export function updatedTraits(current: BotTraits | undefined, flags: UpdateFlags): BotTraits | undefined {
  const traits = new Map<string, string[]>();
  for (const t of current ?? []) traits.set(t.name, [...(traits.get(t.name) ?? []), ...t.values]);
  let changed = false;
  const set = (name: string, values: string[]) => {
    traits.set(name, values);
    changed = true;
  };
  const add = (name: string, values: string[]) =>
    set(name, [...new Set([...(traits.get(name) ?? []), ...values])]);
  for (const [key, name] of SHORTHANDS) {
    const suffix = key.charAt(0).toUpperCase() + key.slice(1);
    const setValue = flags[`set${suffix}`];
    const addValue = flags[`add${suffix}`];
    if (typeof setValue === 'string') set(name, splitList(setValue));
    if (typeof addValue === 'string') add(name, splitList(addValue));
  }
  for (const t of (flags.setTrait as string[] | undefined) ?? []) set(...parseTrait(t, '--set-trait'));
  for (const t of (flags.addTrait as string[] | undefined) ?? []) add(...parseTrait(t, '--add-trait'));
  for (const name of (flags.removeTrait as string[] | undefined) ?? []) {
    traits.delete(name);
    changed = true;
  }
  if (!changed) return undefined;
  return [...traits].filter(([, values]) => values.length > 0).map(([name, values]) => ({ name, values }));
}

/** Writes a bot's new traits (the rest of the bot unchanged). */
export async function writeBotTraits(authority: Authority, name: string, traits: BotTraits): Promise<Bot> {
  const [bot] = await authority.getResources('bot', name);
  const { traits: _old, ...spec } = (bot as Bot).spec;
  const updated: Bot = { ...(bot as Bot), spec: { ...spec, ...(traits.length ? { traits } : {}) } };
  await authority.createResources([updated], { force: true });
  return updated;
}

/** `bots add`: creates the bot with its roles and traits, then a one-time join token (as Authority.addBot). */
export async function addBotWithTraits(
  authority: Authority,
  bot: { name: string; roles: string[]; traits: BotTraits; tokenTtlMs: number },
): Promise<{ token: string; id: string; expires: string }> {
  const resource = botSchema.parse({
    kind: 'bot',
    version: 'v1',
    metadata: { name: bot.name },
    spec: { roles: bot.roles, ...(bot.traits.length ? { traits: bot.traits } : {}) },
  });
  await authority.createResources([resource]);
  return authority.addToken(bot.name, bot.tokenTtlMs);
}
