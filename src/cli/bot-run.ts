/** `broker start`: the bot's long-running loop (or one shot), its tunnels and its diagnostics endpoint. */
import http from 'node:http';
import type { Bot } from '../bot/bot.js';
import { describeOutput } from '../bot/bot.js';
import { type BotConfig, loadBotConfig, parseBotConfig } from '../bot/config.js';
import { createBot, signalWaiter } from '../bot/runtime.js';
import { BrokerError } from '../errors.js';
import { createLogger, type Logger, redact } from '../log.js';
import { diagListenAddress } from '../proxy/diag.js';
import { allOverrides, type StartFlags, startOverrides } from './bot-flags.js';
import { prepareTunnels } from './bot-tunnels.js';
import { UsageError } from './errors.js';
import { textLogStream } from './log-format.js';

type Out = (line: string) => void;
type Overrides = (raw: Record<string, unknown>) => void;

/** TBOT_CONFIG holds the configuration itself: YAML, or YAML in base64. */
function configString(value: string): string {
  const trimmed = value.trim();
  if (/^[A-Za-z0-9+/=\s]+$/.test(trimmed) && !trimmed.includes(':')) {
    const decoded = Buffer.from(trimmed, 'base64').toString('utf8');
    if (decoded.includes(':')) return decoded;
  }
  return value;
}

/**
 * The configuration `start` runs: the file of -c (or the global -c, or TBOT_CONFIG_PATH), else the YAML in
 * TBOT_CONFIG, else flags alone; flags win over the file.
 */
export async function startConfig(
  flags: StartFlags,
  options: { globalConfig?: string | undefined; env: NodeJS.ProcessEnv; extra?: Overrides[] },
): Promise<BotConfig> {
  const { env } = options;
  const overrides = allOverrides(startOverrides(flags, env), ...(options.extra ?? []));
  const file = flags.config ?? options.globalConfig ?? env.TBOT_CONFIG_PATH;
  if (file) return loadBotConfig(file, { overrides });
  if (env.TBOT_CONFIG) return parseBotConfig(configString(env.TBOT_CONFIG), 'TBOT_CONFIG', { overrides });
  if (!flags.authServer && !flags.proxyServer)
    throw new UsageError(
      'no configuration: give -c, --config <file> (or TBOT_CONFIG_PATH, or the YAML in TBOT_CONFIG), or the flags with at least --auth-server (see --help)',
    );
  return parseBotConfig('version: v2\n', '(command-line flags)', { overrides });
}

/** The bot's logger: JSON lines on stderr, or text with --log-format text; debug with -d or `debug: true`. */
export function botLogger(config: BotConfig, flags: StartFlags): Logger {
  if (flags.logFormat !== undefined && flags.logFormat !== 'json' && flags.logFormat !== 'text')
    throw new UsageError(`--log-format must be json or text, not ${JSON.stringify(flags.logFormat)}`);
  return createLogger({
    base: { component: 'bot' },
    ...(config.debug ? { level: 'debug' } : {}),
    ...(flags.logFormat === 'text' ? { stream: textLogStream() } : {}),
  });
}

/** Serves /livez and /readyz for the bot (tbot's diag_addr), loopback unless unsafeListen. */
async function startBotDiag(address: string, bot: Bot, unsafeListen: boolean): Promise<http.Server> {
  const { host, port } = await diagListenAddress(address, { unsafeListen });
  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (req.url === '/livez') return send(200, { status: 'ok' });
    if (req.url === '/readyz') {
      const { ready, lastSuccess, lastError } = bot.health;
      return send(ready ? 200 : 503, { status: ready ? 'healthy' : 'unhealthy', lastSuccess, lastError });
    }
    send(404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return server;
}

/** Runs the bot a configuration describes: preflight, tunnels, diagnostics, then one shot or the loop. */
export async function runBot(
  config: BotConfig,
  options: { log: Logger; out: Out; oneshot: boolean; unsafeListen: boolean },
): Promise<void> {
  const { log, out } = options;
  for (const warning of config.warnings) log.warn(warning);
  const tunnels = options.oneshot
    ? []
    : await prepareTunnels(config, { log, unsafeListen: options.unsafeListen });
  if (options.oneshot && config.tunnels.length)
    log.warn('database-tunnel services run only while the bot keeps running (not with oneshot)');
  const full: BotConfig = { ...config, outputs: [...config.outputs, ...tunnels.map((t) => t.output)] };
  const bot = createBot(full, { log, destinations: new Map(tunnels.map((t) => [t.output, t.destination])) });
  for (const t of tunnels) t.attach(bot);
  // Everything that could fail right after the join is checked before it (storage, destinations).
  await bot.preflight();
  if (options.oneshot) {
    const results = await bot.runCycle(true);
    for (const r of results)
      out(
        r.ok
          ? `ok      ${r.output}  serial ${r.serial}  expires ${r.expires}`
          : `FAILED  ${r.output}: ${redact(String(r.error))}`,
      );
    const failed = results.filter((r) => !r.ok);
    if (failed.length > 0)
      throw new BrokerError(
        'outputs_failed',
        `${failed.length} of ${results.length} output(s) failed; previous credentials were left in place: ${failed.map((r) => r.error).join('; ')}`,
      );
    return;
  }
  for (const t of tunnels) {
    const address = await t.proxy.start();
    out(`Tunnel ${t.output.origin} for ${describeOutput(t.output)} listening on ${address}`);
  }
  const diag = config.diag_addr ? await startBotDiag(config.diag_addr, bot, options.unsafeListen) : undefined;
  if (diag) out(`Diagnostics on http://${config.diag_addr}/readyz`);
  log.info({ outputs: full.outputs.map(describeOutput), authServer: config.auth_server }, 'bot starting');
  const waiter = signalWaiter(log);
  try {
    await bot.runLoop(waiter.wait);
  } finally {
    waiter.dispose();
    for (const t of tunnels) {
      await t.proxy.stop(5_000);
      t.creds.stop();
    }
    diag?.close();
  }
  log.info('bot stopped');
}
