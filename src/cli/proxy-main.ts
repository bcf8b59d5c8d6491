import { Command, CommanderError } from 'commander';
import { BrokerError } from '../errors.js';
import { redact } from '../log.js';
import { exitCodeOf } from './errors.js';
import { registerProxyCommands } from './proxy-commands.js';

/**
 * `broker proxy …` on its own: the proxy sidecar's entry point. It registers only the proxy commands, so a
 * proxy process never loads the authority, the bot, YAML, node-forge or the database drivers (and the AWS
 * SDK only with --secret-id). Arguments and exit codes are those of `broker proxy` (main.ts runCli).
 */
export async function runProxyCli(argv: readonly string[]): Promise<number> {
  const program = new Command('broker')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    // Usage errors quote what was typed: scrubbed like every error line.
    .configureOutput({ writeErr: (s) => process.stderr.write(redact(s)) });
  registerProxyCommands(program, (line) => process.stdout.write(`${line}\n`));
  for (const cmd of program.commands) cmd.exitOverride();
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError)
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.help' ? 0 : 2;
    // Messages quote what was typed, and a secret may have been typed into the wrong argument.
    const message = err instanceof BrokerError ? err.message : ((err as Error)?.message ?? String(err));
    process.stderr.write(`ERROR: ${redact(message)}\n`);
    return exitCodeOf(err);
  }
}
