/**
 * What handleApiRequest asks of the authority for each request type, with which arguments; which requests
 * the rate limiter sees; and how retried joins and issuances are answered once. The authority is a
 * recording stand-in over a memory store, so each call and its arguments are visible.
 */
import { describe, expect, it } from 'vitest';
import { handleApiRequest } from '../../src/api/handler.js';
import { API_VERSION } from '../../src/api/protocol.js';
import type { RateLimiter } from '../../src/api/rate-limit.js';
import type { Authority } from '../../src/authority/authority.js';
import { ManualClock } from '../../src/clock.js';
import { AccessDeniedError } from '../../src/errors.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';

const REQUEST_ID = 'req-0123456789';
const PROOF = { timestamp: '2026-03-01T12:00:00.000Z', nonce: 'ab'.repeat(16), signature: 'c2ln' };
const ROUTE = { service: 'example-server', database: 'example', username: 'alice' };
const STS = { method: 'POST', url: 'https://sts.eu-west-1.amazonaws.com/', headers: {}, body: 'x' };

/** An authority that records each call and answers with the method's name. */
function recordingAuthority(fail?: unknown) {
  const calls: [string, unknown[]][] = [];
  const store = new MemoryStateStore();
  const clock = new ManualClock('2026-03-01T12:00:00Z');
  const handler =
    (name: string) =>
    async (...args: unknown[]) => {
      calls.push([name, args]);
      if (fail !== undefined && name !== 'verifySignedRequest') throw fail;
      return { from: name, args };
    };
  const authority = new Proxy(
    { store, clock },
    { get: (target, prop) => (prop in target ? target[prop as 'store' | 'clock'] : handler(String(prop))) },
  ) as unknown as Authority;
  return { authority, calls };
}

const request = (type: string, params: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  v: API_VERSION,
  type,
  requestId: REQUEST_ID,
  params,
  ...extra,
});

describe('handleApiRequest: dispatch', () => {
  it('a token join goes to joinWithToken with the request id, and ttlMs only when given', async () => {
    const { authority, calls } = recordingAuthority();
    const res = await handleApiRequest(
      authority,
      request('join', { joinMethod: 'token', token: 'tok', publicKeyPem: 'PEM', ttlMs: 60_000 }),
    );
    expect(res).toEqual({
      v: API_VERSION,
      ok: true,
      result: {
        from: 'joinWithToken',
        args: [{ token: 'tok', publicKeyPem: 'PEM', requestId: REQUEST_ID, ttlMs: 60_000 }],
      },
    });
    await handleApiRequest(
      authority,
      request(
        'join',
        { joinMethod: 'token', token: 'tok', publicKeyPem: 'PEM' },
        { requestId: 'req-second-01' },
      ),
    );
    expect(calls.map(([name]) => name)).toEqual(['joinWithToken', 'joinWithToken']);
    expect(calls[1]?.[1]).toEqual([{ token: 'tok', publicKeyPem: 'PEM', requestId: 'req-second-01' }]);
  });

  it('an iam join goes to joinWithIam with the challenge and the signed request', async () => {
    const { authority, calls } = recordingAuthority();
    await handleApiRequest(
      authority,
      request('join', {
        joinMethod: 'iam',
        token: 'iam-token',
        publicKeyPem: 'PEM',
        challengeId: 'ch-1',
        stsRequest: STS,
        ttlMs: 5,
      }),
    );
    expect(calls).toEqual([
      [
        'joinWithIam',
        [
          {
            tokenName: 'iam-token',
            challengeId: 'ch-1',
            stsRequest: STS,
            publicKeyPem: 'PEM',
            requestId: REQUEST_ID,
            ttlMs: 5,
          },
        ],
      ],
    ]);
  });

  it.each([
    ['no challengeId', { stsRequest: STS }],
    ['no stsRequest', { challengeId: 'ch-1' }],
    ['an empty challengeId', { challengeId: '', stsRequest: STS }],
  ])('an iam join with %s is a bad request that reaches nothing', async (_what, params) => {
    const { authority, calls } = recordingAuthority();
    const res = await handleApiRequest(
      authority,
      request('join', { joinMethod: 'iam', token: 'iam-token', publicKeyPem: 'PEM', ...params }),
    );
    expect(res).toEqual({
      v: API_VERSION,
      ok: false,
      error: {
        code: 'bad_request',
        message:
          'an iam join needs challengeId (from a challenge request) and stsRequest (the signed sts:GetCallerIdentity request)',
      },
    });
    expect(calls).toEqual([]);
  });

  it('a challenge goes to createChallenge', async () => {
    const { authority, calls } = recordingAuthority();
    const res = await handleApiRequest(authority, request('challenge', {}));
    expect(res).toMatchObject({ ok: true, result: { from: 'createChallenge' } });
    expect(calls.map(([n]) => n)).toEqual(['createChallenge']);
  });

  it('a renewal goes to renewIdentity with its proof, and ttlMs only when given', async () => {
    const { authority, calls } = recordingAuthority();
    await handleApiRequest(
      authority,
      request('renew', { publicKeyPem: 'PEM', ttlMs: 7 }, { identityPem: 'ID', proof: PROOF }),
    );
    await handleApiRequest(
      authority,
      request('renew', { publicKeyPem: 'PEM' }, { identityPem: 'ID', proof: PROOF }),
    );
    expect(calls).toEqual([
      [
        'renewIdentity',
        [
          {
            identityPem: 'ID',
            proof: PROOF,
            params: { publicKeyPem: 'PEM', ttlMs: 7 },
            requestId: REQUEST_ID,
          },
        ],
      ],
      [
        'renewIdentity',
        [{ identityPem: 'ID', proof: PROOF, params: { publicKeyPem: 'PEM' }, requestId: REQUEST_ID }],
      ],
    ]);
  });

  it('an issuance goes to issueDatabaseCertificateForIdentity with the parameters in signing order', async () => {
    const { authority, calls } = recordingAuthority();
    await handleApiRequest(
      authority,
      request(
        'issue-db-cert',
        { route: ROUTE, publicKeyPem: 'PEM', ttlMs: 9 },
        { identityPem: 'ID', proof: PROOF },
      ),
    );
    expect(calls).toEqual([
      [
        'issueDatabaseCertificateForIdentity',
        [
          {
            identityPem: 'ID',
            proof: PROOF,
            params: { route: ROUTE, publicKeyPem: 'PEM', ttlMs: 9 },
            requestId: REQUEST_ID,
          },
        ],
      ],
    ]);
    expect(Object.keys(((calls[0] as [string, unknown[]])[1][0] as { params: object }).params)).toEqual([
      'route',
      'publicKeyPem',
      'ttlMs',
    ]);
  });

  it('an issuance that names roles passes them on, last in signing order; without roles there is no key', async () => {
    const { authority, calls } = recordingAuthority();
    await handleApiRequest(
      authority,
      request(
        'issue-db-cert',
        { route: ROUTE, publicKeyPem: 'PEM', ttlMs: 9, roles: ['reader'] },
        { identityPem: 'ID', proof: PROOF },
      ),
    );
    await handleApiRequest(
      authority,
      request('issue-db-cert', { route: ROUTE, publicKeyPem: 'PEM' }, { identityPem: 'ID', proof: PROOF }),
    );
    const params = calls.map((c) => ((c as [string, unknown[]])[1][0] as { params: object }).params);
    expect(params[0]).toEqual({ route: ROUTE, publicKeyPem: 'PEM', ttlMs: 9, roles: ['reader'] });
    expect(Object.keys(params[0] as object)).toEqual(['route', 'publicKeyPem', 'ttlMs', 'roles']);
    expect(Object.keys(params[1] as object)).toEqual(['route', 'publicKeyPem']);
  });

  it('CA bundles: the shared client CA, or a service’s own when a service is named', async () => {
    const { authority, calls } = recordingAuthority();
    const all = await handleApiRequest(authority, request('ca-bundles', {}));
    expect(all).toMatchObject({
      ok: true,
      result: {
        bot: { from: 'caBundle', args: ['bot'] },
        dbClient: { from: 'caBundle', args: ['db-client'] },
        dbServer: { from: 'caBundle', args: ['db-server'] },
      },
    });
    const one = await handleApiRequest(authority, request('ca-bundles', { service: 'example-server' }));
    expect(one).toMatchObject({
      result: { dbClient: { from: 'dbClientCaBundle', args: ['example-server'] } },
    });
    expect(calls.filter(([n]) => n === 'dbClientCaBundle')).toHaveLength(1);
  });
});

describe('handleApiRequest: retried requests', () => {
  it('a retried join (same id, same content) gets the first answer without joining again', async () => {
    const { authority, calls } = recordingAuthority();
    const join = request('join', { joinMethod: 'token', token: 'tok', publicKeyPem: 'PEM' });
    const first = await handleApiRequest(authority, join);
    const second = await handleApiRequest(authority, structuredClone(join));
    expect(second).toEqual(first);
    expect(calls.map(([n]) => n)).toEqual(['joinWithToken']);
    // The same id with other content is another request.
    await handleApiRequest(
      authority,
      request('join', { joinMethod: 'token', token: 'other', publicKeyPem: 'PEM' }),
    );
    expect(calls.map(([n]) => n)).toEqual(['joinWithToken', 'joinWithToken']);
  });

  it('a retried issuance is answered once, but its proof is checked again on the retry', async () => {
    const { authority, calls } = recordingAuthority();
    const issue = request(
      'issue-db-cert',
      { route: ROUTE, publicKeyPem: 'PEM' },
      { identityPem: 'ID', proof: PROOF },
    );
    await handleApiRequest(authority, issue);
    // A retry with a fresh proof of the same content is the same request.
    await handleApiRequest(authority, { ...issue, proof: { ...PROOF, nonce: 'cd'.repeat(16) } });
    expect(calls.map(([n]) => n)).toEqual(['issueDatabaseCertificateForIdentity', 'verifySignedRequest']);
    expect(calls[1]?.[1]).toEqual([
      {
        type: 'db_cert.issue',
        identityPem: 'ID',
        proof: { ...PROOF, nonce: 'cd'.repeat(16) },
        params: { route: ROUTE, publicKeyPem: 'PEM' },
        requestId: REQUEST_ID,
      },
    ]);
  });

  it('a refused request is not remembered: a retry runs again', async () => {
    const { authority, calls } = recordingAuthority(new AccessDeniedError('no role allows it'));
    const join = request('join', { joinMethod: 'token', token: 'tok', publicKeyPem: 'PEM' });
    const first = await handleApiRequest(authority, join);
    expect(first).toEqual({
      v: API_VERSION,
      ok: false,
      error: { code: 'access_denied', message: 'no role allows it' },
    });
    await handleApiRequest(authority, join);
    expect(calls.map(([n]) => n)).toEqual(['joinWithToken', 'joinWithToken']);
  });

  it('renewals are not deduplicated here (they commit their answer with the renewal)', async () => {
    const { authority, calls } = recordingAuthority();
    const renew = request('renew', { publicKeyPem: 'PEM' }, { identityPem: 'ID', proof: PROOF });
    await handleApiRequest(authority, renew);
    await handleApiRequest(authority, renew);
    expect(calls.map(([n]) => n)).toEqual(['renewIdentity', 'renewIdentity']);
  });
});

describe('handleApiRequest: the rate limiter', () => {
  function limiter(wait: number) {
    const callers: string[] = [];
    return {
      callers,
      limiter: {
        take: (caller: string) => {
          callers.push(caller);
          return wait;
        },
      } as unknown as RateLimiter,
    };
  }

  it.each([
    ['join', request('join', { joinMethod: 'token', token: 'tok', publicKeyPem: 'PEM' })],
    ['challenge', request('challenge', {})],
    ['ca-bundles', request('ca-bundles', {})],
  ])('limits %s, an unauthenticated request, per caller', async (_type, req) => {
    const { authority, calls } = recordingAuthority();
    const l = limiter(1_200);
    const res = await handleApiRequest(authority, req, undefined, { limiter: l.limiter, caller: '10.0.0.7' });
    expect(res).toEqual({
      v: API_VERSION,
      ok: false,
      error: { code: 'rate_limited', message: 'too many requests from this caller; retry in 2s' },
    });
    expect(l.callers).toEqual(['10.0.0.7']);
    expect(calls).toEqual([]);
  });

  it('lets a request through when the limiter has no wait, and names an unknown caller ""', async () => {
    const { authority, calls } = recordingAuthority();
    const l = limiter(0);
    await handleApiRequest(authority, request('challenge', {}), undefined, { limiter: l.limiter });
    expect(l.callers).toEqual(['']);
    expect(calls.map(([n]) => n)).toEqual(['createChallenge']);
  });

  it.each([
    ['renew', request('renew', { publicKeyPem: 'PEM' }, { identityPem: 'ID', proof: PROOF })],
    [
      'issue-db-cert',
      request('issue-db-cert', { route: ROUTE, publicKeyPem: 'PEM' }, { identityPem: 'ID', proof: PROOF }),
    ],
  ])('does not limit %s, which carries a proof', async (_type, req) => {
    const { authority } = recordingAuthority();
    const l = limiter(5_000);
    const res = await handleApiRequest(authority, req, undefined, { limiter: l.limiter, caller: 'x' });
    expect(res.ok).toBe(true);
    expect(l.callers).toEqual([]);
  });
});
