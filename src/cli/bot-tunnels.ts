/**
 * tbot's `database-tunnel` services for `broker start`: a tunnel listener per service whose certificate lives
 * in memory only. The bot renders it every cycle, and every new connection first checks it, as tbot's tunnel
 * does (its local proxy's OnNewConnection): a certificate that has expired or is about to is issued again
 * before the connection goes upstream, one issuance shared by every connection waiting for it.
 */
import type { Bot } from '../bot/bot.js';
import { type BotConfig, type DatabaseOutputConfig, parseTunnelListen } from '../bot/config.js';
import { type Clock, systemClock } from '../clock.js';
import type { DbProtocol } from '../credentials/route.js';
import type { Destination } from '../destinations/destination.js';
import { MemoryDestination } from '../destinations/memory.js';
import { BrokerError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { CredentialCache } from '../proxy/credential-cache.js';
import type { LoadedCredentials } from '../proxy/loaded-credentials.js';
import { DatabaseProxy, type ListenSpec, proxyListenHost } from '../proxy/proxy.js';
import { directTlsTunnel } from '../proxy/tunnels/direct-tls.js';
import { mysqlTunnel } from '../proxy/tunnels/mysql.js';
import { postgresTunnel } from '../proxy/tunnels/postgres.js';
import type { TunnelHandler } from '../proxy/tunnels/tunnel.js';
import { UsageError } from './errors.js';

/** A certificate is issued again when less than this much of its lifetime is left, and at most a minute. */
const REISSUE_FRACTION = 0.1;
const REISSUE_MAX_MS = 60_000;
/**
 * After an issuance on demand that left the certificate stale (the authority refused or could not be
 * reached), new connections do not ask again for this long: a flood of connections is not a flood of
 * issuance requests (each an invocation and an audit line); the renewal cycle goes on as before.
 */
const REISSUE_BACKOFF_MS = 5_000;

/**
 * Why a connection may not use `loaded` as it is at `now` (undefined: it may): none yet, expired, or within
 * the margin before expiry (a tenth of its lifetime, at most a minute), so a connection that starts just
 * before expiry does not fail its TLS handshake a moment later.
 */
export function staleReason(loaded: LoadedCredentials | undefined, now: Date): string | undefined {
  if (!loaded) return 'no certificate yet';
  const left = loaded.expiresAt.getTime() - now.getTime();
  if (left <= 0)
    return `the certificate (serial ${loaded.serial}) expired at ${loaded.expiresAt.toISOString()}`;
  const lifetime = loaded.expiresAt.getTime() - Date.parse(loaded.bundle.issuedAt);
  const margin = Math.min(REISSUE_MAX_MS, Math.max(0, lifetime) * REISSUE_FRACTION);
  if (left <= margin)
    return `the certificate (serial ${loaded.serial}) expires in ${Math.ceil(left / 1000)} s, at ${loaded.expiresAt.toISOString()}`;
  return undefined;
}

/** Calls `fn` once for every caller that arrives while a call is running: they all wait for that one. */
export function singleFlight(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => {
    running ??= fn().finally(() => {
      running = undefined;
    });
    return running;
  };
}

/** Every tunnel handler (the proxy's, MySQL's), each run after `before` on every new connection. */
export function handlersAfter(before: () => Promise<void>): Partial<Record<DbProtocol, TunnelHandler>> {
  const wrap =
    (handler: TunnelHandler): TunnelHandler =>
    async (ctx) => {
      await before();
      return handler(ctx);
    };
  return {
    postgres: wrap(postgresTunnel),
    cockroachdb: wrap(postgresTunnel),
    mysql: wrap(mysqlTunnel),
    mongodb: wrap(directTlsTunnel('mongodb')),
    redis: wrap(directTlsTunnel('redis')),
  };
}

/** A tunnel's listen URL as the proxy's listen spec, checked (loopback unless unsafeListen) before any join. */
async function tunnelListen(listen: string, at: string, unsafeListen: boolean): Promise<ListenSpec> {
  const parsed = parseTunnelListen(listen);
  if (!parsed)
    throw new UsageError(`${at}.listen: ${JSON.stringify(listen)} is not tcp://HOST:PORT or unix:///PATH`);
  if ('unixPath' in parsed) return parsed;
  try {
    await proxyListenHost(parsed.host, { unsafeListen });
  } catch (err) {
    throw new BrokerError(
      'bad_listen',
      `${at}.listen: ${errorMessage(err)} (tbot would listen there; the broker needs broker start --unsafe-listen for that)`,
    );
  }
  return { address: parsed.host, port: parsed.port };
}

export interface TunnelRuntime {
  output: DatabaseOutputConfig;
  destination: Destination;
  creds: CredentialCache;
  proxy: DatabaseProxy;
  /** Gives the tunnel the bot that issues its certificates; connections before this wait for the cycle. */
  attach(bot: Bot): void;
}

/**
 * The config's `database-tunnel` services: each an output the bot renders into memory (never a file), and a
 * tunnel listener that opens every new connection upstream with a certificate checked just before.
 */
export async function prepareTunnels(
  config: BotConfig,
  options: { log: Logger; unsafeListen: boolean; clock?: Clock },
): Promise<TunnelRuntime[]> {
  const { log, unsafeListen } = options;
  const clock = options.clock ?? systemClock;
  const runtimes: TunnelRuntime[] = [];
  for (const t of config.tunnels) {
    const listen = await tunnelListen(t.listen, t.origin, unsafeListen);
    const output: DatabaseOutputConfig = {
      type: 'database',
      destination: { type: 'memory' },
      service: t.service,
      database: t.database,
      username: t.username,
      format: '',
      roles: t.roles,
      origin: t.origin,
    };
    const memory = new MemoryDestination();
    const tunnelLog = log.child({ tunnel: t.origin, service: t.service });
    const creds = new CredentialCache(
      { description: `${t.origin} (in memory)`, load: () => memory.read() },
      { log: tunnelLog, clock },
    );
    let started = false;
    const destination: Destination = {
      description: `${t.origin} (in memory)`,
      read: () => memory.read(),
      async write(bundle) {
        await memory.write(bundle);
        // The next connection uses the certificate just issued; the cache starts with the first one.
        if (started) await creds.refresh();
        else {
          started = true;
          await creds.start();
        }
      },
    };
    let bot: Bot | undefined;
    const reissue = singleFlight(async () => {
      if (!bot) throw new Error('the bot has not started yet');
      await bot.renderNow(output);
    });
    let quietUntil = 0;
    const checkCertificate = async () => {
      const why = staleReason(creds.loaded, clock.now());
      if (!why || clock.now().getTime() < quietUntil) return;
      tunnelLog.info({ reason: why }, `the tunnel's certificate needs reissuing: ${why}`);
      try {
        await reissue();
      } catch (err) {
        // The connection goes on: with a still-valid certificate it works, else the tunnel tells the client.
        tunnelLog.warn(
          { err },
          `could not issue a fresh certificate for the tunnel: ${errorMessage(err)}${creds.ready ? '; using the current one' : ''}`,
        );
      }
      if (bot && staleReason(creds.loaded, clock.now()))
        quietUntil = clock.now().getTime() + REISSUE_BACKOFF_MS;
    };
    const proxy = new DatabaseProxy({
      creds,
      log: tunnelLog,
      tunnel: true,
      listen,
      unsafeListen,
      handlers: handlersAfter(checkCertificate),
    });
    const attach = (b: Bot) => {
      bot = b;
    };
    runtimes.push({ output, destination, creds, proxy, attach });
  }
  return runtimes;
}
