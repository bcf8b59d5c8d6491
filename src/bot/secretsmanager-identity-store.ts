import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import {
  awsErrorText,
  awsName,
  type RetryOptions,
  readSecretString,
  SECRET_VALUE_MAX_BYTES,
  versionToken,
  withThrottlingRetry,
} from '../aws/secrets.js';
import { type BotIdentity, botIdentitySchema, serializeIdentity } from '../credentials/identity.js';
import { BrokerError } from '../errors.js';
import type { IdentityStore } from './identity-store.js';

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
    const result = botIdentitySchema.safeParse(value);
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
    const text = serializeIdentity(identity);
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
