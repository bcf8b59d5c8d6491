import type { Clock } from '../clock.js';
import type { DatabaseRoute } from '../credentials/route.js';
import type { CaRecord, CaType } from '../pki/ca.js';
import type { Proof } from '../pki/proof.js';
import type { StateStore } from '../state/store.js';
import { Administration, type BotStatus } from './administration.js';
import type { AuditSink } from './audit.js';
import { CaRegistry } from './ca-registry.js';
import { AuthorityContext, type AuthorityOptions } from './context.js';
import { pruneExpired } from './housekeeping.js';
import { type Authenticated, Identities, type IssuedIdentity, type SignedRequest } from './identity.js';
import {
  type DatabaseServerOptions,
  Issuance,
  type IssuedDatabaseCertificate,
  type IssuedDatabaseServerCertificate,
} from './issuance.js';
import { type IamJoinInput, Joins, type TokenJoinInput } from './joins.js';
import { DEFAULT_CERT_TTL_MS } from './limits.js';
import { Locks } from './locks.js';
import { renew } from './renewal.js';
import type { Bot, Resource } from './resources.js';
import { type RotateRequest, type RotationOutcome, Rotations } from './rotations.js';
import { type SignedDatabaseServerCertificate, signDatabaseServerKey } from './server-cert.js';
import type { Lock, NamedKind, NamedResource, StoredToken } from './state-keys.js';
import { type AuthorityStatus, authorityStatus } from './status.js';

export { DEFAULT_TOKEN_TTL_MS } from './administration.js';
export type { AuthorityOptions, RotationKeyFactory, RotationKeyRequest } from './context.js';
export type { IssuedIdentity } from './identity.js';
export {
  type DatabaseServerOptions,
  DEFAULT_SERVER_CERT_TTL_MS,
  type IssuedDatabaseCertificate,
} from './issuance.js';
export { DEFAULT_CERT_TTL_MS } from './limits.js';
export {
  AUTO_REFUSED,
  DEFAULT_GRACE_PERIOD_MS,
  type RotateRequest,
  type RotationOutcome,
} from './rotations.js';
export { tokenId } from './secrets.js';
export type { SignedDatabaseServerCertificate } from './server-cert.js';
export type { BotState, Lock, StoredToken } from './state-keys.js';

/**
 * The authority: holds the CAs, stores resources, lets bots join and renew, evaluates roles, issues
 * short-lived certificates and audits every decision. Runtime-free: the store, audit sink, clock and
 * signers are injected (files or DynamoDB/KMS). A facade: each job lives in its own module, and they
 * share one context.
 */
export class Authority {
  readonly store: StateStore;
  readonly audit: AuditSink;
  readonly clock: Clock;
  private readonly cas: CaRegistry;
  private readonly locks: Locks;
  private readonly administration: Administration;
  private readonly identities: Identities;
  private readonly joins: Joins;
  private readonly issuance: Issuance;
  private readonly context: AuthorityContext;
  private readonly rotations: Rotations;

  constructor(options: AuthorityOptions) {
    const ctx = new AuthorityContext(options);
    this.context = ctx;
    this.store = ctx.store;
    this.audit = ctx.audit;
    this.clock = ctx.clock;
    this.cas = new CaRegistry(ctx);
    this.locks = new Locks(ctx);
    this.administration = new Administration(ctx, this.locks);
    this.identities = new Identities(ctx, this.cas, this.locks);
    this.joins = new Joins(ctx, this.identities, this.locks);
    this.issuance = new Issuance(ctx, this.cas, this.locks);
    this.rotations = new Rotations(ctx);
  }

  // ---- CAs ---------------------------------------------------------------------------------------------

  /** Creates the three CAs. Refuses when any exists, so an initialised authority is never overwritten. */
  initialize(clusterName = 'broker'): Promise<void> {
    return this.cas.initialize(clusterName);
  }

  /** A CA as stored; refuses a missing or expired one. */
  ca(type: CaType): Promise<CaRecord> {
    return this.cas.ca(type);
  }

  /** PEM bundle of every active certificate of a CA. */
  caBundle(type: CaType): Promise<string> {
    return this.cas.caBundle(type);
  }

  /**
   * Moves a CA (or every db-client CA) to a rotation phase (`broker auth rotate`): checked against every CA
   * first, one conditional write each, audited.
   */
  rotateCa(request: RotateRequest): Promise<RotationOutcome[]> {
    return this.rotations.rotate(request);
  }

  /** The client CA bundle of database service `service`, what its database trusts; refuses when it has none. */
  dbClientCaBundle(service: string): Promise<string> {
    return this.cas.existingServiceBundle(service);
  }

  // ---- administration ----------------------------------------------------------------------------------

  /** Creates resources from one file, all or nothing; `force` overwrites existing ones. */
  createResources(resources: readonly Resource[], options: { force?: boolean } = {}): Promise<void> {
    return this.administration.createResources(resources, options);
  }

  /** One resource by name, or every resource of a kind. */
  getResources<K extends NamedKind>(kind: K, name?: string): Promise<NamedResource<K>[]> {
    return this.administration.getResources(kind, name);
  }

  /** Removes a role (when no bot uses it), a db, or a bot with its renewal state and tokens. */
  removeResource(kind: NamedKind, name: string): Promise<void> {
    return this.administration.removeResource(kind, name);
  }

  /** Creates a bot and a one-time join token for it (`tctl bots add`). */
  addBot(
    name: string,
    roles: readonly string[],
    tokenTtlMs?: number,
  ): Promise<{ token: string; id: string; expires: string }> {
    return this.administration.addBot(name, roles, tokenTtlMs);
  }

  /** Adds and removes roles of a bot. */
  updateBot(name: string, change: { add?: readonly string[]; remove?: readonly string[] }): Promise<Bot> {
    return this.administration.updateBot(name, change);
  }

  /** Every bot with its current generation, identity expiry and lock. */
  listBots(): Promise<BotStatus[]> {
    return this.administration.listBots();
  }

  /** Creates a one-time `token` join token for a bot; the secret is returned once. */
  addToken(botName: string, ttlMs?: number): Promise<{ token: string; id: string; expires: string }> {
    return this.administration.addToken(botName, ttlMs);
  }

  /** Every join token as stored (hashes, never secrets). */
  listTokens(): Promise<StoredToken[]> {
    return this.administration.listTokens();
  }

  /** Removes a token given its secret, its id, or a unique prefix of its id. */
  removeToken(ref: string): Promise<StoredToken> {
    return this.administration.removeToken(ref);
  }

  /** Locks a bot: every join, renewal and issuance for it is refused until the lock is removed. */
  addLock(bot: string, reason: string): Promise<Lock> {
    return this.locks.add(bot, reason);
  }

  /** Every lock. */
  listLocks(): Promise<Lock[]> {
    return this.locks.list();
  }

  /** Unlocks a bot. */
  removeLock(bot: string): Promise<void> {
    return this.locks.remove(bot);
  }

  // ---- joins, identities, renewal ----------------------------------------------------------------------

  /** Joins a bot with a one-time `token`: consumes the token and issues generation 1 of its identity. */
  joinWithToken(input: TokenJoinInput): Promise<IssuedIdentity> {
    return this.joins.joinWithToken(input);
  }

  /** Joins a bot with the `iam` method against a challenge from `createChallenge`. */
  joinWithIam(input: IamJoinInput): Promise<IssuedIdentity> {
    return this.joins.joinWithIam(input);
  }

  /** A one-time challenge for the iam join method, valid five minutes. */
  createChallenge(): Promise<{ challengeId: string; challenge: string; expires: string }> {
    return this.joins.createChallenge();
  }

  /** Checks a request signed with a bot identity; a superseded generation locks the bot. */
  authenticate(request: SignedRequest): Promise<Authenticated> {
    return this.identities.authenticate(request);
  }

  /** Renews a bot identity: proof with the current key, a new public key, generation + 1. */
  renewIdentity(input: {
    identityPem: string;
    proof: Proof;
    params: { publicKeyPem: string; ttlMs?: number };
    requestId?: string;
  }): Promise<IssuedIdentity> {
    return renew(this.identities, input);
  }

  /**
   * Checks only the certificate and proof of a signed request (audited when refused), as before a remembered
   * answer is given again; the bot's state is not looked at.
   */
  async verifySignedRequest(request: SignedRequest): Promise<void> {
    await this.identities.verify(request);
  }

  /** Removes expired short-lived state (remembered requests, used challenges, spent nonces); returns how many. */
  pruneExpired(): Promise<number> {
    return pruneExpired(this.context);
  }

  // ---- certificates ------------------------------------------------------------------------------------

  /** Authenticates a signed request, then issues a database client certificate for its route. */
  async issueDatabaseCertificateForIdentity(input: {
    identityPem: string;
    proof: Proof;
    params: { route: DatabaseRoute; publicKeyPem: string; ttlMs?: number; roles?: string[] };
    requestId?: string;
  }): Promise<IssuedDatabaseCertificate> {
    const who = await this.identities.authenticate({ type: 'db_cert.issue', ...input });
    return this.issuance.issueDatabaseCertificate({
      bot: who.bot,
      route: input.params.route,
      publicKeyPem: input.params.publicKeyPem,
      ttlMs: input.params.ttlMs,
      roles: input.params.roles,
      requestId: input.requestId,
    });
  }

  /**
   * Issues a database client certificate for `bot` and `route` if its roles allow it, for callers that
   * already trust the bot's name (in-process use, tests, benchmarks); the API authenticates first.
   */
  issueDatabaseCertificate(
    bot: string,
    route: DatabaseRoute,
    publicKeyPem: string,
    ttlMs: number = DEFAULT_CERT_TTL_MS,
  ): Promise<IssuedDatabaseCertificate> {
    return this.issuance.issueDatabaseCertificate({ bot, route, publicKeyPem, ttlMs });
  }

  /**
   * A database server certificate for `hosts`, its key, and the client CA of `options.service` to trust
   * (created when the service has none yet): that database then refuses every other service's certificates.
   */
  signDatabaseServer(
    hosts: readonly string[],
    options: DatabaseServerOptions,
  ): Promise<IssuedDatabaseServerCertificate> {
    return this.issuance.signDatabaseServer(hosts, options);
  }

  /**
   * A database server certificate for a public key the caller made (AWS mode: the operator's machine keeps
   * the private key, only the public key reaches the authority), with the client CA of `options.service`.
   */
  signDatabaseServerKey(
    hosts: readonly string[],
    publicKeyPem: string,
    options: DatabaseServerOptions,
  ): Promise<SignedDatabaseServerCertificate> {
    return signDatabaseServerKey(this.context, this.cas, { ...options, hosts, publicKeyPem });
  }

  /**
   * The same for a PKCS#10 request signed by the server's key (proof that the caller holds it); only its
   * public key is used, the names are `hosts`. A request whose signature does not verify is refused, audited.
   */
  signDatabaseServerCsr(
    hosts: readonly string[],
    csrPem: string,
    options: DatabaseServerOptions,
  ): Promise<SignedDatabaseServerCertificate> {
    return signDatabaseServerKey(this.context, this.cas, { ...options, hosts, csrPem });
  }

  /** A server certificate for the authority's own HTTPS listener, from the bot CA (which bots pin). */
  signAuthorityServer(hosts: readonly string[], publicKeyPem: string, ttlMs: number): Promise<string> {
    return this.issuance.signAuthorityServer(hosts, publicKeyPem, ttlMs);
  }

  /** The cluster, its CAs and how many of each resource exist. */
  status(): Promise<AuthorityStatus> {
    return authorityStatus(this.context, this.cas);
  }
}
