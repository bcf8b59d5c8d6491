import http from 'node:http';
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

/** `/livez`, `/readyz` and `/metrics` on the diagnostics address. */
export async function startDiagServer(
  address: string,
  creds: CredentialCache,
  proxy: ProxyStatus,
  options: DiagListenOptions = {},
): Promise<{ address: string; close(): Promise<void> }> {
  const { host, port } = await diagListenAddress(address, options);
  const json = (res: http.ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return json(res, 405, { error: 'GET only' });
    if (url === '/livez') return json(res, 200, { live: true });
    if (url === '/readyz') {
      const r = readiness(creds, proxy);
      return json(res, r.status, r.body);
    }
    if (url === '/metrics') {
      const loaded = creds.loaded;
      // Every event loop's counts (--workers): the others answer by message, hence asynchronous.
      void proxy
        .renderMetrics({
          refreshes: creds.stats,
          ...(loaded ? { certExpirySeconds: (loaded.expiresAt.getTime() - Date.now()) / 1000 } : {}),
        })
        .then((text) => res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text));
      return;
    }
    json(res, 404, { error: 'not found; try /livez, /readyz, /metrics' });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  const addr = server.address() as import('node:net').AddressInfo;
  return {
    address: formatHostPort(host, addr.port),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** `broker proxy healthcheck`: GET /readyz, true when it answers 200. For container health checks (no curl needed). */
export function checkHealth(address: string, timeoutMs = 3000): Promise<{ ok: boolean; body: string }> {
  const { host, port } = parseHostPort(address, '--diag-addr');
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/readyz', timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ ok: res.statusCode === 200, body: body.trim() }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => resolve({ ok: false, body: err.message }));
  });
}
