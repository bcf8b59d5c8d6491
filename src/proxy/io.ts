import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { LoadedCredentials } from './credentials.js';

/** Why a connection ended, as a stable label for logs and metrics (errno codes mapped in one place). */
export function outcomeOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case undefined:
      return err ? 'error' : 'ok';
    case 'ECONNREFUSED':
      return 'upstream_refused';
    case 'ETIMEDOUT':
    case 'DIAL_TIMEOUT':
      return 'upstream_timeout';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'upstream_dns';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'STARTUP_TIMEOUT':
      return 'client_timeout';
    case 'USER_MISMATCH':
      return 'user_mismatch';
    case 'TLS_REFUSED':
      return 'upstream_tls_refused';
    case 'PROTOCOL':
      return 'protocol_error';
    case 'IDLE_TIMEOUT':
      return 'idle_timeout';
    case 'UPSTREAM_ERR':
      return 'upstream_refused';
    case 'credentials_unavailable':
      return 'no_credentials';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
    case 'CERT_HAS_EXPIRED':
      return 'upstream_cert_invalid';
    default:
      return code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') ? 'tls_error' : 'error';
  }
}

export class ProxyError extends Error {
  override name = 'ProxyError';
  constructor(
    message: string,
    readonly code: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options);
  }
}

/** Opens a TCP connection to the database, failing after `timeoutMs`. */
export function dialTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new ProxyError(`connecting to ${host}:${port} timed out after ${timeoutMs / 1000}s`, 'DIAL_TIMEOUT'),
      );
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 60_000);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * Starts mutual TLS on `socket` (or opens a new TLS connection when `socket` is a host/port) with the
 * current certificate, verifying the server against the bundle's CA and its server name.
 */
export function startTls(
  socket: net.Socket,
  creds: LoadedCredentials,
  timeoutMs: number,
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      secureContext: creds.secureContext,
      servername: creds.bundle.serverName,
      rejectUnauthorized: true,
      // The bundle's CA verifies the server; the name checked is the db resource's tls.server_name.
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(creds.bundle.serverName, cert),
    });
    const timer = setTimeout(() => {
      secure.destroy();
      reject(new ProxyError(`TLS handshake with ${creds.bundle.endpoint} timed out`, 'DIAL_TIMEOUT'));
    }, timeoutMs);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(secure);
    });
    secure.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * Reads framed packets from a socket before the proxy starts relaying. `next(take)` resolves with the
 * first packet `take` can split off; bytes beyond it stay buffered for `rest()`.
 */
export class PacketReader {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private ended = false;
  private failure: Error | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    this.waiter?.();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.waiter?.();
  };
  private readonly onError = (err: Error) => {
    this.failure = err;
    this.waiter?.();
  };

  constructor(private readonly socket: Duplex) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    // The listener accepts sockets paused (so nothing is read before a handler is ready).
    socket.resume();
  }

  async next<T>(
    take: (buf: Buffer) => { packet: T; rest: Buffer } | undefined,
    timeoutMs: number,
    what: string,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = take(this.buf);
      if (got) {
        this.buf = got.rest;
        return got.packet;
      }
      if (this.failure) throw this.failure;
      if (this.ended) throw new ProxyError(`connection closed while waiting for ${what}`, 'ECONNRESET');
      const left = deadline - Date.now();
      if (left <= 0) throw new ProxyError(`no ${what} within ${timeoutMs / 1000}s`, 'STARTUP_TIMEOUT');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve();
        };
      });
    }
  }

  /** Stops reading and returns what was buffered but not consumed. */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('error', this.onError);
    this.socket.pause();
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}

export interface RelayCounters {
  clientToServer(n: number): void;
  serverToClient(n: number): void;
}

/**
 * Relays bytes both ways until both sides are done, the same rules in each direction:
 * an end (FIN) from one side half-closes the other, so protocols that finish writing before reading
 * still work; an error on one side destroys the other, since a half-broken pair can only hang; an
 * optional idle timeout ends a pair with no traffic either way. Resolves when both sockets are closed.
 */
export function relay(
  client: Duplex,
  server: Duplex,
  counters: RelayCounters,
  idleTimeoutMs = 0,
): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let failure: Error | undefined;
    let closed = 0;
    let idleTimer: NodeJS.Timeout | undefined;
    const touch = () => {
      if (!idleTimeoutMs) return;
      if (idleTimer) idleTimer.refresh();
      else
        idleTimer = setTimeout(() => {
          failure = new ProxyError(`idle for ${idleTimeoutMs / 1000}s`, 'IDLE_TIMEOUT');
          client.destroy();
          server.destroy();
        }, idleTimeoutMs);
    };
    const wire = (from: Duplex, to: Duplex, count: (n: number) => void) => {
      from.on('data', (chunk: Buffer) => {
        count(chunk.length);
        touch();
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('end', () => to.end());
      from.on('error', (err) => {
        failure ??= err;
        to.destroy();
      });
      from.on('close', () => {
        // A side destroyed before its end (shutdown, idle timeout) leaves nothing to relay to: destroy the
        // other, which may be paused waiting for a drain that will never come. After a clean end, half-close.
        if (!from.readableEnded) to.destroy();
        else if (!to.destroyed && (to as { writableEnded?: boolean }).writableEnded !== true) to.end();
        if (++closed === 2) {
          if (idleTimer) clearTimeout(idleTimer);
          resolve(failure);
        }
      });
    };
    wire(client, server, counters.clientToServer);
    wire(server, client, counters.serverToClient);
    touch();
    client.resume();
    server.resume();
  });
}
