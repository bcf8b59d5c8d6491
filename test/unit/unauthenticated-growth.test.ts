/**
 * What an unauthenticated caller can make the authority keep or do: challenges leave no state behind,
 * everything short-lived is pruned, unauthenticated calls are rate limited, and a failing state store turns
 * into an error response for that one request instead of a rejected promise (which ends a server process).
 */
import { describe, expect, it } from 'vitest';
import { handleApiRequest } from '../../src/api/handler.js';
import { RateLimiter } from '../../src/api/rate-limit.js';
import { Authority } from '../../src/authority/authority.js';
import { shortLivedPrefixes } from '../../src/authority/state-keys.js';
import { createProof } from '../../src/pki/proof.js';
import type { Expect, StateStore, Versioned } from '../../src/state/store.js';
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
const RESOURCES = exampleResourcesYaml({
  role: { maxSessionTtl: null },
  db: { uri: INTERNAL_DB_URI },
  extra: `kind: token
version: v2
metadata: { name: example-iam }
spec:
  join_method: iam
  bot_name: example
  allow: [{ aws_account: '111111111111', aws_arn: 'arn:aws:sts::111111111111:assumed-role/example-bot/*' }]
`,
});

/** A StateStore that counts the keys it holds and can be made to fail reads or writes under a prefix. */
class CountingStore implements StateStore {
  readonly keys = new Set<string>();
  failPut: string | undefined;
  failGet: string | undefined;
  constructor(private readonly inner: StateStore) {}
  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    if (this.failGet && key.startsWith(this.failGet)) throw new Error('EIO: i/o error reading the state');
    return this.inner.get<T>(key);
  }
  async put(key: string, value: unknown, expect?: Expect): Promise<number> {
    if (this.failPut && key.startsWith(this.failPut)) throw new Error('ENOSPC: no space left on device');
    const version = await this.inner.put(key, value, expect);
    this.keys.add(key);
    return version;
  }
  async delete(key: string, expect?: Expect): Promise<boolean> {
    const deleted = await this.inner.delete(key, expect);
    this.keys.delete(key);
    return deleted;
  }
  list<T>(prefix: string): Promise<Versioned<T>[]> {
    return this.inner.list<T>(prefix);
  }
}

interface Ctx extends TestAuthority {
  counting: CountingStore;
  api: Authority;
}

async function setup(): Promise<Ctx> {
  const ctx = await testAuthority({ start: START, resources: RESOURCES });
  const counting = new CountingStore(ctx.store);
  const api = new Authority({
    store: counting,
    audit: ctx.audit,
    clock: ctx.clock,
    iamVerifier: async (request, challenge) => {
      if (request.headers['x-broker-challenge'] !== challenge) throw new Error('not this challenge');
      return {
        account: '111111111111',
        arn: 'arn:aws:sts::111111111111:assumed-role/example-bot/run',
        userId: 'AROAEXAMPLE:run',
      };
    },
  });
  return { ...ctx, counting, api };
}

let n = 0;
const rid = () => `limits-${++n}-0000`;
const challengeRequest = () => ({ v: 1, type: 'challenge', requestId: rid(), params: {} });

async function challenge(ctx: Ctx) {
  const response = await handleApiRequest(ctx.api, challengeRequest());
  if (!response.ok) throw new Error(response.error.message);
  return response.result as { challengeId: string; challenge: string; expires: string };
}

async function iamJoin(ctx: Ctx, c: { challengeId: string; challenge: string }) {
  return handleApiRequest(ctx.api, {
    v: 1,
    type: 'join',
    requestId: rid(),
    params: {
      joinMethod: 'iam',
      token: 'example-iam',
      publicKeyPem: (await testKeyPair(0)).publicKeyPem,
      challengeId: c.challengeId,
      stsRequest: {
        method: 'POST',
        url: 'https://sts.us-east-1.amazonaws.com/',
        headers: { 'x-broker-challenge': c.challenge },
        body: 'Action=GetCallerIdentity&Version=2011-06-15',
      },
    },
  });
}

async function shortLivedCount(store: StateStore): Promise<number> {
  let count = 0;
  for (const prefix of shortLivedPrefixes) count += (await store.list(prefix)).length;
  return count;
}

describe('challenges', () => {
  it('500 challenge calls leave the state as it was (at most the authority key behind them)', async () => {
    const ctx = await setup();
    await challenge(ctx);
    const before = ctx.counting.keys.size;
    for (let i = 0; i < 500; i++) await challenge(ctx);
    expect(ctx.counting.keys.size).toBe(before);
    expect(await shortLivedCount(ctx.store)).toBe(0);
  });

  it('a challenge still works once, and only until it expires; a forged or altered one never', async () => {
    const ctx = await setup();
    const c = await challenge(ctx);
    expect(await iamJoin(ctx, c)).toMatchObject({ ok: true });
    const again = await iamJoin(ctx, c);
    expect(again).toMatchObject({ ok: false, error: { code: 'access_denied' } });
    if (!again.ok) expect(again.error.message).toMatch(/already used/);

    const late = await challenge(ctx);
    ctx.clock.advance(5 * MIN + 1000);
    const expired = await iamJoin(ctx, late);
    if (expired.ok) throw new Error('an expired challenge was accepted');
    expect(expired.error.message).toMatch(/expired/);

    const fresh = await challenge(ctx);
    const [nonce, expires] = fresh.challengeId.split('.') as [string, string];
    const forged = [
      { ...fresh, challengeId: `${nonce}.${Number(expires) + 3600}` },
      { ...fresh, challengeId: `${'0'.repeat(32)}.${expires}` },
      { ...fresh, challenge: 'f'.repeat(64) },
    ];
    for (const attempt of forged) expect(await iamJoin(ctx, attempt)).toMatchObject({ ok: false });
    // The genuine challenge was not spent by the forgeries.
    expect(await iamJoin(ctx, fresh)).toMatchObject({ ok: true });
  });
});

describe('short-lived state is pruned', () => {
  it('remembered requests, used challenges and nonces are removed once they expire, and not before', async () => {
    const ctx = await setup();
    const { token } = await ctx.api.addToken('example');
    const keys = await testKeyPair(0);
    const join = await handleApiRequest(ctx.api, {
      v: 1,
      type: 'join',
      requestId: rid(),
      params: { joinMethod: 'token', token, publicKeyPem: keys.publicKeyPem },
    });
    if (!join.ok) throw new Error(join.error.message);
    const identityPem = (join.result as { certificatePem: string }).certificatePem;
    const params = { route: ROUTE, publicKeyPem: keys.publicKeyPem };
    const issued = await handleApiRequest(ctx.api, {
      v: 1,
      type: 'issue-db-cert',
      requestId: rid(),
      identityPem,
      proof: createProof('db_cert.issue', params, keys.privateKeyPem, ctx.clock.now()),
      params,
    });
    expect(issued).toMatchObject({ ok: true });
    expect(await iamJoin(ctx, await challenge(ctx))).toMatchObject({ ok: true });
    const kept = await shortLivedCount(ctx.store);
    expect(kept).toBeGreaterThanOrEqual(3);

    expect(await ctx.api.pruneExpired()).toBe(0);
    expect(await shortLivedCount(ctx.store)).toBe(kept);
    ctx.clock.advance(16 * MIN);
    expect(await ctx.api.pruneExpired()).toBe(kept);
    expect(await shortLivedCount(ctx.store)).toBe(0);
  });
});

describe('unauthenticated calls are rate limited', () => {
  it('per caller: a burst, then rate_limited until the bucket refills; other callers are not affected', async () => {
    const ctx = await setup();
    const limiter = new RateLimiter({ perSecond: 1, burst: 5, clock: ctx.clock });
    const send = (caller: string) =>
      handleApiRequest(ctx.api, challengeRequest(), undefined, { limiter, caller });
    for (let i = 0; i < 5; i++) expect(await send('10.0.0.1')).toMatchObject({ ok: true });
    const limited = await send('10.0.0.1');
    expect(limited).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
    expect(await send('10.0.0.2')).toMatchObject({ ok: true });
    ctx.clock.advance(1000);
    expect(await send('10.0.0.1')).toMatchObject({ ok: true });
    expect(await send('10.0.0.1')).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
  });

  it('keeps a bounded number of callers', () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 1, maxCallers: 100 });
    for (let i = 0; i < 10_000; i++) limiter.take(`caller-${i}`);
    expect(limiter.size).toBeLessThanOrEqual(100);
  });
});

describe('a failing state store fails one request, never the caller of handleApiRequest', () => {
  it('a failing de-duplication write: the request is answered and the next one served', async () => {
    const ctx = await setup();
    ctx.counting.failPut = 'requests/';
    const { token } = await ctx.api.addToken('example');
    const join = {
      v: 1,
      type: 'join',
      requestId: rid(),
      params: { joinMethod: 'token', token, publicKeyPem: (await testKeyPair(0)).publicKeyPem },
    };
    // The join happened; losing only its retry protection, it is still answered.
    expect(await handleApiRequest(ctx.api, join)).toMatchObject({ v: 1, ok: true });
    expect(await handleApiRequest(ctx.api, challengeRequest())).toMatchObject({ ok: true });
  });

  it('a failing de-duplication read: an error response, the request does not run', async () => {
    const ctx = await setup();
    ctx.counting.failGet = 'requests/';
    const { token } = await ctx.api.addToken('example');
    const join = {
      v: 1,
      type: 'join',
      requestId: rid(),
      params: { joinMethod: 'token', token, publicKeyPem: (await testKeyPair(0)).publicKeyPem },
    };
    const tokens = (await ctx.api.listTokens()).length;
    const response = await handleApiRequest(ctx.api, join);
    expect(response).toMatchObject({ ok: false, error: { code: 'internal' } });
    if (!response.ok) expect(response.error.message).not.toMatch(/EIO/);
    // The join did not run: its one-time token is still there for the retry.
    expect(await ctx.api.listTokens()).toHaveLength(tokens);
    expect(await handleApiRequest(ctx.api, challengeRequest())).toMatchObject({ ok: true });
  });
});
