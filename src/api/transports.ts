import { X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { Authority } from '../authority/authority.js';
import { ConfigError } from '../config/errors.js';
import { caPin } from '../pki/parse.js';
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
 * (`https://127.0.0.1:3025`). Over HTTPS the server's chain must contain a CA whose SPKI matches one of
 * `caPins` (as `broker status` prints them) and the server certificate must be signed by that CA.
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
      if (this.url.protocol === 'unix:') {
        req = http.request(
          {
            socketPath: this.socketPath as string,
            path: API_PATH,
            method: 'POST',
            headers,
            timeout: TIMEOUT_MS,
          },
          onResponse,
        );
      } else {
        req = https.request(
          {
            host: this.url.hostname.replace(/^\[(.*)\]$/, '$1'),
            port: Number(this.url.port || 443),
            path: API_PATH,
            method: 'POST',
            headers,
            timeout: TIMEOUT_MS,
            // The chain is checked against the pins below, not against the system's public CAs.
            rejectUnauthorized: false,
            agent: false,
          },
          onResponse,
        );
        req.on('socket', (socket) => {
          (socket as TLSSocket).once('secureConnect', () => {
            const problem = checkPinnedChain(socket as TLSSocket, this.caPins);
            if (problem) req.destroy(new Error(problem));
          });
        });
      }
      req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000}s`)));
      req.on('error', (err: NodeJS.ErrnoException) =>
        unavailable(err.code ? `${err.code} ${err.message}` : err.message, err),
      );
      req.end(body);
    });
  }
}

/** Returns why the peer's chain is not trusted, or undefined when a pinned CA signed the server certificate. */
export function checkPinnedChain(socket: TLSSocket, pins: readonly string[]): string | undefined {
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
  const now = new Date();
  if (new Date(leaf.validTo) < now || new Date(leaf.validFrom) > now)
    return 'the authority certificate is outside its validity period';
  for (const ca of chain) {
    if (!pins.includes(caPin(ca.toString()))) continue;
    if (leaf.checkIssued(ca) && leaf.verify(ca.publicKey)) return undefined;
  }
  return 'the authority certificate is not signed by a CA matching ca_pins (check `broker status` on the authority)';
}
