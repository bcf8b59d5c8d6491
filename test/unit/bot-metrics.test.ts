import type { LambdaClient } from '@aws-sdk/client-lambda';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { describe, expect, it } from 'vitest';
import { createBotHandler } from '../../functions/bot.js';
import { emfLine } from '../../src/metrics-emf.js';
import { read } from '../support/cdk.js';

const AT = new Date('2026-01-01T00:00:00Z');

/** The bot Lambda's environment as the stack sets it, with static test credentials. */
function env(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  return {
    BROKER_BOT_CONFIG: read('examples/aws/bots/reports.yaml'),
    BROKER_AUTHORITY_FUNCTION: 'broker-authority',
    BROKER_STACK_NAME: 'BrokerStaging',
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'ASIATESTMETRICS00001',
    AWS_SECRET_ACCESS_KEY: 'test-secret-access-key',
    ...extra,
  };
}

/** An authority that cannot be reached: the identity step fails, so every output counts as failed. */
const unreachable = {
  send: async () => {
    throw new Error('authority unreachable');
  },
} as unknown as LambdaClient;

describe('bot metrics (CloudWatch embedded metric format)', () => {
  it('emfLine declares every dimension in one dimension set and sets each as a field', () => {
    const line = JSON.parse(
      emfLine(
        'Broker',
        { Stack: 'BrokerStaging', Output: 'u@svc/db' },
        [{ name: 'SecondsToExpiry', value: 1200, unit: 'Seconds' }],
        AT,
      ),
    ) as Record<string, unknown>;
    expect(line).toEqual({
      _aws: {
        Timestamp: AT.getTime(),
        CloudWatchMetrics: [
          {
            Namespace: 'Broker',
            Dimensions: [['Stack', 'Output']],
            Metrics: [{ Name: 'SecondsToExpiry', Unit: 'Seconds' }],
          },
        ],
      },
      Stack: 'BrokerStaging',
      Output: 'u@svc/db',
      SecondsToExpiry: 1200,
    });
  });

  it('the bot handler emits each output metric with the stack name as a dimension', async () => {
    const lines: string[] = [];
    const handler = createBotHandler({
      env: env(),
      lambda: unreachable,
      secretsManager: {} as SecretsManagerClient,
      clock: { now: () => AT },
      writeLine: (l) => lines.push(l),
    });
    await expect(handler()).rejects.toThrow();
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records).toHaveLength(2); // the two outputs of examples/aws/bots/reports.yaml
    for (const r of records)
      expect(r).toMatchObject({
        Stack: 'BrokerStaging',
        Output: expect.stringMatching(/^reports_ro@orders-(postgres|mariadb)\/orders$/),
        RenderFailures: 1,
        _aws: { CloudWatchMetrics: [{ Namespace: 'Broker', Dimensions: [['Stack', 'Output']] }] },
      });
  });

  it('refuses to start without BROKER_STACK_NAME (its metrics would match no alarm)', () => {
    expect(() =>
      createBotHandler({
        env: env({ BROKER_STACK_NAME: undefined }),
        lambda: unreachable,
        secretsManager: {} as SecretsManagerClient,
      }),
    ).toThrow(/BROKER_STACK_NAME/);
  });
});
