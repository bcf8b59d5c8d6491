import { X509Certificate } from 'node:crypto';
import http from 'node:http';
import { isIP } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Authority } from '../authority/authority.js';
import { ConfigError } from '../config/errors.js';
import { checkAuthorityCertificate } from '../pki/authority-server.js';
import type { AuthorityTransport } from './client.js';
import { AuthorityUnavailableError } from './errors.js';
import { handleApiRequest } from './handler.js';
import type { ApiRequest, ApiResponse } from './protocol.js';

export const API_PATH = '/v1/rpc';
const MAX_BODY = 1024 * 1024;
const TIMEOUT_MS = 15_000;

/** Calls an Authority object in this process. Messages still go through JSON, as on the wire. */
export class InProcessTransport implements AuthorityTransport {
  readonly description = 'in-process authority';
  constructor(private readonly authority: Authority) {}
  async send(request: ApiRequest): Promise<ApiResponse> {
    const response = await handleApiRequest(this.authority, JSON.parse(JSON.stringify(request)));
    return JSON.parse(JSON.stringify(response)) as ApiResponse;
  }
}

/**
 * Calls `broker authority serve` over a unix socket (`unix:///path/to/authority.sock`) or loopback HTTPS
 * (`https://127.0.0.1:3025`). Over HTTPS the TLS connection is made and the server recognised as the
 * authority before a single byte of the request is written: its certificate must be signed by a CA whose
 * SPKI matches one of `caPins` (as `broker status` prints them) and be the authority's serving certificate
 * for the URL's host (src/pki/authority-server.ts), never a bot identity.
 */
export class HttpTransport implements AuthorityTransport {
  readonly description: string;
  private readonly url: URL;
  private readonly socketPath: string | undefined;

  constructor(
    address: string,
    private readonly caPins: readonly string[] = [],
  ) {
    this.description = address;
    // unix:///abs/path or unix://relative/path (relative to the working directory, as in tbot).
    this.socketPath = address.startsWith('unix://') ? address.slice('unix://'.length) : undefined;
    try {
      this.url = new URL(address);
    } catch {
      throw new ConfigError(
        `auth_server ${JSON.stringify(address)} is not a URL; use unix:///path/authority.sock or https://127.0.0.1:3025`,
      );
    }
    if (this.url.protocol !== 'unix:' && this.url.protocol !== 'https:')
      throw new ConfigError(
        `auth_server ${JSON.stringify(address)}: only unix:// and https:// are supported`,
      );
    if (this.url.protocol === 'https:' && caPins.length === 0)
      throw new ConfigError(
        'an https auth_server needs ca_pins (from `broker status`) so the bot can trust it',
      );
  }

  send(request: ApiRequest): Promise<ApiResponse> {
    const body = JSON.stringify(request);
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    return new Promise<ApiResponse>((resolve, reject) => {
      const unavailable = (why: string, cause?: unknown) =>
        reject(
          new AuthorityUnavailableError(`cannot reach the authority at ${this.description}: ${why}`, {
            cause,
          }),
        );
      const onResponse = (res: http.IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY) req.destroy(new Error('response too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ApiResponse);
          } catch (err) {
            unavailable(`HTTP ${res.statusCode} with a body that is not JSON`, err);
          }
        });
        res.on('error', (err) => unavailable(err.message, err));
      };
      let req: http.ClientRequest;
      type Connection = Pick<http.RequestOptions, 'socketPath' | 'createConnection' | 'host' | 'port'>;
      const post = (connection: Connection) => {
        req = http.request(
          { ...connection, path: API_PATH, method: 'POST', headers, timeout: TIMEOUT_MS },
          onResponse,
        );
        req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000}s`)));
        req.on('error', (err: NodeJS.ErrnoException) =>
          unavailable(err.code ? `${err.code} ${err.message}` : err.message, err),
        );
        req.end(body);
      };
      if (this.url.protocol === 'unix:') post({ socketPath: this.socketPath as string });
      else
        this.connectToAuthority().then(
          (socket) => post({ createConnection: () => socket, host: hostOf(this.url), port: this.url.port }),
          (err: NodeJS.ErrnoException) =>
            unavailable(err.code ? `${err.code} ${err.message}` : err.message, err),
        );
    });
  }

  /** A TLS connection to the HTTPS authority, resolved only once its certificate is recognised. */
  private connectToAuthority(): Promise<TLSSocket> {
    const host = hostOf(this.url);
    return new Promise<TLSSocket>((resolve, reject) => {
      const socket = tls.connect({
        host,
        port: Number(this.url.port || 443),
        ...(isIP(host) ? {} : { servername: host }),
        // Trust comes from the pins and the checks below, never from the system's public CAs.
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
      });
      socket.setTimeout(TIMEOUT_MS, () =>
        socket.destroy(new Error(`no TLS handshake within ${TIMEOUT_MS / 1000}s`)),
      );
      socket.once('error', reject);
      socket.once('secureConnect', () => {
        const problem = checkPinnedChain(socket, this.caPins, host);
        if (problem) {
          socket.destroy();
          reject(new Error(problem));
          return;
        }
        socket.setTimeout(0);
        resolve(socket);
      });
    });
  }
}

/** The host of an https URL, an IPv6 address without its brackets. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * Returns why the TLS peer is not the authority at `host`, or undefined when a pinned CA signed its
 * certificate and that certificate is the authority's serving certificate for `host`.
 */
export function checkPinnedChain(
  socket: TLSSocket,
  pins: readonly string[],
  host: string,
): string | undefined {
  const peer = socket.getPeerCertificate(true);
  if (!peer?.raw) return 'the authority presented no certificate';
  const leaf = new X509Certificate(peer.raw);
  const chain: X509Certificate[] = [];
  let cur = peer.issuerCertificate;
  for (let i = 0; cur?.raw && i < 5; i++) {
    chain.push(new X509Certificate(cur.raw));
    if (cur.issuerCertificate === cur) break;
    cur = cur.issuerCertificate;
  }
  return checkAuthorityCertificate(leaf, chain, { pins, host, now: new Date() });
}
