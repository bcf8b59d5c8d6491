import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import type { AuditSink } from '../src/authority/audit.js';
import { Authority } from '../src/authority/authority.js';
import { StdoutAuditLog } from '../src/authority/aws-bootstrap.js';
import { NotFoundError } from '../src/authority/errors.js';
import { systemClock } from '../src/clock.js';
import * as z from '../src/config/zod.js';
import { parseDuration } from '../src/duration.js';
import { BrokerError } from '../src/errors.js';
import { kmsSignerFactory } from '../src/pki/kms-signer.js';
import { DynamoDbStateStore } from '../src/state/dynamodb-store.js';
import { lambdaEntry, parseEnv } from './env.js';

const envSchema = z.object({
  BROKER_TABLE_NAME: z.string().check(z.minLength(3)),
  /** The stack's name, in every audit line, as the authority's. */
  BROKER_STACK_NAME: z.optional(z.string().check(z.minLength(1))),
});

/**
 * `broker auth sign --format=db` as a Lambda event: the operator's machine made the server's key pair and
 * sends a PKCS#10 certificate request signed by it (`csrPem`), which proves it holds the private key; the
 * answer is the certificate from the KMS-held db-server CA for the request's public key and the event's
 * `hosts` (the request's own subject and names are ignored), and the service's client CA bundle. Never a
 * private key, in either direction.
 */
export const signServerEventSchema = z.strictObject({
  service: z.string().check(z.minLength(1), z.maxLength(253)),
  hosts: z.array(z.string().check(z.minLength(1), z.maxLength(253))).check(z.minLength(1), z.maxLength(100)),
  csrPem: z.string().check(
    z.maxLength(16_384),
    z.refine(
      (t) => !t.includes('PRIVATE KEY'),
      'is a private key: send a certificate request signed by it (BEGIN CERTIFICATE REQUEST), never the key',
    ),
  ),
  ttl: z.optional(
    z.string().check(z.refine((t) => (parseDuration(t) ?? 0) > 0, 'is not a duration such as 2190h')),
  ),
});

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
function signingAuthority(deps: SignServerDeps, tableName: string, audit: AuditSink): Authority {
  return new Authority({
    store: new DynamoDbStateStore(deps.dynamodb, tableName),
    audit,
    clock: systemClock,
    signerFactory: kmsSignerFactory(deps.kms),
    serviceCaFactory: async (service) => {
      throw new NotFoundError(
        `database service "${service}" has no client CA in the authority's state: the authority makes one at its first start for each db resource of the stack; check the name, or deploy the db resource and invoke the authority once (ca-bundles)`,
      );
    },
  });
}

const EXAMPLE_EVENT =
  '{"service":"orders-postgres","hosts":["db.internal"],"csrPem":"-----BEGIN CERTIFICATE REQUEST-----..."}';

/** Why an event is refused before it reaches the authority; names fields, never quotes their values. */
function eventProblem(event: unknown): string | undefined {
  if (event !== null && typeof event === 'object' && 'publicKeyPem' in event)
    return "publicKeyPem: a bare public key is no longer taken: send csrPem, a PKCS#10 certificate request signed by the server's key (proof that you hold it); `broker auth sign --format=db --function` makes one";
  const parsed = z.safeParse(signServerEventSchema, event);
  if (parsed.success) return undefined;
  return parsed.error.issues.map((i) => `${i.path.join('.') || 'event'}: ${i.message}`).join('; ');
}

/**
 * Parse, call, map: a server certificate for the public key of the event's certificate request, audited
 * with the request id; a refused event is audited too (without its values).
 */
export function createSignServerHandler(
  deps: SignServerDeps,
): (event: unknown, context?: { awsRequestId?: string }) => Promise<SignServerResponse> {
  const env = parseEnv(envSchema, deps.env, 'authority-sign');
  const audit = new StdoutAuditLog(
    deps.writeLine,
    env.BROKER_STACK_NAME ? { stack: env.BROKER_STACK_NAME } : {},
  );
  const authority = signingAuthority(deps, env.BROKER_TABLE_NAME, audit);
  return async (event, context) => {
    const problem = eventProblem(event);
    if (problem !== undefined) {
      const message = `bad server certificate request: ${problem}; e.g. ${EXAMPLE_EVENT}`;
      await audit.write({
        time: systemClock.now().toISOString(),
        event: 'server_cert.issue',
        outcome: 'denied',
        kind: 'db-server',
        reason: message,
        ...(context?.awsRequestId ? { requestId: context.awsRequestId } : {}),
      });
      return { ok: false, error: { code: 'bad_request', message } };
    }
    const e = z.parse(signServerEventSchema, event);
    try {
      const signed = await authority.signDatabaseServerCsr(e.hosts, e.csrPem, {
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
