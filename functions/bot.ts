import { LambdaClient } from '@aws-sdk/client-lambda';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { LambdaInvokeTransport } from '../src/api/lambda-transport.js';
import type { OutputResult } from '../src/bot/bot.js';
import { type BotConfig, botConfigFromDocuments } from '../src/bot/config-schema.js';
import type { AwsCredentials } from '../src/bot/iam.js';
import { createBot } from '../src/bot/runtime.js';
import { type Clock, systemClock } from '../src/clock.js';
import { readConfigDocuments } from '../src/config/read-documents.js';
import * as z from '../src/config/zod.js';
import { BrokerError } from '../src/errors.js';
import { createJsonLogger } from '../src/json-log.js';
import { type EmfMetric, emfLine } from '../src/metrics-emf.js';
import { redactedError } from '../src/redact.js';
import { decodeText, parseEnv } from './env.js';

const nonEmpty = () => z.string().check(z.minLength(1));
const envSchema = z.object({
  BROKER_BOT_CONFIG: nonEmpty(),
  BROKER_AUTHORITY_FUNCTION: nonEmpty(),
  /** The stack's name, a dimension of every metric, so two stacks in one account and region keep apart. */
  BROKER_STACK_NAME: nonEmpty(),
  AWS_REGION: nonEmpty(),
  AWS_ACCESS_KEY_ID: nonEmpty(),
  AWS_SECRET_ACCESS_KEY: nonEmpty(),
  AWS_SESSION_TOKEN: z.optional(z.string()),
});

export interface BotHandlerDeps {
  env: NodeJS.ProcessEnv;
  lambda: LambdaClient;
  secretsManager: SecretsManagerClient;
  clock?: Clock;
  writeLine?: (line: string) => void;
}

export interface BotRunSummary {
  outputs: OutputResult[];
}

/**
 * The scheduled bot Lambda (EventBridge Scheduler, rate = renewal_interval): joins with iam (or renews a
 * stored identity), renders every output into its Secrets Manager bundle, and publishes seconds-to-expiry
 * per output as CloudWatch metrics. Any failed output fails the invocation, so Lambda's asynchronous retry
 * and on-failure destination (the bot's dead-letter queue) see it; the previous bundles stay in place.
 */
export function createBotHandler(deps: BotHandlerDeps): () => Promise<BotRunSummary> {
  const env = parseEnv(envSchema, deps.env, 'bot');
  const clock = deps.clock ?? systemClock;
  const log = createJsonLogger({ base: { component: 'bot' }, destination: 1 });
  const writeLine = deps.writeLine ?? ((l: string) => process.stdout.write(`${l}\n`));
  const credentials = async (): Promise<AwsCredentials> => ({
    accessKeyId: env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
  });
  // The stack passes the configuration as JSON, read without the YAML library; YAML text (set by hand) loads it.
  const start = async () => {
    const text = decodeText(env.BROKER_BOT_CONFIG);
    const config = botConfigFromDocuments(
      await readConfigDocuments(text, 'BROKER_BOT_CONFIG'),
      'BROKER_BOT_CONFIG',
    );
    const bot = createBot(config, {
      log,
      clock,
      env: deps.env,
      transport: new LambdaInvokeTransport(deps.lambda, env.BROKER_AUTHORITY_FUNCTION),
      aws: { secretsManager: deps.secretsManager, region: env.AWS_REGION, credentials },
    });
    return { config, bot };
  };
  let ready: Promise<{ config: BotConfig; bot: ReturnType<typeof createBot> }> | undefined;
  return async () => {
    // A bad configuration fails every invocation with the reason, as it did at cold start.
    ready ??= start().catch((err) => {
      ready = undefined;
      throw err;
    });
    const { config, bot } = await ready;
    let outputs: OutputResult[];
    try {
      outputs = await bot.runCycle(true);
    } catch (err) {
      // The identity step failed (join or renewal): no output was rendered, so every output counts as failed.
      const now = clock.now();
      for (const o of config.outputs)
        writeLine(
          emfLine(
            'Broker',
            { Stack: env.BROKER_STACK_NAME, Output: `${o.username}@${o.service}/${o.database}` },
            [{ name: 'RenderFailures', value: 1, unit: 'Count' }],
            now,
          ),
        );
      throw err;
    }
    const now = clock.now();
    for (const r of outputs) {
      const metrics: EmfMetric[] = [{ name: 'RenderFailures', value: r.ok ? 0 : 1, unit: 'Count' }];
      if (r.expires)
        metrics.push({
          name: 'SecondsToExpiry',
          value: (new Date(r.expires).getTime() - now.getTime()) / 1000,
          unit: 'Seconds',
        });
      writeLine(
        emfLine(
          'Broker',
          {
            Stack: env.BROKER_STACK_NAME,
            Output: `${r.route.username}@${r.route.service}/${r.route.database}`,
          },
          metrics,
          now,
        ),
      );
    }
    const failed = outputs.filter((r) => !r.ok);
    if (failed.length > 0)
      throw new BrokerError(
        'outputs_failed',
        `${failed.length} of ${outputs.length} output(s) failed: ${failed.map((f) => `${f.output}: ${f.error}`).join('; ')}`,
      );
    return { outputs };
  };
}

let handlerInstance: (() => Promise<BotRunSummary>) | undefined;

/**
 * The Lambda entry point, configured from the environment the stack sets. A failure is thrown scrubbed: the
 * runtime prints it, and a configuration error quotes the value it refused.
 */
export const handler = async (): Promise<BotRunSummary> => {
  try {
    // Few SDK retries: the authority de-duplicates by request id, and Lambda's asynchronous retries re-run the whole cycle.
    handlerInstance ??= createBotHandler({
      env: process.env,
      lambda: new LambdaClient({ maxAttempts: 2 }),
      secretsManager: new SecretsManagerClient({}),
    });
    return await handlerInstance();
  } catch (err) {
    throw redactedError(err);
  }
};
