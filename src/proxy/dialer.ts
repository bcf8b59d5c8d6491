import net from 'node:net';
import tls from 'node:tls';
import type { CredentialCache } from './credential-cache.js';
import { ProxyError } from './errors.js';
import type { LoadedCredentials } from './loaded-credentials.js';

/**
 * How the proxy reaches the database: the current credentials → TCP to their endpoint → mutual TLS with
 * their certificate. The relay and every tunnel go through it, so TLS settings, timeouts and dial latency
 * are decided in one place; a tunnel adds only its protocol's way of asking for TLS.
 */
export interface Dialer {
  /** The credentials for a new connection; throws CredentialsUnavailableError when none are valid now. */
  current(): LoadedCredentials;
  /** TCP to the endpoint of `creds`: the non-tunnel relay, or the plain start of a tunnel. */
  dialTcp(creds: LoadedCredentials): Promise<net.Socket>;
  /** Mutual TLS on an open connection with the certificate of `creds`, verifying the server's CA and name. */
  upgrade(socket: net.Socket, creds: LoadedCredentials): Promise<tls.TLSSocket>;
  /**
   * dialTcp, then `afterTcp` (the protocol's request for TLS, e.g. PostgreSQL's SSLRequest), then upgrade.
   * The TCP connection is destroyed when any step fails.
   */
  dialTls(creds: LoadedCredentials, afterTcp?: (socket: net.Socket) => Promise<void>): Promise<tls.TLSSocket>;
}

export interface DialerOptions {
  credentials: CredentialCache;
  /** For the TCP connect and, separately, the TLS handshake. */
  timeoutMs: number;
  /** Told how long each TCP connect took, failed ones included (the dial-latency histogram). */
  onDial?: (seconds: number) => void;
}

/** The Dialer over the credential cache: each new connection takes the newest certificate. */
export class CredentialDialer implements Dialer {
  constructor(private readonly options: DialerOptions) {}

  current(): LoadedCredentials {
    return this.options.credentials.current();
  }

  async dialTcp(creds: LoadedCredentials): Promise<net.Socket> {
    const started = process.hrtime.bigint();
    try {
      return await connectTcp(creds.host, creds.port, this.options.timeoutMs);
    } finally {
      this.options.onDial?.(Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  upgrade(socket: net.Socket, creds: LoadedCredentials): Promise<tls.TLSSocket> {
    return startTls(socket, creds, this.options.timeoutMs);
  }

  async dialTls(
    creds: LoadedCredentials,
    afterTcp?: (socket: net.Socket) => Promise<void>,
  ): Promise<tls.TLSSocket> {
    const socket = await this.dialTcp(creds);
    try {
      await afterTcp?.(socket);
      return await this.upgrade(socket, creds);
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }
}

/** Opens a TCP connection, failing after `timeoutMs`. */
function connectTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new ProxyError(`connecting to ${host}:${port} timed out after ${timeoutMs / 1000}s`, 'DIAL_TIMEOUT'),
      );
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once('connect', () => {
      clearTimeout(timer);
      // A connection lives for hours: a listener left here would keep this closure, its timer and promise.
      socket.off('error', onError);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 60_000);
      resolve(socket);
    });
    socket.once('error', onError);
  });
}

/**
 * The check of the server's certificate against `serverName`. Made outside startTls on purpose: the socket
 * keeps its options, this function among them, for the connection's life, and a closure made inside would
 * keep startTls's whole scope (its timer, error handler and promise) alive with it.
 */
function serverNameCheck(serverName: string): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  return (_host, cert) => tls.checkServerIdentity(serverName, cert);
}

/** Starts mutual TLS on `socket` with the certificate of `creds`, verifying the server against the bundle's CA and server name. */
function startTls(socket: net.Socket, creds: LoadedCredentials, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      secureContext: creds.secureContext,
      servername: creds.bundle.serverName,
      rejectUnauthorized: true,
      // The bundle's CA verifies the server; the name checked is the db resource's tls.server_name.
      checkServerIdentity: serverNameCheck(creds.bundle.serverName),
    });
    const timer = setTimeout(() => {
      secure.destroy();
      reject(new ProxyError(`TLS handshake with ${creds.bundle.endpoint} timed out`, 'DIAL_TIMEOUT'));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      secure.off('error', onError);
      resolve(secure);
    });
    secure.once('error', onError);
  });
}
