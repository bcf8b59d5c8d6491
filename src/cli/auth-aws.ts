/**
 * The AWS mode of `broker auth sign --format=db` and `broker auth rotate`: each invokes one of the stack's
 * operator actions (functions/authority-sign.ts, functions/authority-rotate.ts) with the AWS SDK's usual
 * configuration, and turns every way an Invoke can fail into a message that says what to do.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { RotationOutcomeSummary } from '../authority/rotations.js';
import { ConfigError } from '../config/errors.js';
import { createCsr } from '../pki/csr.js';
import { generateRsaKeyPair } from '../pki/keys.js';

/** Which of the stack's operator actions to invoke: its function name (or ARN) and, optionally, region. */
export interface ActionTarget {
  function: string;
  region?: string | undefined;
}

interface ActionKind {
  /** "server certificate function", "rotation function". */
  label: string;
  /** What to do when it does not exist. */
  missing: string;
  /** What grants the right to invoke it. */
  grant: string;
}

const SIGN: ActionKind = {
  label: 'server certificate function',
  missing:
    'deploy the stack with -c dbServerCertificates=true (its output DbServerCertFunctionName names the function)',
  grant: 'DbServerCertificates.grantSign',
};
const ROTATE: ActionKind = {
  label: 'rotation function',
  missing:
    'deploy the stack with -c nextCaKeys=<ca>,… (its output RotationFunctionName names the function); check the name and --region',
  grant: 'CaRotation.grantRotate',
};

/** What an AWS SDK failure means for an operator, by error name. */
function hintFor(name: string, kind: ActionKind): string {
  switch (name) {
    case 'ResourceNotFoundException':
      return `; ${kind.missing}`;
    case 'AccessDeniedException':
    case 'AccessDenied':
      return `; your role needs lambda:InvokeFunction on it (${kind.grant})`;
    case 'CredentialsProviderError':
      return '; the AWS SDK found no credentials: set AWS_PROFILE (after `aws sso login` or `aws configure`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY';
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
    case 'ExpiredTokenException':
      return '; the AWS credentials were refused: refresh them (`aws sso login`) or check AWS_PROFILE';
    case 'TooManyRequestsException':
      return '; Lambda throttled the call: try again in a moment';
    default:
      return '';
  }
}

/** Invokes an action synchronously; returns its parsed JSON answer, or throws a ConfigError that says why. */
async function invokeAction(target: ActionTarget, kind: ActionKind, payload: unknown): Promise<unknown> {
  const client = new LambdaClient({ ...(target.region ? { region: target.region } : {}), maxAttempts: 2 });
  let text: string;
  try {
    const out = await client.send(
      new InvokeCommand({
        FunctionName: target.function,
        InvocationType: 'RequestResponse',
        Payload: Buffer.from(JSON.stringify(payload)),
      }),
    );
    text = out.Payload ? Buffer.from(out.Payload).toString('utf8') : '';
    if (out.FunctionError) throw new ConfigError(functionErrorMessage(target, kind, out.FunctionError, text));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const e = err as Error;
    const message = /region is missing/i.test(e.message)
      ? `${e.message}; pass --region or set AWS_REGION`
      : `${e.message}${hintFor(e.name, kind)}`;
    throw new ConfigError(`cannot invoke the ${kind.label} ${target.function}: ${e.name}: ${message}`, {
      cause: err,
    });
  } finally {
    client.destroy();
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError(`the ${kind.label} ${target.function} returned something that is not JSON`);
  }
}

/**
 * A function error (the handler threw, timed out or ran out of memory): Lambda answers 200 with
 * X-Amz-Function-Error and the runtime's `{errorType, errorMessage}`, which is shown (shortened).
 */
function functionErrorMessage(target: ActionTarget, kind: ActionKind, type: string, body: string): string {
  let detail = '';
  try {
    const e = JSON.parse(body) as { errorType?: unknown; errorMessage?: unknown };
    const text = [e.errorType, e.errorMessage].filter((v) => typeof v === 'string').join(': ');
    if (text) detail = `: ${text.length > 300 ? `${text.slice(0, 300)}…` : text}`;
  } catch {
    // No JSON: the type alone.
  }
  return `the ${kind.label} ${target.function} failed (${type})${detail}; see its CloudWatch logs (log group /aws/lambda/${target.function})`;
}

/** An action's refusal: `{ ok: false, error: { code, message } }`. */
function refusal(res: unknown): string | undefined {
  const r = res as { ok?: unknown; error?: { message?: unknown } } | null;
  if (r && r.ok === false) return typeof r.error?.message === 'string' ? r.error.message : 'refused';
  return undefined;
}

/** What `auth sign` writes: the server certificate, its key and the service's client CA. */
export interface ServerFiles {
  certificatePem: string;
  privateKeyPem: string;
  clientCaPem: string;
  serial: string;
  expires: string;
}

/**
 * `auth sign --format=db --function`: the key pair is made here, on the operator's machine, and a PKCS#10
 * request signed by it goes to the server certificate action, which checks the signature (proof that this
 * machine holds the key) and signs the request's public key with the KMS-held db-server CA for `hosts`. The
 * private key never leaves this process except into PREFIX.key.
 */
export async function signWithLambda(
  target: ActionTarget,
  request: { service: string; hosts: string[]; ttl: string },
): Promise<ServerFiles> {
  const keys = await generateRsaKeyPair();
  const csrPem = createCsr(keys.privateKeyPem, request.hosts[0] as string);
  const res = (await invokeAction(target, SIGN, { ...request, csrPem })) as Partial<ServerFiles>;
  const refused = refusal(res);
  if (refused !== undefined) throw new ConfigError(`${target.function} refused: ${refused}`);
  if (![res.certificatePem, res.clientCaPem, res.serial, res.expires].every((v) => typeof v === 'string'))
    throw new ConfigError(`the ${SIGN.label} ${target.function} answered without a certificate`);
  return { ...(res as ServerFiles), privateKeyPem: keys.privateKeyPem };
}

/** One CA the rotation action moved (functions/authority-rotate.ts). */
export type AwsRotationOutcome = RotationOutcomeSummary;

/** The rotation action's event (functions/authority-rotate.ts `rotateEventSchema`). */
export interface AwsRotateEvent {
  type: string;
  service?: string | undefined;
  phase: string;
  manual: boolean;
  gracePeriod?: string | undefined;
  kmsKeyId?: string | undefined;
}

/** `auth rotate --function`: one invocation of the rotation action; its outcomes, or why it refused. */
export async function rotateWithLambda(
  target: ActionTarget,
  event: AwsRotateEvent,
): Promise<AwsRotationOutcome[]> {
  const res = (await invokeAction(target, ROTATE, event)) as { outcomes?: unknown };
  const refused = refusal(res);
  if (refused !== undefined) throw new ConfigError(`${target.function} refused: ${refused}`);
  if (!Array.isArray(res?.outcomes))
    throw new ConfigError(`the ${ROTATE.label} ${target.function} answered without outcomes`);
  return res.outcomes as AwsRotationOutcome[];
}

/** `db-server CA: init -> update_clients; keys: sha256:… (KMS key …), …`, or that it already was there. */
export function describeAwsOutcome(o: AwsRotationOutcome): string {
  const keys = o.keys.map((k) => `${k.pin}${k.kmsKeyId ? ` (KMS key ${k.kmsKeyId})` : ''}`).join(', ');
  const moved = o.changed ? `${o.from} -> ${o.to}` : `already in phase ${o.to}`;
  const retired = o.retired ? `; the key that left it: ${o.retired}` : '';
  return `${o.ca} CA: ${moved}${retired}; keys: ${keys}`;
}
