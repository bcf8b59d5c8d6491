import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { handleApiRequest } from '../../src/api/handler.js';
import { API_VERSION, type ApiResponse } from '../../src/api/protocol.js';
import type { Authority } from '../../src/authority/authority.js';
import { AccessDeniedError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

const REQUEST_ID = 'req-0123456789';
const caBundles = { v: API_VERSION, type: 'ca-bundles', requestId: REQUEST_ID, params: {} };

/** An authority stand-in whose every method fails loudly: malformed requests must never reach it. */
const untouchable = new Proxy(
  {},
  {
    get(_t, prop) {
      throw new Error(`the authority was used (${String(prop)}) for a request that should have been refused`);
    },
  },
) as Authority;

function expectBadRequest(response: ApiResponse, message: RegExp): void {
  expect(response.ok).toBe(false);
  if (response.ok) return;
  expect(response.v).toBe(1);
  expect(response.error.code).toBe('bad_request');
  expect(response.error.message).toMatch(/^malformed authority API request: /);
  expect(response.error.message).toContain('this broker speaks API v1');
  expect(response.error.message).toMatch(message);
}

describe('handleApiRequest: malformed requests', () => {
  const garbage: Record<string, unknown> = {
    undefined: undefined,
    null: null,
    'a string': 'POST /v1/rpc',
    'a number': 42,
    'an array': [caBundles],
    'an empty object': {},
  };
  for (const [what, raw] of Object.entries(garbage)) {
    it(`refuses ${what}`, async () => {
      expectBadRequest(await handleApiRequest(untouchable, raw), /./);
    });
  }

  it('refuses another API version, naming the field', async () => {
    expectBadRequest(await handleApiRequest(untouchable, { ...caBundles, v: 2 }), /^[^:]+: v: /);
    expectBadRequest(await handleApiRequest(untouchable, { ...caBundles, v: '1' }), /: v: /);
  });

  it('refuses an unknown request type and lists the known ones', async () => {
    const response = await handleApiRequest(untouchable, { ...caBundles, type: 'delete-everything' });
    expectBadRequest(response, /type: .*'join' \| 'challenge' \| 'renew' \| 'issue-db-cert' \| 'ca-bundles'/);
  });

  it('refuses extra fields at the top and in params, naming them', async () => {
    expectBadRequest(await handleApiRequest(untouchable, { ...caBundles, admin: true }), /"admin"/);
    expectBadRequest(
      await handleApiRequest(untouchable, { ...caBundles, params: { everything: true } }),
      /params: .*"everything"/,
    );
  });

  it('refuses a bad request id and a renewal without its proof', async () => {
    expectBadRequest(await handleApiRequest(untouchable, { ...caBundles, requestId: 'x' }), /requestId/);
    const renew = {
      v: 1,
      type: 'renew',
      requestId: REQUEST_ID,
      identityPem: '-----BEGIN CERTIFICATE-----',
      params: { publicKeyPem: '-----BEGIN PUBLIC KEY-----' },
    };
    expectBadRequest(await handleApiRequest(untouchable, renew), /proof/);
  });

  it('never echoes a secret from a malformed request', async () => {
    const token = 'f'.repeat(600);
    const join = {
      v: 1,
      type: 'join',
      requestId: REQUEST_ID,
      params: { joinMethod: 'token', token, publicKeyPem: 'pem' },
    };
    const response = await handleApiRequest(untouchable, join);
    expectBadRequest(response, /params\.token/);
    expect(JSON.stringify(response)).not.toContain('ffffffffffffffff');
  });
});

describe('handleApiRequest: errors from the authority', () => {
  const secretDetail =
    'EACCES: open /var/lib/broker/state/data/cas/db-client.json -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----';

  function failingAuthority(error: unknown): Authority {
    return {
      caBundle: async () => {
        throw error;
      },
    } as unknown as Authority;
  }

  it('turns an unexpected error into `internal` with the request id and no details, and logs it redacted', async () => {
    const dir = await makeTempDir();
    const logFile = path.join(dir, 'log.jsonl');
    const fd = openSync(logFile, 'w');
    let response: ApiResponse;
    try {
      const log = createLogger({ destination: fd, level: 'info' });
      response = await handleApiRequest(failingAuthority(new Error(secretDetail)), caBundles, log);
    } finally {
      closeSync(fd);
    }
    expect(response).toEqual({
      v: 1,
      ok: false,
      error: {
        code: 'internal',
        message: `the authority failed to process the request (request id ${REQUEST_ID}); see its log`,
      },
    });
    const lines = readFileSync(logFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const entry = lines.find((l) => l.requestId === REQUEST_ID);
    expect(entry).toMatchObject({ level: 'error', type: 'ca-bundles', err: { type: 'Error' } });
    // The operator sees what failed; the key in the message does not reach the log.
    expect(JSON.stringify(entry)).toContain('EACCES');
    expect(JSON.stringify(entry)).not.toContain('MIIE');
  });

  it('maps a thrown non-Error to `internal` too', async () => {
    const response = await handleApiRequest(failingAuthority('boom: secret'), caBundles);
    expect(response).toMatchObject({ ok: false, error: { code: 'internal' } });
    expect(JSON.stringify(response)).not.toContain('secret');
  });

  it('passes a broker error on with its code and message, which are written for the caller', async () => {
    const response = await handleApiRequest(
      failingAuthority(new AccessDeniedError('bot "example" is locked (generation mismatch)')),
      caBundles,
    );
    expect(response).toEqual({
      v: 1,
      ok: false,
      error: { code: 'access_denied', message: 'bot "example" is locked (generation mismatch)' },
    });
  });
});
