import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { SignedStsRequest } from '../credentials/iam.js';
import type { BotIdentity } from '../credentials/identity.js';
import type { DatabaseRoute } from '../credentials/route.js';
import { AccessDeniedError, BrokerError, GenerationMismatchError } from '../errors.js';
import { createProof } from '../pki/proof.js';
import { AuthorityUnavailableError } from './errors.js';
import {
  API_VERSION,
  type ApiRequest,
  type ApiResponse,
  type CaBundlesResult,
  caBundlesResultSchema,
  challengeResultSchema,
  type DbCertResult,
  dbCertResultSchema,
  type IdentityResult,
  identityResultSchema,
  responseSchema,
} from './protocol.js';

/** Carries one request to the authority and its response back. Throws AuthorityUnavailableError when it cannot. */
export interface AuthorityTransport {
  send(request: ApiRequest): Promise<ApiResponse>;
  /** Where it goes, for logs and errors. */
  readonly description: string;
}

/** The bot's side of the authority API: builds requests, signs them with the identity, maps errors. */
export class AuthorityClient {
  constructor(
    private readonly transport: AuthorityTransport,
    private readonly clock: Clock,
  ) {}

  get description(): string {
    return this.transport.description;
  }

  async joinWithToken(token: string, publicKeyPem: string, ttlMs?: number): Promise<IdentityResult> {
    const result = await this.call({
      v: API_VERSION,
      type: 'join',
      requestId: randomUUID(),
      params: { joinMethod: 'token', token, publicKeyPem, ...(ttlMs ? { ttlMs } : {}) },
    });
    return identityResultSchema.parse(result);
  }

  /**
   * Joins with the `iam` method: asks for a challenge, lets `signRequest` bind it into a signed
   * sts:GetCallerIdentity request (src/bot/iam.ts), and presents that with the iam token's name.
   */
  async joinWithIam(input: {
    tokenName: string;
    publicKeyPem: string;
    signRequest: (challenge: string) => Promise<SignedStsRequest>;
    ttlMs?: number;
  }): Promise<IdentityResult> {
    const { challengeId, challenge } = challengeResultSchema.parse(
      await this.call({ v: API_VERSION, type: 'challenge', requestId: randomUUID(), params: {} }),
    );
    const stsRequest = await input.signRequest(challenge);
    const result = await this.call({
      v: API_VERSION,
      type: 'join',
      requestId: randomUUID(),
      params: {
        joinMethod: 'iam',
        token: input.tokenName,
        publicKeyPem: input.publicKeyPem,
        challengeId,
        stsRequest,
        ...(input.ttlMs ? { ttlMs: input.ttlMs } : {}),
      },
    });
    return identityResultSchema.parse(result);
  }

  /** Renews; pass the same `requestId` when retrying a renewal whose answer was lost (the authority replays it). */
  async renew(
    identity: BotIdentity,
    publicKeyPem: string,
    ttlMs?: number,
    requestId: string = randomUUID(),
  ): Promise<IdentityResult> {
    const params = { publicKeyPem, ...(ttlMs ? { ttlMs } : {}) };
    const result = await this.call({
      v: API_VERSION,
      type: 'renew',
      requestId,
      identityPem: identity.certificatePem,
      proof: createProof('bot.renew', params, identity.privateKeyPem, this.clock.now()),
      params,
    });
    return identityResultSchema.parse(result);
  }

  async issueDatabaseCertificate(
    identity: BotIdentity,
    route: DatabaseRoute,
    publicKeyPem: string,
    options: { ttlMs?: number | undefined; roles?: readonly string[] | undefined } = {},
  ): Promise<DbCertResult> {
    const { ttlMs, roles } = options;
    // The same order as the handler's issueParams: the proof signs these parameters as JSON.
    const params = {
      route,
      publicKeyPem,
      ...(ttlMs ? { ttlMs } : {}),
      ...(roles ? { roles: [...roles] } : {}),
    };
    const result = await this.call({
      v: API_VERSION,
      type: 'issue-db-cert',
      requestId: randomUUID(),
      identityPem: identity.certificatePem,
      proof: createProof('db_cert.issue', params, identity.privateKeyPem, this.clock.now()),
      params,
    });
    return dbCertResultSchema.parse(result);
  }

  async caBundles(): Promise<CaBundlesResult> {
    return caBundlesResultSchema.parse(
      await this.call({ v: API_VERSION, type: 'ca-bundles', requestId: randomUUID(), params: {} }),
    );
  }

  private async call(request: ApiRequest): Promise<unknown> {
    const raw = await this.transport.send(request);
    const parsed = responseSchema.safeParse(raw);
    if (!parsed.success)
      throw new AuthorityUnavailableError(
        `the authority at ${this.transport.description} answered with something that is not an API v${API_VERSION} response`,
      );
    const response = parsed.data;
    if (response.ok) return response.result;
    const { code, message } = response.error;
    if (code === 'access_denied') throw new AccessDeniedError(message);
    if (code === 'generation_mismatch') throw new GenerationMismatchError(message);
    // Both pass: the bot retries them later like an unreachable authority.
    if (code === 'internal' || code === 'rate_limited') throw new AuthorityUnavailableError(message);
    throw new BrokerError(code, message);
  }
}
