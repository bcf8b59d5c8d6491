/**
 * Attacks on the trust model (DESIGN.md §2): tampered and foreign certificates, identities of another
 * authority, replayed proofs, and join tokens leaking through errors, audit events or logs.
 *
 * Single cases that authority.test.ts already pins down are not repeated here: an identity from a foreign
 * test CA, garbage as an identity, a database certificate used as an identity, a proof over other renewal
 * parameters or for another request type, and consumed, expired and unknown tokens kept out of the audit.
 * This file adds byte-level tampering (at every kind of position), a second real authority, property tests
 * of the proof itself, replays through the API, and every join failure path at once.
 */

import { X509Certificate } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handleApiRequest } from '../../src/api/handler.js';
import type { ApiResponse } from '../../src/api/protocol.js';
import type { MemoryAuditLog } from '../../src/authority/audit.js';
import type { Authority, BotState } from '../../src/authority/authority.js';
import { checkStsRequest } from '../../src/authority/iam-join.js';
import type { ManualClock } from '../../src/clock.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { AccessDeniedError, BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import type { KeyPairPem } from '../../src/pki/keys.js';
import { createProof, type Proof, verifyProof } from '../../src/pki/proof.js';
import { loadCredentials } from '../../src/proxy/loaded-credentials.js';
import type { MemoryStateStore } from '../../src/state/memory-store.js';
import { joinBot, testAuthority } from '../support/authority.js';
import {
  bundleOf as bundleOfIssued,
  exampleResourcesYaml,
  INTERNAL_DB_URI,
  nowSeconds,
  EXAMPLE_ROUTE as ROUTE,
  testKeyPair,
} from '../support/fixtures.js';
import { der, flipped, replaced, tbsRange } from '../support/tamper.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

const H = 3_600_000;
/** The example (role without a session cap), a second bot, and an iam token for the example bot. */
const RESOURCES = exampleResourcesYaml({
  role: { maxSessionTtl: null },
  db: { uri: INTERNAL_DB_URI },
  bots: ['example', 'other'],
  extra: `kind: token
version: v2
metadata: { name: example-iam }
spec:
  join_method: iam
  bot_name: example
  allow: [{ aws_account: '111111111111' }]
`,
});

/** Start at the real time (whole seconds), so openssl accepts what the authorities issue. */
const START = nowSeconds();

interface Ctx {
  authority: Authority;
  store: MemoryStateStore;
  audit: MemoryAuditLog;
  clock: ManualClock;
}

/** A fresh authority holding the CAs of authority `which` (0 or 1), the resources, and no bot joined yet. */
async function setup(which = 0): Promise<Ctx> {
  return testAuthority({
    start: START,
    clusterName: 'broker',
    // Two real authorities of the same name: 0 and 1.
    instance: which,
    resources: RESOURCES,
    with: {
      // The real checks of the signed request; then, never the network: STS refuses whatever reaches it.
      iamVerifier: async (request, challenge) => {
        checkStsRequest(request, challenge);
        throw new AccessDeniedError(
          'AWS STS rejected the signed GetCallerIdentity request: SignatureDoesNotMatch',
        );
      },
    },
  });
}

interface Joined extends Ctx {
  keys: KeyPairPem;
  identityPem: string;
}

async function joined(ctx?: Ctx, bot = 'example', slot = 0): Promise<Joined> {
  const c = ctx ?? (await setup());
  const { keys, identityPem } = await joinBot(c.authority, { bot, slot });
  c.audit.events.length = 0;
  return { ...c, keys, identityPem };
}

async function generationOf(ctx: Ctx, bot = 'example'): Promise<number | undefined> {
  return (await ctx.store.get<BotState>(`botstate/${bot}`))?.value.generation;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

// ---- DER surgery -----------------------------------------------------------------------------------------

/** Renews with `identityPem` and a correct proof by `keys`: everything but the certificate is genuine. */
function renewWith(ctx: Ctx, identityPem: string, keys: KeyPairPem) {
  const params = { publicKeyPem: keys.publicKeyPem };
  const proof = createProof('bot.renew', params, keys.privateKeyPem, ctx.clock.now());
  return ctx.authority.renewIdentity({ identityPem, proof, params });
}

describe('a tampered bot identity presented for renewal', () => {
  /** Refused with a message that says what happened and what to do, audited, and nothing changes. */
  async function expectRefused(ctx: Joined, identityPem: string): Promise<void> {
    const events = ctx.audit.events.length;
    const err = await rejection(renewWith(ctx, identityPem, ctx.keys));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toMatch(
      /not issued by this authority \(wrong CA or tampered certificate\)|not a valid certificate/,
    );
    expect(err.message).toMatch(/must join again/);
    const added = ctx.audit.events.slice(events);
    expect(added).toEqual([
      expect.objectContaining({ event: 'bot.renew', outcome: 'denied', reason: expect.any(String) }),
    ]);
    expect(JSON.stringify(added)).not.toContain('BEGIN CERTIFICATE');
    expect(await ctx.authority.listLocks()).toEqual([]);
    expect(await generationOf(ctx)).toBe(1);
  }

  it('a flipped byte in the signature is refused and audited', async () => {
    const ctx = await joined();
    const bytes = der(ctx.identityPem);
    await expectRefused(ctx, flipped(ctx.identityPem, bytes.length - 7));
    await expectRefused(ctx, flipped(ctx.identityPem, bytes.length - 200, 0x80));
  });

  it('a forged generation, bot name, role or subject in the signed part is refused and audited', async () => {
    const ctx = await joined();
    await ctx.authority.addToken('other'); // "other" exists: the forged name would be a real bot
    await expectRefused(ctx, replaced(ctx.identityPem, 'example', 'exampl3'));
    await expectRefused(ctx, replaced(ctx.identityPem, 'bot-identity', 'bot-identitz'));
    // Both the CN and the bot-name extension say "example": rename both to the other bot of equal length.
    const renamed = replaced(replaced(ctx.identityPem, 'example', 'examplf'), 'example', 'examplf');
    await expectRefused(ctx, renamed);
  });

  it('property: any single changed byte of the signed part is refused and audited, never accepted', async () => {
    const ctx = await joined();
    const [start, end] = tbsRange(der(ctx.identityPem));
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: start, max: end - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (at, mask) => expectRefused(ctx, flipped(ctx.identityPem, at, mask)),
      ),
      { numRuns: 150 },
    );
    // The genuine identity was never locked out by the attempts.
    await expect(renewWith(ctx, ctx.identityPem, ctx.keys)).resolves.toMatchObject({ generation: 2 });
  });

  it('is answered access_denied through the API, never internal', async () => {
    const ctx = await joined();
    const params = { publicKeyPem: ctx.keys.publicKeyPem };
    for (const identityPem of [
      flipped(ctx.identityPem, der(ctx.identityPem).length - 3),
      flipped(ctx.identityPem, 6, 0xff), // the TBS length: no longer DER
    ]) {
      const response = await handleApiRequest(ctx.authority, {
        v: 1,
        type: 'renew',
        requestId: `tamper-${identityPem.length}-${ctx.audit.events.length}`,
        identityPem,
        proof: createProof('bot.renew', params, ctx.keys.privateKeyPem, ctx.clock.now()),
        params,
      });
      expect(response).toMatchObject({ ok: false, error: { code: 'access_denied' } });
    }
    expect(ctx.audit.events.filter((e) => e.outcome === 'denied')).toHaveLength(2);
  });
});

describe('an identity issued by another authority instance', () => {
  it('is refused for renewal and for database certificates, audited, without locking the bot it names', async () => {
    // Same cluster name, same bot name, same resources: only the CA keys differ.
    const here = await joined(await setup(0));
    const elsewhere = await joined(await setup(1), 'example', 1);
    const err = await rejection(renewWith(here, elsewhere.identityPem, elsewhere.keys));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toContain('not issued by this authority');

    const params = { route: ROUTE, publicKeyPem: elsewhere.keys.publicKeyPem };
    const issue = here.authority.issueDatabaseCertificateForIdentity({
      identityPem: elsewhere.identityPem,
      proof: createProof('db_cert.issue', params, elsewhere.keys.privateKeyPem, here.clock.now()),
      params,
    });
    await expect(issue).rejects.toThrow(/not issued by this authority/);

    expect(here.audit.events).toEqual([
      expect.objectContaining({ event: 'bot.renew', outcome: 'denied' }),
      expect.objectContaining({ event: 'db_cert.issue', outcome: 'denied' }),
    ]);
    expect(await here.authority.listLocks()).toEqual([]);
    expect(await generationOf(here)).toBe(1);
    // The bot's own identity is unaffected.
    await expect(renewWith(here, here.identityPem, here.keys)).resolves.toMatchObject({ generation: 2 });
  });
});

describe('database certificates from a foreign CA, or tampered', () => {
  let here: Joined;
  let foreign: Joined;
  let good: { certificatePem: string; keys: KeyPairPem };
  let _stranger: { certificatePem: string; keys: KeyPairPem };

  beforeAll(async () => {
    here = await joined(await setup(0));
    foreign = await joined(await setup(1));
    const keys = await testKeyPair(2);
    good = {
      keys,
      certificatePem: (await here.authority.issueDatabaseCertificate('example', ROUTE, keys.publicKeyPem))
        .certificatePem,
    };
    _stranger = {
      keys,
      certificatePem: (await foreign.authority.issueDatabaseCertificate('example', ROUTE, keys.publicKeyPem))
        .certificatePem,
    };
  });

  const bundleOf = (certificatePem: string, privateKeyPem: string, serial: string): CredentialBundle =>
    bundleOfIssued(
      {
        certificatePem,
        serial,
        issuedAt: START.toISOString(),
        expires: new Date(START.getTime() + H).toISOString(),
        serverCaPem: here.identityPem,
        db: { service: ROUTE.service, protocol: 'postgres', uri: INTERNAL_DB_URI, serverName: 'db.internal' },
      },
      { privateKeyPem },
      ROUTE,
    );

  it('loadCredentials refuses a certificate whose public key was tampered with, or that belongs to another key', async () => {
    const bytes = der(good.certificatePem);
    // The modulus is the long run of key bytes inside the SubjectPublicKeyInfo: flip one in its middle.
    const spki = bytes.indexOf(
      Buffer.from(new X509Certificate(good.certificatePem).publicKey.export({ type: 'spki', format: 'der' })),
    );
    expect(spki).toBeGreaterThan(0);
    const tamperedKey = flipped(good.certificatePem, spki + 100);
    const serial = new X509Certificate(good.certificatePem).serialNumber.toLowerCase();
    const otherKeys = await testKeyPair(3);
    for (const bundle of [
      bundleOf(tamperedKey, good.keys.privateKeyPem, serial),
      bundleOf(good.certificatePem, otherKeys.privateKeyPem, serial),
    ]) {
      let err: unknown;
      try {
        loadCredentials(bundle);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BrokerError);
      expect((err as BrokerError).code).toBe('bad_bundle');
      expect((err as Error).message).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
    }
    // The untampered pair loads (the cases above fail for the tampering, not for the bundle shape).
    expect(loadCredentials(bundleOf(good.certificatePem, good.keys.privateKeyPem, serial)).serial).toBe(
      serial,
    );
  });
});

// ---- proofs ----------------------------------------------------------------------------------------------

describe('proofs of possession cannot be replayed elsewhere', () => {
  const requestType = fc.constantFrom('bot.renew', 'db_cert.issue', 'bot.join', 'x');
  const params = fc.jsonValue({ maxDepth: 3 });
  const at = fc.date({ min: new Date('2020-01-01'), max: new Date('2040-01-01'), noInvalidDate: true });

  it('property: a proof verifies for its own type, parameters, time and key, and for nothing else', async () => {
    const keys = await testKeyPair(0);
    const other = await testKeyPair(1);
    fc.assert(
      fc.property(requestType, requestType, params, params, at, (type, otherType, p, otherParams, when) => {
        const proof = createProof(type, p, keys.privateKeyPem, when);
        expect(verifyProof(type, p, proof, keys.publicKeyPem)).toBe(true);
        // A round trip through JSON (what every transport does) keeps it valid.
        expect(
          verifyProof(
            type,
            JSON.parse(JSON.stringify(p)),
            JSON.parse(JSON.stringify(proof)),
            keys.publicKeyPem,
          ),
        ).toBe(true);
        if (otherType !== type) expect(verifyProof(otherType, p, proof, keys.publicKeyPem)).toBe(false);
        if (JSON.stringify(otherParams) !== JSON.stringify(p))
          expect(verifyProof(type, otherParams, proof, keys.publicKeyPem)).toBe(false);
        expect(verifyProof(type, p, proof, other.publicKeyPem)).toBe(false);
        const later = new Date(when.getTime() + 1000).toISOString();
        expect(verifyProof(type, p, { ...proof, timestamp: later }, keys.publicKeyPem)).toBe(false);
        const nonce = `${proof.nonce.slice(0, -1)}${proof.nonce.endsWith('0') ? '1' : '0'}`;
        expect(verifyProof(type, p, { ...proof, nonce }, keys.publicKeyPem)).toBe(false);
      }),
      { numRuns: 60 },
    );
  });

  it('property: a proof spliced from another payload or with a mangled signature is refused without throwing', async () => {
    const keys = await testKeyPair(0);
    const good = createProof('bot.renew', { publicKeyPem: 'x' }, keys.privateKeyPem, START);
    fc.assert(
      fc.property(
        fc.record({
          timestamp: fc.oneof(fc.constant(good.timestamp), fc.string()),
          nonce: fc.oneof(fc.constant(good.nonce), fc.string()),
          signature: fc.oneof(fc.string(), fc.base64String(), fc.constant('')),
        }),
        fc.oneof(fc.constant(keys.publicKeyPem), fc.string(), fc.constant('-----BEGIN PUBLIC KEY-----\n')),
        (proof: Proof, publicKeyPem) => {
          expect(verifyProof('bot.renew', { publicKeyPem: 'x' }, proof, publicKeyPem)).toBe(
            proof.signature === good.signature &&
              proof.timestamp === good.timestamp &&
              proof.nonce === good.nonce &&
              publicKeyPem === keys.publicKeyPem,
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('through the API: a proof replayed for another request type, route, key or TTL is refused and audited', async () => {
    const ctx = await joined();
    const issueParams = { route: ROUTE, publicKeyPem: ctx.keys.publicKeyPem, ttlMs: 600_000 };
    const issueProof = createProof('db_cert.issue', issueParams, ctx.keys.privateKeyPem, ctx.clock.now());
    const renewParams = { publicKeyPem: ctx.keys.publicKeyPem };
    const renewProof = createProof('bot.renew', renewParams, ctx.keys.privateKeyPem, ctx.clock.now());
    const otherKey = await testKeyPair(4);
    let n = 0;
    const send = (type: string, params: unknown, proof: Proof) =>
      handleApiRequest(ctx.authority, {
        v: 1,
        type,
        requestId: `replay-${++n}-0000`,
        identityPem: ctx.identityPem,
        proof,
        params,
      });
    const refusals: [string, Promise<ApiResponse>][] = [
      [
        'an issue proof replayed as a renewal',
        send('renew', { publicKeyPem: ctx.keys.publicKeyPem }, issueProof),
      ],
      ['a renewal proof replayed as an issue', send('issue-db-cert', issueParams, renewProof)],
      [
        'another route',
        send('issue-db-cert', { ...issueParams, route: { ...ROUTE, username: 'bob' } }, issueProof),
      ],
      [
        'another key',
        send('issue-db-cert', { ...issueParams, publicKeyPem: otherKey.publicKeyPem }, issueProof),
      ],
      ['another TTL', send('issue-db-cert', { ...issueParams, ttlMs: 86_400_000 }, issueProof)],
      ['no TTL', send('issue-db-cert', { route: ROUTE, publicKeyPem: ctx.keys.publicKeyPem }, issueProof)],
      ['a renewal to another key', send('renew', { publicKeyPem: otherKey.publicKeyPem }, renewProof)],
    ];
    for (const [what, pending] of refusals) {
      const response = await pending;
      expect(response, what).toMatchObject({
        ok: false,
        error: { code: 'access_denied', message: 'the request signature does not match the identity key' },
      });
    }
    expect(ctx.audit.events).toHaveLength(refusals.length);
    for (const e of ctx.audit.events)
      expect(e).toMatchObject({ outcome: 'denied', reason: 'bad proof of possession' });
    // None of it counted as a stolen identity, and the genuine requests still work.
    expect(await ctx.authority.listLocks()).toEqual([]);
    expect(await send('issue-db-cert', issueParams, issueProof)).toMatchObject({ ok: true });
    expect(await send('renew', renewParams, renewProof)).toMatchObject({ ok: true });
  });
});

// ---- join tokens -----------------------------------------------------------------------------------------

describe('join tokens never appear in errors, audit events or logs', () => {
  interface Attempt {
    response: ApiResponse;
    token: string;
  }

  /** Every way a join can fail. Each returns the response and the secret it involved. */
  const paths: Record<
    string,
    (ctx: Ctx, join: (params: Record<string, unknown>) => Promise<ApiResponse>) => Promise<Attempt>
  > = {
    'an unknown token': async (_ctx, join) => {
      const token = '0123456789abcdef0123456789abcdef';
      return { token, response: await join({ joinMethod: 'token', token }) };
    },
    'a token used twice': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      expect(await join({ joinMethod: 'token', token })).toMatchObject({ ok: true });
      return { token, response: await join({ joinMethod: 'token', token }) };
    },
    'an expired token': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example', 60_000);
      ctx.clock.advance(61_000);
      return { token, response: await join({ joinMethod: 'token', token }) };
    },
    'a token of a locked bot': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      await ctx.authority.addLock('example', 'incident 42');
      return { token, response: await join({ joinMethod: 'token', token }) };
    },
    'a token of a deleted bot': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('other');
      await ctx.authority.removeResource('bot', 'other');
      return { token, response: await join({ joinMethod: 'token', token }) };
    },
    'a token with a key that is not RSA-2048': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      const response = await join({
        joinMethod: 'token',
        token,
        publicKeyPem:
          '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n',
      });
      return { token, response };
    },
    'a token with a TTL beyond the protocol limit': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      return { token, response: await join({ joinMethod: 'token', token, ttlMs: 8 * 24 * H }) };
    },
    'a token with an unknown field beside it': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      return { token, response: await join({ joinMethod: 'token', token, extra: token }) };
    },
    'a token longer than allowed': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      return { token, response: await join({ joinMethod: 'token', token: token.repeat(20) }) };
    },
    'a token sent with the iam method and no challenge': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      return { token, response: await join({ joinMethod: 'iam', token }) };
    },
    'a token sent with the iam method and a malformed challenge id': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      return {
        token,
        response: await join({ joinMethod: 'iam', token, challengeId: token.toUpperCase(), stsRequest: sts }),
      };
    },
    'a token sent with the iam method and a real challenge': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      const { challengeId } = await ctx.authority.createChallenge();
      return { token, response: await join({ joinMethod: 'iam', token, challengeId, stsRequest: sts }) };
    },
    'a token sent as the challenge id': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      return {
        token,
        response: await join({
          joinMethod: 'iam',
          token: 'example-iam',
          challengeId: token,
          stsRequest: sts,
        }),
      };
    },
    'the iam token refused by STS': async (ctx, join) => {
      const { token } = await ctx.authority.addToken('example');
      const { challengeId } = await ctx.authority.createChallenge();
      const response = await join({
        joinMethod: 'iam',
        token: 'example-iam',
        challengeId,
        stsRequest: { ...sts, body: token },
      });
      return { token, response };
    },
  };
  const sts = {
    method: 'POST',
    url: 'https://sts.us-east-1.amazonaws.com/',
    headers: { host: 'sts.us-east-1.amazonaws.com' },
    body: 'Action=GetCallerIdentity&Version=2011-06-15',
  };

  for (const [what, attempt] of Object.entries(paths)) {
    it(what, async () => {
      const ctx = await setup();
      const dir = await makeTempDir('broker-security-log-');
      const logFile = path.join(dir, 'authority.log');
      const fd = openSync(logFile, 'w');
      let result: Attempt;
      try {
        const log = createLogger({ destination: fd, level: 'debug' });
        const keys = await testKeyPair(0);
        let n = 0;
        const join = (params: Record<string, unknown>) =>
          handleApiRequest(
            ctx.authority,
            {
              v: 1,
              type: 'join',
              requestId: `join-${++n}-00000`,
              params: { publicKeyPem: keys.publicKeyPem, ...params },
            },
            log,
          );
        result = await attempt(ctx, join);
      } finally {
        closeSync(fd);
      }
      const { response, token } = result;
      expect(response.ok).toBe(false);
      if (response.ok) return;
      expect(['access_denied', 'bad_request']).toContain(response.error.code);
      expect(response.error.message.length).toBeGreaterThan(10);
      const everything = [
        JSON.stringify(response),
        JSON.stringify(ctx.audit.events),
        readFileSync(logFile, 'utf8'),
      ].join('\n');
      expect(everything).not.toContain(token);
      expect(everything.toLowerCase()).not.toContain(token.toLowerCase());
      // A refused join by a known method is audited (requests that do not parse never reach the authority).
      if (response.error.code === 'access_denied')
        expect(ctx.audit.events.some((e) => e.event === 'bot.join' && e.outcome !== 'success')).toBe(true);
    });
  }
});
