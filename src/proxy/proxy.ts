import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { DbProtocol } from '../credentials/route.js';
import { errorMessage } from '../errors.js';
import type { JsonLogger as Logger } from '../json-log.js';
import { type HostResolver, loopbackListenHost } from '../net-address.js';
import type { CredentialCache } from './credential-cache.js';
import { CredentialDialer, type Dialer } from './dialer.js';
import { ProxyMetrics, type ScrapeExtras } from './metrics.js';
import { outcomeOf } from './outcome.js';
import { PacketReader } from './packet-reader.js';
import { type RelayCounters, relay } from './relay.js';
import { directTlsTunnel } from './tunnels/direct-tls.js';
import { postgresTunnel } from './tunnels/postgres.js';
import type { TunnelHandler } from './tunnels/tunnel.js';

export type ListenSpec = { address: string; port: number } | { unixPath: string };

/**
 * What /readyz and /metrics read of a running proxy: one event loop (DatabaseProxy) or several together
 * (ProxyLoops, `--workers`).
 */
export interface ProxyStatus {
  readonly isDraining: boolean;
  readonly openConnections: number;
  renderMetrics(extras: ScrapeExtras): Promise<string>;
}

export interface ProxyOptions {
  creds: CredentialCache;
  log: Logger;
  tunnel: boolean;
  /** `fd`: serve a listener another event loop bound (a worker loop of ProxyLoops); never closed here. */
  listen: ListenSpec | { fd: number };
  /** Allow a non-loopback TCP address. */
  unsafeListen?: boolean;
  /** Resolves a TCP listen host for the loopback check; default the system resolver. */
  resolve?: HostResolver;
  /** 0 = unlimited. */
  maxConnections?: number;
  /**
   * Open connections of every loop serving the same listener, element 0, changed with Atomics: one
   * `maxConnections` for all of them. Default: this proxy's own count.
   */
  sharedOpen?: Int32Array;
  startupTimeoutMs?: number;
  dialTimeoutMs?: number;
  /** Close a pair with no traffic either way for this long; 0 = never (long queries are silent). */
  idleTimeoutMs?: number;
  metrics?: ProxyMetrics;
  /** Tunnel handlers by protocol; the MySQL handler is registered by its module. */
  handlers?: Partial<Record<DbProtocol, TunnelHandler>>;
}

/**
 * The address the proxy binds for `--address`: loopback only (every address a name resolves to), unless
 * `unsafeListen`. The CLI calls it before anything starts; `start` calls it again before binding.
 */
export function proxyListenHost(
  address: string,
  options: { unsafeListen?: boolean; resolve?: HostResolver },
): Promise<string> {
  return loopbackListenHost(address, {
    flag: '--address',
    unsafe: options.unsafeListen === true,
    risk: "anyone who can reach it would use this machine's database credentials; listen on 127.0.0.1",
    ...(options.resolve ? { resolve: options.resolve } : {}),
  });
}

const DEFAULT_HANDLERS: Partial<Record<DbProtocol, TunnelHandler>> = {
  postgres: postgresTunnel,
  cockroachdb: postgresTunnel,
  mongodb: directTlsTunnel('mongodb'),
  redis: directTlsTunnel('redis'),
};

/**
 * The localhost database proxy. Non-tunnel: a byte relay to the database (the client does TLS with the
 * output's files). Tunnel: the proxy opens mutual TLS upstream with the newest certificate for every new
 * connection; open connections keep the certificate they started with, so a rotation never cuts them.
 */
export class DatabaseProxy implements ProxyStatus {
  readonly metrics: ProxyMetrics;
  private server: net.Server | undefined;
  private readonly open = new Set<net.Socket>();
  private draining = false;
  /** Connections whose serve() has not returned yet (its log line is still to come). */
  private serving = 0;
  private closedAll: (() => void) | undefined;
  private readonly handlers: Partial<Record<DbProtocol, TunnelHandler>>;
  private readonly dialer: Dialer;
  private readonly sharedOpen: Int32Array;

  constructor(private readonly options: ProxyOptions) {
    const metrics = options.metrics ?? new ProxyMetrics();
    this.sharedOpen = options.sharedOpen ?? new Int32Array(1);
    this.metrics = metrics;
    this.handlers = { ...DEFAULT_HANDLERS, ...options.handlers };
    this.dialer = new CredentialDialer({
      credentials: options.creds,
      timeoutMs: options.dialTimeoutMs ?? 10_000,
      onDial: (seconds) => metrics.dialSeconds.observe(seconds),
    });
  }

  /** What the relay adds each chunk's length to: one pair of functions for every connection. */
  private readonly counters: RelayCounters = {
    clientToServer: (n) => {
      this.metrics.bytes.clientToServer += n;
    },
    serverToClient: (n) => {
      this.metrics.bytes.serverToClient += n;
    },
  };

  get openConnections(): number {
    return this.open.size;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  async renderMetrics(extras: ScrapeExtras): Promise<string> {
    return this.metrics.render(extras);
  }

  /** The listening socket's file descriptor, for other loops to serve (`listen: { fd }`). */
  get listenerFd(): number {
    const fd = (this.server as unknown as { _handle?: { fd?: number } } | undefined)?._handle?.fd;
    if (fd === undefined || fd < 0) throw new Error('the proxy is not listening');
    return fd;
  }

  /** Binds the listener. Returns `host:port` or the socket path. */
  async start(): Promise<string> {
    const { listen } = this.options;
    // Checked before anything is bound: a refused address must never have listened, even for a moment.
    const host = 'address' in listen ? await proxyListenHost(listen.address, this.options) : undefined;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) =>
      this.accept(socket),
    );
    this.server = server;
    if ('fd' in listen) {
      await new Promise<void>((resolve, reject) =>
        server.once('error', reject).listen({ fd: listen.fd }, resolve),
      );
      return `fd ${listen.fd}`;
    }
    if ('unixPath' in listen) {
      const socketPath = path.resolve(listen.unixPath);
      await fs.rm(socketPath, { force: true });
      // Created 0600 from the start: only this user's processes may use the credentials behind it.
      const oldMask = process.umask(0o177);
      try {
        await new Promise<void>((resolve, reject) =>
          server.once('error', reject).listen(socketPath, resolve),
        );
      } finally {
        process.umask(oldMask);
      }
      await fs.chmod(socketPath, 0o600);
      return socketPath;
    }
    await new Promise<void>((resolve, reject) =>
      server.once('error', reject).listen(listen.port, host ?? '127.0.0.1', resolve),
    );
    const addr = server.address() as net.AddressInfo;
    return `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`;
  }

  private accept(client: net.Socket): void {
    const { log, maxConnections = 0 } = this.options;
    const id = randomBytes(6).toString('hex');
    // Counted before the check: two loops accepting at once cannot both take the last place.
    const open = Atomics.add(this.sharedOpen, 0, 1);
    if (this.draining || (maxConnections > 0 && open >= maxConnections)) {
      Atomics.sub(this.sharedOpen, 0, 1);
      const outcome = this.draining ? 'draining' : 'max_connections';
      this.metrics.connections.inc(outcome);
      log.warn(
        { conn: id, open, maxConnections },
        `refusing a connection: ${outcome === 'draining' ? 'shutting down' : `--max-connections ${maxConnections} reached`}`,
      );
      client.destroy();
      return;
    }
    this.open.add(client);
    this.metrics.openConnections = this.open.size;
    client.setNoDelay?.(true);
    client.on('close', () => {
      Atomics.sub(this.sharedOpen, 0, 1);
      this.open.delete(client);
      this.metrics.openConnections = this.open.size;
      this.checkDrained();
    });
    this.serving++;
    this.serve(id, client)
      .catch((err) => {
        log.warn({ conn: id, err }, `connection failed: ${errorMessage(err)}`);
        client.destroy();
      })
      .finally(() => {
        this.serving--;
        this.checkDrained();
      });
  }

  /** Drained once every connection has closed and logged how it ended (a worker loop exits right after). */
  private checkDrained(): void {
    if (this.open.size === 0 && this.serving === 0) this.closedAll?.();
  }

  private async serve(id: string, client: net.Socket): Promise<void> {
    const { creds, log, tunnel } = this.options;
    const started = Date.now();
    const counters = this.counters;
    let outcome = 'ok';
    try {
      if (!tunnel) {
        // Non-tunnel needs only the endpoint; the client brings its own certificate.
        const loaded = creds.loaded;
        if (!loaded) throw new Error('no bundle loaded yet, so the database endpoint is unknown');
        const upstream = await this.dialer.dialTcp(loaded);
        log.debug({ conn: id, upstream: loaded.bundle.endpoint }, 'relaying');
        const err = await relay(client, upstream, counters, this.options.idleTimeoutMs);
        if (err) outcome = outcomeOf(err);
        return;
      }
      const current = creds.loaded;
      const protocol = current?.bundle.protocol ?? 'postgres';
      const handler = this.handlers[protocol];
      if (!handler) throw new Error(`tunnel mode for ${protocol} is not available`);
      const setup = await handler({
        client,
        // Not kept in a variable here: this function waits for the connection's whole life, and the reader
        // is done once the tunnel is set up.
        reader: new PacketReader(client),
        dialer: this.dialer,
        log,
        startupTimeoutMs: this.options.startupTimeoutMs ?? 15_000,
        dialTimeoutMs: this.options.dialTimeoutMs ?? 10_000,
      });
      if (!setup) {
        outcome = 'handled';
        return;
      }
      const serial = creds.loaded?.serial;
      log.debug({ conn: id, serial }, 'tunnel established');
      if (setup.toUpstream?.length) setup.upstream.write(setup.toUpstream);
      if (setup.toClient?.length) client.write(setup.toClient);
      const err = await relay(client, setup.upstream, counters, this.options.idleTimeoutMs);
      if (err) outcome = outcomeOf(err);
    } catch (err) {
      outcome = outcomeOf(err);
      throw err;
    } finally {
      this.metrics.connections.inc(outcome);
      log.info({ conn: id, outcome, ms: Date.now() - started }, 'connection closed');
    }
  }

  /**
   * Stops accepting, waits up to `drainMs` for open connections to finish, then closes what is left.
   * Returns true when every connection finished by itself. A loop serving another loop's listener (`fd`)
   * leaves it open: the descriptor is shared, and the loop that bound it closes it for all.
   */
  async stop(drainMs: number): Promise<boolean> {
    this.draining = true;
    // close() only stops accepting here; its callback would wait for the open connections themselves.
    if (!('fd' in this.options.listen)) this.server?.close();
    if (this.open.size === 0 && this.serving === 0) return true;
    const drained = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), drainMs);
      this.closedAll = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
    for (const s of this.open) s.destroy();
    return drained;
  }
}
