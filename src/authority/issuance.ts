import { joinPemBundle } from '../credentials/pem.js';
import type { DatabaseRoute } from '../credentials/route.js';
import { formatDuration } from '../duration.js';
import { buildCertificate } from '../pki/certificate.js';
import { generateRsaKeyPair } from '../pki/keys.js';
import {
  OID_BOT_NAME,
  OID_CERT_ROLE,
  OID_CERT_ROLES,
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
import {
  checkServerCertRequest,
  type DatabaseServerOptions,
  DEFAULT_SERVER_CERT_TTL_MS,
  type SignedDatabaseServerCertificate,
  signDatabaseServerKey,
} from './server-cert.js';
import { stateKeys } from './state-keys.js';

export { type DatabaseServerOptions, DEFAULT_SERVER_CERT_TTL_MS } from './server-cert.js';

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
  /** A subset of the bot's roles to evaluate instead of all of them (tbot's output `roles`); empty: all. */
  roles?: readonly string[] | undefined;
  requestId?: string | undefined;
}

/**
 * The roles a request is evaluated with: the bot's, or the subset it asked for. Returns the names, or why
 * the request is refused (a role the bot does not have).
 */
export function requestedRoles(
  bot: string,
  botRoles: readonly string[],
  requested: readonly string[] | undefined,
): { roles: string[] } | { refused: string } {
  if (!requested?.length) return { roles: [...botRoles] };
  const outside = requested.find((r) => !botRoles.includes(r));
  if (outside !== undefined)
    return {
      refused: `role "${outside}" was requested, but bot "${bot}" does not have it (its roles: ${botRoles.join(', ') || 'none'}); an output's roles must be a subset of the bot's`,
    };
  return { roles: [...new Set(requested)] };
}

/** A server certificate with a key the authority generated (the embedded `auth sign --format=db`). */
export interface IssuedDatabaseServerCertificate extends SignedDatabaseServerCertificate {
  privateKeyPem: string;
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
    const rid = {
      ...(request.roles?.length ? { roles: [...request.roles] } : {}),
      ...withRequestId(requestId),
    };
    const { state } = this.ctx;
    await this.locks.assertNotLocked(bot, 'db_cert.issue', requestId);
    const botItem = await state.get(stateKeys.bot(bot));
    const deny = (reason: string) =>
      this.ctx.deny(
        { event: 'db_cert.issue', bot, route, reason, ...rid },
        `access to ${route.username}@${route.service}/${route.database} denied: ${reason}`,
      );
    if (!botItem) return deny(`bot "${bot}" does not exist`);
    const chosen = requestedRoles(bot, botItem.value.spec.roles, request.roles);
    if ('refused' in chosen) return deny(chosen.refused);
    const roles: Role[] = [];
    for (const name of chosen.roles) {
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
          [OID_CERT_ROLES]: chosen.roles.join(','),
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
   * `auth sign --format=db --service S` in process: a key pair made here (on the operator's machine) and its
   * server certificate (./server-cert.ts), with the client CA of service S.
   */
  async signDatabaseServer(
    hosts: readonly string[],
    options: DatabaseServerOptions,
  ): Promise<IssuedDatabaseServerCertificate> {
    checkServerCertRequest(hosts, options.ttlMs ?? DEFAULT_SERVER_CERT_TTL_MS);
    const keys = await generateRsaKeyPair();
    const signed = await signDatabaseServerKey(this.ctx, this.cas, {
      ...options,
      hosts,
      publicKeyPem: keys.publicKeyPem,
    });
    return { ...signed, privateKeyPem: keys.privateKeyPem };
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
