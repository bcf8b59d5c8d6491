import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { handleApiRequest } from '../src/api/handler.js';
import type { ApiResponse } from '../src/api/protocol.js';
import {
  type AuthorityBootstrapOptions,
  bootstrapAuthority,
  StdoutAuditLog,
} from '../src/authority/aws-bootstrap.js';
import type { IamJoinVerifier } from '../src/authority/iam-join.js';
import { shortLivedPrefixes } from '../src/authority/state-keys.js';
import { systemClock } from '../src/clock.js';
import * as z from '../src/config/zod.js';
import { createJsonLogger } from '../src/json-log.js';
import { DynamoDbStateStore } from '../src/state/dynamodb-store.js';
import { decodeText, lambdaEntry, once, parseEnv } from './env.js';

const envSchema = z.object({
  BROKER_TABLE_NAME: z.string().check(z.minLength(3)),
  BROKER_CA_KEY_BOT: z.string().check(z.minLength(1)),
  BROKER_CA_KEY_DB_CLIENT: z.string().check(z.minLength(1)),
  BROKER_CA_KEY_DB_SERVER: z.string().check(z.minLength(1)),
  BROKER_RESOURCES: z.string().check(z.minLength(1)),
  BROKER_CLUSTER_NAME: z._default(z.string(), 'broker'),
  /** The stack's name, in every audit line: the dimension of the AuthorityDenials metric. */
  BROKER_STACK_NAME: z.optional(z.string().check(z.minLength(1))),
  /** Each database service's client CA key, as JSON `{ "<service>": "<KMS key id>" }` (one key per db resource). */
  BROKER_DB_CLIENT_CA_KEYS: keyMap('service name'),
  /** The next key of each CA being rotated, as JSON `{ "<bot|db-server|db-client/<service>>": "<KMS key id>" }`. */
  BROKER_CA_NEXT_KEYS: keyMap('CA name'),
});

/** A JSON object of name to KMS key id, in one environment variable. */
function keyMap(what: string) {
  const json = z.transform((text: string, ctx) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      ctx.issues.push({
        code: 'custom',
        message: `is not JSON: an object of ${what} to KMS key id`,
        input: text,
      });
      return z.NEVER;
    }
  });
  return z.pipe(
    z.pipe(z._default(z.string(), '{}'), json),
    z.record(z.string(), z.string().check(z.minLength(1))),
  );
}

export interface AuthorityHandlerDeps {
  env: NodeJS.ProcessEnv;
  dynamodb: DynamoDBClient;
  kms: KMSClient;
  iamVerifier?: IamJoinVerifier;
  writeLine?: (line: string) => void;
}

/**
 * The authority Lambda: the event is one authority API request (from the bot Lambda's Invoke), the result
 * its response. Parse, call, map: everything else is in src/.
 */
export function createAuthorityHandler(deps: AuthorityHandlerDeps): (event: unknown) => Promise<ApiResponse> {
  const options = authorityOptions(deps);
  const log = createJsonLogger({ base: { component: 'authority' }, destination: 1 });
  const ready = once(() => bootstrapAuthority(options));
  return async (event) => handleApiRequest(await ready(), event, log);
}

/** The authority's configuration from the environment the stack sets (also the rotation action's). */
export function authorityOptions(deps: AuthorityHandlerDeps): AuthorityBootstrapOptions {
  const env = parseEnv(envSchema, deps.env, 'authority');
  return {
    // Remembered requests, used challenges and spent nonces expire by TTL: nothing else prunes them here.
    store: new DynamoDbStateStore(deps.dynamodb, env.BROKER_TABLE_NAME, {
      ttlPartitions: shortLivedPrefixes,
    }),
    kms: deps.kms,
    caKeyIds: {
      bot: env.BROKER_CA_KEY_BOT,
      'db-client': env.BROKER_CA_KEY_DB_CLIENT,
      'db-server': env.BROKER_CA_KEY_DB_SERVER,
    },
    dbClientCaKeyIds: env.BROKER_DB_CLIENT_CA_KEYS,
    nextCaKeyIds: env.BROKER_CA_NEXT_KEYS,
    resourcesYaml: decodeText(env.BROKER_RESOURCES),
    clusterName: env.BROKER_CLUSTER_NAME,
    audit: new StdoutAuditLog(deps.writeLine, env.BROKER_STACK_NAME ? { stack: env.BROKER_STACK_NAME } : {}),
    clock: systemClock,
    ...(deps.iamVerifier ? { iamVerifier: deps.iamVerifier } : {}),
  };
}

/**
 * The Lambda entry point, configured from the environment the stack sets. A failure (bad environment or
 * resources, bootstrap) is thrown scrubbed: the runtime prints it, and a validation error quotes values.
 */
export const handler = lambdaEntry((): ((event: unknown) => Promise<ApiResponse>) =>
  createAuthorityHandler({ env: process.env, dynamodb: new DynamoDBClient({}), kms: new KMSClient({}) }),
);
