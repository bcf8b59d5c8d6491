/**
 * Ready connection options for the database drivers a Lambda workload uses, built from a credential
 * bundle. The drivers are the workload's dependencies, so this module only shapes plain objects (and a
 * TLS secure context) and imports none of them. Every helper verifies the server: the CA is the bundle's
 * database CA and `rejectUnauthorized` is on.
 */
import { isIP } from 'node:net';
import tls from 'node:tls';
import type { CredentialBundle } from '../credentials/bundle.js';
import { splitEndpoint } from '../credentials/bundle.js';

interface Material {
  host: string;
  port: number;
  serverName: string;
  ca: string;
  cert: string;
  key: string;
}

function material(bundle: CredentialBundle): Material {
  const { host, port } = splitEndpoint(bundle.endpoint);
  return {
    host,
    port,
    serverName: bundle.serverName,
    ca: bundle.files['teleport-database-ca.crt'] ?? bundle.files['teleport-host-ca.crt'] ?? '',
    cert: bundle.files.tlscert ?? '',
    key: bundle.files.key ?? '',
  };
}

/** SNI must not carry an IP address (RFC 6066 §3); Node warns and ignores it. */
const sni = (name: string) => (isIP(name) ? {} : { servername: name });

export interface PgOptions {
  host: string;
  port: number;
  database: string;
  user: string;
  ssl: {
    ca: string;
    cert: string;
    key: string;
    servername?: string;
    rejectUnauthorized: true;
    checkServerIdentity: (hostname: string, cert: tls.PeerCertificate) => Error | undefined;
  };
}

/**
 * Options for `new pg.Client(...)` / `new pg.Pool(...)`. pg sets the TLS server name to `host` itself, so
 * the server certificate is checked against the bundle's `serverName` by `checkServerIdentity` instead:
 * verify-full semantics even when the endpoint is an IP address or another name than the certificate's.
 */
export function pgOptions(bundle: CredentialBundle): PgOptions {
  const m = material(bundle);
  return {
    host: m.host,
    port: m.port,
    database: bundle.database,
    user: bundle.username,
    ssl: {
      ca: m.ca,
      cert: m.cert,
      key: m.key,
      ...sni(m.serverName),
      rejectUnauthorized: true,
      checkServerIdentity: (_hostname, cert) => tls.checkServerIdentity(m.serverName, cert),
    },
  };
}

export interface Mysql2Options {
  host: string;
  port: number;
  database: string;
  user: string;
  ssl: { ca: string; cert: string; key: string; rejectUnauthorized: true; verifyIdentity: true };
}

/**
 * Options for `mysql2.createConnection(...)` / `createPool(...)`. `verifyIdentity: true` matters: without it
 * mysql2 checks the chain but not the host name. mysql2 checks the server certificate against `host` and
 * offers no separate server name. When the bundle's `serverName` differs from the endpoint host (the
 * endpoint is an IP address or an internal alias), either connect with `host: bundle.serverName` where DNS
 * resolves that name to the database, or keep the name and steer the socket yourself:
 * `{ ...mysql2Options(b), host: b.serverName, stream: () => net.connect(port, endpointHost) }`
 * (mysql2 then dials nothing itself and verifies `serverName`).
 */
export function mysql2Options(bundle: CredentialBundle): Mysql2Options {
  const m = material(bundle);
  return {
    host: m.host,
    port: m.port,
    database: bundle.database,
    user: bundle.username,
    ssl: { ca: m.ca, cert: m.cert, key: m.key, rejectUnauthorized: true, verifyIdentity: true },
  };
}

export interface MongodbOptions {
  uri: string;
  options: { tls: true; secureContext: tls.SecureContext; servername?: string };
}

/**
 * `new MongoClient(o.uri, o.options)`: X.509 authentication (the user is the certificate subject, in
 * `$external`), TLS with a secure context holding the client certificate, key and the database CA. The
 * server certificate is verified against the bundle's `serverName`.
 */
export function mongodbOptions(bundle: CredentialBundle): MongodbOptions {
  const m = material(bundle);
  const host = isIP(m.host) === 6 ? `[${m.host}]` : m.host;
  const database = encodeURIComponent(bundle.database);
  return {
    uri: `mongodb://${host}:${m.port}/${database}?authMechanism=MONGODB-X509&tls=true`,
    options: {
      tls: true,
      secureContext: tls.createSecureContext({ ca: m.ca, cert: m.cert, key: m.key, minVersion: 'TLSv1.2' }),
      ...sni(m.serverName),
    },
  };
}

export interface IoredisOptions {
  host: string;
  port: number;
  tls: { ca: string; cert: string; key: string; servername?: string; rejectUnauthorized: true };
}

/**
 * `new Redis(ioredisOptions(b))`: TLS from the first byte with the client certificate (Redis
 * `tls-auth-clients`); ioredis passes `tls` to `tls.connect`, so the server is verified against `serverName`.
 */
export function ioredisOptions(bundle: CredentialBundle): IoredisOptions {
  const m = material(bundle);
  return {
    host: m.host,
    port: m.port,
    tls: { ca: m.ca, cert: m.cert, key: m.key, ...sni(m.serverName), rejectUnauthorized: true },
  };
}
