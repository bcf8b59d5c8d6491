import { promises as fs } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import path from 'node:path';
import type { Authority } from '../authority/authority.js';
import { ConfigError } from '../config/errors.js';
import type { Logger } from '../log.js';
import { type HostResolver, loopbackListenHost } from '../net-address.js';
import { authorityServerNames } from '../pki/authority-server.js';
import { generateRsaKeyPair } from '../pki/keys.js';
import {
  apiRequestListener,
  applyLimits,
  DEFAULT_SERVER_LIMITS,
  type ServerLimits,
  serverOptions,
  startHousekeeping,
} from './http-listener.js';
import { RateLimiter, type RateLimitOptions, UNAUTHENTICATED_RATE } from './rate-limit.js';

export interface AuthorityServerOptions {
  authority: Authority;
  /** Unix socket path (created with mode 0600). */
  socketPath?: string;
  /** `host:port` for HTTPS; loopback only unless `unsafeListen`. */
  listen?: string;
  unsafeListen?: boolean;
  /** Resolves the `listen` host for the loopback check; default the system resolver. */
  resolve?: HostResolver;
  /** More names or addresses bots dial the HTTPS listener by, for its certificate (`--public-addr`). */
  publicAddrs?: readonly string[];
  log?: Logger;
  /** Timeouts and bounds of connections and requests; each defaults (DEFAULT_SERVER_LIMITS). */
  limits?: Partial<ServerLimits>;
  /** Per-caller limit of unauthenticated requests (join, challenge, ca-bundles); default UNAUTHENTICATED_RATE. */
  rateLimit?: RateLimitOptions;
  /** How often expired short-lived state is pruned (default every minute). */
  pruneIntervalMs?: number;
}

export interface RunningAuthorityServer {
  /** `unix:///...` or `https://host:port`, as a bot's `auth_server`. */
  address: string;
  /** The limits it applies. */
  limits: ServerLimits;
  close(): Promise<void>;
}

const SERVER_CERT_TTL_MS = 30 * 24 * 3_600_000;

/** Serves the authority API: POST /v1/rpc with a JSON request, answered with a JSON response. */
export async function startAuthorityServer(options: AuthorityServerOptions): Promise<RunningAuthorityServer> {
  const { authority, log } = options;
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
  const limiter = new RateLimiter(options.rateLimit ?? UNAUTHENTICATED_RATE);
  const busy = new Set<Socket>();
  const handler = apiRequestListener({ authority, limits, limiter, busy, log });
  /** Applies the limits to a listening server, starts pruning, and returns how to stop both. */
  const guard = (server: http.Server) => {
    applyLimits(server, limits, busy);
    const stopHousekeeping = startHousekeeping(authority, options.pruneIntervalMs ?? 60_000, log);
    return (done: () => void) => {
      stopHousekeeping();
      server.close(done);
      server.closeAllConnections();
    };
  };

  if (options.socketPath) {
    const socketPath = path.resolve(options.socketPath);
    await fs.rm(socketPath, { force: true });
    const server = http.createServer(serverOptions(limits), handler);
    // The umask makes the socket 0600 from the moment it exists; chmod afterwards would leave a window.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
    } finally {
      process.umask(oldMask);
    }
    await fs.chmod(socketPath, 0o600);
    const stop = guard(server);
    return {
      address: `unix://${socketPath}`,
      limits,
      close: () =>
        new Promise((resolve) => stop(() => void fs.rm(socketPath, { force: true }).then(() => resolve()))),
    };
  }

  const listen = options.listen ?? '127.0.0.1:3025';
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = Number(listen.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError(`--listen ${listen}: expected host:port`);
  // Resolved and checked before anything is made; the listener binds the checked address, not the name.
  const bind = await loopbackListenHost(host, {
    flag: '--listen',
    unsafe: options.unsafeListen === true,
    risk: 'the authority API would be reachable from the network',
    ...(options.resolve ? { resolve: options.resolve } : {}),
  });
  const keys = await generateRsaKeyPair();
  // Bots check that this certificate names the host they dial (src/pki/authority-server.ts).
  const sans = authorityServerNames(host, options.publicAddrs);
  const cert = await authority.signAuthorityServer(sans, keys.publicKeyPem, SERVER_CERT_TTL_MS);
  const chain = cert + (await authority.caBundle('bot'));
  const server = https.createServer(
    {
      key: keys.privateKeyPem,
      cert: chain,
      minVersion: 'TLSv1.2',
      handshakeTimeout: limits.handshakeTimeoutMs,
      ...serverOptions(limits),
    },
    handler,
  );
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, bind, resolve));
  const stop = guard(server);
  const addr = server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  return {
    address: `https://${host.includes(':') ? `[${host}]` : host}:${actualPort}`,
    limits,
    close: () => new Promise((resolve) => stop(resolve)),
  };
}
