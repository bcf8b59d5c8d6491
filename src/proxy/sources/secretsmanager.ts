import { DescribeSecretCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { awsErrorText, type RetryOptions, readSecretString, withThrottlingRetry } from '../../aws/secrets.js';
import { type CredentialBundle, parseBundle } from '../../credentials/bundle.js';
import { DestinationError } from '../../destinations/directory.js';
import type { BundleSource } from './bundle-source.js';

/**
 * The proxy's view of a `secretsmanager` output. Each load asks DescribeSecret which version is AWSCURRENT
 * and fetches the value (GetSecretValue by that version id) only when it changed, so frequent polling costs
 * one metadata call and the secret value crosses the network once per renewal.
 */
export class SecretsManagerBundleSource implements BundleSource {
  readonly description: string;
  private cached: { versionId: string; bundle: CredentialBundle } | undefined;

  constructor(
    private readonly options: { client: SecretsManagerClient; secretId: string; retry?: RetryOptions },
  ) {
    this.description = `secretsmanager ${options.secretId}`;
  }

  async load(): Promise<CredentialBundle | undefined> {
    const { client, secretId, retry } = this.options;
    let stages: Record<string, string[]>;
    try {
      const described = await withThrottlingRetry(
        () => client.send(new DescribeSecretCommand({ SecretId: secretId })),
        retry,
      );
      stages = described.VersionIdsToStages ?? {};
    } catch (err) {
      if ((err as { name?: string }).name === 'ResourceNotFoundException') return undefined;
      throw new DestinationError(`could not describe secret ${secretId}: ${awsErrorText(err)}`, {
        cause: err,
      });
    }
    const versionId = Object.entries(stages).find(([, labels]) => labels.includes('AWSCURRENT'))?.[0];
    if (!versionId) return undefined;
    if (this.cached?.versionId === versionId) return this.cached.bundle;
    const text = await readSecretString(client, secretId, retry, versionId);
    if (text === undefined) return undefined; // deleted between the two calls: the next load sees why
    const bundle = parseBundle(text, `version ${versionId} of secret ${secretId}`);
    this.cached = { versionId, bundle };
    return bundle;
  }
}
