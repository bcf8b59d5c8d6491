import { Command, CommanderError } from 'commander';
import { BrokerError } from '../errors.js';
import { redact } from '../log.js';
import { DEFAULT_STATE_DIR, registerAuthorityCommands } from './authority-commands.js';
import { type CliContext, registerBotCommands } from './bot-commands.js';
import { registerCheckCommand } from './check-commands.js';
import { registerDemoCommand } from './demo.js';
import { exitCodeOf } from './errors.js';
import { registerProxyCommands } from './proxy-commands.js';
import { registerRbacCommands } from './rbac-commands.js';

/** Builds the `broker` program. `out` receives stdout lines, so tests can run commands in-process. */
export function buildProgram(
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  context: CliContext = {},
): Command {
  const program = new Command('broker')
    .description(
      'Short-lived, audited database credentials for machines.\n\n' +
        'Operators run the authority commands (init, create, bots, tokens, locks, auth);\n' +
        'machines run `broker start` (the bot) and `broker proxy db` (the local proxy).\n\n' +
        'As in tbot, -c/--config FILE and -d/--debug may come before the command:\n' +
        '  broker -c /etc/tbot.yaml proxy --destination-dir=/opt/machine-id db --port=12345 example-server',
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
  registerBotCommands(program, out, context);
  registerCheckCommand(program, out);
  registerDemoCommand(program, out);
  registerProxyCommands(program, out);
  registerRbacCommands(program, out);
  return program;
}

/** Runs the CLI and returns the exit code: 0 ok, 1 failed, 2 usage. Errors go to stderr. */
/**
 * tbot's global flags before the command: `-c/--config FILE` and `-d/--debug`. They are taken out here and
 * handed to the commands that read them, since `broker check` has its own repeatable -c.
 */
export function splitGlobalFlags(argv: readonly string[]): { argv: string[]; context: CliContext } {
  const rest = [...argv];
  const context: CliContext = {};
  for (;;) {
    const a = rest[0];
    if (a === '-c' || a === '--config') {
      context.globalConfig = rest[1];
      rest.splice(0, 2);
    } else if (a?.startsWith('--config=')) {
      context.globalConfig = a.slice('--config='.length);
      rest.shift();
    } else if (a === '-d' || a === '--debug') {
      context.debug = true;
      rest.shift();
    } else if (a === '--state-dir') {
      // The project's own global flag may sit among them: keep it where it is and look past it.
      const [flag, value] = rest.splice(0, 2);
      const inner = splitGlobalFlags(rest);
      return {
        argv: [flag as string, value as string, ...inner.argv],
        context: { ...context, ...inner.context },
      };
    } else return { argv: rest, context };
  }
}

export async function runCli(argv: readonly string[]): Promise<number> {
  const split = splitGlobalFlags(argv);
  argv = split.argv;
  const program = buildProgram(undefined, split.context);
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
