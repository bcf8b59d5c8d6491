/**
 * AWS plumbing shared by the destination, the bot's identity store, the proxy's bundle source and the Lambda
 * client: throttling retries, error text, idempotent version tokens and AWSCURRENT reads of a secret.
 */
import { createHash } from 'node:crypto';
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { BrokerError, errorMessage } from '../errors.js';

/** A Secrets Manager call failed for another reason than "no such secret". */
export class SecretReadError extends BrokerError {
  override name = 'SecretReadError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('destination', message, options);
  }
}

/** Secrets Manager's limit on one SecretString, in UTF-8 bytes. */
export const SECRET_VALUE_MAX_BYTES = 65_536;

const CURRENT = 'AWSCURRENT';

/** How throttled calls are retried. Delays are "full jitter": random() × min(maxDelayMs, baseDelayMs × 2^n). */
export interface RetryOptions {
  /** Attempts per call, the first included; default 5. */
  maxAttempts?: number;
  /** Default 200 ms. */
  baseDelayMs?: number;
  /** Default 5 s. */
  maxDelayMs?: number;
  /** Injected in tests so that back-off takes no time. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

const THROTTLING = new Set([
  'ThrottlingException',
  'TooManyRequestsException',
  'Throttling',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
]);

/** True for the errors AWS returns when it did not process a request because of its rate limits. */
export function isThrottling(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return THROTTLING.has(e?.name ?? '') || e?.$metadata?.httpStatusCode === 429;
}

/** Runs `call`, retrying throttling errors only: AWS did not act on those, so repeating one is always safe. */
export async function withThrottlingRetry<T>(call: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  const base = options.baseDelayMs ?? 200;
  const cap = options.maxDelayMs ?? 5_000;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const random = options.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!isThrottling(err)) throw err;
      if (attempt >= maxAttempts) throw new ThrottledError(attempt, err);
      await sleep(Math.floor(random() * Math.min(cap, base * 2 ** (attempt - 1))));
    }
  }
}

/** Every attempt of a call was throttled. */
export class ThrottledError extends BrokerError {
  override name = 'ThrottledError';
  constructor(
    readonly attempts: number,
    cause: unknown,
  ) {
    super('throttled', `throttled by AWS ${attempts} times in a row (${awsErrorText(cause)})`, { cause });
  }
}

/** `Name: message` of an AWS service error, else the message; AWS error messages carry no secret values. */
export function awsErrorText(err: unknown): string {
  const e = err as { name?: string; message?: string; $metadata?: unknown } | undefined;
  return e?.$metadata && e.name ? `${e.name}: ${e.message ?? ''}` : errorMessage(err);
}

export const awsName = (err: unknown) => (err as { name?: string } | undefined)?.name;

/**
 * The ClientRequestToken (the version id) of one write: a UUID-shaped (RFC 9562 version 8) hash of the
 * purpose, the secret id and what identifies the write. The same renewal always gets the same token, so a
 * retry after a lost response is recognised by Secrets Manager instead of creating a second version. Use
 * one spelling of the secret id (name or ARN) per secret.
 */
export function versionToken(purpose: string, secretId: string, discriminator: string): string {
  const h = createHash('sha256').update(`${purpose}\0${secretId}\0${discriminator}`).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x80;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The AWSCURRENT SecretString of a secret, or undefined when the secret or its AWSCURRENT version does not
 * exist (nothing written yet). Other failures throw SecretReadError naming the secret.
 */
export async function readSecretString(
  client: SecretsManagerClient,
  secretId: string,
  retry: RetryOptions = {},
  versionId?: string,
): Promise<string | undefined> {
  try {
    const got = await withThrottlingRetry(
      () =>
        client.send(
          new GetSecretValueCommand({
            SecretId: secretId,
            ...(versionId ? { VersionId: versionId } : { VersionStage: CURRENT }),
          }),
        ),
      retry,
    );
    if (got.SecretString === undefined)
      throw new SecretReadError(`secret ${secretId} holds binary data, not a JSON document`);
    return got.SecretString;
  } catch (err) {
    if (awsName(err) === 'ResourceNotFoundException') return undefined;
    if (err instanceof SecretReadError) throw err;
    throw new SecretReadError(`could not read secret ${secretId}: ${awsErrorText(err)}`, { cause: err });
  }
}
