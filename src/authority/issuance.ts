import { ConfigError } from '../config/errors.js';
import { joinPemBundle } from '../credentials/pem.js';
import type { DatabaseRoute } from '../credentials/route.js';
import { formatDuration } from '../duration.js';
import { buildCertificate } from '../pki/certificate.js';
import { generateRsaKeyPair } from '../pki/keys.js';
import {
  OID_BOT_NAME,
  OID_CERT_ROLE,
  OID_DB_DATABASE,
  OID_DB_PROTOCOL,
  OID_DB_SERVICE,
  OID_DB_USERNAME,
} from '../pki/oids.js';
import type { CaRegistry } from './ca-registry.js';
import { type AuthorityContext, withRequestId } from './context.js';
import { assertPublicKey, clampTtl, DEFAULT_CERT_TTL_MS } from './limits.js';
import type { Locks } from './locks.js';
import { checkDatabaseAccess } from './rbac.js';
import { type Db, hostOf, type Role, resourceName } from './resources-schema.js';
import { stateKeys } from './state-keys.js';

export const DEFAULT_SERVER_CERT_TTL_MS = 2190 * 3_600_000;
const MAX_SERVER_CERT_TTL_MS = 8760 * 3_600_000;

export interface IssuedDatabaseCertificate {
  certificatePem: string;
  serial: string;
  issuedAt: string;
  expires: string;
  /** CA bundle that verifies the database server (broker db-server CAs plus the db's own tls.ca_cert). */
  serverCaPem: string;
  db: { service: string; protocol: Db['spec']['protocol']; uri: string; serverName: string };
}

/** A database client certificate to issue, for an already authenticated (or trusted, in-process) bot. */
export interface DatabaseCertificateRequest {
  bot: string;
  route: DatabaseRoute;
  publicKeyPem: string;
  ttlMs?: number | undefined;
  requestId?: string | undefined;
}

/** What `auth sign --format=db` signs for. */
export interface DatabaseServerOptions {
  /** The database service (a `db` resource name) this server is: it will trust only that service's client CA. */
  service: string;
  /** Validity of the server certificate; default 2190h. */
  ttlMs?: number | undefined;
}

export interface IssuedDatabaseServerCertificate {
  certificatePem: string;
  privateKeyPem: string;
  /** The client CA bundle of the service (every active key): the database's trust store. */
  clientCaPem: string;
  serial: string;
  expires: string;
}

/** The certificates the authority signs besides bot identities: database clients and servers, itself. */
export class Issuance {
  constructor(
    private readonly ctx: AuthorityContext,
    private readonly cas: CaRegistry,
    private readonly locks: Locks,
  ) {}

  /**
   * Issues a database client certificate for `bot` and `route` if its roles allow it: subject CN is the
   * database user, the route and bot are in private extensions, the TTL is capped by max_session_ttl and
   * 24 h. Every decision is audited.
   */
  async issueDatabaseCertificate(request: DatabaseCertificateRequest): Promise<IssuedDatabaseCertificate> {
    const { bot, route, publicKeyPem, requestId } = request;
    const ttlMs = request.ttlMs ?? DEFAULT_CERT_TTL_MS;
    const rid = withRequestId(requestId);
    const { state } = this.ctx;
    await this.locks.assertNotLocked(bot, 'db_cert.issue', requestId);
    const botItem = await state.get(stateKeys.bot(bot));
    const deny = (reason: string) =>
      this.ctx.deny(
        { event: 'db_cert.issue', bot, route, reason, ...rid },
        `access to ${route.username}@${route.service}/${route.database} denied: ${reason}`,
      );
    if (!botItem) return deny(`bot "${bot}" does not exist`);
    const roles: Role[] = [];
    for (const name of botItem.value.spec.roles) {
      const role = await state.get(stateKeys.role(name));
      if (role) roles.push(role.value);
    }
    // A name no db resource can have is an unknown service, not a state key to look up.
    const db = resourceName.safeParse(route.service).success
      ? (await state.get(stateKeys.db(route.service)))?.value
      : undefined;
    const decision = checkDatabaseAccess({ bot, roles, db, route, traits: botItem.value.spec.traits });
    if (!decision.allowed) return deny(decision.reason);
    assertPublicKey(publicKeyPem);
    const ttl = Math.min(clampTtl(ttlMs), decision.maxTtlMs);
    const now = this.ctx.clock.now();
    const dbRes = db as Db;
    const { certificatePem, serial } = await buildCertificate(
      {
        subject: { commonName: route.username, organization: bot },
        publicKeyPem,
        issuedAt: now,
        notAfter: new Date(now.getTime() + ttl),
        profile: 'client',
        privateExtensions: {
          [OID_CERT_ROLE]: 'db-client',
          [OID_DB_SERVICE]: route.service,
          [OID_DB_PROTOCOL]: dbRes.spec.protocol,
          [OID_DB_DATABASE]: route.database,
          [OID_DB_USERNAME]: route.username,
          [OID_BOT_NAME]: bot,
        },
      },
      // The service's own client CA, the only one its database trusts: this certificate opens no other.
      await this.cas.serviceIssuer(dbRes.metadata.name),
    );
    const expires = new Date(now.getTime() + ttl).toISOString();
    await this.ctx.record({
      event: 'db_cert.issue',
      outcome: 'success',
      bot,
      route,
      serial,
      expires,
      reason: `allowed by role(s) ${decision.roles.join(', ')}${ttl < clampTtl(ttlMs) ? `; TTL capped to ${formatDuration(ttl)}` : ''}`,
      ...rid,
    });
    return {
      certificatePem,
      serial,
      issuedAt: now.toISOString(),
      expires,
      serverCaPem: dbRes.spec.tls?.ca_cert
        ? joinPemBundle([await this.cas.caBundle('db-server'), dbRes.spec.tls.ca_cert])
        : await this.cas.caBundle('db-server'),
      db: {
        service: dbRes.metadata.name,
        protocol: dbRes.spec.protocol,
        uri: dbRes.spec.uri,
        serverName: dbRes.spec.tls?.server_name ?? hostOf(dbRes.spec.uri),
      },
    };
  }

  /**
   * `auth sign --format=db --service S`: a database server certificate for `hosts` (plus localhost and
   * 127.0.0.1, so a client verifying through a local proxy succeeds), its key, and the client CA of service
   * S (created when S has none yet): the only CA that database is to trust.
   */
  async signDatabaseServer(
    hosts: readonly string[],
    options: DatabaseServerOptions,
  ): Promise<IssuedDatabaseServerCertificate> {
    const { service, ttlMs = DEFAULT_SERVER_CERT_TTL_MS } = options;
    if (hosts.length === 0 || hosts.some((h) => !/^[a-zA-Z0-9.*:-]+$/.test(h)))
      throw new ConfigError('--host needs one or more host names or IP addresses, comma-separated');
    if (!(ttlMs > 0 && ttlMs <= MAX_SERVER_CERT_TTL_MS))
      throw new ConfigError('server certificate TTL must be between 1s and 8760h');
    // First, so a bad service name fails before anything is signed.
    const clientCaPem = await this.cas.serviceBundle(service);
    const keys = await generateRsaKeyPair();
    const now = this.ctx.clock.now();
    const sans = [...new Set([...hosts, 'localhost', '127.0.0.1'])];
    const { certificatePem, serial } = await buildCertificate(
      {
        subject: { commonName: hosts[0] as string, organization: 'broker-db-server' },
        publicKeyPem: keys.publicKeyPem,
        issuedAt: now,
        notAfter: new Date(now.getTime() + ttlMs),
        profile: 'server',
        sans,
        privateExtensions: { [OID_CERT_ROLE]: 'db-server' },
      },
      await this.cas.issuer('db-server'),
    );
    const expires = new Date(now.getTime() + ttlMs).toISOString();
    await this.ctx.record({
      event: 'server_cert.issue',
      outcome: 'success',
      kind: 'db-server',
      name: `${service}:${sans.join(',')}`,
      serial,
      expires,
    });
    return {
      certificatePem,
      privateKeyPem: keys.privateKeyPem,
      clientCaPem,
      serial,
      expires,
    };
  }

  /** A server certificate for the authority's own HTTPS listener, from the bot CA (which bots pin). */
  async signAuthorityServer(hosts: readonly string[], publicKeyPem: string, ttlMs: number): Promise<string> {
    const now = this.ctx.clock.now();
    const { certificatePem } = await buildCertificate(
      {
        subject: { commonName: 'broker authority', organization: 'broker' },
        publicKeyPem,
        issuedAt: now,
        notAfter: new Date(now.getTime() + ttlMs),
        profile: 'server',
        sans: [...hosts],
        privateExtensions: { [OID_CERT_ROLE]: 'authority-server' },
      },
      await this.cas.issuer('bot'),
    );
    return certificatePem;
  }
}
