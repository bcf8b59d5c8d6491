import type { Command } from 'commander';
import { startAuthorityServer } from '../api/server.js';
import { describeOutput } from '../bot/bot.js';
import { loadBotConfig } from '../bot/config.js';
import { createBot, signalWaiter } from '../bot/runtime.js';
import { BrokerError } from '../errors.js';
import { createLogger, redact } from '../log.js';
import { caPin } from '../pki/parse.js';
import { openAuthority } from './authority-commands.js';

type Out = (line: string) => void;

interface ServeOptions {
  socket?: string;
  listen?: string;
  unsafeListen: boolean;
  publicAddr?: string;
}

export function registerBotCommands(program: Command, out: Out): void {
  program
    .command('start')
    .description('run the bot: join, keep the identity and every database output fresh (tbot start)')
    .requiredOption('-c, --config <file>', 'bot configuration (YAML, tbot v2 shape)')
    .option('--oneshot', 'render every output once and exit (non-zero if any failed)')
    .addHelpText(
      'after',
      '\nSignals: SIGHUP renews now; SIGTERM/SIGINT finish the write in progress and exit.\nLogs are JSON lines on stderr; nothing secret is logged.',
    )
    .action(async (opts: { config: string; oneshot?: boolean }) => {
      const config = await loadBotConfig(opts.config);
      const log = createLogger({ base: { component: 'bot' } });
      const bot = createBot(config, { log });
      if (opts.oneshot || config.oneshot) {
        const results = await bot.runCycle(true);
        for (const r of results)
          out(
            r.ok
              ? `ok      ${r.output}  serial ${r.serial}  expires ${r.expires}`
              : `FAILED  ${r.output}: ${redact(String(r.error))}`,
          );
        const failed = results.filter((r) => !r.ok).length;
        if (failed > 0)
          throw new BrokerError(
            'outputs_failed',
            `${failed} of ${results.length} output(s) failed; previous credentials were left in place: ${results
              .filter((r) => !r.ok)
              .map((r) => r.error)
              .join('; ')}`,
          );
        return;
      }
      log.info(
        { outputs: config.outputs.map(describeOutput), authServer: config.auth_server },
        'bot starting',
      );
      const waiter = signalWaiter(log);
      try {
        await bot.runLoop(waiter.wait);
      } finally {
        waiter.dispose();
      }
      log.info('bot stopped');
    });

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
