import { createHash } from 'node:crypto';
import type { Authority } from '../authority/authority.js';
import { BrokerError } from '../errors.js';
import type { Logger } from '../log.js';
import { runOnce } from './dedupe.js';
import { API_VERSION, type ApiRequest, type ApiResponse, requestSchema } from './protocol.js';

/**
 * Validates one API request and runs it against the authority. Every outcome becomes a response; errors
 * are mapped here, in one place: a BrokerError keeps its code and message (they are written to be shown to
 * the caller and hold no secrets), anything else becomes a generic `internal` error and is logged.
 */
export async function handleApiRequest(
  authority: Authority,
  raw: unknown,
  log?: Logger,
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
  if (req.type === 'join' || req.type === 'renew' || req.type === 'issue-db-cert') {
    // A retried request (same id, same content) gets the first answer; see runOnce.
    const { proof: _proof, ...content } = req as ApiRequest & { proof?: unknown };
    const digest = createHash('sha256').update(JSON.stringify(content)).digest('hex').slice(0, 32);
    return runOnce(authority.store, authority.clock, `${req.requestId}.${digest}`, () =>
      dispatch(authority, req, log),
    );
  }
  return dispatch(authority, req, log);
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
            params: {
              route: req.params.route,
              publicKeyPem: req.params.publicKeyPem,
              ...(req.params.ttlMs ? { ttlMs: req.params.ttlMs } : {}),
            },
            requestId: req.requestId,
          }),
        );
      case 'ca-bundles':
        return ok({
          bot: await authority.caBundle('bot'),
          dbClient: await authority.caBundle('db-client'),
          dbServer: await authority.caBundle('db-server'),
        });
    }
  } catch (err) {
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
}

function ok(result: unknown): ApiResponse {
  return { v: API_VERSION, ok: true, result };
}

function fail(code: string, message: string): ApiResponse {
  return { v: API_VERSION, ok: false, error: { code, message } };
}
