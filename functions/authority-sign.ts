import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import * as z from 'zod';
import { Authority } from '../src/authority/authority.js';
import { StdoutAuditLog } from '../src/authority/aws-bootstrap.js';
import { NotFoundError } from '../src/authority/errors.js';
import { systemClock } from '../src/clock.js';
import { parseDuration } from '../src/duration.js';
import { BrokerError } from '../src/errors.js';
import { kmsSignerFactory } from '../src/pki/kms-signer.js';
import { DynamoDbStateStore } from '../src/state/dynamodb-store.js';
import { lambdaEntry, parseEnv } from './env.js';

const envSchema = z.object({
  BROKER_TABLE_NAME: z.string().min(3),
  /** The stack's name, in every audit line, as the authority's. */
  BROKER_STACK_NAME: z.string().min(1).optional(),
});

/**
 * `broker auth sign --format=db` as a Lambda event: the operator's machine made the server's key pair and
 * sends only its public key; the answer is the certificate from the KMS-held db-server CA and the service's
 * client CA bundle. Never a private key, in either direction.
 */
export const signServerEventSchema = z
  .object({
    service: z.string().min(1).max(253),
    hosts: z.array(z.string().min(1).max(253)).min(1).max(100),
    publicKeyPem: z
      .string()
      .max(16_384)
      .refine(
        (t) => !t.includes('PRIVATE KEY'),
        'is a private key: send only the public key (BEGIN PUBLIC KEY)',
      ),
    ttl: z
      .string()
      .refine((t) => (parseDuration(t) ?? 0) > 0, 'is not a duration such as 2190h')
      .optional(),
  })
  .strict();

export type SignServerEvent = z.input<typeof signServerEventSchema>;

/** What the action answers: public material only. */
export type SignServerResponse =
  | { ok: true; certificatePem: string; clientCaPem: string; serial: string; expires: string }
  | { ok: false; error: { code: string; message: string } };

export interface SignServerDeps {
  env: NodeJS.ProcessEnv;
  dynamodb: DynamoDBClient;
  kms: KMSClient;
  writeLine?: (line: string) => void;
}

/**
 * An authority that only reads the state the authority Lambda keeps and signs with the KMS key each CA
 * record names: it creates nothing (no CA, no resources), so its role needs no more than GetItem on the
 * table and kms:Sign on the db-server CA keys.
 */
function signingAuthority(deps: SignServerDeps): Authority {
  const env = parseEnv(envSchema, deps.env, 'authority-sign');
  return new Authority({
    store: new DynamoDbStateStore(deps.dynamodb, env.BROKER_TABLE_NAME),
    audit: new StdoutAuditLog(deps.writeLine, env.BROKER_STACK_NAME ? { stack: env.BROKER_STACK_NAME } : {}),
    clock: systemClock,
    signerFactory: kmsSignerFactory(deps.kms),
    serviceCaFactory: async (service) => {
      throw new NotFoundError(
        `database service "${service}" has no client CA in the authority's state: the authority makes one at its first start for each db resource of the stack; check the name, or deploy the db resource and invoke the authority once (ca-bundles)`,
      );
    },
  });
}

/** Parse, call, map: a server certificate for the event's public key, audited with the request id. */
export function createSignServerHandler(
  deps: SignServerDeps,
): (event: unknown, context?: { awsRequestId?: string }) => Promise<SignServerResponse> {
  const authority = signingAuthority(deps);
  return async (event, context) => {
    const parsed = signServerEventSchema.safeParse(event);
    if (!parsed.success)
      return {
        ok: false,
        error: {
          code: 'bad_request',
          message: `bad server certificate request: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'event'}: ${i.message}`).join('; ')}; e.g. {"service":"orders-postgres","hosts":["db.internal"],"publicKeyPem":"-----BEGIN PUBLIC KEY-----..."}`,
        },
      };
    const e = parsed.data;
    try {
      const signed = await authority.signDatabaseServerKey(e.hosts, e.publicKeyPem, {
        service: e.service,
        ttlMs: e.ttl === undefined ? undefined : parseDuration(e.ttl),
        requestId: context?.awsRequestId,
      });
      return { ok: true, ...signed };
    } catch (err) {
      if (err instanceof BrokerError) return { ok: false, error: { code: err.code, message: err.message } };
      throw err;
    }
  };
}

/** The Lambda entry point of the server-certificate action. */
export const handler = lambdaEntry(
  (): ((event: unknown, context?: { awsRequestId?: string }) => Promise<SignServerResponse>) =>
    createSignServerHandler({ env: process.env, dynamodb: new DynamoDBClient({}), kms: new KMSClient({}) }),
);
