import type { Command } from 'commander';
import { startAuthorityServer } from '../api/server.js';
import { createLogger } from '../log.js';
import { caPin } from '../pki/parse.js';
import { openAuthority } from './authority-commands.js';
import {
  type CliContext,
  type DatabaseFlags,
  databaseOutputOverride,
  type StartFlags,
  startOptions,
  type TunnelFlags,
  tunnelServiceOverride,
} from './bot-flags.js';
import { botLogger, runBot, startConfig } from './bot-run.js';
import { registerBotTools } from './bot-tools.js';
import { UsageError } from './errors.js';

type Out = (line: string) => void;
type Overrides = (raw: Record<string, unknown>) => void;

interface ServeOptions {
  socket?: string;
  listen?: string;
  unsafeListen: boolean;
  publicAddr?: string;
}

export type { CliContext } from './bot-flags.js';

const START_HELP = `
Configuration: -c FILE (before or after the command), else TBOT_CONFIG_PATH, else the YAML in TBOT_CONFIG,
else the flags alone. Flags win over the file, as in tbot.

Examples:
  broker -c /etc/tbot.yaml start
  broker start --token=/var/lib/teleport/bot-token --auth-server=127.0.0.1:3025 --ca-pin=sha256:... \\
    --data-dir=/var/lib/teleport/bot database --destination=/opt/machine-id --service=example-server \\
    --username=alice --database=example

Signals: SIGHUP renews now; SIGTERM/SIGINT finish the write in progress and exit.
Logs are JSON lines on stderr (--log-format text for text); nothing secret is logged.`;

export function registerBotCommands(program: Command, out: Out, context: CliContext = {}): void {
  const env = context.env ?? process.env;
  const run = async (flags: StartFlags & { unsafeListen?: boolean }, extra: Overrides[] = []) => {
    if (context.debug) flags.debug = true;
    const config = await startConfig(flags, { globalConfig: context.globalConfig, env, extra });
    const log = botLogger(config, flags);
    await runBot(config, { log, out, oneshot: config.oneshot, unsafeListen: flags.unsafeListen === true });
  };
  const start = startOptions(program.command('start'))
    .description('run the bot: join, keep the identity and every database output fresh (tbot start)')
    .option('--unsafe-listen', 'allow a non-loopback database-tunnel listen or --diag-addr')
    .addHelpText('after', START_HELP)
    .action(async (flags: StartFlags & { unsafeListen?: boolean }) => {
      if (flags.destinationDir)
        throw new UsageError(
          '--destination-dir on plain `start` makes tbot write an identity (tsh/SSH) output, which needs a Teleport cluster; for database credentials use: broker start database --destination-dir DIR --service NAME --username USER [--database DB]',
        );
      await run(flags);
    });
  start
    .command('database')
    .description("add a database output from flags and run (tbot start database); start's flags apply")
    .option('--destination <dir>', 'output directory (or memory://)')
    .option('--service <name>', 'database service')
    .option('--username <user>', 'database user')
    .option('--database <name>', 'database name')
    .option('--format <format>', 'tls, mongo or cockroach (default: tlscert/key only)')
    .option('--roles <roles>', "comma-separated subset of the bot's roles the certificate is issued under")
    .action(async (_o: unknown, cmd: Command) => {
      const flags = cmd.optsWithGlobals<DatabaseFlags & { unsafeListen?: boolean }>();
      await run(flags, [databaseOutputOverride(flags)]);
    });
  start
    .command('database-tunnel')
    .description('add a database-tunnel service from flags and run (tbot start database-tunnel)')
    .option('--listen <url>', 'tcp://127.0.0.1:PORT or unix:///PATH')
    .option('--service <name>', 'database service')
    .option('--username <user>', 'database user')
    .option('--database <name>', 'database name')
    .option('--roles <roles>', "comma-separated subset of the bot's roles the certificate is issued under")
    .action(async (_o: unknown, cmd: Command) => {
      const flags = cmd.optsWithGlobals<TunnelFlags & { unsafeListen?: boolean }>();
      await run(flags, [tunnelServiceOverride(flags)]);
    });

  registerBotTools(program, out, context);

  const authority = program.command('authority').description('run the authority as a local server for bots');
  authority
    .command('serve')
    .description('serve the authority API on a unix socket (0600) or on loopback HTTPS')
    .option('--socket <path>', 'unix socket path (default: STATE_DIR/authority.sock)')
    .option('--listen <host:port>', 'serve HTTPS instead, e.g. 127.0.0.1:3025')
    .option('--unsafe-listen', 'allow a non-loopback --listen address', false)
    .option(
      '--public-addr <names>',
      'comma-separated host names / IPs bots dial besides the --listen address (put in its certificate)',
    )
    .action(async (opts: ServeOptions) => {
      const stateDir = program.opts<{ stateDir: string }>().stateDir;
      const auth = await openAuthority(stateDir);
      const log = createLogger({ base: { component: 'authority' } });
      const server = await startAuthorityServer({
        authority: auth,
        log,
        unsafeListen: opts.unsafeListen,
        publicAddrs: (opts.publicAddr ?? '')
          .split(',')
          .map((name) => name.trim())
          .filter(Boolean),
        ...(opts.listen
          ? { listen: opts.listen }
          : { socketPath: opts.socket ?? `${stateDir}/authority.sock` }),
      });
      out(`Authority listening on ${server.address}`);
      if (server.address.startsWith('https:'))
        out(`Bots trust it with  ca_pins: [${caPin(await auth.caBundle('bot'))}]`);
      log.info({ address: server.address }, 'authority serving');
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      await server.close();
      log.info('authority stopped');
    });
}
