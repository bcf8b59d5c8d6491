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
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  type SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import {
  awsErrorText,
  awsName,
  type RetryOptions,
  readSecretString,
  SECRET_VALUE_MAX_BYTES,
  ThrottledError,
  versionToken,
  withThrottlingRetry,
} from '../aws/secrets.js';
import {
  type CredentialBundle,
  checkBundleKeyPair,
  parseBundle,
  serializeBundle,
} from '../credentials/bundle.js';
import { errorMessage } from '../errors.js';
import type { JsonLogger as Logger } from '../log.js';
import type { Destination } from './destination.js';
import { DestinationError } from './directory.js';

const CURRENT = 'AWSCURRENT';
const PENDING = 'AWSPENDING';

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
