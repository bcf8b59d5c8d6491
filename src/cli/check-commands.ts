import fs from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { parseResources } from '../authority/resources.js';
import { loadBotConfig } from '../bot/config.js';
import { ConfigError } from '../config/errors.js';
import { BrokerError } from '../errors.js';
import { checkBotOutputs, describeRefusal } from './check.js';
import { UsageError } from './errors.js';

type Out = (line: string) => void;

const HELP = `
Runs the authority's own access decision (as \`broker rbac explain\` shows it) for every output of each
bot configuration against a resources file, without a state directory: an output the authority would
refuse is reported before the bot runs. The AWS stack makes the same check at synth.

Each configuration runs as the \`kind: bot\` named after its file (bots/orders.yaml is bot "orders"),
or as --bot NAME when one configuration is given.

Exit status: 0 when every output would be issued, 1 when any would be refused (each printed with bot,
output, deciding role, rule and reason), 2 for bad usage.

Examples:
  broker check -f resources.yaml -c bot.yaml --bot orders
  broker check -f examples/aws/resources.yaml -c examples/aws/bots/orders.yaml -c examples/aws/bots/reports.yaml`;

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Registers `broker check`. */
export function registerCheckCommand(program: Command, out: Out): void {
  program
    .command('check')
    .description(
      'check that every output of bot configurations would be issued under the access rules of a resources file',
    )
    .requiredOption('-f, --file <file>', 'resources file (roles, dbs, bots), as for `broker create -f`')
    .requiredOption('-c, --config <file>', 'bot configuration; repeat for several bots', collect)
    .option('--bot <name>', 'the bot the configuration runs as (default: the file name without extension)')
    .addHelpText('after', HELP)
    .action(async (opts: { file: string; config: string[]; bot?: string }) => {
      if (opts.config.length === 0) throw new UsageError('give at least one bot configuration with -c FILE');
      if (opts.bot !== undefined && opts.config.length !== 1)
        throw new UsageError(
          '--bot names the bot of a single -c configuration; give one -c, or name the files after their bots',
        );
      let text: string;
      try {
        text = await fs.readFile(opts.file, 'utf8');
      } catch (err) {
        throw new ConfigError(`cannot read ${opts.file}: ${(err as Error).message}`);
      }
      const resources = parseResources(text, opts.file);
      let total = 0;
      const refused: string[] = [];
      for (const file of opts.config) {
        const config = await loadBotConfig(file);
        const botName = opts.bot ?? path.basename(file).replace(/\.ya?ml$/i, '');
        const result = checkBotOutputs({ resources, config, botName });
        if (result.missingRoles.length)
          out(
            `bot "${botName}": roles the resources do not define (ignored): ${result.missingRoles.join(', ')}`,
          );
        total += result.outputs.length;
        for (const o of result.outputs) if (!o.allowed) refused.push(`${file}: ${describeRefusal(o)}`);
      }
      for (const line of refused) out(line);
      if (refused.length)
        throw new BrokerError(
          'outputs_refused',
          `${refused.length} of ${total} outputs would be refused; \`broker rbac explain\` shows each decision step by step once the resources are created`,
        );
      const bots = opts.config.length === 1 ? '1 bot' : `${opts.config.length} bots`;
      out(`ok: all ${total} outputs of ${bots} would be issued under ${opts.file}`);
    });
}
