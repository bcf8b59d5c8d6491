import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { bootstrapAuthority } from '../src/authority/aws-bootstrap.js';
import type { RotationOutcomeSummary } from '../src/authority/rotations.js';
import * as z from '../src/config/zod.js';
import { parseDuration } from '../src/duration.js';
import { BrokerError } from '../src/errors.js';
import { CA_TYPES } from '../src/pki/ca.js';
import { ROTATION_PHASES } from '../src/pki/ca-rotation.js';
import { caPin } from '../src/pki/parse.js';
import { type AuthorityHandlerDeps, authorityOptions } from './authority.js';
import { lambdaEntry, once } from './env.js';

/**
 * The rotation action, `broker auth rotate` as a Lambda event. It is its own function (same environment and
 * state as the authority) because the authority's own function is invoked by every bot: only operators
 * granted this one can move a CA.
 */
export const rotateEventSchema = z.strictObject({
  type: z.enum(CA_TYPES),
  service: z.optional(z.string().check(z.minLength(1))),
  phase: z._default(z.enum(ROTATION_PHASES), 'init'),
  manual: z._default(z.boolean(), false),
  gracePeriod: z.optional(
    z.string().check(z.refine((t) => (parseDuration(t) ?? 0) > 0, 'is not a duration such as 36h')),
  ),
  kmsKeyId: z.optional(z.string().check(z.minLength(1))),
});

export type RotateEvent = z.input<typeof rotateEventSchema>;

/** What the action answers: each CA moved, its phase and keys (certificates' pins and KMS key ids, no secrets). */
export type RotateResponse =
  | {
      ok: true;
      outcomes: RotationOutcomeSummary[];
    }
  | { ok: false; error: { code: string; message: string } };

/** Parse, call, map: the event is validated, the authority (bootstrapped as the API's is) rotates. */
export function createRotationHandler(
  deps: AuthorityHandlerDeps,
): (event: unknown) => Promise<RotateResponse> {
  const options = authorityOptions(deps);
  const ready = once(() => bootstrapAuthority(options));
  return async (event) => {
    const parsed = z.safeParse(rotateEventSchema, event);
    if (!parsed.success)
      return {
        ok: false,
        error: {
          code: 'bad_request',
          message: `bad rotation event: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'event'}: ${i.message}`).join('; ')}; e.g. {"type":"db-server","phase":"init","manual":true}`,
        },
      };
    const e = parsed.data;
    try {
      const outcomes = await (await ready()).rotateCa({
        type: e.type,
        service: e.service,
        phase: e.phase,
        mode: e.manual ? 'manual' : 'auto',
        gracePeriodMs: e.gracePeriod === undefined ? undefined : parseDuration(e.gracePeriod),
        kmsKeyId: e.kmsKeyId,
      });
      return {
        ok: true,
        outcomes: outcomes.map((o) => ({
          ca: o.ca,
          from: o.from,
          to: o.to,
          changed: o.changed,
          ...(o.retired ? { retired: o.retired } : {}),
          keys: o.record.keys.map((k) => ({
            pin: caPin(k.certificatePem),
            ...(k.kmsKeyId ? { kmsKeyId: k.kmsKeyId } : {}),
          })),
        })),
      };
    } catch (err) {
      if (err instanceof BrokerError) return { ok: false, error: { code: err.code, message: err.message } };
      throw err;
    }
  };
}

/** The Lambda entry point of the rotation action. */
export const handler = lambdaEntry((): ((event: unknown) => Promise<RotateResponse>) =>
  createRotationHandler({ env: process.env, dynamodb: new DynamoDBClient({}), kms: new KMSClient({}) }),
);
