import * as z from 'zod';

/**
 * The authority API, version 1: JSON request/response messages, the same over every transport (in-process,
 * unix socket or loopback HTTPS, Lambda Invoke). Requests that act for a bot carry the bot's identity
 * certificate and a proof signed with its key (see src/authority/proof.ts), since a transport such as
 * Lambda Invoke says nothing about its caller.
 */
export const API_VERSION = 1;

const pem = z.string().min(1).max(16_384);
const proof = z.strictObject({
  timestamp: z.string().max(64),
  nonce: z.string().regex(/^[0-9a-f]{32}$/),
  signature: z.string().max(1024),
});
// It becomes part of a state key (the dedupe record), whose segments must start with a letter or digit.
const requestId = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9-]{7,63}$/,
    'must be 8-64 letters, digits and "-", starting with a letter or digit',
  );
const ttlMs = z
  .number()
  .int()
  .positive()
  .max(7 * 24 * 3_600_000)
  .optional();
const name = z.string().min(1).max(253);

// An empty database is a route without a database name (an output that leaves it out); the roles decide.
export const routeSchema = z.strictObject({ service: name, database: z.string().max(253), username: name });

export const requestSchema = z.discriminatedUnion('type', [
  z.strictObject({
    v: z.literal(API_VERSION),
    type: z.literal('join'),
    requestId,
    params: z.strictObject({
      joinMethod: z.enum(['token', 'iam']),
      token: z.string().min(1).max(512),
      publicKeyPem: pem,
      ttlMs,
      challengeId: z.string().max(128).optional(),
      stsRequest: z
        .strictObject({
          method: z.string().max(16),
          url: z.string().max(2048),
          headers: z.record(z.string().max(64), z.string().max(4096)),
          body: z.string().max(4096),
        })
        .optional(),
    }),
  }),
  z.strictObject({
    v: z.literal(API_VERSION),
    type: z.literal('challenge'),
    requestId,
    params: z.strictObject({}),
  }),
  z.strictObject({
    v: z.literal(API_VERSION),
    type: z.literal('renew'),
    requestId,
    identityPem: pem,
    proof,
    params: z.strictObject({ publicKeyPem: pem, ttlMs }),
  }),
  z.strictObject({
    v: z.literal(API_VERSION),
    type: z.literal('issue-db-cert'),
    requestId,
    identityPem: pem,
    proof,
    params: z.strictObject({ route: routeSchema, publicKeyPem: pem, ttlMs }),
  }),
  z.strictObject({
    v: z.literal(API_VERSION),
    type: z.literal('ca-bundles'),
    requestId,
    /** With `service`, `dbClient` is that database service's own client CA (what its database trusts). */
    params: z.strictObject({ service: name.optional() }),
  }),
]);

export type ApiRequest = z.infer<typeof requestSchema>;
export type ApiRequestType = ApiRequest['type'];

export interface ApiErrorBody {
  code: string;
  message: string;
}

export type ApiResponse = { v: 1; ok: true; result: unknown } | { v: 1; ok: false; error: ApiErrorBody };

export const responseSchema = z.union([
  z.strictObject({ v: z.literal(API_VERSION), ok: z.literal(true), result: z.unknown() }),
  z.strictObject({
    v: z.literal(API_VERSION),
    ok: z.literal(false),
    error: z.strictObject({ code: z.string(), message: z.string() }),
  }),
]);

export const identityResultSchema = z.object({
  certificatePem: pem,
  serial: z.string(),
  generation: z.number().int(),
  expires: z.string(),
  botCaPem: z.string(),
});

export const dbCertResultSchema = z.object({
  certificatePem: pem,
  serial: z.string(),
  issuedAt: z.string(),
  expires: z.string(),
  serverCaPem: z.string(),
  db: z.object({
    service: z.string(),
    protocol: z.enum(['postgres', 'cockroachdb', 'mysql', 'mongodb', 'redis']),
    uri: z.string(),
    serverName: z.string(),
  }),
});

export const caBundlesResultSchema = z.object({
  bot: z.string(),
  dbClient: z.string(),
  dbServer: z.string(),
});
export const challengeResultSchema = z.object({
  challengeId: z.string(),
  challenge: z.string(),
  expires: z.string(),
});

export type IdentityResult = z.infer<typeof identityResultSchema>;
export type DbCertResult = z.infer<typeof dbCertResultSchema>;
export type CaBundlesResult = z.infer<typeof caBundlesResultSchema>;
