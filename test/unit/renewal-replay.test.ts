/**
 * Retried and replayed requests through the API. A retry of a renewal (same request id) must get the first
 * answer and never lock the bot, however it interleaves with the first attempt; a captured request sent
 * again under a fresh request id must be refused without locking; and a remembered answer goes only to a
 * request whose proof holds.
 */
import { describe, expect, it } from 'vitest';
import { handleApiRequest } from '../../src/api/handler.js';
import type { ApiResponse } from '../../src/api/protocol.js';
import { Authority, type BotState } from '../../src/authority/authority.js';
import type { KeyPairPem } from '../../src/pki/keys.js';
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
const RESOURCES = exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: INTERNAL_DB_URI } });

interface Held {
  identityPem: string;
  keys: KeyPairPem;
}

interface Ctx extends TestAuthority {
  held: Held;
}

async function joined(): Promise<Ctx> {
  const ctx = await testAuthority({ start: START, resources: RESOURCES });
  const { token } = await ctx.authority.addToken('example');
  const keys = await testKeyPair(0);
  const { certificatePem } = await ctx.authority.joinWithToken({ token, publicKeyPem: keys.publicKeyPem });
  ctx.audit.events.length = 0;
  return { ...ctx, held: { identityPem: certificatePem, keys } };
}

let ids = 0;
const freshId = () => `req-${++ids}-${Date.now()}`;

/** A renewal request as the bot's client builds it. */
function renewal(ctx: Ctx, newKeys: KeyPairPem, requestId = freshId(), signer = ctx.held.keys) {
  const params = { publicKeyPem: newKeys.publicKeyPem };
  return {
    v: 1,
    type: 'renew',
    requestId,
    identityPem: ctx.held.identityPem,
    proof: createProof('bot.renew', params, signer.privateKeyPem, ctx.clock.now()),
    params,
  } as const;
}

/** An issuance request as the bot's client builds it. */
async function issuance(ctx: Ctx, requestId = freshId(), held = ctx.held) {
  const params = { route: ROUTE, publicKeyPem: (await testKeyPair(5)).publicKeyPem };
  return {
    v: 1,
    type: 'issue-db-cert',
    requestId,
    identityPem: held.identityPem,
    proof: createProof('db_cert.issue', params, held.keys.privateKeyPem, ctx.clock.now()),
    params,
  } as const;
}

async function generation(ctx: Ctx): Promise<number | undefined> {
  return (await ctx.store.get<BotState>('botstate/example'))?.value.generation;
}

function resultOf(response: ApiResponse): { certificatePem: string; generation: number } {
  if (!response.ok) throw new Error(`refused: ${response.error.code}: ${response.error.message}`);
  return response.result as { certificatePem: string; generation: number };
}

/**
 * The state store with a gate: writes of remembered answers (`requests/…`) wait until released, which
 * holds a request in the moment after its renewal moved the generation and before the answer is kept.
 */
class GatedStore implements StateStore {
  private release!: () => void;
  private readonly released = new Promise<void>((resolve) => {
    this.release = resolve;
  });
  private reach!: () => void;
  readonly reached = new Promise<void>((resolve) => {
    this.reach = resolve;
  });

  constructor(private readonly inner: StateStore) {}

  open(): void {
    this.release();
  }
  get<T>(key: string): Promise<Versioned<T> | undefined> {
    return this.inner.get<T>(key);
  }
  async put(key: string, value: unknown, expect?: Expect): Promise<number> {
    if (key.startsWith('requests/')) {
      this.reach();
      await this.released;
    }
    return this.inner.put(key, value, expect);
  }
  delete(key: string, expect?: Expect): Promise<boolean> {
    return this.inner.delete(key, expect);
  }
  list<T>(prefix: string): Promise<Versioned<T>[]> {
    return this.inner.list<T>(prefix);
  }
}

describe('a retried renewal gets the first answer and never locks the bot', () => {
  it('a retry (same request id) sent after the generation moved, before the answer was kept', async () => {
    const ctx = await joined();
    const gated = new GatedStore(ctx.store);
    const authority = new Authority({ store: gated, audit: ctx.audit, clock: ctx.clock });
    const request = renewal(ctx, await testKeyPair(1));
    const first = handleApiRequest(authority, request);
    await Promise.race([gated.reached, first]);
    // The first response is lost; the transport sends the same request again.
    const retry = await handleApiRequest(authority, request);
    gated.open();
    const answer = await first;
    expect(resultOf(answer).generation).toBe(2);
    expect(retry).toEqual(answer);
    expect(await ctx.authority.listLocks()).toEqual([]);
    expect(await generation(ctx)).toBe(2);
  });

  it('the bot retrying with the same request id and a new proof, at the same moment', async () => {
    const ctx = await joined();
    const gated = new GatedStore(ctx.store);
    const authority = new Authority({ store: gated, audit: ctx.audit, clock: ctx.clock });
    const keys = await testKeyPair(1);
    const request = renewal(ctx, keys);
    const first = handleApiRequest(authority, request);
    await Promise.race([gated.reached, first]);
    ctx.clock.advance(1000);
    const retry = await handleApiRequest(authority, renewal(ctx, keys, request.requestId));
    gated.open();
    expect(retry).toEqual(await first);
    expect(await ctx.authority.listLocks()).toEqual([]);
  });

  it('two copies of one renewal in flight at once both get the one answer', async () => {
    const ctx = await joined();
    const request = renewal(ctx, await testKeyPair(1));
    const [a, b] = await Promise.all([
      handleApiRequest(ctx.authority, request),
      handleApiRequest(ctx.authority, request),
    ]);
    expect(resultOf(a).generation).toBe(2);
    expect(b).toEqual(a);
    expect(await ctx.authority.listLocks()).toEqual([]);
    expect(await generation(ctx)).toBe(2);
  });

  it('a retry after the first answer was lost, and again later: the same answer, one renewal', async () => {
    const ctx = await joined();
    const keys = await testKeyPair(1);
    const request = renewal(ctx, keys);
    const answer = await handleApiRequest(ctx.authority, request);
    ctx.clock.advance(MIN);
    expect(await handleApiRequest(ctx.authority, request)).toEqual(answer);
    expect(await handleApiRequest(ctx.authority, renewal(ctx, keys, request.requestId))).toEqual(answer);
    expect(ctx.audit.events.filter((e) => e.event === 'bot.renew' && e.outcome === 'success')).toHaveLength(
      1,
    );
    expect(await generation(ctx)).toBe(2);
    expect(await ctx.authority.listLocks()).toEqual([]);
  });
});

describe('a captured request replayed under a fresh request id is refused without locking', () => {
  it('a renewal, anywhere in the clock-skew window', async () => {
    const ctx = await joined();
    const captured = renewal(ctx, await testKeyPair(1));
    const renewed = resultOf(await handleApiRequest(ctx.authority, captured));
    for (const later of [0, MIN, 4 * MIN]) {
      ctx.clock.advance(later);
      const replay = await handleApiRequest(ctx.authority, { ...captured, requestId: freshId() });
      expect(replay).toMatchObject({ ok: false, error: { code: 'access_denied' } });
      if (!replay.ok) expect(replay.error.message).toMatch(/replay/);
    }
    expect(await ctx.authority.listLocks()).toEqual([]);
    expect(await generation(ctx)).toBe(2);
    expect(ctx.audit.events).toContainEqual(
      expect.objectContaining({
        event: 'bot.renew',
        outcome: 'denied',
        reason: expect.stringMatching(/replay/),
      }),
    );
    // The real bot renews on with its new identity.
    const next = { ...ctx, held: { identityPem: renewed.certificatePem, keys: await testKeyPair(1) } };
    expect(
      resultOf(await handleApiRequest(ctx.authority, renewal(next, await testKeyPair(2)))).generation,
    ).toBe(3);
  });

  it('an issuance: refused, and after the bot renewed, still refused without locking it', async () => {
    const ctx = await joined();
    const captured = await issuance(ctx);
    expect(await handleApiRequest(ctx.authority, captured)).toMatchObject({ ok: true });
    const replay = await handleApiRequest(ctx.authority, { ...captured, requestId: freshId() });
    expect(replay).toMatchObject({ ok: false, error: { code: 'access_denied' } });
    resultOf(await handleApiRequest(ctx.authority, renewal(ctx, await testKeyPair(1))));
    ctx.clock.advance(MIN);
    const later = await handleApiRequest(ctx.authority, { ...captured, requestId: freshId() });
    expect(later).toMatchObject({ ok: false, error: { code: 'access_denied' } });
    if (!later.ok) expect(later.error.message).toMatch(/replay/);
    expect(await ctx.authority.listLocks()).toEqual([]);
  });
});

describe('a remembered answer goes only to a request whose proof holds', () => {
  it('a renewal: the same request id and content with a bad proof, or a proof by another key, is refused', async () => {
    const ctx = await joined();
    const request = renewal(ctx, await testKeyPair(1));
    expect(await handleApiRequest(ctx.authority, request)).toMatchObject({ ok: true });
    const stranger = await testKeyPair(3);
    const forged = [
      { ...request, proof: { ...request.proof, signature: Buffer.alloc(256, 1).toString('base64') } },
      { ...request, proof: renewal(ctx, await testKeyPair(1), request.requestId, stranger).proof },
    ];
    for (const attempt of forged) {
      const response = await handleApiRequest(ctx.authority, attempt);
      expect(response).toMatchObject({
        ok: false,
        error: { code: 'access_denied', message: 'the request signature does not match the identity key' },
      });
    }
    expect(await ctx.authority.listLocks()).toEqual([]);
  });

  it('an issuance: the same request id and content with a bad proof is refused', async () => {
    const ctx = await joined();
    const request = await issuance(ctx);
    expect(await handleApiRequest(ctx.authority, request)).toMatchObject({ ok: true });
    const response = await handleApiRequest(ctx.authority, {
      ...request,
      proof: { ...request.proof, signature: Buffer.alloc(256, 7).toString('base64') },
    });
    expect(response).toMatchObject({ ok: false, error: { code: 'access_denied' } });
  });
});
