import type { Command } from 'commander';
import { formatDuration, parseDuration } from '../duration.js';
import { BrokerError } from '../errors.js';
import { createJsonLogger } from '../json-log.js';
import { CredentialCache } from '../proxy/credential-cache.js';
import type { LoadedCredentials } from '../proxy/loaded-credentials.js';
import { DatabaseProxy, type ListenSpec, type ProxyStatus, proxyListenHost } from '../proxy/proxy.js';
import type { BundleSource } from '../proxy/sources/bundle-source.js';
import { DirectoryBundleSource } from '../proxy/sources/directory.js';
import { mysqlTunnel } from '../proxy/tunnels/mysql.js';
import { UsageError } from './errors.js';

type Out = (line: string) => void;

export interface ProxyDbOptions {
  port?: string;
  address: string;
  unix?: string;
  tunnel?: boolean;
  destinationDir?: string | undefined;
  secretId?: string;
  diagAddr?: string;
  maxConnections: string;
  maxSigtermDelay: string;
  unsafeListen?: boolean;
  idleTimeout: string;
  workers: string;
  dbUser?: string;
  dbName?: string;
}

/**
 * `--max-sigterm-delay` and `--idle-timeout`: a positive duration. The same rule and words as the authority
 * commands' durationOption, kept here so the proxy entry point does not load the authority commands.
 */
function durationOption(text: string, flag: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0)
    throw new UsageError(`${flag} ${JSON.stringify(text)} is not a duration; use e.g. 30m, 1h, 8h`);
  return ms;
}

/** The most event loops `--workers` accepts. */
export const MAX_WORKERS = 64;

/** `--workers`: a whole number of event loops, 1 to MAX_WORKERS. */
export function workersOption(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(n) || n < 1 || n > MAX_WORKERS)
    throw new UsageError(
      `--workers ${JSON.stringify(text)} is not a number of event loops; use a whole number from 1 to ${MAX_WORKERS} (1, the default, is one loop as before)`,
    );
  return n;
}

/** The AWS SDK is loaded only for --secret-id: a proxy reading a directory output never pays for it. */
async function secretsManagerSource(secretId: string): Promise<BundleSource> {
  const [{ SecretsManagerClient }, { SecretsManagerBundleSource }] = await Promise.all([
    import('@aws-sdk/client-secrets-manager'),
    import('../proxy/sources/secretsmanager.js'),
  ]);
  return new SecretsManagerBundleSource({ client: new SecretsManagerClient({}), secretId });
}

/** `broker proxy db`'s options: commander's flags syntax, description and default, declared once for both parsers. */
export const PROXY_DB_OPTIONS: readonly { flags: string; description: string; default?: string }[] = [
  { flags: '-p, --port <port>', description: 'TCP port on --address (0 picks one)', default: '0' },
  {
    flags: '--db-user <user>',
    description: "as in tbot; must be the output's user (the certificate names it)",
  },
  { flags: '--db-name <name>', description: "as in tbot; must be the output's database" },
  {
    flags: '--address <address>',
    description: 'listen address; loopback only unless --unsafe-listen',
    default: '127.0.0.1',
  },
  { flags: '--unix <path>', description: 'listen on a unix socket (mode 0600) instead of TCP' },
  {
    flags: '--tunnel',
    description: 'attach the current certificate upstream; clients connect without TLS or password',
  },
  { flags: '--destination-dir <dir>', description: 'directory output the bot writes' },
  {
    flags: '--secret-id <id>',
    description: 'read the bundle from this AWS Secrets Manager secret instead (AWS mode)',
  },
  {
    flags: '--diag-addr <host:port>',
    description: 'serve /livez, /readyz and /metrics here; loopback only unless --unsafe-listen',
  },
  {
    flags: '--max-connections <n>',
    description: 'refuse connections beyond this many open ones (0 = unlimited)',
    default: '0',
  },
  {
    flags: '--max-sigterm-delay <duration>',
    description: 'on SIGTERM, wait this long for open connections to finish',
    default: '25s',
  },
  {
    flags: '--idle-timeout <duration>',
    description: 'close connections with no traffic for this long (0 = never)',
    default: '0',
  },
  {
    flags: '--workers <n>',
    description:
      'event loops serving connections (1-64): each extra one is a thread with its own TLS contexts and ' +
      '10-12 MB more RSS; use 2 or more on a host whose CPU is busy with many threads (e.g. a ' +
      'database with many clients on the same cores), where one loop waits its turn on the CPU',
    default: '1',
  },
  {
    flags: '--unsafe-listen',
    description: 'allow a non-loopback --address or --diag-addr (reachable from the network)',
  },
];

export const PROXY_DB_HELP_AFTER = `
Examples:
  broker proxy --destination-dir var/out/example db --port 12345 example-server
  broker proxy db --tunnel --port 5433 --destination-dir var/out/example --diag-addr 127.0.0.1:9090 example-server
    psql "host=127.0.0.1 port=5433 dbname=example user=alice"     # tunnel: no TLS, no password

Signals: SIGHUP re-reads the credentials now; SIGTERM stops accepting and drains (--max-sigterm-delay,
the default fits the ECS 30 s stop timeout), exiting 0 when every connection finished.`;

export function registerProxyCommands(program: Command, out: Out): void {
  const proxy = program
    .command('proxy')
    .description('local database proxy next to a workload (tbot proxy db)')
    .option(
      '--destination-dir <dir>',
      'directory output the bot writes (as in `tbot proxy --destination-dir`)',
    );

  const db = proxy
    .command('db')
    .description('serve a localhost endpoint for one database output')
    .argument('<service>', 'the database service of the output (checked against the bundle)');
  for (const o of PROXY_DB_OPTIONS) db.option(o.flags, o.description, o.default);
  db.addHelpText('after', PROXY_DB_HELP_AFTER).action((service: string, opts: ProxyDbOptions) =>
    runProxyDb(
      service,
      {
        ...opts,
        destinationDir: opts.destinationDir ?? proxy.opts<{ destinationDir?: string }>().destinationDir,
      },
      out,
    ),
  );

  proxy
    .command('healthcheck')
    .description('exit 0 when the proxy is ready (GET /readyz on --diag-addr); for container health checks')
    .requiredOption('--diag-addr <host:port>', 'the proxy diagnostics address')
    .action((opts: { diagAddr: string }) => runProxyHealthcheck(opts.diagAddr, out));
}

/** `broker proxy healthcheck`: prints /readyz's answer; throws when the proxy is not ready. */
export async function runProxyHealthcheck(diagAddr: string, out: Out): Promise<void> {
  const { checkHealth } = await import('../proxy/diag.js');
  const { ok, body } = await checkHealth(diagAddr);
  out(body);
  if (!ok) throw new BrokerError('not_ready', `proxy at ${diagAddr} is not ready`);
}

/** `broker proxy db SERVICE`: runs the proxy until SIGTERM or SIGINT, then drains. */
export async function runProxyDb(service: string, opts: ProxyDbOptions, out: Out): Promise<void> {
  const dir = opts.destinationDir;
  if (!dir && !opts.secretId)
    throw new UsageError(
      'give --destination-dir (the directory the bot writes this output to) or --secret-id',
    );
  const source: BundleSource = opts.secretId
    ? await secretsManagerSource(opts.secretId)
    : new DirectoryBundleSource(dir as string);
  const port = Number(opts.port);
  if (!opts.unix && (!Number.isInteger(port) || port < 0 || port > 65535))
    throw new UsageError(`--port ${opts.port} is not a port number`);
  const maxConnections = Number(opts.maxConnections);
  if (!Number.isInteger(maxConnections) || maxConnections < 0)
    throw new UsageError('--max-connections must be a whole number');
  const drainMs = durationOption(opts.maxSigtermDelay, '--max-sigterm-delay');
  const idleMs = opts.idleTimeout === '0' ? 0 : durationOption(opts.idleTimeout, '--idle-timeout');
  const workers = workersOption(opts.workers ?? '1');
  // Both listen addresses are checked before anything starts; each listener checks again as it binds.
  const unsafeListen = opts.unsafeListen === true;
  if (!opts.unix) await proxyListenHost(opts.address, { unsafeListen });
  // The diagnostics server (node:http and the metrics text) loads only when it is asked for.
  const diagModule = opts.diagAddr ? await import('../proxy/diag.js') : undefined;
  if (opts.diagAddr) await diagModule?.diagListenAddress(opts.diagAddr, { unsafeListen });
  const log = createJsonLogger({ base: { component: 'proxy', service } });
  // With --workers, every bundle the cache loads is posted to the worker loops (which never read the source).
  let onLoaded: ((c: LoadedCredentials) => void) | undefined;
  const creds = new CredentialCache(source, { log, onChange: (c) => onLoaded?.(c) });
  await creds.start();
  const loaded = creds.loaded;
  for (const [flag, want, have] of [
    ['--db-user', opts.dbUser, loaded?.bundle.username],
    ['--db-name', opts.dbName, loaded?.bundle.database],
  ] as const)
    if (want !== undefined && have !== undefined && want !== have)
      throw new UsageError(`${flag} ${want}: the credentials in ${source.description} are for ${have}`);
  if (loaded && loaded.bundle.service !== service)
    throw new BrokerError(
      'wrong_service',
      `${source.description} holds credentials for service "${loaded.bundle.service}", not "${service}"`,
    );
  const listen: ListenSpec = opts.unix ? { unixPath: opts.unix } : { address: opts.address, port };
  // Loaded (and the worker entry found) before anything listens: a missing entry is a start-up error.
  const loopsModule = workers > 1 ? await import('../proxy/loops.js') : undefined;
  const workerUrl = loopsModule?.loopWorkerUrl();
  const sharedOpen = new Int32Array(workers > 1 ? new SharedArrayBuffer(4) : new ArrayBuffer(4));
  const dbProxy = new DatabaseProxy({
    creds,
    log: workers > 1 ? log.child({ loop: 0 }) : log,
    tunnel: opts.tunnel === true,
    listen,
    unsafeListen,
    maxConnections,
    sharedOpen,
    idleTimeoutMs: idleMs,
    handlers: { mysql: mysqlTunnel },
  });
  const address = await dbProxy.start();
  let loops: import('../proxy/loops.js').ProxyLoops | undefined;
  if (loopsModule && workerUrl) {
    // The worker loops serve the bound listener; every bundle the cache loads from now on is posted to them.
    const group = new loopsModule.ProxyLoops(dbProxy, sharedOpen);
    group.startWorkers(
      workers - 1,
      {
        tunnel: opts.tunnel === true,
        maxConnections,
        idleTimeoutMs: idleMs,
        sourceDescription: source.description,
        logBase: { component: 'proxy', service },
        ...(creds.loaded ? { bundle: creds.loaded.bundle } : {}),
      },
      { log, workerUrl },
    );
    onLoaded = (c) => group.postBundle(c.bundle);
    loops = group;
  }
  const status: ProxyStatus = loops ?? dbProxy;
  const diag =
    opts.diagAddr && diagModule
      ? await diagModule.startDiagServer(opts.diagAddr, creds, status, { unsafeListen })
      : undefined;
  out(
    `Proxy for ${service} listening on ${address} (${opts.tunnel ? 'tunnel: the proxy attaches the certificate' : 'non-tunnel: clients bring the certificate'})`,
  );
  if (diag) out(`Diagnostics on http://${diag.address}/readyz and /metrics`);
  if (!loaded)
    out(`Waiting for credentials in ${source.description}: connections fail until the bot has written them.`);
  log.info(
    { address, tunnel: opts.tunnel === true, source: source.description, diag: diag?.address, workers },
    'proxy started',
  );
  // A sidecar lives as long as its task: give the start-up garbage (module code, the bundle checks, the TLS
  // context) back now, not ~10 s later when V8's memory reducer would. Only under --expose-gc, which the
  // sidecar's flags set (proxy-container/node-flags.ts); elsewhere there is no gc() and this does nothing.
  (globalThis as { gc?: () => void }).gc?.();
  const onHup = () => {
    log.info('SIGHUP: re-reading credentials');
    void creds.refresh();
  };
  process.on('SIGHUP', onHup);
  let failure: Error | undefined;
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
    // A dead worker loop took the shared listener with it: drain what is open and exit with an error.
    loops?.failure.catch((err: Error) => {
      failure = err;
      resolve('event loop failure');
    });
  });
  log.info({ open: status.openConnections, drainFor: formatDuration(drainMs) }, `${signal}: draining`);
  const drained = await (loops ?? dbProxy).stop(drainMs);
  creds.stop();
  await diag?.close();
  process.off('SIGHUP', onHup);
  log.info(
    { drained },
    drained ? 'all connections finished; exiting' : 'drain time over; closed the remaining connections',
  );
  if (failure) throw new BrokerError('loop_failed', failure.message);
  if (!drained)
    throw new BrokerError('not_drained', `connections were still open after ${formatDuration(drainMs)}`);
}
