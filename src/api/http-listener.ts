/**
 * The authority API over HTTP (unix socket or HTTPS): the request listener and the limits that keep one
 * caller — or thousands of idle connections — from taking the server down. Every limit has a default; a
 * request that fails, however it fails, is answered and never ends the process.
 */
import type http from 'node:http';
import type { Socket } from 'node:net';
import type { Authority } from '../authority/authority.js';
import type { Logger } from '../log.js';
import { handleApiRequest } from './handler.js';
import { API_VERSION, type ApiResponse } from './protocol.js';
import type { RateLimiter } from './rate-limit.js';
import { API_PATH } from './transports.js';

export interface ServerLimits {
  /** Time allowed to receive a request's headers. */
  headersTimeoutMs: number;
  /** Time allowed to receive a whole request, body included. */
  requestTimeoutMs: number;
  /** How long a kept-alive connection may wait for its next request. */
  keepAliveTimeoutMs: number;
  /** A connection without traffic for this long is closed, unless a request of it is being answered. */
  idleTimeoutMs: number;
  /** Time allowed for a TLS handshake (HTTPS). */
  handshakeTimeoutMs: number;
  /** Connections open at once; more are closed as they arrive. */
  maxConnections: number;
  /** Largest request body; a bigger one is answered 413. */
  maxBodyBytes: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  handshakeTimeoutMs: 10_000,
  maxConnections: 512,
  maxBodyBytes: 256 * 1024,
};

/** The options `http.createServer` / `https.createServer` take for `limits`. */
export function serverOptions(limits: ServerLimits): http.ServerOptions {
  const shortest = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  return {
    headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often Node checks the two timeouts above; its 30 s default would stretch a short one.
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(shortest / 4))),
  };
}

/** Applies `limits` to a created server; `busy` holds the sockets with a request being answered. */
export function applyLimits(server: http.Server, limits: ServerLimits, busy: ReadonlySet<Socket>): void {
  server.maxConnections = limits.maxConnections;
  server.headersTimeout = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  // With a listener, Node leaves timed-out sockets to it: idle ones go, busy ones are being answered.
  server.setTimeout(limits.idleTimeoutMs, (socket: Socket) => {
    if (!busy.has(socket)) socket.destroy();
  });
}

export interface ListenerDependencies {
  authority: Authority;
  limits: ServerLimits;
  limiter?: RateLimiter | undefined;
  busy: Set<Socket>;
  log?: Logger | undefined;
}

/** POST /v1/rpc: a JSON request in, a JSON response out. */
export function apiRequestListener(deps: ListenerDependencies): http.RequestListener {
  const { authority, limits, limiter, busy, log } = deps;
  return (req, res) => {
    // An aborted upload or a reset connection is that connection's end, and nothing more.
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    if (req.method !== 'POST' || req.url !== API_PATH) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"POST /v1/rpc"}');
      return;
    }
    let done = false;
    const tooLarge = () => {
      done = true;
      res
        .writeHead(413, { 'content-type': 'application/json', connection: 'close' })
        .end(JSON.stringify(failure('too_large', `the request body is over ${limits.maxBodyBytes} bytes`)));
      req.resume();
    };
    if (Number(req.headers['content-length'] ?? 0) > limits.maxBodyBytes) return tooLarge();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limits.maxBodyBytes) tooLarge();
      else chunks.push(c);
    });
    req.on('end', () => {
      if (done) return;
      busy.add(req.socket);
      void answer(Buffer.concat(chunks)).finally(() => busy.delete(req.socket));
    });

    const answer = async (raw: Buffer) => {
      let status = 200;
      let response: ApiResponse;
      try {
        let body: unknown;
        try {
          body = JSON.parse(raw.toString('utf8'));
        } catch {
          body = undefined;
        }
        // A unix socket has no peer address: its callers (0600, one user) share one bucket.
        const caller = req.socket.remoteAddress ?? 'unix';
        response = await handleApiRequest(authority, body, log, { limiter, caller });
        if (!response.ok && response.error.code === 'rate_limited') status = 429;
      } catch (err) {
        log?.error({ err }, 'authority request failed outside the API handler');
        status = 500;
        response = failure('internal', 'the authority failed to process the request; see its log');
      }
      if (!res.headersSent && !res.destroyed)
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(response));
    };
  };
}

/** Prunes expired short-lived state every `intervalMs` (and once at start); returns a stop function. */
export function startHousekeeping(authority: Authority, intervalMs: number, log?: Logger): () => void {
  let running = false;
  const prune = () => {
    if (running) return;
    running = true;
    authority
      .pruneExpired()
      .then((removed) => {
        if (removed > 0) log?.debug({ removed }, 'pruned expired short-lived state');
      })
      .catch((err: unknown) => log?.warn({ err }, 'could not prune expired short-lived state; will retry'))
      .finally(() => {
        running = false;
      });
  };
  prune();
  const timer = setInterval(prune, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

function failure(code: string, message: string): ApiResponse {
  return { v: API_VERSION, ok: false, error: { code, message } };
}
