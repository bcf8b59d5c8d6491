/** tbot's helper commands: `wait` (for the bot to be ready), `migrate` (v1 to v2), `configure` (print YAML). */
import { promises as fs } from 'node:fs';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { parseBotConfig } from '../bot/config.js';
import { migrateV1 } from '../bot/config-v1.js';
import { ConfigError } from '../config/errors.js';
import { parseYamlDocuments } from '../config/yaml.js';
import { BrokerError } from '../errors.js';
import { checkHealth } from '../proxy/diag.js';
import { durationOption } from './authority-commands.js';
import {
  allOverrides,
  type CliContext,
  type DatabaseFlags,
  databaseOutputOverride,
  type StartFlags,
  startOptions,
  startOverrides,
} from './bot-flags.js';
import { UsageError } from './errors.js';

type Out = (line: string) => void;

async function readText(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read bot configuration ${file}: ${(err as Error).message}`);
  }
}

/** Writes YAML to `-o FILE` (0600: it may hold the join token) or prints it. */
async function emit(yamlText: string, output: string | undefined, out: Out): Promise<void> {
  if (!output) {
    out(yamlText.trimEnd());
    return;
  }
  await fs.writeFile(output, yamlText, { mode: 0o600 });
  out(`Wrote ${output}`);
}

/** The configuration `configure` prints: the file (if any) with the flags applied, validated as `start` would. */
async function configured(
  flags: StartFlags,
  extra: ((raw: Record<string, unknown>) => void)[],
  context: CliContext,
): Promise<string> {
  const env = context.env ?? process.env;
  const file = flags.config ?? context.globalConfig ?? env.TBOT_CONFIG_PATH;
  const text = file ? await readText(file) : 'version: v2\n';
  const name = file ?? '(command-line flags)';
  const overrides = allOverrides(startOverrides(flags, env), ...extra);
  parseBotConfig(text, name, { overrides }); // refuses what `start` would refuse, by key
  const [doc] = parseYamlDocuments(text, name);
  const raw = (doc?.value ?? {}) as Record<string, unknown>;
  const v2 = raw.version === 'v2' ? raw : migrateV1(raw).value;
  overrides(v2);
  return stringify(v2);
}

export function registerBotTools(program: Command, out: Out, context: CliContext): void {
  program
    .command('wait')
    .description("wait until the bot's /readyz (its --diag-addr) says ready (tbot wait)")
    .requiredOption('--diag-addr <host:port>', 'the diagnostics address the bot serves')
    .option('--timeout <duration>', 'give up after this long', '30s')
    .action(async (opts: { diagAddr: string; timeout: string }) => {
      const deadline = Date.now() + durationOption(opts.timeout, '--timeout');
      let last = '';
      for (;;) {
        const { ok, body } = await checkHealth(opts.diagAddr, 2000);
        if (ok) {
          out(body.trim());
          return;
        }
        last = body.trim();
        if (Date.now() >= deadline)
          throw new BrokerError(
            'not_ready',
            `the bot at ${opts.diagAddr} was not ready within ${opts.timeout}${last ? `: ${last}` : ''}`,
          );
        await new Promise((r) => setTimeout(r, 250));
      }
    });

  program
    .command('migrate')
    .description('print a tbot v1 configuration as v2 (tbot migrate); start reads v1 as it is, too')
    .option('-c, --config <file>', 'the v1 configuration')
    .option('-o, --output <file>', 'write the v2 configuration here (0600) instead of printing it')
    .action(async (opts: { config?: string; output?: string }) => {
      const file = opts.config ?? context.globalConfig ?? (context.env ?? process.env).TBOT_CONFIG_PATH;
      if (!file) throw new UsageError('give the v1 configuration: broker migrate -c FILE');
      const text = await readText(file);
      const [doc] = parseYamlDocuments(text, file);
      const raw = doc?.value as Record<string, unknown> | undefined;
      if (!raw || typeof raw !== 'object' || Array.isArray(raw))
        throw new ConfigError(`${file}: not a tbot configuration (a YAML mapping)`);
      if (raw.version === 'v2')
        throw new ConfigError(`${file}: configuration already the latest version (v2); nothing to migrate`);
      parseBotConfig(text, file); // refuses, by key, what the migrated file could not do
      await emit(stringify(migrateV1(raw).value), opts.output, out);
    });

  const configure = startOptions(program.command('configure'))
    .description('print the v2 configuration the flags (and -c file) describe (tbot configure)')
    .option('-o, --output <file>', 'write it here (0600) instead of printing it')
    .action(async (flags: StartFlags & { output?: string }) => {
      await emit(await configured(flags, [], context), flags.output, out);
    });
  configure
    .command('database')
    .description('with a database output from flags (tbot configure database)')
    .option('--destination <dir>', 'output directory (or memory://)')
    .option('--service <name>', 'database service')
    .option('--username <user>', 'database user')
    .option('--database <name>', 'database name')
    .option('--format <format>', 'tls, mongo or cockroach')
    .option('--roles <roles>', 'comma-separated roles')
    .action(async (_o: unknown, cmd: Command) => {
      const flags = cmd.optsWithGlobals<DatabaseFlags & { output?: string }>();
      await emit(await configured(flags, [databaseOutputOverride(flags)], context), flags.output, out);
    });
}
