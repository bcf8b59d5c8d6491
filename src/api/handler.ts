import { createHash } from 'node:crypto';
import type { Authority } from '../authority/authority.js';
import { BrokerError } from '../errors.js';
import type { JsonLogger as Logger } from '../log.js';
import { runOnce } from './dedupe.js';
import { API_VERSION, type ApiRequest, type ApiResponse, requestSchema } from './protocol.js';
import type { RateLimiter } from './rate-limit.js';

export interface HandleOptions {
  /** Limits the requests that carry no proof (join, challenge, ca-bundles) per caller. */
  limiter?: RateLimiter | undefined;
  /** Who is calling, for the limiter: an address, or one name for every caller of a unix socket. */
  caller?: string | undefined;
}

/** Requests that anyone may send: nothing proves who sent them. */
const UNAUTHENTICATED: ReadonlySet<ApiRequest['type']> = new Set(['join', 'challenge', 'ca-bundles']);

/**
 * Validates one API request and runs it against the authority. Every outcome becomes a response, and the
 * returned promise never rejects: errors are mapped here, in one place. A BrokerError keeps its code and
 * message (they are written to be shown to the caller and hold no secrets), anything else becomes a generic
 * `internal` error and is logged.
 */
export async function handleApiRequest(
  authority: Authority,
  raw: unknown,
  log?: Logger,
  options: HandleOptions = {},
): Promise<ApiResponse> {
  const parsed = requestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : 'request';
    return fail(
      'bad_request',
      `malformed authority API request: ${where}: ${issue?.message ?? 'invalid'} (this broker speaks API v${API_VERSION})`,
    );
  }
  const req = parsed.data;
  const wait = UNAUTHENTICATED.has(req.type) ? (options.limiter?.take(options.caller ?? '') ?? 0) : 0;
  if (wait > 0)
    return fail('rate_limited', `too many requests from this caller; retry in ${Math.ceil(wait / 1000)}s`);
  try {
    if (req.type === 'join' || req.type === 'issue-db-cert') {
      // A retried request (same id, same content) gets the first answer; see runOnce. Renewals commit their
      // answer together with the renewal (src/authority/renewal.ts), so they never come here.
      const { proof: _proof, ...content } = req as ApiRequest & { proof?: unknown };
      const digest = createHash('sha256').update(JSON.stringify(content)).digest('hex').slice(0, 32);
      const verify =
        req.type === 'issue-db-cert'
          ? () =>
              authority.verifySignedRequest({
                type: 'db_cert.issue',
                identityPem: req.identityPem,
                proof: req.proof,
                params: issueParams(req),
                requestId: req.requestId,
              })
          : undefined;
      return await runOnce(
        {
          store: authority.store,
          clock: authority.clock,
          key: `${req.requestId}.${digest}`,
          log,
          ...(verify ? { verify } : {}),
        },
        () => dispatch(authority, req, log),
      );
    }
    return await dispatch(authority, req, log);
  } catch (err) {
    return failure(err, req, log);
  }
}

/** The parameters of an issuance, in the order the client signed them. */
function issueParams(req: Extract<ApiRequest, { type: 'issue-db-cert' }>) {
  return {
    route: req.params.route,
    publicKeyPem: req.params.publicKeyPem,
    ...(req.params.ttlMs ? { ttlMs: req.params.ttlMs } : {}),
    ...(req.params.roles ? { roles: req.params.roles } : {}),
  };
}

async function dispatch(authority: Authority, req: ApiRequest, log?: Logger): Promise<ApiResponse> {
  try {
    switch (req.type) {
      case 'join':
        if (req.params.joinMethod === 'iam') {
          const { challengeId, stsRequest } = req.params;
          if (!challengeId || !stsRequest)
            throw new BrokerError(
              'bad_request',
              'an iam join needs challengeId (from a challenge request) and stsRequest (the signed sts:GetCallerIdentity request)',
            );
          return ok(
            await authority.joinWithIam({
              tokenName: req.params.token,
              challengeId,
              stsRequest,
              publicKeyPem: req.params.publicKeyPem,
              requestId: req.requestId,
              ...(req.params.ttlMs ? { ttlMs: req.params.ttlMs } : {}),
            }),
          );
        }
        return ok(
          await authority.joinWithToken({
            token: req.params.token,
            publicKeyPem: req.params.publicKeyPem,
            requestId: req.requestId,
            ...(req.params.ttlMs ? { ttlMs: req.params.ttlMs } : {}),
          }),
        );
      case 'challenge':
        return ok(await authority.createChallenge());
      case 'renew':
        return ok(
          await authority.renewIdentity({
            identityPem: req.identityPem,
            proof: req.proof,
            params: {
              publicKeyPem: req.params.publicKeyPem,
              ...(req.params.ttlMs ? { ttlMs: req.params.ttlMs } : {}),
            },
            requestId: req.requestId,
          }),
        );
      case 'issue-db-cert':
        return ok(
          await authority.issueDatabaseCertificateForIdentity({
            identityPem: req.identityPem,
            proof: req.proof,
            params: issueParams(req),
            requestId: req.requestId,
          }),
        );
      case 'ca-bundles':
        return ok({
          bot: await authority.caBundle('bot'),
          // A service's own client CA is only read here, never created: callers need no proof.
          dbClient: req.params.service
            ? await authority.dbClientCaBundle(req.params.service)
            : await authority.caBundle('db-client'),
          dbServer: await authority.caBundle('db-server'),
        });
    }
  } catch (err) {
    return failure(err, req, log);
  }
}

/** The response for an error: a BrokerError as it is, anything else as `internal` (and logged). */
function failure(err: unknown, req: ApiRequest, log?: Logger): ApiResponse {
  if (err instanceof BrokerError) {
    log?.info({ requestId: req.requestId, type: req.type, code: err.code }, err.message);
    return fail(err.code, err.message);
  }
  log?.error({ requestId: req.requestId, type: req.type, err }, 'authority request failed');
  return fail(
    'internal',
    `the authority failed to process the request (request id ${req.requestId}); see its log`,
  );
}

function ok(result: unknown): ApiResponse {
  return { v: API_VERSION, ok: true, result };
}

function fail(code: string, message: string): ApiResponse {
  return { v: API_VERSION, ok: false, error: { code, message } };
}
