/**
 * Identities have a lineage (DESIGN.md §2): a join starts one, renewals continue it, and an identity of an
 * older lineage — a stolen copy — is never accepted again, whatever its generation number. Each test is an
 * attack that worked while renewal compared generation numbers only.
 */
import { describe, expect, it } from 'vitest';
import type { BotState } from '../../src/authority/authority.js';
import { AccessDeniedError, GenerationMismatchError } from '../../src/errors.js';
import type { KeyPairPem } from '../../src/pki/keys.js';
import { OID_BOT_GENERATION, OID_BOT_LINEAGE } from '../../src/pki/oids.js';
import { parseCertificate } from '../../src/pki/parse.js';
import { createProof } from '../../src/pki/proof.js';
import { type TestAuthority, testAuthority } from '../support/authority.js';
import {
  exampleResourcesYaml,
  INTERNAL_DB_URI,
  nowSeconds,
  EXAMPLE_ROUTE as ROUTE,
  testKeyPair,
} from '../support/fixtures.js';

const START = nowSeconds();
const MIN = 60_000;

const IAM_TOKEN = `kind: token
version: v2
metadata: { name: example-iam }
spec:
  join_method: iam
  bot_name: example
  allow: [{ aws_account: '111111111111', aws_arn: 'arn:aws:sts::111111111111:assumed-role/example-bot/*' }]
`;

const RESOURCES = exampleResourcesYaml({
  role: { maxSessionTtl: null },
  db: { uri: INTERNAL_DB_URI },
  bots: ['example'],
  extra: IAM_TOKEN,
});

/** An identity as its holder keeps it: the certificate and the key that proves it. */
interface Held {
  identityPem: string;
  keys: KeyPairPem;
}

function setup(): Promise<TestAuthority> {
  return testAuthority({
    start: START,
    resources: RESOURCES,
    with: {
      // STS says the signed request came from the example bot's role, if it carries this join's challenge.
      iamVerifier: async (request, challenge) => {
        if (request.headers['x-broker-challenge'] !== challenge)
          throw new AccessDeniedError('wrong challenge');
        return {
          account: '111111111111',
          arn: 'arn:aws:sts::111111111111:assumed-role/example-bot/run-1',
          userId: 'AROAEXAMPLE:run-1',
        };
      },
    },
  });
}

async function joinWithToken(ctx: TestAuthority, slot: number): Promise<Held> {
  const { token } = await ctx.authority.addToken('example');
  const keys = await testKeyPair(slot);
  const { certificatePem } = await ctx.authority.joinWithToken({ token, publicKeyPem: keys.publicKeyPem });
  return { identityPem: certificatePem, keys };
}

async function joinWithIam(ctx: TestAuthority, slot: number): Promise<Held> {
  const keys = await testKeyPair(slot);
  const { challengeId, challenge } = await ctx.authority.createChallenge();
  const { certificatePem } = await ctx.authority.joinWithIam({
    tokenName: 'example-iam',
    challengeId,
    stsRequest: {
      method: 'POST',
      url: 'https://sts.us-east-1.amazonaws.com/',
      headers: { 'x-broker-challenge': challenge },
      body: 'Action=GetCallerIdentity&Version=2011-06-15',
    },
    publicKeyPem: keys.publicKeyPem,
  });
  return { identityPem: certificatePem, keys };
}

async function renew(ctx: TestAuthority, held: Held, slot: number): Promise<Held> {
  const keys = await testKeyPair(slot);
  const params = { publicKeyPem: keys.publicKeyPem };
  const proof = createProof('bot.renew', params, held.keys.privateKeyPem, ctx.clock.now());
  const { certificatePem } = await ctx.authority.renewIdentity({
    identityPem: held.identityPem,
    proof,
    params,
  });
  return { identityPem: certificatePem, keys };
}

async function issue(ctx: TestAuthority, held: Held) {
  const params = { route: ROUTE, publicKeyPem: (await testKeyPair(5)).publicKeyPem };
  const proof = createProof('db_cert.issue', params, held.keys.privateKeyPem, ctx.clock.now());
  return ctx.authority.issueDatabaseCertificateForIdentity({ identityPem: held.identityPem, proof, params });
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

const extensionsOf = (held: Held) => parseCertificate(held.identityPem).privateExtensions;

/** The stolen copy is refused for renewal and issuance, audited, and the real bot is not locked. */
async function expectOlderLineageRefused(ctx: TestAuthority, stolen: Held): Promise<void> {
  const before = ctx.audit.events.length;
  const renewal = await rejection(renew(ctx, stolen, 4));
  expect(renewal).toBeInstanceOf(AccessDeniedError);
  expect(renewal).not.toBeInstanceOf(GenerationMismatchError);
  expect(renewal.message).toMatch(/older lineage/);
  const issuance = await rejection(issue(ctx, stolen));
  expect(issuance).toBeInstanceOf(AccessDeniedError);
  expect(issuance.message).toMatch(/older lineage/);
  expect(await ctx.authority.listLocks()).toEqual([]);
  expect(ctx.audit.events.slice(before)).toEqual([
    expect.objectContaining({
      event: 'bot.renew',
      outcome: 'denied',
      bot: 'example',
      reason: expect.stringMatching(/older lineage/),
    }),
    expect.objectContaining({
      event: 'db_cert.issue',
      outcome: 'denied',
      bot: 'example',
      reason: expect.stringMatching(/older lineage/),
    }),
  ]);
}

describe('identities carry their lineage', () => {
  it('a join starts a random 128-bit lineage, kept in the certificate and the bot state; renewals keep it', async () => {
    const ctx = await setup();
    const first = await joinWithToken(ctx, 0);
    const lineage = extensionsOf(first)[OID_BOT_LINEAGE];
    expect(lineage).toMatch(/^[0-9a-f]{32}$/);
    expect((await ctx.store.get<BotState>('botstate/example'))?.value.lineage).toBe(lineage);
    const renewed = await renew(ctx, first, 1);
    expect(extensionsOf(renewed)[OID_BOT_LINEAGE]).toBe(lineage);
    const again = await joinWithToken(ctx, 2);
    expect(extensionsOf(again)[OID_BOT_LINEAGE]).toMatch(/^[0-9a-f]{32}$/);
    expect(extensionsOf(again)[OID_BOT_LINEAGE]).not.toBe(lineage);
  });
});

describe('a stolen identity of an older lineage is never accepted again', () => {
  it('after lock, unlock, a new token and a re-join, even once the real bot reaches its generation', async () => {
    const ctx = await setup();
    const joined = await joinWithToken(ctx, 0);
    const stolen = await renew(ctx, joined, 1); // generation 2, copied by the thief
    await renew(ctx, stolen, 2); // the real bot moves on to generation 3
    // The copy renews: a superseded generation of the current lineage locks the bot, as designed.
    expect(await rejection(renew(ctx, stolen, 3))).toBeInstanceOf(GenerationMismatchError);
    expect(await ctx.authority.listLocks()).toHaveLength(1);

    // The documented recovery: unlock, new token, re-join; the real bot renews up to the copy's generation.
    await ctx.authority.removeLock('example');
    const rejoined = await joinWithToken(ctx, 0);
    const real = await renew(ctx, rejoined, 1);
    expect(extensionsOf(real)[OID_BOT_GENERATION]).toBe('2');
    expect(extensionsOf(stolen)[OID_BOT_GENERATION]).toBe('2');

    await expectOlderLineageRefused(ctx, stolen);
    // The real bot is untouched.
    await expect(renew(ctx, real, 2)).resolves.toBeDefined();
  });

  it('before the re-joined bot catches up: refused without locking the real bot', async () => {
    const ctx = await setup();
    const stolen = await renew(ctx, await joinWithToken(ctx, 0), 1);
    await ctx.authority.addLock('example', 'identity copied');
    await ctx.authority.removeLock('example');
    const real = await joinWithToken(ctx, 2);
    await expectOlderLineageRefused(ctx, stolen);
    await expect(issue(ctx, real)).resolves.toBeDefined();
  });

  it('after the bot is deleted and created again', async () => {
    const ctx = await setup();
    const stolen = await joinWithToken(ctx, 0);
    await ctx.authority.removeResource('bot', 'example');
    await ctx.authority.addBot('example', ['example-role']);
    // Not joined yet: the old identity is refused, and the new bot is not locked by it.
    const early = await rejection(renew(ctx, stolen, 1));
    expect(early).toBeInstanceOf(AccessDeniedError);
    expect(early).not.toBeInstanceOf(GenerationMismatchError);
    expect(await ctx.authority.listLocks()).toEqual([]);

    const real = await joinWithToken(ctx, 2); // generation 1, as the stolen copy
    await expectOlderLineageRefused(ctx, stolen);
    await expect(issue(ctx, real)).resolves.toBeDefined();
  });

  it('after a second iam join: each iam join starts a new lineage', async () => {
    const ctx = await setup();
    const first = await joinWithIam(ctx, 0);
    const second = await joinWithIam(ctx, 1);
    await expectOlderLineageRefused(ctx, first);
    expect(extensionsOf(first)[OID_BOT_LINEAGE]).not.toBe(extensionsOf(second)[OID_BOT_LINEAGE]);
    await expect(issue(ctx, second)).resolves.toBeDefined();
    await expect(renew(ctx, second, 2)).resolves.toBeDefined();
  });

  it('a superseded generation of the current lineage still locks the bot', async () => {
    const ctx = await setup();
    const joined = await joinWithToken(ctx, 0);
    await renew(ctx, joined, 1);
    ctx.clock.advance(MIN);
    expect(await rejection(renew(ctx, joined, 2))).toBeInstanceOf(GenerationMismatchError);
    expect(await ctx.authority.listLocks()).toHaveLength(1);
  });
});
