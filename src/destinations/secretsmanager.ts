/**
 * The `secretsmanager` destination (DESIGN.md §4): one secret per output holding the JSON credential bundle,
 * switched with version stages so that a reader of AWSCURRENT always gets a complete, checked bundle:
 *
 *   1. check the bundle locally (key matches certificate, schema, 64 KiB limit): no AWS call when it fails;
 *   2. PutSecretValue as AWSPENDING with a ClientRequestToken derived from the secret and the certificate
 *      serial, so a retried renewal finds its own version instead of creating another;
 *   3. read that version back and parse it; run the output's optional test connection with it (on a secret
 *      without any version yet AWS makes the first version AWSCURRENT at once, so there the test can only
 *      fail the write, not hold the bundle back);
 *   4. move AWSCURRENT to it (AWS labels the old one AWSPREVIOUS, which stays readable until it expires);
 *   5. take AWSPENDING off it.
 *
 * A failure before step 4 leaves AWSCURRENT where it was. Throttling is retried with capped exponential
 * back-off and full jitter, on top of the SDK's own retries.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  type SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { z } from 'zod';
import type { BotIdentity } from '../api/client.js';
import type { IdentityStore } from '../bot/identity-store.js';
import { BrokerError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { checkBundleKeyPair, parseBundle, serializeBundle } from './bundle.js';
import type { CredentialBundle, Destination } from './destination.js';
import { DestinationError } from './directory.js';

/** Secrets Manager's limit on one SecretString, in UTF-8 bytes. */
export const SECRET_VALUE_MAX_BYTES = 65_536;

const CURRENT = 'AWSCURRENT';
const PENDING = 'AWSPENDING';

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

const awsName = (err: unknown) => (err as { name?: string } | undefined)?.name;

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

/** The version id holding `stage`, from DescribeSecret's VersionIdsToStages. */
function holderOf(stages: Record<string, string[]> | undefined, stage: string): string | undefined {
  return Object.entries(stages ?? {}).find(([, labels]) => labels.includes(stage))?.[0];
}

export interface SecretsManagerDestinationOptions {
  client: SecretsManagerClient;
  /** Secret name or ARN. */
  secretId: string;
  /**
   * The output's test_connection: called with the staged bundle before it is promoted; a rejection keeps
   * AWSCURRENT on the previous version.
   */
  testConnection?: (bundle: CredentialBundle) => Promise<void>;
  /**
   * Create the secret (without a value) when it does not exist. Off by default: in AWS the stack creates
   * one secret per output with its own KMS key, and the bot is not allowed to create secrets.
   */
  createIfMissing?: boolean;
  retry?: RetryOptions;
  log?: Logger;
}

/** Writes database outputs to a Secrets Manager secret with AWSPENDING → AWSCURRENT promotion. */
export class SecretsManagerDestination implements Destination {
  readonly description: string;
  readonly secretId: string;
  private readonly client: SecretsManagerClient;

  constructor(private readonly options: SecretsManagerDestinationOptions) {
    if (!options.secretId) throw new DestinationError('the secretsmanager destination needs a secret name');
    this.client = options.client;
    this.secretId = options.secretId;
    this.description = `secretsmanager ${options.secretId}`;
  }

  private call<T>(make: () => Promise<T>): Promise<T> {
    return withThrottlingRetry(make, this.options.retry);
  }

  async write(bundle: CredentialBundle): Promise<void> {
    const secret = `secret ${this.secretId}`;
    const refuse = (why: string, cause?: unknown) =>
      new DestinationError(
        `refusing to write serial ${bundle.serial} to ${secret}: ${why}; nothing was sent and AWSCURRENT is unchanged`,
        { cause },
      );
    let text: string;
    try {
      text = serializeBundle(bundle);
      checkBundleKeyPair(bundle);
    } catch (err) {
      throw refuse(errorMessage(err), err);
    }
    const size = Buffer.byteLength(text, 'utf8');
    if (size > SECRET_VALUE_MAX_BYTES)
      throw refuse(
        `the bundle is ${size} bytes of JSON, over the Secrets Manager limit of ${SECRET_VALUE_MAX_BYTES} bytes per secret value (look for oversized CA bundles or extra files)`,
      );

    let step = 'PutSecretValue (stage AWSPENDING)';
    let versionId = versionToken('database-credentials', this.secretId, bundle.serial);
    let previous: string | undefined;
    try {
      versionId = await this.putPending(text, versionId);

      step = 'GetSecretValue (read back the staged version)';
      const staged = await this.call(() =>
        this.client.send(new GetSecretValueCommand({ SecretId: this.secretId, VersionId: versionId })),
      );
      if (staged.SecretString !== text)
        throw new DestinationError(`version ${versionId} does not hold the bundle that was just written`);
      const parsed = parseBundle(staged.SecretString, `the staged version ${versionId}`);

      step = 'DescribeSecret';
      const described = await this.call(() =>
        this.client.send(new DescribeSecretCommand({ SecretId: this.secretId })),
      );
      const stages = described.VersionIdsToStages ?? {};
      previous = holderOf(stages, CURRENT);
      const own = stages[versionId] ?? [];
      if (previous !== versionId && !own.includes(PENDING))
        // A retry that arrives after a newer renewal: the version exists (PutSecretValue ignored the repeat)
        // but is AWSPREVIOUS or deprecated now. Promoting it would move readers back to older credentials.
        throw new DestinationError(
          `version ${versionId} was already written and has since been superseded (stages: ${own.join(', ') || 'none'}); not promoting an older bundle`,
        );

      if (this.options.testConnection) {
        step = 'test connection';
        await this.options.testConnection(parsed);
      }

      if (previous !== versionId) {
        step = 'UpdateSecretVersionStage (promote to AWSCURRENT)';
        await this.call(() =>
          this.client.send(
            new UpdateSecretVersionStageCommand({
              SecretId: this.secretId,
              VersionStage: CURRENT,
              MoveToVersionId: versionId,
              ...(previous ? { RemoveFromVersionId: previous } : {}),
            }),
          ),
        );
      }
      if (own.includes(PENDING)) await this.dropPending(versionId);
    } catch (err) {
      const lost =
        step.startsWith('UpdateSecretVersionStage') &&
        (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === undefined &&
        !(err instanceof ThrottledError);
      const state = lost
        ? 'it is unknown whether AWSCURRENT moved (no answer from AWS); the next renewal settles it'
        : previous === versionId
          ? `AWSCURRENT already holds this bundle (version ${versionId}: a retry, or the secret's first version, which AWS makes current at once)`
          : `AWSCURRENT is unchanged${previous ? ` (still version ${previous})` : ''}`;
      throw new DestinationError(
        `could not write serial ${bundle.serial} to ${secret}: ${step} failed: ${awsErrorText(err)}; ${state}`,
        { cause: err },
      );
    }
    this.options.log?.info(
      { secret: this.secretId, serial: bundle.serial, versionId, previous },
      'promoted the new bundle to AWSCURRENT',
    );
  }

  /** PutSecretValue as AWSPENDING (creating the secret first if allowed); returns the version id. */
  private async putPending(text: string, token: string): Promise<string> {
    const put = () =>
      this.call(() =>
        this.client.send(
          new PutSecretValueCommand({
            SecretId: this.secretId,
            SecretString: text,
            ClientRequestToken: token,
            VersionStages: [PENDING],
          }),
        ),
      );
    try {
      return (await put()).VersionId ?? token;
    } catch (err) {
      if (awsName(err) === 'ResourceExistsException')
        throw new DestinationError(
          `version ${token} (this serial's request token) already holds a different bundle; a certificate serial must not be reused`,
          { cause: err },
        );
      if (awsName(err) !== 'ResourceNotFoundException') throw err;
      if (!this.options.createIfMissing)
        throw new DestinationError(
          `the secret does not exist (${awsErrorText(err)}); create it first (the CDK stack creates one per output) or set createIfMissing`,
          { cause: err },
        );
      await this.call(() => this.client.send(new CreateSecretCommand({ Name: this.secretId }))).catch(
        (e: unknown) => {
          if (awsName(e) !== 'ResourceExistsException') throw e; // created meanwhile: fine
        },
      );
      return (await put()).VersionId ?? token;
    }
  }

  /** Takes AWSPENDING off a promoted version. Only cosmetic once AWSCURRENT moved, so a failure is a warning. */
  private async dropPending(versionId: string): Promise<void> {
    try {
      await this.call(() =>
        this.client.send(
          new UpdateSecretVersionStageCommand({
            SecretId: this.secretId,
            VersionStage: PENDING,
            RemoveFromVersionId: versionId,
          }),
        ),
      );
    } catch (err) {
      this.options.log?.warn(
        { secret: this.secretId, versionId, err },
        `the new bundle is AWSCURRENT but AWSPENDING could not be removed from it: ${awsErrorText(err)}`,
      );
    }
  }

  async read(): Promise<CredentialBundle | undefined> {
    const text = await readSecretString(this.client, this.secretId, this.options.retry);
    return text === undefined
      ? undefined
      : parseBundle(text, `the AWSCURRENT bundle in secret ${this.secretId}`);
  }
}

/**
 * The AWSCURRENT SecretString of a secret, or undefined when the secret or its AWSCURRENT version does not
 * exist (nothing written yet). Other failures throw DestinationError naming the secret.
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
      throw new DestinationError(`secret ${secretId} holds binary data, not a JSON document`);
    return got.SecretString;
  } catch (err) {
    if (awsName(err) === 'ResourceNotFoundException') return undefined;
    if (err instanceof DestinationError) throw err;
    throw new DestinationError(`could not read secret ${secretId}: ${awsErrorText(err)}`, { cause: err });
  }
}

const identitySchema = z.object({
  certificatePem: z.string().min(1),
  privateKeyPem: z.string().min(1),
  generation: z.number().int().positive(),
  expires: z.string(),
  botCaPem: z.string(),
});

/**
 * Keeps the bot identity in a Secrets Manager secret (bot `storage: { type: secretsmanager }`). Each save is
 * one PutSecretValue, which makes the new version AWSCURRENT atomically and the old one AWSPREVIOUS; the
 * request token is derived from the generation and the certificate, so a retried save is idempotent.
 */
export class SecretsManagerIdentityStore implements IdentityStore {
  readonly description: string;

  constructor(
    private readonly options: {
      client: SecretsManagerClient;
      secretId: string;
      createIfMissing?: boolean;
      retry?: RetryOptions;
    },
  ) {
    this.description = `secretsmanager ${options.secretId}`;
  }

  async load(): Promise<BotIdentity | undefined> {
    const { client, secretId, retry } = this.options;
    const text = await readSecretString(client, secretId, retry);
    if (text === undefined) return undefined;
    const corrupt = (why: string) =>
      new BrokerError(
        'bad_identity',
        `the bot identity in secret ${secretId} is unusable (${why}); delete its AWSCURRENT value or join again with a new token (broker tokens add --type=bot --bot NAME)`,
      );
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw corrupt('not JSON');
    }
    const result = identitySchema.safeParse(value);
    if (!result.success)
      throw corrupt(`bad ${result.error.issues.map((i) => i.path.join('.') || '(document)').join(', ')}`);
    try {
      if (
        !new X509Certificate(result.data.certificatePem).checkPrivateKey(
          createPrivateKey(result.data.privateKeyPem),
        )
      )
        throw corrupt('the key does not match the certificate');
    } catch (err) {
      if (err instanceof BrokerError) throw err;
      throw corrupt('the certificate or key does not parse');
    }
    return result.data;
  }

  async save(identity: BotIdentity): Promise<void> {
    const { client, secretId, retry } = this.options;
    const text = JSON.stringify({
      certificatePem: identity.certificatePem,
      privateKeyPem: identity.privateKeyPem,
      generation: identity.generation,
      expires: identity.expires,
      botCaPem: identity.botCaPem,
    });
    const size = Buffer.byteLength(text, 'utf8');
    if (size > SECRET_VALUE_MAX_BYTES)
      throw new BrokerError(
        'bad_identity',
        `the bot identity is ${size} bytes, over the ${SECRET_VALUE_MAX_BYTES}-byte Secrets Manager limit; not saved`,
      );
    const fingerprint = createHash('sha256').update(identity.certificatePem).digest('hex');
    const token = versionToken('bot-identity', secretId, `${identity.generation}\0${fingerprint}`);
    const put = () =>
      withThrottlingRetry(
        () =>
          client.send(
            new PutSecretValueCommand({ SecretId: secretId, SecretString: text, ClientRequestToken: token }),
          ),
        retry,
      );
    try {
      try {
        await put();
      } catch (err) {
        if (awsName(err) !== 'ResourceNotFoundException' || !this.options.createIfMissing) throw err;
        await withThrottlingRetry(
          () => client.send(new CreateSecretCommand({ Name: secretId })),
          retry,
        ).catch((e: unknown) => {
          if (awsName(e) !== 'ResourceExistsException') throw e;
        });
        await put();
      }
    } catch (err) {
      throw new BrokerError(
        'identity_store',
        `could not save the bot identity (generation ${identity.generation}) to secret ${secretId}: ${awsErrorText(err)}; the stored identity is unchanged`,
        { cause: err },
      );
    }
  }
}
