import { createHash, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority, tokenId } from '../../src/authority/authority.js';
import { AlreadyExistsError, NotFoundError } from '../../src/authority/errors.js';
import { dbSchema, parseResources } from '../../src/authority/resources.js';
import type { ManualClock } from '../../src/clock.js';
import { ConfigError } from '../../src/config/errors.js';
import { splitPemBundle } from '../../src/credentials/pem.js';
import type { DatabaseRoute } from '../../src/credentials/route.js';
import { AccessDeniedError, BrokerError, GenerationMismatchError } from '../../src/errors.js';
import { CA_TYPES } from '../../src/pki/ca.js';
import { buildCertificate } from '../../src/pki/certificate.js';
import type { KeyPairPem } from '../../src/pki/keys.js';
import {
  OID_BOT_GENERATION,
  OID_BOT_NAME,
  OID_CERT_ROLE,
  OID_CERT_ROLES,
  OID_DB_DATABASE,
  OID_DB_PROTOCOL,
  OID_DB_SERVICE,
  OID_DB_USERNAME,
} from '../../src/pki/oids.js';
import { parseCertificate } from '../../src/pki/parse.js';
import { createProof } from '../../src/pki/proof.js';
import { ConflictError } from '../../src/state/errors.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { joinBot, testAuthority } from '../support/authority.js';
import {
  exampleResourcesYaml,
  exampleRoleYaml,
  INTERNAL_DB_URI,
  nowSeconds,
  EXAMPLE_ROUTE as ROUTE,
  testCa,
  testKeyPair,
} from '../support/fixtures.js';

const MIN = 60_000;
const H = 3_600_000;

/** The example role and database service, and a role allowing every user and database on env=dev. */
const SEED = exampleResourcesYaml({
  db: { uri: INTERNAL_DB_URI, serverName: 'db.internal' },
  bots: [],
  extra: `kind: role
version: v6
metadata: { name: long-role }
spec:
  allow:
    db_labels: { env: dev }
    db_names: ['*']
    db_users: ['*']
    rules: [{ resources: [db], verbs: [read, list] }]
`,
});

/** Start the manual clock at the real time (whole seconds), as certificates carry no milliseconds. */
const START = nowSeconds();

interface Ctx {
  authority: Authority;
  store: MemoryStateStore;
  audit: MemoryAuditLog;
  clock: ManualClock;
}

/** A fresh authority holding copies of one real initialisation's CAs, with the SEED resources. */
function setup(): Promise<Ctx> {
  return testAuthority({ start: START, resources: SEED });
}

interface Joined extends Ctx {
  token: string;
  keys: KeyPairPem;
  identityPem: string;
}

/** Adds bot `example` with example-role and joins it with key slot `slot`. */
async function joined(ctx?: Ctx, slot = 0): Promise<Joined> {
  const c = ctx ?? (await setup());
  return { ...c, ...(await joinBot(c.authority, { roles: ['example-role'], slot })) };
}

function renew(
  ctx: Ctx,
  identityPem: string,
  signingKey: KeyPairPem,
  newKey: KeyPairPem,
  proofTime: Date = ctx.clock.now(),
) {
  const params = { publicKeyPem: newKey.publicKeyPem };
  const proof = createProof('bot.renew', params, signingKey.privateKeyPem, proofTime);
  return ctx.authority.renewIdentity({ identityPem, proof, params });
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

function auditJson(audit: MemoryAuditLog): string {
  return JSON.stringify(audit.events);
}

describe('Authority.initialize', () => {
  it('refuses to initialise a second time and keeps the existing CAs', async () => {
    const { authority } = await setup();
    const before = await Promise.all(CA_TYPES.map((t) => authority.caBundle(t)));
    const err = await rejection(authority.initialize('unit'));
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(err.message).toMatch(/already initialised/);
    expect(await Promise.all(CA_TYPES.map((t) => authority.caBundle(t)))).toEqual(before);
  });

  it('refuses to issue anything from an uninitialised store, saying to run broker init', async () => {
    const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
    await expect(authority.caBundle('bot')).rejects.toThrow(/broker init/);
  });
});

describe('Authority.createResources', () => {
  it('refuses a bot naming an unknown role with a ConfigError and writes nothing from the file', async () => {
    const { authority, store, audit } = await setup();
    const resources = parseResources(
      'kind: role\nversion: v6\nmetadata: { name: new-role }\nspec: {}\n---\nkind: bot\nversion: v1\nmetadata: { name: b }\nspec: { roles: [new-role, ghost-role] }\n',
      'bad.yaml',
    );
    const err = await rejection(authority.createResources(resources));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('ghost-role');
    expect((await store.list('roles')).map((r) => r.key)).toEqual(['roles/example-role', 'roles/long-role']);
    expect(await store.list('bots')).toEqual([]);
    expect(audit.events).toEqual([]);
  });

  it('refuses a token naming an unknown bot and writes nothing', async () => {
    const { authority, store } = await setup();
    const resources = parseResources(
      'kind: token\nversion: v2\nmetadata: { name: sometokensecret1 }\nspec: { join_method: token, bot_name: ghost }\n',
      't.yaml',
    );
    const err = await rejection(authority.createResources(resources));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('"ghost"');
    expect(await store.list('tokens')).toEqual([]);
  });

  it('accepts references between resources of one file in any order', async () => {
    const { authority } = await setup();
    const resources = parseResources(
      'kind: token\nversion: v2\nmetadata: { name: sometokensecret2 }\nspec: { join_method: token, bot_name: b }\n---\nkind: bot\nversion: v1\nmetadata: { name: b }\nspec: { roles: [r] }\n---\nkind: role\nversion: v6\nmetadata: { name: r }\nspec: {}\n',
      'ok.yaml',
    );
    await authority.createResources(resources);
    expect((await authority.getResources('bot')).map((b) => b.metadata.name)).toEqual(['b']);
    expect((await authority.getResources('role', 'r'))[0]?.metadata.name).toBe('r');
    expect(await authority.listTokens()).toHaveLength(1);
  });

  it('refuses to overwrite an existing resource without force, and overwrites with force', async () => {
    const { authority, audit } = await setup();
    const changed = parseResources(exampleRoleYaml({ maxSessionTtl: '2h' }), 'again.yaml');
    const err = await rejection(authority.createResources(changed));
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(err.message).toContain('role "example-role" already exists');
    expect(err.message).toContain('--force');
    expect((await authority.getResources('role', 'example-role'))[0]?.spec.options?.max_session_ttl).toBe(
      '8h',
    );

    await authority.createResources(changed, { force: true });
    expect((await authority.getResources('role', 'example-role'))[0]?.spec.options?.max_session_ttl).toBe(
      '2h',
    );
    expect(audit.events.map((e) => [e.event, e.kind, e.name])).toEqual([
      ['resource.create', 'role', 'example-role'],
    ]);
  });

  it('getResources of a missing name is a NotFoundError', async () => {
    const { authority } = await setup();
    await expect(authority.getResources('db', 'nope')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('stores a token resource by hash only: its name (the secret) is in neither the state nor the audit log', async () => {
    const { authority, store, audit } = await setup();
    const secret = 'resource-token-secret-0123456789';
    await authority.createResources(
      parseResources(
        `kind: bot\nversion: v1\nmetadata: { name: example }\nspec: { roles: [example-role] }\n---\nkind: token\nversion: v2\nmetadata: { name: ${secret} }\nspec: { join_method: token, bot_name: example }\n`,
        't.yaml',
      ),
    );
    expect(JSON.stringify(await store.list('tokens'))).not.toContain(secret);
    expect((await authority.listTokens())[0]?.id).toBe(createHash('sha256').update(secret).digest('hex'));
    const identity = await authority.joinWithToken({
      token: secret,
      publicKeyPem: (await testKeyPair(0)).publicKeyPem,
    });
    expect(identity.generation).toBe(1);
    expect(auditJson(audit)).not.toContain(secret);
  });
});

describe('Authority.addBot and joinWithToken', () => {
  it('addBot creates the bot and returns a one-time token whose secret is not stored', async () => {
    const { authority, store, audit, clock } = await setup();
    const { token, id, expires } = await authority.addBot('example', ['example-role']);
    expect(token).toMatch(/^[0-9a-f]{32}$/);
    expect(id).toBe(tokenId(token));
    expect(new Date(expires).getTime()).toBe(clock.now().getTime() + H);
    expect((await authority.getResources('bot', 'example'))[0]?.spec.roles).toEqual(['example-role']);
    expect(await authority.listTokens()).toEqual([
      { id, joinMethod: 'token', botName: 'example', createdAt: clock.now().toISOString(), expires },
    ]);
    expect(JSON.stringify(await store.list('tokens'))).not.toContain(token);
    expect(auditJson(audit)).not.toContain(token);
    expect(audit.events.map((e) => e.event)).toEqual(['resource.create', 'token.create']);
  });

  it('addBot refuses an unknown role and an existing bot', async () => {
    const { authority } = await setup();
    await expect(authority.addBot('b', ['ghost'])).rejects.toBeInstanceOf(ConfigError);
    await authority.addBot('b', ['example-role']);
    await expect(authority.addBot('b', ['example-role'])).rejects.toBeInstanceOf(AlreadyExistsError);
  });

  it('caps a requested identity TTL at 24h', async () => {
    const { authority, clock } = await setup();
    const { token } = await authority.addBot('example', ['example-role']);
    const identity = await authority.joinWithToken({
      token,
      publicKeyPem: (await testKeyPair(0)).publicKeyPem,
      ttlMs: 48 * H,
    });
    expect(new Date(identity.expires).getTime() - clock.now().getTime()).toBe(24 * H);
  });

  it('consumes the token: a second join with it is denied and audited without the secret', async () => {
    const { authority, audit, token } = await joined();
    expect(await authority.listTokens()).toEqual([]);
    const err = await rejection(
      authority.joinWithToken({ token, publicKeyPem: (await testKeyPair(1)).publicKeyPem }),
    );
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toMatch(/unknown or was already used/);
    const denied = audit.events.filter((e) => e.event === 'bot.join' && e.outcome === 'denied');
    expect(denied).toHaveLength(1);
    expect(denied[0]?.reason).toMatch(/already used/);
    expect(audit.events.filter((e) => e.event === 'bot.join' && e.outcome === 'success')).toHaveLength(1);
    expect(auditJson(audit)).not.toContain(token);
  });

  it('lets only one of several parallel joins with one token succeed', async () => {
    const { authority } = await setup();
    const { token } = await authority.addBot('example', ['example-role']);
    const publicKeyPem = (await testKeyPair(0)).publicKeyPem;
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => authority.joinWithToken({ token, publicKeyPem })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(AccessDeniedError);
  });

  it('denies an expired token and audits it with the bot name but not the secret', async () => {
    const { authority, audit, clock } = await setup();
    const { token } = await authority.addBot('example', ['example-role']);
    clock.advance(H);
    const err = await rejection(
      authority.joinWithToken({ token, publicKeyPem: (await testKeyPair(0)).publicKeyPem }),
    );
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toMatch(/expired/);
    const denied = audit.events.find((e) => e.event === 'bot.join');
    expect(denied).toMatchObject({ outcome: 'denied', bot: 'example' });
    expect(denied?.reason).toMatch(/expired/);
    expect(auditJson(audit)).not.toContain(token);
  });

  it('accepts a token just before it expires', async () => {
    const { authority, clock } = await setup();
    const { token } = await authority.addBot('example', ['example-role']);
    clock.advance(H - 1000);
    await expect(
      authority.joinWithToken({ token, publicKeyPem: (await testKeyPair(0)).publicKeyPem }),
    ).resolves.toMatchObject({ generation: 1 });
  });

  it('denies an unknown token and audits it without the secret', async () => {
    const { authority, audit } = await setup();
    const guess = 'f'.repeat(32);
    await expect(
      authority.joinWithToken({ token: guess, publicKeyPem: (await testKeyPair(0)).publicKeyPem }),
    ).rejects.toBeInstanceOf(AccessDeniedError);
    expect(audit.events).toEqual([expect.objectContaining({ event: 'bot.join', outcome: 'denied' })]);
    expect(auditJson(audit)).not.toContain(guess);
  });

  it('refuses a public key that is not RSA-2048 or bigger', async () => {
    const { authority } = await setup();
    const { token } = await authority.addBot('example', ['example-role']);
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    const err = await rejection(authority.joinWithToken({ token, publicKeyPem: small.toString() }));
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('bad_request');
  });
});

describe('Authority.renewIdentity', () => {
  it('renews with a proof of the current key: generation 2, the new key, a new serial', async () => {
    const ctx = await joined();
    const newKeys = await testKeyPair(1);
    const renewed = await renew(ctx, ctx.identityPem, ctx.keys, newKeys);
    expect(renewed.generation).toBe(2);
    const info = parseCertificate(renewed.certificatePem);
    expect(info.privateExtensions[OID_BOT_GENERATION]).toBe('2');
    expect(info.publicKeyPem).toBe(newKeys.publicKeyPem);
    expect(info.serial).not.toBe(parseCertificate(ctx.identityPem).serial);
    expect((await ctx.authority.listBots())[0]?.status.generation).toBe(2);
    expect(ctx.audit.events.at(-1)).toMatchObject({
      event: 'bot.renew',
      outcome: 'success',
      bot: 'example',
      generation: 2,
    });

    // The current identity keeps renewing.
    const third = await renew(ctx, renewed.certificatePem, newKeys, ctx.keys);
    expect(third.generation).toBe(3);
  });

  it('locks the bot when the superseded generation-1 identity renews again', async () => {
    const ctx = await joined();
    const current = await renew(ctx, ctx.identityPem, ctx.keys, await testKeyPair(1));

    const err = await rejection(renew(ctx, ctx.identityPem, ctx.keys, await testKeyPair(2)));
    expect(err).toBeInstanceOf(GenerationMismatchError);
    expect(err.message).toMatch(/locked/);
    expect(err.message).toContain('generation 1');

    const locks = await ctx.authority.listLocks();
    expect(locks).toHaveLength(1);
    expect(locks[0]).toMatchObject({ bot: 'example' });
    expect(locks[0]?.reason).toMatch(/generation mismatch/);
    expect(ctx.audit.events).toContainEqual(
      expect.objectContaining({
        event: 'bot.generation_mismatch',
        outcome: 'denied',
        bot: 'example',
        generation: 1,
      }),
    );
    expect((await ctx.authority.listBots())[0]?.status.locked).toMatch(/generation mismatch/);

    // The legitimate current identity is locked out too until an operator acts.
    await expect(renew(ctx, current.certificatePem, await testKeyPair(1), ctx.keys)).rejects.toThrow(
      /locked/,
    );
    // And the bot gets no database certificate.
    const denied = await rejection(
      ctx.authority.issueDatabaseCertificate('example', ROUTE, (await testKeyPair(3)).publicKeyPem),
    );
    expect(denied).toBeInstanceOf(AccessDeniedError);
    expect(denied.message).toMatch(/locked/);
    expect(ctx.audit.events.at(-1)).toMatchObject({
      event: 'db_cert.issue',
      outcome: 'denied',
      bot: 'example',
    });
  });

  it('refuses an expired identity, saying it expired and how to recover, without locking the bot', async () => {
    const ctx = await joined();
    ctx.clock.advance(H + 1000);
    const err = await rejection(renew(ctx, ctx.identityPem, ctx.keys, await testKeyPair(1)));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toMatch(/expired at .* and cannot renew/);
    expect(err.message).toContain('broker tokens add');
    expect(await ctx.authority.listLocks()).toEqual([]);
    expect(ctx.audit.events.at(-1)).toMatchObject({
      event: 'bot.renew',
      outcome: 'denied',
      reason: 'identity expired',
    });
  });

  it('refuses a proof signed with another key, without locking the bot or moving the generation', async () => {
    const ctx = await joined();
    const stranger = await testKeyPair(1);
    const err = await rejection(renew(ctx, ctx.identityPem, stranger, stranger));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toMatch(/signature does not match/);
    expect(await ctx.authority.listLocks()).toEqual([]);
    expect((await ctx.authority.listBots())[0]?.status.generation).toBe(1);
    // The rightful holder can still renew.
    await expect(renew(ctx, ctx.identityPem, ctx.keys, stranger)).resolves.toMatchObject({ generation: 2 });
  });

  it('refuses a proof over other parameters (a captured proof cannot renew to another key)', async () => {
    const ctx = await joined();
    const proof = createProof(
      'bot.renew',
      { publicKeyPem: ctx.keys.publicKeyPem },
      ctx.keys.privateKeyPem,
      ctx.clock.now(),
    );
    const attacker = await testKeyPair(2);
    await expect(
      ctx.authority.renewIdentity({
        identityPem: ctx.identityPem,
        proof,
        params: { publicKeyPem: attacker.publicKeyPem },
      }),
    ).rejects.toThrow(/signature does not match/);
  });

  it('refuses a proof made for another request type', async () => {
    const ctx = await joined();
    const params = { publicKeyPem: ctx.keys.publicKeyPem };
    const proof = createProof('db_cert.issue', params, ctx.keys.privateKeyPem, ctx.clock.now());
    await expect(
      ctx.authority.renewIdentity({ identityPem: ctx.identityPem, proof, params }),
    ).rejects.toBeInstanceOf(AccessDeniedError);
  });

  it.each([
    ['10 minutes ahead', 10 * MIN],
    ['10 minutes behind', -10 * MIN],
  ])('refuses a proof timestamped %s, pointing at the clock', async (_name, offset) => {
    const ctx = await joined();
    const at = new Date(ctx.clock.now().getTime() + offset);
    const err = await rejection(renew(ctx, ctx.identityPem, ctx.keys, ctx.keys, at));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toMatch(/clock/);
    expect(err.message).toContain('600s');
    expect(await ctx.authority.listLocks()).toEqual([]);
  });

  it('accepts a proof timestamped within the 5-minute skew allowance', async () => {
    const ctx = await joined();
    const at = new Date(ctx.clock.now().getTime() - 4 * MIN);
    await expect(renew(ctx, ctx.identityPem, ctx.keys, ctx.keys, at)).resolves.toMatchObject({
      generation: 2,
    });
  });

  it('refuses an identity from another CA even with the right extensions', async () => {
    const ctx = await joined();
    const foreign = await testCa('foreign CA');
    const keys = await testKeyPair(2);
    const { certificatePem } = await buildCertificate(
      {
        subject: { commonName: 'example', organization: 'broker-bot' },
        publicKeyPem: keys.publicKeyPem,
        issuedAt: ctx.clock.now(),
        notAfter: new Date(ctx.clock.now().getTime() + H),
        profile: 'client',
        privateExtensions: {
          [OID_CERT_ROLE]: 'bot-identity',
          [OID_BOT_NAME]: 'example',
          [OID_BOT_GENERATION]: '1',
        },
      },
      foreign.issuer,
    );
    const err = await rejection(renew(ctx, certificatePem, keys, keys));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toMatch(/not issued by this authority/);
    expect(await ctx.authority.listLocks()).toEqual([]);
  });

  it('refuses a database certificate of this authority used as an identity', async () => {
    const ctx = await joined();
    const dbKeys = await testKeyPair(3);
    const dbCert = await ctx.authority.issueDatabaseCertificate('example', ROUTE, dbKeys.publicKeyPem);
    await expect(renew(ctx, dbCert.certificatePem, dbKeys, dbKeys)).rejects.toThrow(
      /not issued by this authority/,
    );
  });

  it('refuses garbage as an identity', async () => {
    const ctx = await joined();
    await expect(renew(ctx, 'not a certificate', ctx.keys, ctx.keys)).rejects.toBeInstanceOf(
      AccessDeniedError,
    );
  });
});

describe('Authority.issueDatabaseCertificate', () => {
  it('issues a client certificate whose CN is the database user and whose extensions carry the route', async () => {
    const { authority, audit, clock } = await joined();
    const keys = await testKeyPair(3);
    const cert = await authority.issueDatabaseCertificate('example', ROUTE, keys.publicKeyPem);
    const info = parseCertificate(cert.certificatePem);
    expect(info.subjectCommonName).toBe('alice');
    expect(new X509Certificate(cert.certificatePem).subject).toBe('O=example\nCN=alice');
    expect(info.publicKeyPem).toBe(keys.publicKeyPem);
    expect(info.privateExtensions).toEqual({
      [OID_CERT_ROLE]: 'db-client',
      [OID_DB_SERVICE]: 'example-server',
      [OID_DB_PROTOCOL]: 'postgres',
      [OID_DB_DATABASE]: 'example',
      [OID_DB_USERNAME]: 'alice',
      [OID_BOT_NAME]: 'example',
      [OID_CERT_ROLES]: 'example-role',
    });
    expect(info.serial).toBe(cert.serial);
    expect(cert.issuedAt).toBe(clock.now().toISOString());
    expect(info.notBefore.getTime()).toBe(clock.now().getTime() - MIN);
    expect(info.notAfter.getTime()).toBe(clock.now().getTime() + H);
    expect(cert.expires).toBe(info.notAfter.toISOString());
    expect(cert.db).toEqual({
      service: 'example-server',
      protocol: 'postgres',
      uri: 'db.internal:5432',
      serverName: 'db.internal',
    });
    expect(cert.serverCaPem).toBe(await authority.caBundle('db-server'));

    const event = audit.events.at(-1);
    expect(event).toMatchObject({
      event: 'db_cert.issue',
      outcome: 'success',
      bot: 'example',
      route: ROUTE,
      serial: cert.serial,
    });
    expect(event?.reason).toContain('example-role');
    expect(auditJson(audit)).not.toContain('BEGIN');
  });

  it('caps the TTL at the role max_session_ttl and says so in the audit event', async () => {
    const { authority, audit, clock } = await joined();
    const cert = await authority.issueDatabaseCertificate(
      'example',
      ROUTE,
      (await testKeyPair(3)).publicKeyPem,
      12 * H,
    );
    expect(new Date(cert.expires).getTime() - clock.now().getTime()).toBe(8 * H);
    expect(audit.events.at(-1)?.reason).toContain('TTL capped to 8h0m0s');
  });

  it('caps the TTL at 24h when no role sets a shorter one', async () => {
    const { authority, clock } = await setup();
    await authority.addBot('long-bot', ['long-role']);
    const route = { service: 'example-server', database: 'any', username: 'anyone' };
    const cert = await authority.issueDatabaseCertificate(
      'long-bot',
      route,
      (await testKeyPair(3)).publicKeyPem,
      48 * H,
    );
    expect(new Date(cert.expires).getTime() - clock.now().getTime()).toBe(24 * H);
    expect(parseCertificate(cert.certificatePem).notAfter.getTime() - clock.now().getTime()).toBe(24 * H);
  });

  it('keeps a shorter requested TTL', async () => {
    const { authority, clock } = await joined();
    const cert = await authority.issueDatabaseCertificate(
      'example',
      ROUTE,
      (await testKeyPair(3)).publicKeyPem,
      20 * MIN,
    );
    expect(new Date(cert.expires).getTime() - clock.now().getTime()).toBe(20 * MIN);
  });

  it.each<[string, DatabaseRoute, string[]]>([
    ['a user the role does not allow', { ...ROUTE, username: 'bob' }, ['"bob"', 'db_users']],
    ['a database the role does not allow', { ...ROUTE, database: 'payroll' }, ['"payroll"', 'db_names']],
    [
      'a service that does not exist',
      { ...ROUTE, service: 'ghost-server' },
      ['"ghost-server"', 'does not exist'],
    ],
  ])('denies %s and audits the decision with its reason', async (_name, route, mentions) => {
    const { authority, audit } = await joined();
    const err = await rejection(
      authority.issueDatabaseCertificate('example', route, (await testKeyPair(3)).publicKeyPem),
    );
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toContain(`${route.username}@${route.service}/${route.database}`);
    const event = audit.events.at(-1);
    expect(event).toMatchObject({ event: 'db_cert.issue', outcome: 'denied', bot: 'example', route });
    for (const m of mentions) {
      expect(err.message).toContain(m);
      expect(event?.reason).toContain(m);
    }
  });

  it('denies a bot that does not exist', async () => {
    const { authority, audit } = await setup();
    await expect(
      authority.issueDatabaseCertificate('ghost', ROUTE, (await testKeyPair(3)).publicKeyPem),
    ).rejects.toThrow(/bot "ghost" does not exist/);
    expect(audit.events.at(-1)).toMatchObject({ outcome: 'denied', bot: 'ghost' });
  });

  it('denies a bot whose roles were all deleted', async () => {
    const { authority, store } = await joined();
    await store.delete('roles/example-role');
    await expect(
      authority.issueDatabaseCertificate('example', ROUTE, (await testKeyPair(3)).publicKeyPem),
    ).rejects.toThrow(/no roles/);
  });

  it('adds the database tls.ca_cert to the server CA bundle and derives serverName from the uri', async () => {
    const { authority } = await joined();
    const external = await testCa('external db CA');
    const other = dbSchema.parse({
      kind: 'db',
      version: 'v3',
      metadata: { name: 'rds', labels: { env: 'dev' } },
      spec: { protocol: 'mysql', uri: 'rds.example.com:3306', tls: { ca_cert: external.certificatePem } },
    });
    await authority.createResources([other]);
    const cert = await authority.issueDatabaseCertificate(
      'example',
      { ...ROUTE, service: 'rds' },
      (await testKeyPair(3)).publicKeyPem,
    );
    expect(splitPemBundle(cert.serverCaPem)).toEqual([
      ...splitPemBundle(await authority.caBundle('db-server')),
      external.certificatePem,
    ]);
    expect(cert.db).toEqual({
      service: 'rds',
      protocol: 'mysql',
      uri: 'rds.example.com:3306',
      serverName: 'rds.example.com',
    });
    expect(parseCertificate(cert.certificatePem).privateExtensions[OID_DB_PROTOCOL]).toBe('mysql');
  });

  it('issues for a signed request of the current identity', async () => {
    const ctx = await joined();
    const params = { route: ROUTE, publicKeyPem: (await testKeyPair(3)).publicKeyPem };
    const proof = createProof('db_cert.issue', params, ctx.keys.privateKeyPem, ctx.clock.now());
    const cert = await ctx.authority.issueDatabaseCertificateForIdentity({
      identityPem: ctx.identityPem,
      proof,
      params,
    });
    expect(parseCertificate(cert.certificatePem).subjectCommonName).toBe('alice');
  });

  it('refuses a signed request whose route was changed after signing', async () => {
    const ctx = await joined();
    const params = { route: ROUTE, publicKeyPem: (await testKeyPair(3)).publicKeyPem };
    const proof = createProof('db_cert.issue', params, ctx.keys.privateKeyPem, ctx.clock.now());
    await expect(
      ctx.authority.issueDatabaseCertificateForIdentity({
        identityPem: ctx.identityPem,
        proof,
        params: { ...params, route: { ...ROUTE, username: 'postgres' } },
      }),
    ).rejects.toBeInstanceOf(AccessDeniedError);
  });

  it.each([0, -1, Number.NaN])('refuses the TTL %s as a bad request', async (ttl) => {
    const { authority } = await joined();
    const err = await rejection(
      authority.issueDatabaseCertificate('example', ROUTE, (await testKeyPair(3)).publicKeyPem, ttl),
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('bad_request');
  });

  it('refuses a 1024-bit key as a bad request', async () => {
    const { authority } = await joined();
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    const err = await rejection(authority.issueDatabaseCertificate('example', ROUTE, small.toString()));
    expect((err as BrokerError).code).toBe('bad_request');
  });

  it.each<[string, (keys: KeyPairPem) => string]>([
    [
      'a PKCS#1 "RSA PUBLIC KEY" PEM',
      (k) => createPublicKey(k.publicKeyPem).export({ type: 'pkcs1', format: 'pem' }).toString(),
    ],
    ['a private key PEM', (k) => k.privateKeyPem],
  ])('refuses %s as a bad request (only SPKI public keys are accepted)', async (_name, pemOf) => {
    const { authority } = await joined();
    const err = await rejection(
      authority.issueDatabaseCertificate('example', ROUTE, pemOf(await testKeyPair(3))),
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('bad_request');
  });
});

describe('Authority.signDatabaseServer', () => {
  it('does not repeat localhost when it is one of the hosts', async () => {
    const { authority } = await setup();
    const signed = await authority.signDatabaseServer(['localhost'], { service: 'example-server' });
    expect(parseCertificate(signed.certificatePem).sans).toEqual(['localhost', '127.0.0.1']);
  });

  it.each([[[]], [['db internal']], [['db.internal', 'a/b']]])('refuses the hosts %j', async (hosts) => {
    const { authority } = await setup();
    await expect(authority.signDatabaseServer(hosts, { service: 'example-server' })).rejects.toBeInstanceOf(
      ConfigError,
    );
  });

  it('refuses a TTL above 8760h', async () => {
    const { authority } = await setup();
    await expect(
      authority.signDatabaseServer(['db.internal'], { service: 'example-server', ttlMs: 8761 * H }),
    ).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('Authority.removeResource', () => {
  it('refuses to delete a role in use, naming the bot, and deletes it once unused', async () => {
    const { authority } = await joined();
    const err = await rejection(authority.removeResource('role', 'example-role'));
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.message).toContain('example');
    expect(err.message).toContain('--remove-roles example-role');
    expect(await authority.getResources('role', 'example-role')).toHaveLength(1);

    await authority.updateBot('example', { remove: ['example-role'] });
    await authority.removeResource('role', 'example-role');
    await expect(authority.getResources('role', 'example-role')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('deleting a bot deletes its tokens and renewal state', async () => {
    const { authority, store } = await setup();
    const { token } = await authority.addBot('example', ['example-role']);
    await authority.addToken('example');
    await authority.removeResource('bot', 'example');
    expect(await authority.listTokens()).toEqual([]);
    expect(await store.get('botstate/example')).toBeUndefined();
    await expect(
      authority.joinWithToken({ token, publicKeyPem: (await testKeyPair(0)).publicKeyPem }),
    ).rejects.toBeInstanceOf(AccessDeniedError);
  });

  it('a deleted bot gets no database certificates', async () => {
    const ctx = await joined();
    await ctx.authority.removeResource('bot', 'example');
    await expect(
      ctx.authority.issueDatabaseCertificate('example', ROUTE, (await testKeyPair(3)).publicKeyPem),
    ).rejects.toThrow(/bot "example" does not exist/);
  });

  it('a deleted bot cannot renew; that is not a stolen identity, and a re-created bot of that name can join', async () => {
    const ctx = await joined();
    await ctx.authority.removeResource('bot', 'example');
    const err = await rejection(renew(ctx, ctx.identityPem, ctx.keys, ctx.keys));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toMatch(/does not exist/);
    expect(await ctx.authority.listLocks()).toEqual([]);

    const { token } = await ctx.authority.addBot('example', ['example-role']);
    await expect(
      ctx.authority.joinWithToken({ token, publicKeyPem: (await testKeyPair(1)).publicKeyPem }),
    ).resolves.toMatchObject({ generation: 1 });
  });

  it('reports a missing resource as NotFoundError', async () => {
    const { authority } = await setup();
    await expect(authority.removeResource('db', 'ghost')).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('Authority locks', () => {
  it('a locked bot can neither join nor get database certificates; removing the lock restores access', async () => {
    const { authority, audit } = await setup();
    const { token } = await authority.addBot('example', ['example-role']);
    const lock = await authority.addLock('example', 'laptop stolen');
    expect(lock).toMatchObject({ bot: 'example', reason: 'laptop stolen' });
    expect(await authority.listLocks()).toEqual([lock]);
    expect(audit.events.at(-1)).toMatchObject({
      event: 'lock.create',
      bot: 'example',
      reason: 'laptop stolen',
    });

    const keys = await testKeyPair(0);
    await expect(authority.joinWithToken({ token, publicKeyPem: keys.publicKeyPem })).rejects.toThrow(
      /locked \(laptop stolen\)/,
    );
    const denied = await rejection(authority.issueDatabaseCertificate('example', ROUTE, keys.publicKeyPem));
    expect(denied).toBeInstanceOf(AccessDeniedError);
    expect(audit.events.at(-1)).toMatchObject({
      event: 'db_cert.issue',
      outcome: 'denied',
      reason: 'locked: laptop stolen',
    });

    await authority.removeLock('example');
    expect(await authority.listLocks()).toEqual([]);
    await expect(
      authority.issueDatabaseCertificate('example', ROUTE, keys.publicKeyPem),
    ).resolves.toMatchObject({
      db: { service: 'example-server' },
    });
    await expect(authority.removeLock('example')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('a locked bot cannot renew its identity', async () => {
    const ctx = await joined();
    await ctx.authority.addLock('example', 'investigating');
    await expect(renew(ctx, ctx.identityPem, ctx.keys, ctx.keys)).rejects.toThrow(/locked/);
  });
});

describe('Authority.removeToken', () => {
  it('removes a token by a prefix of its id, after which it cannot be used', async () => {
    const { authority, audit } = await setup();
    const { token, id } = await authority.addBot('example', ['example-role']);
    const removed = await authority.removeToken(id.slice(0, 12));
    expect(removed).toMatchObject({ id, botName: 'example' });
    expect(await authority.listTokens()).toEqual([]);
    expect(audit.events.at(-1)).toMatchObject({ event: 'token.delete', bot: 'example' });
    expect(auditJson(audit)).not.toContain(token);
    await expect(
      authority.joinWithToken({ token, publicKeyPem: (await testKeyPair(0)).publicKeyPem }),
    ).rejects.toBeInstanceOf(AccessDeniedError);
  });

  it('removes a token by its full id or by its secret, and only that one', async () => {
    const { authority } = await setup();
    const first = await authority.addBot('example', ['example-role']);
    const second = await authority.addToken('example');
    const third = await authority.addToken('example');
    await authority.removeToken(first.id);
    await authority.removeToken(second.token);
    expect((await authority.listTokens()).map((t) => t.id)).toEqual([third.id]);
  });

  it('refuses a prefix shorter than 8 characters and an unknown token', async () => {
    const { authority } = await setup();
    const { id } = await authority.addBot('example', ['example-role']);
    await expect(authority.removeToken(id.slice(0, 7))).rejects.toBeInstanceOf(NotFoundError);
    await expect(authority.removeToken('0'.repeat(64))).rejects.toBeInstanceOf(NotFoundError);
    expect(await authority.listTokens()).toHaveLength(1);
  });

  it('addToken refuses an unknown bot and TTLs outside 1s..168h', async () => {
    const { authority } = await setup();
    await expect(authority.addToken('ghost')).rejects.toBeInstanceOf(NotFoundError);
    await authority.addBot('example', ['example-role']);
    await expect(authority.addToken('example', 0)).rejects.toBeInstanceOf(ConfigError);
    await expect(authority.addToken('example', 169 * H)).rejects.toBeInstanceOf(ConfigError);
  });
});
