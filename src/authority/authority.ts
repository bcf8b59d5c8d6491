import { createHash, X509Certificate } from 'node:crypto';
import { type Clock, systemClock } from '../clock.js';
import { ConfigError } from '../config/errors.js';
import type { SignedStsRequest } from '../credentials/iam.js';
import { joinPemBundle } from '../credentials/pem.js';
import type { DatabaseRoute } from '../credentials/route.js';
import { formatDuration } from '../duration.js';
import { AccessDeniedError, BrokerError, GenerationMismatchError } from '../errors.js';
import {
  CA_TYPES,
  type CaRecord,
  type CaType,
  createLocalCa,
  localSignerFactory,
  type SignerFactory,
} from '../pki/ca.js';
import { buildCertificate } from '../pki/certificate.js';
import { generateRsaKeyPair, tryParsePublicKey } from '../pki/keys.js';
import {
  OID_BOT_GENERATION,
  OID_BOT_NAME,
  OID_CERT_ROLE,
  OID_DB_DATABASE,
  OID_DB_PROTOCOL,
  OID_DB_SERVICE,
  OID_DB_USERNAME,
} from '../pki/oids.js';
import { caPin, parseCertificate } from '../pki/parse.js';
import { MAX_CLOCK_SKEW_MS, type Proof, randomToken, verifyProof } from '../pki/proof.js';
import type { Signer } from '../pki/signer.js';
import { ConflictError, StateError } from '../state/errors.js';
import type { StateStore } from '../state/store.js';
import type { AuditEvent, AuditSink } from './audit.js';
import { AlreadyExistsError, NotFoundError } from './errors.js';
import {
  type AwsCallerIdentity,
  type IamJoinVerifier,
  StsUnavailableError,
  verifyIamJoin,
} from './iam-join.js';
import { checkDatabaseAccess, MAX_TTL_MS, matchPattern } from './rbac.js';
import {
  type Bot,
  type Db,
  hostOf,
  RESOURCE_KINDS,
  type Resource,
  type ResourceKind,
  type Role,
  resourceName,
  type TokenResource,
} from './resources.js';

export const DEFAULT_CERT_TTL_MS = 3_600_000;
export const DEFAULT_TOKEN_TTL_MS = 3_600_000;
export const DEFAULT_SERVER_CERT_TTL_MS = 2190 * 3_600_000;
const MAX_SERVER_CERT_TTL_MS = 8760 * 3_600_000;

export interface AuthorityOptions {
  store: StateStore;
  audit: AuditSink;
  clock?: Clock;
  signerFactory?: SignerFactory;
  /** Verifies iam joins; by default forwards the signed request to the real AWS STS with global fetch. */
  iamVerifier?: IamJoinVerifier;
}

/** Stored form of a join token: only a hash of the secret is kept. */
export interface StoredToken {
  id: string;
  joinMethod: 'token' | 'iam';
  botName: string;
  expires?: string;
  createdAt: string;
  /** iam tokens only: their name (not a secret) and allow rules. */
  name?: string;
  allow?: { aws_account: string; aws_arn?: string | undefined }[];
}

export interface Lock {
  bot: string;
  reason: string;
  createdAt: string;
}

/** Per-bot renewal state: the generation of the only identity allowed to renew. */
export interface BotState {
  generation: number;
  serial: string;
  expires: string;
}

export interface IssuedIdentity {
  certificatePem: string;
  serial: string;
  generation: number;
  expires: string;
  /** Bot CA bundle: what the bot trusts for the authority's server certificate. */
  botCaPem: string;
}

export interface IssuedDatabaseCertificate {
  certificatePem: string;
  serial: string;
  issuedAt: string;
  expires: string;
  /** CA bundle that verifies the database server (broker db-server CAs plus the db's own tls.ca_cert). */
  serverCaPem: string;
  db: { service: string; protocol: Db['spec']['protocol']; uri: string; serverName: string };
}

const KIND_PREFIX: Record<Exclude<ResourceKind, 'token'>, string> = { role: 'roles', db: 'dbs', bot: 'bots' };

/** SHA-256 of a token secret; the id under which it is stored and shown. */
export function tokenId(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/**
 * The authority: holds the CAs, stores resources, lets bots join and renew, evaluates roles, issues
 * short-lived certificates and audits every decision. Runtime-free: the store, audit sink, clock and
 * signers are injected (files or DynamoDB/KMS).
 */
export class Authority {
  readonly store: StateStore;
  readonly audit: AuditSink;
  readonly clock: Clock;
  private readonly signerFactory: SignerFactory;
  private readonly iamVerifier: IamJoinVerifier;

  constructor(options: AuthorityOptions) {
    this.store = options.store;
    this.audit = options.audit;
    this.clock = options.clock ?? systemClock;
    this.signerFactory = options.signerFactory ?? localSignerFactory;
    this.iamVerifier =
      options.iamVerifier ?? ((request, challenge) => verifyIamJoin(request, challenge, { fetch }));
  }

  /** Creates the three CAs. Refuses when any exists, so an initialised authority is never overwritten. */
  async initialize(clusterName = 'broker'): Promise<void> {
    for (const type of CA_TYPES) {
      if (await this.store.get(`cas/${type}`))
        throw new AlreadyExistsError(
          `this authority is already initialised (the ${type} CA exists); refusing to overwrite it`,
        );
    }
    await this.store.put(
      'config/cluster',
      { name: clusterName, createdAt: this.clock.now().toISOString() },
      'absent',
    );
    for (const type of CA_TYPES) {
      const key = await createLocalCa(type, clusterName, this.clock);
      await this.store.put(`cas/${type}`, { type, keys: [key] } satisfies CaRecord, 'absent');
      await this.record({ event: 'ca.create', outcome: 'success', kind: 'ca', name: type });
    }
  }

  private async record(event: Omit<AuditEvent, 'time'>): Promise<void> {
    await this.audit.write({ time: this.clock.now().toISOString(), ...event });
  }

  // ---- CAs ---------------------------------------------------------------------------------------------

  async ca(type: CaType): Promise<CaRecord> {
    const item = await this.store.get<CaRecord>(`cas/${type}`);
    if (!item || item.value.keys.length === 0)
      throw new StateError(
        `the ${type} CA is missing; is this an initialised state directory? (run \`broker init\`)`,
      );
    const signing = item.value.keys[0] as CaRecord['keys'][number];
    const notAfter = this.caExpiry(signing.certificatePem);
    if (notAfter < this.clock.now())
      throw new StateError(
        `the ${type} CA expired at ${notAfter.toISOString()}; rotate it before issuing anything`,
      );
    return item.value;
  }

  // The CA record is read on every request (so a rotation takes effect at once), but parsing its
  // certificate and its private key costs more than signing: both are kept per certificate.
  private readonly caExpiries = new Map<string, Date>();
  private readonly signers = new Map<string, Signer>();
  private readonly bundles = new Map<string, string>();

  private caExpiry(certificatePem: string): Date {
    let notAfter = this.caExpiries.get(certificatePem);
    if (!notAfter) {
      notAfter = parseCertificate(certificatePem).notAfter;
      if (this.caExpiries.size > 32) this.caExpiries.clear();
      this.caExpiries.set(certificatePem, notAfter);
    }
    return notAfter;
  }

  /** PEM bundle of every active certificate of a CA. */
  async caBundle(type: CaType): Promise<string> {
    const certs = (await this.ca(type)).keys.map((k) => k.certificatePem);
    const id = certs.join('');
    let bundle = this.bundles.get(id);
    if (bundle === undefined) {
      bundle = joinPemBundle(certs);
      if (this.bundles.size > 32) this.bundles.clear();
      this.bundles.set(id, bundle);
    }
    return bundle;
  }

  private async issuer(type: CaType) {
    const ca = await this.ca(type);
    const key = ca.keys[0] as CaRecord['keys'][number];
    const id = `${key.certificatePem}\0${key.kmsKeyId ?? ''}`;
    let signer = this.signers.get(id);
    if (!signer) {
      signer = this.signerFactory(key);
      if (this.signers.size > 32) this.signers.clear();
      this.signers.set(id, signer);
    }
    return { certificatePem: key.certificatePem, signer };
  }

  // ---- resources ---------------------------------------------------------------------------------------

  private keyOf(kind: Exclude<ResourceKind, 'token'>, name: string): string {
    return `${KIND_PREFIX[kind]}/${name}`;
  }

  /**
   * Creates resources from one file. Everything is checked first — references between resources, existing
   * names without `force` — so a bad file leaves the state unchanged.
   */
  async createResources(resources: readonly Resource[], options: { force?: boolean } = {}): Promise<void> {
    const roles = new Set((await this.store.list<Role>('roles')).map((r) => r.value.metadata.name));
    const bots = new Set((await this.store.list<Bot>('bots')).map((r) => r.value.metadata.name));
    for (const r of resources) if (r.kind === 'role') roles.add(r.metadata.name);
    for (const r of resources) if (r.kind === 'bot') bots.add(r.metadata.name);
    for (const r of resources) {
      if (r.kind === 'bot') {
        const missing = r.spec.roles.filter((role) => !roles.has(role));
        if (missing.length)
          throw new ConfigError(
            `bot "${r.metadata.name}" names unknown role(s) ${missing.join(', ')}; create them first`,
          );
      }
      if (r.kind === 'token' && !bots.has(r.spec.bot_name))
        throw new ConfigError(
          `a ${r.spec.join_method} token names unknown bot "${r.spec.bot_name}"; create the bot first`,
        );
      if (!options.force && (await this.store.get(this.storageKey(r))))
        throw new AlreadyExistsError(
          r.kind === 'token'
            ? 'a token with that name already exists; use --force to replace it'
            : `${r.kind} "${r.metadata.name}" already exists; use --force to overwrite it`,
        );
    }
    for (const r of resources) {
      if (r.kind === 'token') await this.store.put(this.storageKey(r), this.storedToken(r));
      else await this.store.put(this.storageKey(r), r);
      await this.record({
        event: r.kind === 'token' ? 'token.create' : 'resource.create',
        outcome: 'success',
        kind: r.kind,
        ...(r.kind === 'token' ? { bot: r.spec.bot_name } : { name: r.metadata.name }),
      });
    }
  }

  private storageKey(r: Resource): string {
    return r.kind === 'token' ? `tokens/${tokenId(r.metadata.name)}` : this.keyOf(r.kind, r.metadata.name);
  }

  private storedToken(r: TokenResource): StoredToken {
    return {
      id: tokenId(r.metadata.name),
      joinMethod: r.spec.join_method,
      botName: r.spec.bot_name,
      createdAt: this.clock.now().toISOString(),
      ...(r.metadata.expires ? { expires: new Date(r.metadata.expires).toISOString() } : {}),
      ...(r.spec.join_method === 'iam' ? { name: r.metadata.name, allow: r.spec.allow ?? [] } : {}),
    };
  }

  async getResources<K extends Exclude<ResourceKind, 'token'>>(
    kind: K,
    name?: string,
  ): Promise<Extract<Resource, { kind: K }>[]> {
    if (name !== undefined) {
      const item = await this.store.get<Extract<Resource, { kind: K }>>(this.keyOf(kind, name));
      if (!item) throw new NotFoundError(`${kind} "${name}" not found`);
      return [item.value];
    }
    return (await this.store.list<Extract<Resource, { kind: K }>>(KIND_PREFIX[kind])).map((i) => i.value);
  }

  async removeResource(kind: Exclude<ResourceKind, 'token'>, name: string): Promise<void> {
    if (kind === 'role') {
      const users = (await this.store.list<Bot>('bots')).filter((b) => b.value.spec.roles.includes(name));
      if (users.length)
        throw new ConflictError(
          `role "${name}" is used by bot(s) ${users.map((b) => b.value.metadata.name).join(', ')}; remove it from them first (broker bots update NAME --remove-roles ${name})`,
        );
    }
    if (!(await this.store.delete(this.keyOf(kind, name))))
      throw new NotFoundError(`${kind} "${name}" not found`);
    if (kind === 'bot') {
      await this.store.delete(`botstate/${name}`);
      for (const t of await this.listTokens())
        if (t.botName === name) await this.store.delete(`tokens/${t.id}`);
    }
    await this.record({ event: 'resource.delete', outcome: 'success', kind, name });
  }

  // ---- bots --------------------------------------------------------------------------------------------

  /** Creates a bot and a one-time join token for it (`tctl bots add`). */
  async addBot(name: string, roles: readonly string[], tokenTtlMs = DEFAULT_TOKEN_TTL_MS) {
    const bot = RESOURCE_KINDS.bot.schema.parse({
      kind: 'bot',
      version: 'v1',
      metadata: { name },
      spec: { roles: [...roles] },
    }) as Bot;
    await this.createResources([bot]);
    return this.addToken(name, tokenTtlMs);
  }

  async updateBot(
    name: string,
    change: { add?: readonly string[]; remove?: readonly string[] },
  ): Promise<Bot> {
    const item = await this.store.get<Bot>(this.keyOf('bot', name));
    if (!item) throw new NotFoundError(`bot "${name}" not found`);
    const known = new Set((await this.store.list<Role>('roles')).map((r) => r.value.metadata.name));
    const unknown = (change.add ?? []).filter((r) => !known.has(r));
    if (unknown.length)
      throw new NotFoundError(
        `role(s) ${unknown.join(', ')} not found; create them with \`broker create -f role.yaml\``,
      );
    const roles = new Set(item.value.spec.roles);
    for (const r of change.add ?? []) roles.add(r);
    for (const r of change.remove ?? []) roles.delete(r);
    const bot: Bot = { ...item.value, spec: { ...item.value.spec, roles: [...roles] } };
    await this.store.put(this.keyOf('bot', name), bot, item.version);
    await this.record({ event: 'resource.update', outcome: 'success', kind: 'bot', name });
    return bot;
  }

  async listBots(): Promise<
    Array<Bot & { status: { generation?: number; identityExpires?: string; locked?: string } }>
  > {
    const locks = new Map((await this.listLocks()).map((l) => [l.bot, l.reason]));
    const out = [];
    for (const { value: bot } of await this.store.list<Bot>('bots')) {
      const state = await this.store.get<BotState>(`botstate/${bot.metadata.name}`);
      const lock = locks.get(bot.metadata.name);
      out.push({
        ...bot,
        status: {
          ...(state ? { generation: state.value.generation, identityExpires: state.value.expires } : {}),
          ...(lock !== undefined ? { locked: lock } : {}),
        },
      });
    }
    return out;
  }

  // ---- tokens ------------------------------------------------------------------------------------------

  /** Creates a one-time `token` join token for a bot. The secret is returned once and only its hash is stored. */
  async addToken(
    botName: string,
    ttlMs = DEFAULT_TOKEN_TTL_MS,
  ): Promise<{ token: string; id: string; expires: string }> {
    if (!(await this.store.get(this.keyOf('bot', botName))))
      throw new NotFoundError(`bot "${botName}" not found`);
    if (!(ttlMs > 0 && ttlMs <= 7 * 24 * 3_600_000))
      throw new ConfigError('token TTL must be between 1s and 168h');
    const token = randomToken();
    const now = this.clock.now();
    const stored: StoredToken = {
      id: tokenId(token),
      joinMethod: 'token',
      botName,
      createdAt: now.toISOString(),
      expires: new Date(now.getTime() + ttlMs).toISOString(),
    };
    await this.store.put(`tokens/${stored.id}`, stored, 'absent');
    await this.record({
      event: 'token.create',
      outcome: 'success',
      bot: botName,
      name: stored.id.slice(0, 12),
      expires: stored.expires!,
    });
    return { token, id: stored.id, expires: stored.expires! };
  }

  async listTokens(): Promise<StoredToken[]> {
    return (await this.store.list<StoredToken>('tokens')).map((t) => t.value);
  }

  /** Removes a token given its secret, its id, or a unique prefix of its id (as `tokens ls` shows it). */
  async removeToken(ref: string): Promise<StoredToken> {
    const tokens = await this.listTokens();
    const hashed = tokenId(ref);
    const matches = tokens.filter((t) => t.id === hashed || (ref.length >= 8 && t.id.startsWith(ref)));
    if (matches.length !== 1)
      throw new NotFoundError(
        matches.length === 0
          ? 'no such token (give the token, or its id from `broker tokens ls`)'
          : 'that id prefix matches several tokens; give more characters',
      );
    const token = matches[0] as StoredToken;
    await this.store.delete(`tokens/${token.id}`);
    await this.record({
      event: 'token.delete',
      outcome: 'success',
      bot: token.botName,
      name: token.id.slice(0, 12),
    });
    return token;
  }

  // ---- locks -------------------------------------------------------------------------------------------

  async addLock(bot: string, reason: string): Promise<Lock> {
    const lock: Lock = { bot, reason, createdAt: this.clock.now().toISOString() };
    await this.store.put(`locks/${bot}`, lock);
    await this.record({ event: 'lock.create', outcome: 'success', bot, reason });
    return lock;
  }

  async listLocks(): Promise<Lock[]> {
    return (await this.store.list<Lock>('locks')).map((l) => l.value);
  }

  async removeLock(bot: string): Promise<void> {
    if (!(await this.store.delete(`locks/${bot}`))) throw new NotFoundError(`bot "${bot}" is not locked`);
    await this.record({ event: 'lock.delete', outcome: 'success', bot });
  }

  private async assertNotLocked(bot: string, event: string, requestId?: string): Promise<void> {
    const lock = await this.store.get<Lock>(`locks/${bot}`);
    if (lock) {
      await this.record({
        event,
        outcome: 'denied',
        bot,
        reason: `locked: ${lock.value.reason}`,
        ...(requestId ? { requestId } : {}),
      });
      throw new AccessDeniedError(
        `bot "${bot}" is locked (${lock.value.reason}); an operator must run \`broker locks rm --bot ${bot}\` and, if its identity was lost, issue a new join token`,
      );
    }
  }

  // ---- join, renew, authenticate ---------------------------------------------------------------------

  /** Joins a bot with a one-time `token`: consumes the token and issues generation 1 of its identity. */
  async joinWithToken(input: {
    token: string;
    publicKeyPem: string;
    ttlMs?: number;
    requestId?: string;
  }): Promise<IssuedIdentity> {
    const id = tokenId(input.token);
    const rid = input.requestId ? { requestId: input.requestId } : {};
    const deny = async (reason: string, bot?: string): Promise<never> => {
      await this.record({
        event: 'bot.join',
        outcome: 'denied',
        reason,
        name: id.slice(0, 12),
        ...(bot ? { bot } : {}),
        ...rid,
      });
      throw new AccessDeniedError(`join refused: ${reason}`);
    };
    const item = await this.store.get<StoredToken>(`tokens/${id}`);
    if (!item)
      return deny(
        'the join token is unknown or was already used; create a new one with `broker tokens add --type=bot --bot NAME`',
      );
    const token = item.value;
    if (token.joinMethod !== 'token')
      return deny(`this token is for the ${token.joinMethod} join method`, token.botName);
    if (token.expires && new Date(token.expires) <= this.clock.now())
      return deny(`the join token expired at ${token.expires}; create a new one`, token.botName);
    // Checked before the token is consumed, so a refused join does not burn it.
    assertPublicKey(input.publicKeyPem);
    await this.assertNotLocked(token.botName, 'bot.join', input.requestId);
    try {
      await this.store.delete(`tokens/${id}`, item.version);
    } catch (err) {
      if (err instanceof ConflictError) return deny('the join token was already used', token.botName);
      throw err;
    }
    return this.issueIdentity(token.botName, input.publicKeyPem, input.ttlMs, 1, 'bot.join', input.requestId);
  }

  /**
   * Joins a bot with the `iam` method: consumes the challenge (one use, compare-and-swap), has STS verify the
   * signed GetCallerIdentity request bound to it, matches the caller's account and ARN against the iam token's
   * allow rules and issues generation 1 of an identity. The token is not consumed: such bots join on every
   * run. Every decision is audited with the AWS account and ARN (never the signature).
   */
  async joinWithIam(input: {
    tokenName: string;
    challengeId: string;
    stsRequest: SignedStsRequest;
    publicKeyPem: string;
    ttlMs?: number;
    requestId?: string;
  }): Promise<IssuedIdentity> {
    const id = tokenId(input.tokenName);
    const rid = input.requestId ? { requestId: input.requestId } : {};
    let caller: AwsCallerIdentity | undefined;
    let token: StoredToken | undefined;
    const audited = (outcome: 'denied' | 'error', reason: string) =>
      this.record({
        event: 'bot.join',
        outcome,
        // An unknown name is not echoed: it might be a one-time secret typed into the wrong field.
        name: token?.name ?? id.slice(0, 12),
        reason: caller ? `${reason} (AWS account ${caller.account}, ARN ${caller.arn})` : reason,
        ...(token ? { bot: token.botName } : {}),
        ...rid,
      });
    const deny = async (reason: string): Promise<never> => {
      await audited('denied', reason);
      throw new AccessDeniedError(`iam join refused: ${reason}`);
    };

    if (!/^[0-9a-f]{32}$/.test(input.challengeId)) return deny('the challenge id is malformed');
    const stored = await this.store.get<{ challenge: string; expires: string }>(
      `challenges/${input.challengeId}`,
    );
    if (!stored)
      return deny('the challenge is unknown or was already used; ask this authority for a new challenge');
    try {
      await this.store.delete(`challenges/${input.challengeId}`, stored.version);
    } catch (err) {
      if (err instanceof ConflictError) return deny('the challenge was already used');
      throw err;
    }
    if (new Date(stored.value.expires) <= this.clock.now())
      return deny(`the challenge expired at ${stored.value.expires}; ask for a new one`);

    const item = await this.store.get<StoredToken>(`tokens/${id}`);
    if (item?.value.joinMethod !== 'iam')
      return deny('there is no iam token with that name; create one (kind: token, join_method: iam)');
    token = item.value;
    if (token.expires && new Date(token.expires) <= this.clock.now())
      return deny(`iam token "${token.name}" expired at ${token.expires}`);
    assertPublicKey(input.publicKeyPem);

    try {
      caller = await this.iamVerifier(input.stsRequest, stored.value.challenge);
    } catch (err) {
      if (err instanceof StsUnavailableError) {
        await audited('error', err.message);
        throw err;
      }
      if (err instanceof BrokerError) return deny(err.message);
      await audited('error', 'the STS verification failed unexpectedly');
      throw err;
    }
    const who = caller;
    const allowed = (token.allow ?? []).some(
      (rule) =>
        rule.aws_account === who.account &&
        (rule.aws_arn === undefined || matchPattern(rule.aws_arn, who.arn)),
    );
    if (!allowed)
      return deny(
        `the AWS identity ${who.arn} (account ${who.account}) matches no allow rule of iam token "${token.name}"`,
      );
    if (!(await this.store.get(this.keyOf('bot', token.botName))))
      return deny(`bot "${token.botName}" does not exist any more`);
    const lock = await this.store.get<Lock>(`locks/${token.botName}`);
    if (lock)
      return deny(
        `bot "${token.botName}" is locked (${lock.value.reason}); an operator must run \`broker locks rm --bot ${token.botName}\``,
      );
    return this.issueIdentity(
      token.botName,
      input.publicKeyPem,
      input.ttlMs,
      1,
      'bot.join',
      input.requestId,
      undefined,
      { name: token.name ?? id.slice(0, 12), reason: `iam: AWS account ${who.account}, ARN ${who.arn}` },
    );
  }

  private async issueIdentity(
    bot: string,
    publicKeyPem: string,
    ttlMs: number | undefined,
    generation: number,
    event: string,
    requestId?: string,
    expectStateVersion?: number,
    auditDetail: Pick<AuditEvent, 'name' | 'reason'> = {},
  ): Promise<IssuedIdentity> {
    if (!(await this.store.get(this.keyOf('bot', bot))))
      throw new AccessDeniedError(`bot "${bot}" does not exist any more`);
    await this.assertNotLocked(bot, event, requestId);
    assertPublicKey(publicKeyPem);
    const ttl = clampTtl(ttlMs ?? DEFAULT_CERT_TTL_MS);
    const now = this.clock.now();
    const { certificatePem, serial } = await buildCertificate(
      {
        subject: { commonName: bot, organization: 'broker-bot' },
        publicKeyPem,
        issuedAt: now,
        notAfter: new Date(now.getTime() + ttl),
        profile: 'client',
        privateExtensions: {
          [OID_CERT_ROLE]: 'bot-identity',
          [OID_BOT_NAME]: bot,
          [OID_BOT_GENERATION]: String(generation),
        },
      },
      await this.issuer('bot'),
    );
    const expires = new Date(now.getTime() + ttl).toISOString();
    const state: BotState = { generation, serial, expires };
    // Generation 1 (a join) resets the lineage; a renewal moves it forward only from the version it read.
    await this.store.put(`botstate/${bot}`, state, expectStateVersion);
    await this.record({
      event,
      outcome: 'success',
      bot,
      serial,
      generation,
      expires,
      ...auditDetail,
      ...(requestId ? { requestId } : {}),
    });
    return { certificatePem, serial, generation, expires, botCaPem: await this.caBundle('bot') };
  }

  /**
   * Checks a request signed with a bot identity: issued by the bot CA, within its validity, fresh, signed
   * by the identity's key, not locked, and of the current generation. A superseded generation means two
   * copies of the identity exist: the bot is locked.
   */
  async authenticate(
    type: string,
    identityPem: string,
    params: unknown,
    proof: Proof,
    requestId?: string,
  ): Promise<{ bot: string; generation: number; stateVersion: number }> {
    const rid = requestId ? { requestId } : {};
    let info: ReturnType<typeof parseCertificate>;
    try {
      info = parseCertificate(identityPem);
    } catch {
      // Audited like any other refused identity: a corrupted or tampered certificate is worth seeing.
      await this.record({
        event: type,
        outcome: 'denied',
        reason: 'identity is not a valid certificate',
        ...rid,
      });
      throw new AccessDeniedError('the identity is not a valid certificate; the bot must join again');
    }
    const bot = info.privateExtensions[OID_BOT_NAME];
    const generation = Number(info.privateExtensions[OID_BOT_GENERATION]);
    const botCa = await this.ca('bot');
    const cert = new X509Certificate(identityPem);
    const trusted = botCa.keys.some((k) => {
      const ca = new X509Certificate(k.certificatePem);
      return cert.checkIssued(ca) && cert.verify(ca.publicKey);
    });
    if (
      !trusted ||
      !bot ||
      info.privateExtensions[OID_CERT_ROLE] !== 'bot-identity' ||
      !Number.isInteger(generation)
    ) {
      await this.record({
        event: type,
        outcome: 'denied',
        reason: 'identity not issued by this authority',
        ...rid,
      });
      throw new AccessDeniedError(
        'the identity was not issued by this authority (wrong CA or tampered certificate); the bot must join again',
      );
    }
    const now = this.clock.now();
    const skew = Math.abs(new Date(proof.timestamp).getTime() - now.getTime());
    if (!(skew <= MAX_CLOCK_SKEW_MS)) {
      await this.record({
        event: type,
        outcome: 'denied',
        bot,
        reason: 'request time outside the allowed clock skew',
        ...rid,
      });
      throw new AccessDeniedError(
        `the request time ${proof.timestamp} is ${Math.round(skew / 1000)}s away from the authority's clock (${now.toISOString()}); at most ${MAX_CLOCK_SKEW_MS / 1000}s is allowed: fix the clock (NTP) on the bot's machine`,
      );
    }
    if (info.notAfter <= now) {
      await this.record({ event: type, outcome: 'denied', bot, reason: 'identity expired', ...rid });
      throw new AccessDeniedError(
        `the identity of bot "${bot}" expired at ${info.notAfter.toISOString()} and cannot renew; create a new join token (broker tokens add --type=bot --bot ${bot}) and start the bot with it`,
      );
    }
    if (info.notBefore > now) {
      await this.record({ event: type, outcome: 'denied', bot, reason: 'identity not yet valid', ...rid });
      throw new AccessDeniedError(
        `the identity of bot "${bot}" is not valid before ${info.notBefore.toISOString()}; check the clocks`,
      );
    }
    if (!verifyProof(type, params, proof, info.publicKeyPem)) {
      await this.record({ event: type, outcome: 'denied', bot, reason: 'bad proof of possession', ...rid });
      throw new AccessDeniedError('the request signature does not match the identity key');
    }
    await this.assertNotLocked(bot, type, requestId);
    if (!(await this.store.get(this.keyOf('bot', bot)))) {
      await this.record({ event: type, outcome: 'denied', bot, reason: 'bot does not exist', ...rid });
      throw new AccessDeniedError(`bot "${bot}" does not exist any more; an operator removed it`);
    }
    const state = await this.store.get<BotState>(`botstate/${bot}`);
    if (!state || state.value.generation !== generation) {
      const reason = `generation mismatch: the identity presented generation ${generation}, the authority expects ${state?.value.generation ?? 'none'}; another copy of this identity has renewed`;
      await this.store.put(`locks/${bot}`, { bot, reason, createdAt: now.toISOString() } satisfies Lock);
      await this.record({
        event: 'bot.generation_mismatch',
        outcome: 'denied',
        bot,
        generation,
        reason,
        ...rid,
      });
      await this.record({ event: 'lock.create', outcome: 'success', bot, reason });
      throw new GenerationMismatchError(
        `bot "${bot}" is now locked: its identity presented generation ${generation} but the authority expected ${state?.value.generation ?? 'none'}, which means a copy of the identity was used elsewhere. Investigate, then run \`broker locks rm --bot ${bot}\` and \`broker tokens add --type=bot --bot ${bot}\`, and start the bot with the new token`,
      );
    }
    return { bot, generation, stateVersion: state.version };
  }

  /** A one-time challenge for the iam join method, valid five minutes. */
  async createChallenge(): Promise<{ challengeId: string; challenge: string; expires: string }> {
    const challengeId = randomToken();
    const challenge = randomToken() + randomToken();
    const expires = new Date(this.clock.now().getTime() + 5 * 60_000).toISOString();
    await this.store.put(`challenges/${challengeId}`, { challenge, expires }, 'absent');
    return { challengeId, challenge, expires };
  }

  /** Renews a bot identity: proof with the current key, a new public key, generation + 1. */
  async renewIdentity(input: {
    identityPem: string;
    proof: Proof;
    params: { publicKeyPem: string; ttlMs?: number };
    requestId?: string;
  }): Promise<IssuedIdentity> {
    const who = await this.authenticate(
      'bot.renew',
      input.identityPem,
      input.params,
      input.proof,
      input.requestId,
    );
    try {
      return await this.issueIdentity(
        who.bot,
        input.params.publicKeyPem,
        input.params.ttlMs,
        who.generation + 1,
        'bot.renew',
        input.requestId,
        who.stateVersion,
      );
    } catch (err) {
      if (err instanceof ConflictError) {
        await this.record({
          event: 'bot.renew',
          outcome: 'denied',
          bot: who.bot,
          reason: 'concurrent renewal',
        });
        throw new AccessDeniedError(`another renewal of bot "${who.bot}" happened at the same moment; retry`);
      }
      throw err;
    }
  }

  // ---- database certificates ---------------------------------------------------------------------------

  /** Authenticates a signed request, then issues a database client certificate for its route. */
  async issueDatabaseCertificateForIdentity(input: {
    identityPem: string;
    proof: Proof;
    params: { route: DatabaseRoute; publicKeyPem: string; ttlMs?: number };
    requestId?: string;
  }): Promise<IssuedDatabaseCertificate> {
    const who = await this.authenticate(
      'db_cert.issue',
      input.identityPem,
      input.params,
      input.proof,
      input.requestId,
    );
    return this.issueDatabaseCertificate(
      who.bot,
      input.params.route,
      input.params.publicKeyPem,
      input.params.ttlMs,
      input.requestId,
    );
  }

  /**
   * Issues a database client certificate for `bot` and `route` if its roles allow it: subject CN is the
   * database user, the route and bot are in private extensions, the TTL is capped by max_session_ttl and
   * 24 h. Every decision is audited.
   */
  async issueDatabaseCertificate(
    bot: string,
    route: DatabaseRoute,
    publicKeyPem: string,
    ttlMs: number = DEFAULT_CERT_TTL_MS,
    requestId?: string,
  ): Promise<IssuedDatabaseCertificate> {
    const rid = requestId ? { requestId } : {};
    await this.assertNotLocked(bot, 'db_cert.issue', requestId);
    const botItem = await this.store.get<Bot>(this.keyOf('bot', bot));
    const deny = async (reason: string): Promise<never> => {
      await this.record({ event: 'db_cert.issue', outcome: 'denied', bot, route, reason, ...rid });
      throw new AccessDeniedError(
        `access to ${route.username}@${route.service}/${route.database} denied: ${reason}`,
      );
    };
    if (!botItem) return deny(`bot "${bot}" does not exist`);
    const roles: Role[] = [];
    for (const name of botItem.value.spec.roles) {
      const role = await this.store.get<Role>(this.keyOf('role', name));
      if (role) roles.push(role.value);
    }
    // A name no db resource can have is an unknown service, not a state key to look up.
    const db = resourceName.safeParse(route.service).success
      ? (await this.store.get<Db>(this.keyOf('db', route.service)))?.value
      : undefined;
    const decision = checkDatabaseAccess({ bot, roles, db, route });
    if (!decision.allowed) return deny(decision.reason);
    assertPublicKey(publicKeyPem);
    const ttl = Math.min(clampTtl(ttlMs), decision.maxTtlMs);
    const now = this.clock.now();
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
      await this.issuer('db-client'),
    );
    const expires = new Date(now.getTime() + ttl).toISOString();
    await this.record({
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
        ? joinPemBundle([await this.caBundle('db-server'), dbRes.spec.tls.ca_cert])
        : await this.caBundle('db-server'),
      db: {
        service: dbRes.metadata.name,
        protocol: dbRes.spec.protocol,
        uri: dbRes.spec.uri,
        serverName: dbRes.spec.tls?.server_name ?? hostOf(dbRes.spec.uri),
      },
    };
  }

  /**
   * `auth sign --format=db`: a database server certificate for `hosts` (plus localhost and 127.0.0.1, so a
   * client verifying through a local proxy succeeds), its key, and the database client CA to trust.
   */
  async signDatabaseServer(
    hosts: readonly string[],
    ttlMs = DEFAULT_SERVER_CERT_TTL_MS,
  ): Promise<{
    certificatePem: string;
    privateKeyPem: string;
    clientCaPem: string;
    serial: string;
    expires: string;
  }> {
    if (hosts.length === 0 || hosts.some((h) => !/^[a-zA-Z0-9.*:-]+$/.test(h)))
      throw new ConfigError('--host needs one or more host names or IP addresses, comma-separated');
    if (!(ttlMs > 0 && ttlMs <= MAX_SERVER_CERT_TTL_MS))
      throw new ConfigError('server certificate TTL must be between 1s and 8760h');
    const keys = await generateRsaKeyPair();
    const now = this.clock.now();
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
      await this.issuer('db-server'),
    );
    const expires = new Date(now.getTime() + ttlMs).toISOString();
    await this.record({
      event: 'server_cert.issue',
      outcome: 'success',
      kind: 'db-server',
      name: sans.join(','),
      serial,
      expires,
    });
    return {
      certificatePem,
      privateKeyPem: keys.privateKeyPem,
      clientCaPem: await this.caBundle('db-client'),
      serial,
      expires,
    };
  }

  /** A server certificate for the authority's own HTTPS listener, from the bot CA (which bots pin). */
  async signAuthorityServer(hosts: readonly string[], publicKeyPem: string, ttlMs: number): Promise<string> {
    const now = this.clock.now();
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
      await this.issuer('bot'),
    );
    return certificatePem;
  }

  async status() {
    const cluster = (await this.store.get<{ name: string; createdAt: string }>('config/cluster'))?.value;
    const cas = [];
    for (const type of CA_TYPES) {
      const ca = await this.ca(type);
      const info = parseCertificate((ca.keys[0] as CaRecord['keys'][number]).certificatePem);
      cas.push({
        type,
        keys: ca.keys.length,
        pin: caPin(ca.keys[0]!.certificatePem),
        expires: info.notAfter.toISOString(),
        fingerprint: info.fingerprint,
      });
    }
    return {
      cluster: cluster?.name ?? 'broker',
      cas,
      roles: (await this.store.list('roles')).length,
      dbs: (await this.store.list('dbs')).length,
      bots: (await this.store.list('bots')).length,
      tokens: (await this.store.list('tokens')).length,
      locks: (await this.store.list('locks')).length,
    };
  }
}

function clampTtl(ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0)
    throw new BrokerError('bad_request', 'the requested TTL must be positive');
  return Math.min(ttlMs, MAX_TTL_MS);
}

function assertPublicKey(pem: string): void {
  const key = pem.trimStart().startsWith('-----BEGIN PUBLIC KEY-----') ? tryParsePublicKey(pem) : undefined;
  if (key?.asymmetricKeyType !== 'rsa' || (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
    throw new BrokerError(
      'bad_request',
      'the public key must be an RSA key of at least 2048 bits in SPKI PEM (BEGIN PUBLIC KEY)',
    );
}
