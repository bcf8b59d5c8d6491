/** tctl's spellings the operator commands also accept: KIND/NAME, --format json, `bots instances add`. */
import type { Command } from 'commander';
import type { Authority } from '../authority/authority.js';
import { DEFAULT_TOKEN_TTL_MS } from '../authority/authority.js';
import { formatDuration, parseDuration } from '../duration.js';
import { UsageError } from './errors.js';

type Out = (line: string) => void;

/** `role/example-role` (tctl) or `role example-role`: the kind and the name. */
export function kindAndName(ref: string, name: string | undefined): [string, string | undefined] {
  const slash = ref.indexOf('/');
  if (slash < 0) return [ref, name];
  if (name !== undefined)
    throw new UsageError(
      `give KIND/NAME or KIND NAME, not both (${JSON.stringify(ref)} and ${JSON.stringify(name)})`,
    );
  return [ref.slice(0, slash), ref.slice(slash + 1) || undefined];
}

export function textOrJson(format: string): 'text' | 'json' {
  if (format !== 'text' && format !== 'json')
    throw new UsageError(`--format must be text or json, not ${JSON.stringify(format)}`);
  return format;
}

/** What `tctl bots add --format=json` prints (its keys), for scripts written against it. */
export function botTokenJson(bot: string, token: string, ttlMs: number) {
  return {
    user_name: `bot-${bot}`,
    role_name: `bot-${bot}`,
    token_id: token,
    token_ttl: ttlMs * 1_000_000, // nanoseconds, as tctl prints a Go time.Duration
  };
}

/** `bots instances add BOT`: a new join token for an existing bot (tctl's way to join another instance). */
export function registerBotInstances(bots: Command, open: () => Promise<Authority>, out: Out): void {
  const instances = bots
    .command('instances')
    .description('join tokens for more instances of a bot (tctl bots instances)');
  instances
    .command('add')
    .description('create a one-time join token for another instance of BOT')
    .argument('<bot>')
    .option('--ttl <duration>', 'how long the join token stays valid', formatDuration(DEFAULT_TOKEN_TTL_MS))
    .option('--format <format>', 'text or json', 'text')
    .action(async (bot: string, opts: { ttl: string; format: string }) => {
      const ttlMs = parseDuration(opts.ttl);
      if (!ttlMs)
        throw new UsageError(`--ttl ${JSON.stringify(opts.ttl)} is not a duration; use e.g. 30m, 1h`);
      const format = textOrJson(opts.format);
      const { token, expires } = await (await open()).addToken(bot, ttlMs);
      if (format === 'json') {
        out(JSON.stringify(botTokenJson(bot, token, ttlMs), null, 2));
        return;
      }
      out(`The bot token: ${token}`);
      out(`This token will expire at ${expires} and can be used once, by a new instance of bot "${bot}".`);
    });
}
