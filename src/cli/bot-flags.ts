/**
 * tbot's `start` flags, applied over the configuration file as tbot's FromCLIConf does: a flag wins over
 * the file; any onboarding flag replaces the whole onboarding section; `--data-dir` replaces storage.
 */
import type { Command } from 'commander';
import { UsageError } from './errors.js';

/** The program-level flags given before the command (tbot's globals), read by runCli. */
export interface CliContext {
  globalConfig?: string | undefined;
  debug?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** The flags `start`, `start database`, `start database-tunnel` and `configure` share. */
export interface StartFlags {
  config?: string;
  token?: string;
  joinMethod?: string;
  caPin?: string[];
  authServer?: string;
  proxyServer?: string;
  dataDir?: string;
  storage?: string;
  destinationDir?: string;
  certificateTtl?: string;
  renewalInterval?: string;
  diagAddr?: string;
  oneshot?: boolean;
  debug?: boolean;
  insecure?: boolean;
  logFormat?: string;
}

/** `start database` / `configure database`. */
export interface DatabaseFlags extends StartFlags {
  destination?: string;
  service?: string;
  username?: string;
  database?: string;
  format?: string;
  roles?: string;
}

/** `start database-tunnel`. */
export interface TunnelFlags extends StartFlags {
  listen?: string;
  service?: string;
  username?: string;
  database?: string;
  roles?: string;
}

const collect = (v: string, all: string[] = []) => [...all, v];

/** Adds tbot's common start flags (and the project's) to a command. */
export function startOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'bot configuration (tbot v1 or v2 YAML); also TBOT_CONFIG_PATH')
    .option(
      '--token <token>',
      'join token, or an absolute path to a file holding it (env TELEPORT_BOT_TOKEN)',
    )
    .option('--join-method <method>', 'token or iam')
    .option('--ca-pin <pin>', 'sha256 pin of the authority CA (repeatable)', collect)
    .option('--auth-server <addr>', 'the authority: unix:///path.sock, https://HOST:PORT or HOST:PORT')
    .option(
      '--proxy-server <addr>',
      'a Teleport Proxy Service address (refused: it needs a Teleport cluster)',
    )
    .option('--data-dir <dir>', 'where the bot keeps its identity (directory path, or memory://)')
    .option('--storage <uri>', 'as --data-dir (tbot 16 spelling)')
    .option('--destination-dir <dir>', 'with `start database`: the output directory')
    .option('--certificate-ttl <duration>', 'lifetime of certificates, e.g. 1h')
    .option('--renewal-interval <duration>', 'how often to renew, e.g. 20m')
    .option('--diag-addr <host:port>', 'serve /livez and /readyz here (loopback)')
    .option('--oneshot', 'render every output once and exit (non-zero if any failed)')
    .option('-d, --debug', 'debug logging')
    .option('--log-format <format>', 'json or text', 'json')
    .option('--insecure', 'refused: the broker always verifies the authority');
}

const list = (s: string | undefined) =>
  (s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

/** A tbot storage or destination URI (`PATH`, `file:///PATH`, `memory://`) as a destination. */
export function destinationFromUri(uri: string, flag: string): Record<string, unknown> {
  if (uri === 'memory://') return { type: 'memory' };
  if (uri.startsWith('file://')) return { type: 'directory', path: uri.slice('file://'.length) };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri))
    throw new UsageError(`${flag} ${uri}: only a directory path, file:///PATH or memory:// is supported`);
  return { type: 'directory', path: uri };
}

/** The overrides that `start`'s flags make on the raw configuration, with the token taken from `env`. */
export function startOverrides(
  flags: StartFlags,
  env: NodeJS.ProcessEnv,
): (raw: Record<string, unknown>) => void {
  const token = flags.token ?? env.TELEPORT_BOT_TOKEN;
  return (raw) => {
    raw.version ??= 'v2';
    if (flags.authServer) raw.auth_server = flags.authServer;
    if (flags.proxyServer) raw.proxy_server = flags.proxyServer;
    if (flags.certificateTtl) raw.credential_ttl = flags.certificateTtl;
    if (flags.certificateTtl && raw.certificate_ttl !== undefined) delete raw.certificate_ttl;
    if (flags.renewalInterval) raw.renewal_interval = flags.renewalInterval;
    if (flags.diagAddr) raw.diag_addr = flags.diagAddr;
    if (flags.oneshot) raw.oneshot = true;
    if (flags.debug) raw.debug = true;
    if (flags.insecure) raw.insecure = true;
    const dataDir = flags.dataDir ?? flags.storage;
    if (dataDir) raw.storage = destinationFromUri(dataDir, flags.dataDir ? '--data-dir' : '--storage');
    if (token || flags.joinMethod || flags.caPin?.length)
      raw.onboarding = {
        join_method: flags.joinMethod ?? 'token',
        ...(token ? { token } : {}),
        ...(flags.caPin?.length ? { ca_pins: flags.caPin } : {}),
      };
  };
}

/** `start database`'s output, appended to the configuration's outputs. */
export function databaseOutputOverride(flags: DatabaseFlags): (raw: Record<string, unknown>) => void {
  const dest = flags.destination ?? flags.destinationDir;
  if (!dest) throw new UsageError('give --destination (or --destination-dir): where the output is written');
  if (!flags.service) throw new UsageError('give --service: the database service the output is for');
  return (raw) => {
    const outputs = Array.isArray(raw.outputs) ? raw.outputs : [];
    outputs.push({
      type: 'database',
      destination: destinationFromUri(dest, flags.destination ? '--destination' : '--destination-dir'),
      service: flags.service,
      ...(flags.username ? { username: flags.username } : {}),
      ...(flags.database ? { database: flags.database } : {}),
      ...(flags.format ? { format: flags.format } : {}),
      ...(flags.roles ? { roles: list(flags.roles) } : {}),
    });
    raw.outputs = outputs;
  };
}

/** `start database-tunnel`'s service, appended to the configuration's services. */
export function tunnelServiceOverride(flags: TunnelFlags): (raw: Record<string, unknown>) => void {
  for (const [flag, v] of [
    ['--listen', flags.listen],
    ['--service', flags.service],
    ['--username', flags.username],
    ['--database', flags.database],
  ] as const)
    if (!v)
      throw new UsageError(`give ${flag} (tbot's database-tunnel needs listen, service, username, database)`);
  return (raw) => {
    const services = Array.isArray(raw.services) ? raw.services : [];
    services.push({
      type: 'database-tunnel',
      listen: flags.listen,
      service: flags.service,
      username: flags.username,
      database: flags.database,
      ...(flags.roles ? { roles: list(flags.roles) } : {}),
    });
    raw.services = services;
  };
}

/** Applies several overrides in order. */
export function allOverrides(
  ...fns: ((raw: Record<string, unknown>) => void)[]
): (raw: Record<string, unknown>) => void {
  return (raw) => {
    for (const fn of fns) fn(raw);
  };
}
