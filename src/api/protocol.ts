import * as z from '../config/zod.js';

/**
 * The authority API, version 1: JSON request/response messages, the same over every transport (in-process,
 * unix socket or loopback HTTPS, Lambda Invoke). Requests that act for a bot carry the bot's identity
 * certificate and a proof signed with its key (see src/authority/proof.ts), since a transport such as
 * Lambda Invoke says nothing about its caller.
 */
export const API_VERSION = 1;

const pem = z.string().check(z.minLength(1), z.maxLength(16_384));
const proof = z.strictObject({
  timestamp: z.string().check(z.maxLength(64)),
  nonce: z.string().check(z.regex(/^[0-9a-f]{32}$/)),
  signature: z.string().check(z.maxLength(1024)),
});
// It becomes part of a state key (the dedupe record), whose segments must start with a letter or digit.
const requestId = z
  .string()
  .check(
    z.regex(
      /^[A-Za-z0-9][A-Za-z0-9-]{7,63}$/,
      'must be 8-64 letters, digits and "-", starting with a letter or digit',
    ),
  );
const ttlMs = z.optional(z.number().check(z.int(), z.positive(), z.maximum(7 * 24 * 3_600_000)));
const name = z.string().check(z.minLength(1), z.maxLength(253));

// An empty database is a route without a database name (an output that leaves it out); the roles decide.
export const routeSchema = z.strictObject({
  service: name,
  database: z.string().check(z.maxLength(253)),
  username: name,
});

export const requestSchema = z.discriminatedUnion('type', [
  z.strictObject({
    v: z.literal(API_VERSION),
    type: z.literal('join'),
    requestId,
    params: z.strictObject({
      joinMethod: z.enum(['token', 'iam']),
      token: z.string().check(z.minLength(1), z.maxLength(512)),
      publicKeyPem: pem,
      ttlMs,
      challengeId: z.optional(z.string().check(z.maxLength(128))),
      stsRequest: z.optional(
        z.strictObject({
          method: z.string().check(z.maxLength(16)),
          url: z.string().check(z.maxLength(2048)),
          headers: z.record(z.string().check(z.maxLength(64)), z.string().check(z.maxLength(4096))),
          body: z.string().check(z.maxLength(4096)),
        }),
      ),
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
    // roles: the subset of the bot's roles to evaluate and put in the certificate (tbot's output `roles`).
    params: z.strictObject({
      route: routeSchema,
      publicKeyPem: pem,
      ttlMs,
      roles: z.optional(z.array(name).check(z.maxLength(64))),
    }),
  }),
  z.strictObject({
    v: z.literal(API_VERSION),
    type: z.literal('ca-bundles'),
    requestId,
    /** With `service`, `dbClient` is that database service's own client CA (what its database trusts). */
    params: z.strictObject({ service: z.optional(name) }),
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
  generation: z.number().check(z.int()),
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
