import { Command, CommanderError } from 'commander';
import { BrokerError } from '../errors.js';
import { redact } from '../log.js';
import { DEFAULT_STATE_DIR, registerAuthorityCommands } from './authority-commands.js';
import { registerBotCommands } from './bot-commands.js';
import { registerCheckCommand } from './check-commands.js';
import { registerDemoCommand } from './demo.js';
import { exitCodeOf } from './errors.js';
import { registerProxyCommands } from './proxy-commands.js';
import { registerRbacCommands } from './rbac-commands.js';

/** Builds the `broker` program. `out` receives stdout lines, so tests can run commands in-process. */
export function buildProgram(out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Command {
  const program = new Command('broker')
    .description(
      'Short-lived, audited database credentials for machines.\n\n' +
        'Operators run the authority commands (init, create, bots, tokens, locks, auth);\n' +
        'machines run `broker start` (the bot) and `broker proxy db` (the local proxy).',
    )
    .option(
      '--state-dir <dir>',
      'authority state directory (CAs, resources, audit log)',
      process.env.BROKER_STATE_DIR ?? DEFAULT_STATE_DIR,
    )
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    // Usage errors quote what was typed (`unknown option '--<token>'`): scrubbed like every error line.
    .configureOutput({ writeErr: (s) => process.stderr.write(redact(s)) });
  registerAuthorityCommands(program, out);
  registerBotCommands(program, out);
  registerCheckCommand(program, out);
  registerDemoCommand(program, out);
  registerProxyCommands(program, out);
  registerRbacCommands(program, out);
  return program;
}

/** Runs the CLI and returns the exit code: 0 ok, 1 failed, 2 usage. Errors go to stderr. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  for (const cmd of program.commands) cmd.exitOverride();
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help'
      )
        return 0;
      return 2;
    }
    // Messages quote what was typed, and a secret may have been typed into the wrong argument.
    if (err instanceof BrokerError) {
      process.stderr.write(`ERROR: ${redact(err.message)}\n`);
      return exitCodeOf(err);
    }
    process.stderr.write(`ERROR: ${redact((err as Error)?.message ?? String(err))}\n`);
    if (process.env.BROKER_DEBUG) process.stderr.write(`${redact(String((err as Error)?.stack))}\n`);
    return 1;
  }
}
