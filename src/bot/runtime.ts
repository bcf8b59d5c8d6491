import { readFileSync } from 'node:fs';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { AuthorityClient, type AuthorityTransport } from '../api/client.js';
import { HttpTransport } from '../api/transports.js';
import { type Clock, systemClock } from '../clock.js';
import { ConfigError } from '../config/errors.js';
import type { Destination } from '../destinations/destination.js';
import { DirectoryDestination } from '../destinations/directory.js';
import { MemoryDestination } from '../destinations/memory.js';
import { SecretsManagerDestination } from '../destinations/secretsmanager.js';
import type { JsonLogger as Logger } from '../log.js';
import { caPin } from '../pki/parse.js';
import { Bot } from './bot.js';
import { type BotConfig, type DatabaseOutputConfig, resolveToken } from './config-schema.js';
import { type AwsCredentials, signedGetCallerIdentity } from './iam.js';
import { DirectoryIdentityStore, type IdentityStore, MemoryIdentityStore } from './identity-store.js';
import { preflightOutputs } from './preflight.js';
import { SecretsManagerIdentityStore } from './secretsmanager-identity-store.js';

/** What the bot needs to use AWS (in the bot Lambda): clients and credentials, injected by the handler. */
export interface BotAwsContext {
  secretsManager?: SecretsManagerClient;
  region?: string;
  credentials?: () => Promise<AwsCredentials>;
}

/** Makes the destination an output config names. */
export function destinationFor(
  output: DatabaseOutputConfig,
  aws: BotAwsContext = {},
  log?: Logger,
): Destination {
  const d = output.destination;
  switch (d.type) {
    case 'directory':
      return new DirectoryDestination(d.path, { readers: d.readers });
    case 'memory':
      return new MemoryDestination();
    case 'secretsmanager':
      if (!aws.secretsManager)
        throw new ConfigError(
          'the secretsmanager destination is written by the bot Lambda in AWS mode; on a host use type: directory',
        );
      return new SecretsManagerDestination({
        client: aws.secretsManager,
        secretId: d.name,
        ...(log ? { log } : {}),
      });
  }
}

export function identityStoreFor(config: BotConfig, aws: BotAwsContext = {}): IdentityStore {
  switch (config.storage.type) {
    case 'directory':
      return new DirectoryIdentityStore(config.storage.path);
    case 'memory':
      return new MemoryIdentityStore();
    case 'secretsmanager':
      if (!aws.secretsManager)
        throw new ConfigError(
          'secretsmanager storage is used by the bot Lambda in AWS mode; on a host use storage type: directory',
        );
      return new SecretsManagerIdentityStore({ client: aws.secretsManager, secretId: config.storage.name });
  }
}

/** Wires a Bot from its configuration: transport, identity storage, destinations (created once each). */
export function createBot(
  config: BotConfig,
  options: {
    log: Logger;
    clock?: Clock;
    transport?: AuthorityTransport;
    env?: NodeJS.ProcessEnv;
    aws?: BotAwsContext;
    /** Destinations made by the caller for some outputs (a tunnel's in-memory credentials). */
    destinations?: ReadonlyMap<DatabaseOutputConfig, Destination>;
  },
): Bot {
  const aws = options.aws ?? {};
  if (config.onboarding.join_method === 'iam' && !aws.credentials)
    throw new ConfigError(
      'join_method iam is for bots running in AWS (the bot Lambda); on a host use join_method: token',
    );
  const clock = options.clock ?? systemClock;
  const transport =
    options.transport ?? new HttpTransport(authorityAddress(config.auth_server), trustedPins(config));
  const destinations = new Map<DatabaseOutputConfig, Destination>();
  for (const output of config.outputs)
    destinations.set(output, options.destinations?.get(output) ?? destinationFor(output, aws, options.log));
  return new Bot({
    config,
    client: new AuthorityClient(transport, clock),
    identityStore: identityStoreFor(config, aws),
    destinationFor: (o) => destinations.get(o) ?? destinationFor(o, aws, options.log),
    joinToken: () => resolveToken(config.onboarding.token, options.env),
    ...(aws.credentials
      ? {
          iamJoin: async (client: AuthorityClient, publicKeyPem: string, ttlMs: number) => {
            const credentials = await (aws.credentials as () => Promise<AwsCredentials>)();
            const region = aws.region ?? 'us-east-1';
            return client.joinWithIam({
              // For the iam method the onboarding token is the name of the authority's iam token resource.
              tokenName: await resolveToken(config.onboarding.token, options.env),
              publicKeyPem,
              ttlMs,
              signRequest: (challenge) => signedGetCallerIdentity({ region, credentials, challenge, clock }),
            });
          },
        }
      : {}),
    clock,
    log: options.log,
    preflight: () => preflightOutputs(config),
  });
}

/**
 * tbot's `auth_server` is usually `HOST:PORT` without a scheme; the authority speaks HTTPS there. A URL
 * (`unix:///…`, `https://…`) is taken as it is.
 */
export function authorityAddress(authServer: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(authServer) ? authServer : `https://${authServer}`;
}

/** The pins the bot trusts the authority by: `ca_pins`, or one per certificate in `onboarding.ca_path`. */
export function trustedPins(config: BotConfig): string[] {
  if (!config.ca_path) return config.ca_pins;
  let text: string;
  try {
    text = readFileSync(config.ca_path, 'utf8');
  } catch (err) {
    throw new ConfigError(`onboarding.ca_path: cannot read ${config.ca_path}: ${(err as Error).message}`);
  }
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  try {
    if (pems.length === 0) throw new Error('it holds no PEM certificate');
    return pems.map((pem) => caPin(pem));
  } catch (err) {
    throw new ConfigError(
      `onboarding.ca_path: ${config.ca_path} is not the authority's CA certificate in PEM: ${(err as Error).message}`,
    );
  }
}

/** A `wait` for Bot.runLoop driven by process signals: SIGHUP wakes it, SIGTERM and SIGINT stop it. */
export function signalWaiter(log: Logger): {
  wait: (ms: number) => Promise<'tick' | 'wake' | 'stop'>;
  dispose(): void;
} {
  let stopping = false;
  let wake: ((why: 'wake' | 'stop') => void) | undefined;
  const onHup = () => {
    log.info('SIGHUP: renewing now');
    wake?.('wake');
  };
  const onTerm = (signal: string) => {
    log.info(`${signal}: stopping after the write in progress`);
    stopping = true;
    wake?.('stop');
  };
  const onSigterm = () => onTerm('SIGTERM');
  const onSigint = () => onTerm('SIGINT');
  process.on('SIGHUP', onHup);
  process.on('SIGTERM', onSigterm);
  process.on('SIGINT', onSigint);
  return {
    wait: (ms) =>
      new Promise((resolve) => {
        if (stopping) return resolve('stop');
        const timer = setTimeout(() => {
          wake = undefined;
          resolve('tick');
        }, ms);
        wake = (why) => {
          clearTimeout(timer);
          wake = undefined;
          resolve(why);
        };
      }),
    dispose() {
      process.off('SIGHUP', onHup);
      process.off('SIGTERM', onSigterm);
      process.off('SIGINT', onSigint);
    },
  };
}
