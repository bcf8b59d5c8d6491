import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { type Clock, systemClock } from '../clock.js';
import type { CredentialBundle } from '../credentials/bundle.js';
import { parseBundle } from '../credentials/bundle.js';
import { BrokerError, errorMessage } from '../errors.js';

/** No usable bundle: the secret is missing, unreadable, empty or expired. The message says which. */
export class CredentialClientError extends BrokerError {
  override name = 'CredentialClientError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('credentials_unavailable', message, options);
  }
}

export interface CredentialClientOptions {
  /** Name or ARN of the output's secret (grant the function secretsmanager:GetSecretValue on it). */
  secretId: string;
  /** Default: one SecretsManagerClient per execution environment, region from the Lambda environment. */
  client?: SecretsManagerClient;
  /** Re-read the secret this long before the bundle expires; default 5 minutes. */
  refreshMarginMs?: number;
  clock?: Clock;
}

export interface CredentialClient {
  readonly secretId: string;
  /** The current bundle: from the cache while it is fresh, else read from Secrets Manager. */
  getBundle(): Promise<CredentialBundle>;
}

export const DEFAULT_REFRESH_MARGIN_MS = 5 * 60_000;
/** Inside the refresh margin, when the bot has not renewed yet, re-read at most this often. */
const RECHECK_MS = 10_000;

interface CacheEntry {
  bundle?: CredentialBundle;
  expiresAtMs: number;
  checkedAtMs: number;
  inFlight: Promise<CredentialBundle> | undefined;
}

/**
 * Bundles per secret id, kept for the life of the execution environment: warm invocations read no secret.
 * Module-level on purpose, so clients created inside the handler share it too.
 */
const cache = new Map<string, CacheEntry>();
let defaultClient: SecretsManagerClient | undefined;

/** Forgets every cached bundle (tests; or after changing which secret a function reads). */
export function clearCredentialCache(): void {
  cache.clear();
}

/**
 * A reader of one output's credential bundle for Lambda workloads. The bundle is cached per execution
 * environment until `refreshMarginMs` before it expires, then re-read; concurrent callers share one read.
 * A failed re-read keeps returning the cached bundle while it is still valid.
 */
export function createCredentialClient(options: CredentialClientOptions): CredentialClient {
  const { secretId } = options;
  if (!secretId) throw new CredentialClientError('createCredentialClient needs a secretId');
  const margin = options.refreshMarginMs ?? DEFAULT_REFRESH_MARGIN_MS;
  const clock = options.clock ?? systemClock;
  const client = (): SecretsManagerClient => {
    if (options.client) return options.client;
    // One SDK client per execution environment: its connections are reused by warm invocations.
    defaultClient ??= new SecretsManagerClient({});
    return defaultClient;
  };

  async function read(entry: CacheEntry): Promise<CredentialBundle> {
    const now = () => clock.now().getTime();
    let bundle: CredentialBundle;
    try {
      const got = await client().send(
        new GetSecretValueCommand({ SecretId: secretId, VersionStage: 'AWSCURRENT' }),
      );
      if (got.SecretString === undefined)
        throw new CredentialClientError(`secret ${secretId} holds binary data, not a credential bundle`);
      bundle = parseBundle(got.SecretString, `the bundle in secret ${secretId}`);
    } catch (err) {
      entry.checkedAtMs = now();
      if (entry.bundle && now() < entry.expiresAtMs) return entry.bundle;
      if ((err as { name?: string }).name === 'ResourceNotFoundException')
        throw new CredentialClientError(
          `secret ${secretId} holds no credential bundle yet (no AWSCURRENT version); is the bot running?`,
          { cause: err },
        );
      if (err instanceof BrokerError) throw err;
      const e = err as { name?: string };
      throw new CredentialClientError(
        `could not read secret ${secretId}: ${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${errorMessage(err)}`,
        { cause: err },
      );
    }
    const expiresAtMs = Date.parse(bundle.expiresAt);
    entry.checkedAtMs = now();
    if (expiresAtMs <= now())
      throw new CredentialClientError(
        `the bundle in secret ${secretId} (serial ${bundle.serial}) expired at ${bundle.expiresAt}; check the bot that renews it`,
      );
    entry.bundle = bundle;
    entry.expiresAtMs = expiresAtMs;
    return bundle;
  }

  return {
    secretId,
    getBundle(): Promise<CredentialBundle> {
      let entry = cache.get(secretId);
      if (!entry) {
        entry = { expiresAtMs: 0, checkedAtMs: 0, inFlight: undefined };
        cache.set(secretId, entry);
      }
      const now = clock.now().getTime();
      if (entry.bundle && now < entry.expiresAtMs) {
        if (now < entry.expiresAtMs - margin || now - entry.checkedAtMs < RECHECK_MS)
          return Promise.resolve(entry.bundle);
      }
      const e = entry;
      e.inFlight ??= read(e).finally(() => {
        e.inFlight = undefined;
      });
      return e.inFlight;
    },
  };
}
