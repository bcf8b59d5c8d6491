import { promises as fs } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { Authority } from '../authority/authority.js';
import { ConfigError } from '../config/errors.js';
import type { Logger } from '../log.js';
import { type HostResolver, loopbackListenHost } from '../net-address.js';
import { authorityServerNames } from '../pki/authority-server.js';
import { generateRsaKeyPair } from '../pki/keys.js';
import { handleApiRequest } from './handler.js';
import { API_PATH } from './transports.js';

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
}

export interface RunningAuthorityServer {
  /** `unix:///...` or `https://host:port`, as a bot's `auth_server`. */
  address: string;
  close(): Promise<void>;
}

const MAX_BODY = 256 * 1024;
const SERVER_CERT_TTL_MS = 30 * 24 * 3_600_000;

/** Serves the authority API: POST /v1/rpc with a JSON request, answered with a JSON response. */
export async function startAuthorityServer(options: AuthorityServerOptions): Promise<RunningAuthorityServer> {
  const { authority, log } = options;
  const handler: http.RequestListener = (req, res) => {
    if (req.method !== 'POST' || req.url !== API_PATH) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"POST /v1/rpc"}');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        res.writeHead(413).end();
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', async () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = undefined;
      }
      const response = await handleApiRequest(authority, body, log);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(response));
    });
  };

  if (options.socketPath) {
    const socketPath = path.resolve(options.socketPath);
    await fs.rm(socketPath, { force: true });
    const server = http.createServer(handler);
    // The umask makes the socket 0600 from the moment it exists; chmod afterwards would leave a window.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
    } finally {
      process.umask(oldMask);
    }
    await fs.chmod(socketPath, 0o600);
    return {
      address: `unix://${socketPath}`,
      close: () =>
        new Promise((resolve) =>
          server.close(() => fs.rm(socketPath, { force: true }).then(() => resolve())),
        ),
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
  const server = https.createServer({ key: keys.privateKeyPem, cert: chain, minVersion: 'TLSv1.2' }, handler);
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, bind, resolve));
  const addr = server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  return {
    address: `https://${host.includes(':') ? `[${host}]` : host}:${actualPort}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
