import { type AddressInfo, createServer, type Socket } from 'node:net';
import { ConfigError } from '../config/errors.js';
import { isoTime } from '../iso-time.js';
import { formatHostPort, type HostResolver, loopbackListenHost } from '../net-address.js';
import type { CredentialCache } from './credential-cache.js';
import { METRICS_CONTENT_TYPE } from './metrics.js';
import type { ProxyStatus } from './proxy.js';

export function parseHostPort(text: string, flag: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  const host = text.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const portText = text.slice(i + 1);
  const port = Number(portText);
  if (i < 0 || !host || !/^\d{1,5}$/.test(portText) || port > 65535)
    throw new ConfigError(`${flag} ${JSON.stringify(text)}: expected host:port, e.g. 127.0.0.1:9090`);
  return { host, port };
}

/** The readiness answer: ready when a valid bundle is loaded and the proxy is not draining. Never dials the database. */
export function readiness(
  creds: CredentialCache,
  proxy: ProxyStatus,
): { status: number; body: Record<string, unknown> } {
  const loaded = creds.loaded;
  const base = loaded
    ? { serial: loaded.serial, expiresAt: isoTime(loaded.expiresAt), service: loaded.bundle.service }
    : {};
  if (proxy.isDraining) return { status: 503, body: { ready: false, reason: 'draining', ...base } };
  if (!creds.ready)
    return {
      status: 503,
      body: { ready: false, reason: loaded ? 'certificate expired' : 'no credentials loaded yet', ...base },
    };
  return { status: 200, body: { ready: true, openConnections: proxy.openConnections, ...base } };
}

export interface DiagListenOptions {
  /** `--unsafe-listen`: allow a non-loopback address. */
  unsafeListen?: boolean;
  resolve?: HostResolver;
}

/**
 * Where `--diag-addr` binds: loopback only (every address a name resolves to) unless `unsafeListen`, since
 * /readyz and /metrics describe the proxy and its credentials to whoever can reach them.
 */
export async function diagListenAddress(
  address: string,
  options: DiagListenOptions = {},
): Promise<{ host: string; port: number }> {
  const { host, port } = parseHostPort(address, '--diag-addr');
  const bind = await loopbackListenHost(host, {
    flag: '--diag-addr',
    unsafe: options.unsafeListen === true,
    risk: 'anyone who can reach it reads /readyz and /metrics; use e.g. 127.0.0.1:9090',
    ...(options.resolve ? { resolve: options.resolve } : {}),
  });
  return { host: bind, port };
}

const REASONS: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};
/** The longest request head read: a GET of these paths from a probe or a scraper is a few hundred bytes. */
const MAX_REQUEST_HEAD = 8192;
/** A client that has not sent a whole request head by then is dropped, so idle sockets cannot pile up. */
const REQUEST_TIMEOUT_MS = 10_000;

/** Answers one request and closes the connection (no keep-alive: a probe or a scrape every few seconds). */
function respond(
  socket: Socket,
  request: { method: string },
  reply: { status: number; contentType: string; body: string },
): void {
  if (socket.destroyed) return;
  const body = Buffer.from(reply.body);
  const head = `HTTP/1.1 ${reply.status} ${REASONS[reply.status] ?? ''}\r\ncontent-type: ${reply.contentType}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  socket.end(request.method === 'HEAD' ? head : Buffer.concat([Buffer.from(head, 'latin1'), body]));
}

/** The request line of a request head, or undefined when it is not `METHOD target HTTP/1.x`. */
function requestLine(head: string): { method: string; path: string } | undefined {
  const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]\r?$/.exec(head.slice(0, head.indexOf('\n')));
  return m ? { method: m[1] as string, path: (m[2] as string).split('?')[0] as string } : undefined;
}

/**
 * `/livez`, `/readyz` and `/metrics` on the diagnostics address. HTTP/1.1 answered directly on the socket
 * rather than with node:http, whose parser and server classes were about 0.7 MB of an idle sidecar's memory
 * (the container starts with the diagnostics address on); each answer closes its connection.
 */
export async function startDiagServer(
  address: string,
  creds: CredentialCache,
  proxy: ProxyStatus,
  options: DiagListenOptions = {},
): Promise<{ address: string; close(): Promise<void> }> {
  const { host, port } = await diagListenAddress(address, options);
  const json = (status: number, body: unknown) => ({
    status,
    contentType: 'application/json',
    body: `${JSON.stringify(body)}\n`,
  });
  const answer = async (method: string, path: string) => {
    if (method !== 'GET') return json(405, { error: 'GET only' });
    if (path === '/livez') return json(200, { live: true });
    if (path === '/readyz') {
      const r = readiness(creds, proxy);
      return json(r.status, r.body);
    }
    if (path === '/metrics') {
      const loaded = creds.loaded;
      // Every event loop's counts (--workers): the others answer by message, hence asynchronous.
      const text = await proxy.renderMetrics({
        refreshes: creds.stats,
        ...(loaded ? { certExpirySeconds: (loaded.expiresAt.getTime() - Date.now()) / 1000 } : {}),
      });
      return { status: 200, contentType: METRICS_CONTENT_TYPE, body: text };
    }
    return json(404, { error: 'not found; try /livez, /readyz, /metrics' });
  };
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    let head = '';
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.search(/\r?\n\r?\n/);
      if (end < 0 && head.length <= MAX_REQUEST_HEAD) return;
      socket.off('data', onData);
      if (end < 0 || end > MAX_REQUEST_HEAD)
        return respond(socket, { method: 'GET' }, json(431, { error: 'request head too large' }));
      const line = requestLine(head);
      if (!line) return respond(socket, { method: 'GET' }, json(400, { error: 'not an HTTP/1.1 request' }));
      answer(line.method, line.path).then(
        (reply) => respond(socket, line, reply),
        () => respond(socket, line, json(500, { error: 'internal error' })),
      );
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  const addr = server.address() as AddressInfo;
  return {
    address: formatHostPort(host, addr.port),
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** `broker proxy healthcheck`: GET /readyz, true when it answers 200. For container health checks (no curl needed). */
export function checkHealth(address: string, timeoutMs = 3000): Promise<{ ok: boolean; body: string }> {
  const { host, port } = parseHostPort(address, '--diag-addr');
  // node:http only here, in the short-lived `proxy healthcheck` process, not in the proxy's own memory.
  return import('node:http').then(
    ({ default: http }) =>
      new Promise((resolve) => {
        const req = http.get({ host, port, path: '/readyz', timeout: timeoutMs }, (res) => {
          let body = '';
          res.on('data', (c) => {
            body += c;
          });
          res.on('end', () => resolve({ ok: res.statusCode === 200, body: body.trim() }));
        });
        req.on('timeout', () => req.destroy(new Error('timed out')));
        req.on('error', (err) => resolve({ ok: false, body: err.message }));
      }),
  );
}
