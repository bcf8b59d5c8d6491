import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { Authority } from '../../cdk/constructs/authority.js';
import { Bot, type BotProps } from '../../cdk/constructs/bot.js';
import { botConfigFromDocuments, parseBotConfig } from '../../src/bot/config.js';
import { parseJsonDocuments } from '../../src/config/documents.js';
import {
  decodeEnv,
  exampleStack,
  inlineCode,
  lambdaEnv,
  logicalId,
  read,
  resourceOf,
  resourcesOf,
  statementsOfRole,
} from '../support/cdk.js';

let template: Template;

beforeAll(() => {
  template = Template.fromStack(exampleStack());
});

const ordersConfig = read('examples/aws/bots/orders.yaml');

/** A bot of the example resources in a stack of its own, for prop checks and schedule variants. */
function makeBot(props: Partial<BotProps> = {}, configYaml = ordersConfig): { stack: Stack; bot: Bot } {
  const stack = new Stack(new App(), 'S');
  const authority = new Authority(stack, 'Authority', {
    resourcesYaml: read('examples/aws/resources.yaml'),
    code: inlineCode(),
  });
  const bot = new Bot(stack, 'Bot', {
    name: 'orders',
    configYaml,
    configFile: 'orders.yaml',
    authority,
    code: inlineCode(),
    ...props,
  });
  return { stack, bot };
}

const withInterval = (interval: string, ttl = '1h') =>
  ordersConfig
    .replace('renewal_interval: 20m', `renewal_interval: ${interval}`)
    .replace('credential_ttl: 1h', `credential_ttl: ${ttl}`);

describe('Bot', () => {
  it('runs one Lambda per bot (newest runtime, ARM64, own log group) with its config as JSON, base64-encoded', () => {
    for (const bot of ['orders', 'reports']) {
      const fn = resourceOf(template, 'AWS::Lambda::Function', `Bot${bot}Function`);
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        MemorySize: 1024,
        Timeout: 120,
      });
      const vars = lambdaEnv(template, `Bot${bot}Function`);
      // The document as JSON, which the Lambda reads without the YAML library, to the same configuration.
      const sent = decodeEnv(vars.BROKER_BOT_CONFIG);
      const file = read(`examples/aws/bots/${bot}.yaml`);
      const docs = parseJsonDocuments(sent);
      expect(docs).toHaveLength(1);
      expect(botConfigFromDocuments(docs ?? [], 'BROKER_BOT_CONFIG')).toEqual(
        parseBotConfig(file, 'BROKER_BOT_CONFIG'),
      );
      expect(vars.BROKER_AUTHORITY_FUNCTION).toEqual({
        'Fn::GetAtt': [logicalId(template, 'AWS::Lambda::Function', 'AuthorityFunction'), 'Arn'],
      });
      expect(vars.BROKER_STACK_NAME).toBe('Broker'); // the metrics' Stack dimension
      expect(vars.NODE_OPTIONS).toBeUndefined(); // source maps are opt-in
      const group = resourceOf(template, 'AWS::Logs::LogGroup', `Bot${bot}FunctionLogGroup`);
      expect(group.Properties.RetentionInDays).toBe(90);
    }
  });

  it('is scheduled at rate(renewal_interval) with a retry policy and its dead-letter queue', () => {
    template.resourceCountIs('AWS::Scheduler::Schedule', 2);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(20 minutes)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: {
        Arn: { 'Fn::GetAtt': [logicalId(template, 'AWS::Lambda::Function', 'BotordersFunction'), 'Arn'] },
        RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 1200 },
        DeadLetterConfig: {
          Arn: { 'Fn::GetAtt': [logicalId(template, 'AWS::SQS::Queue', 'BotordersDeadLetterQueue'), 'Arn'] },
        },
      },
    });
    // The scheduler invokes asynchronously: failed runs are retried by Lambda, then land in the same queue.
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: logicalId(template, 'AWS::Lambda::Function', 'BotordersFunction') },
      MaximumRetryAttempts: 2,
      MaximumEventAgeInSeconds: 1200,
      DestinationConfig: {
        OnFailure: {
          Destination: {
            'Fn::GetAtt': [logicalId(template, 'AWS::SQS::Queue', 'BotordersDeadLetterQueue'), 'Arn'],
          },
        },
      },
    });
  });

  it('derives the rate from the shortest renewal interval, in whole minutes or hours', () => {
    const expression = (config: string) =>
      Template.fromStack(makeBot({}, config).stack).findResources('AWS::Scheduler::Schedule');
    expect(JSON.stringify(expression(withInterval('30m')))).toContain('"rate(30 minutes)"');
    expect(JSON.stringify(expression(withInterval('2h', '8h')))).toContain('"rate(2 hours)"');
    const perOutput = ordersConfig.replace(
      'username: orders_app',
      // An output sets credential_ttl and renewal_interval together, as in tbot.
      'username: orders_app\n    credential_ttl: 1h\n    renewal_interval: 15m',
    );
    expect(JSON.stringify(expression(perOutput))).toContain('"rate(15 minutes)"');
  });

  it('encrypts its dead-letter queue and refuses plain-HTTP access to it', () => {
    const queues = resourcesOf(template, 'AWS::SQS::Queue');
    expect(Object.keys(queues)).toHaveLength(2);
    for (const q of Object.values(queues)) expect(q.Properties.SqsManagedSseEnabled).toBe(true);
    for (const policy of Object.values(resourcesOf(template, 'AWS::SQS::QueuePolicy')))
      expect(JSON.stringify(policy.Properties.PolicyDocument)).toContain('"aws:SecureTransport":"false"');
  });

  it('creates one secret per output, encrypted with the bot key and created without any value', () => {
    const secrets = resourcesOf(template, 'AWS::SecretsManager::Secret');
    expect(
      Object.values(secrets)
        .map((s) => s.Properties.Name)
        .sort(),
    ).toEqual([
      'broker/orders/orders-postgres',
      'broker/reports/orders-mariadb',
      'broker/reports/orders-postgres',
    ]);
    for (const [id, s] of Object.entries(secrets)) {
      const bot = id.startsWith('Botorders') ? 'orders' : 'reports';
      expect(s.Properties.KmsKeyId).toEqual({
        'Fn::GetAtt': [logicalId(template, 'AWS::KMS::Key', `Bot${bot}SecretsKey`), 'Arn'],
      });
      // No placeholder: the first AWSCURRENT version is the bot's first bundle (readers see "no bundle yet").
      expect(s.Properties.SecretString).toBeUndefined();
      expect(s.Properties.GenerateSecretString).toBeUndefined();
    }
    for (const bot of ['orders', 'reports'])
      expect(
        resourcesOf(template, 'AWS::KMS::Key')[logicalId(template, 'AWS::KMS::Key', `Bot${bot}SecretsKey`)]
          ?.Properties,
      ).toMatchObject({
        EnableKeyRotation: true,
      });
  });

  it('may invoke only the authority, write only its own secrets and use its key only for them', () => {
    const role = logicalId(template, 'AWS::IAM::Role', 'BotreportsFunctionRole');
    const secrets = ['BotreportsOutput0Secret', 'BotreportsOutput1Secret'].map((p) => ({
      Ref: logicalId(template, 'AWS::SecretsManager::Secret', p),
    }));
    const queue = {
      'Fn::GetAtt': [logicalId(template, 'AWS::SQS::Queue', 'BotreportsDeadLetterQueue'), 'Arn'],
    };
    expect(statementsOfRole(template, role)).toEqual([
      {
        Effect: 'Allow',
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: {
          'Fn::GetAtt': [logicalId(template, 'AWS::Logs::LogGroup', 'BotreportsFunctionLogGroup'), 'Arn'],
        },
      },
      {
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: {
          'Fn::GetAtt': [logicalId(template, 'AWS::Lambda::Function', 'AuthorityFunction'), 'Arn'],
        },
      },
      {
        Effect: 'Allow',
        Action: [
          'secretsmanager:DescribeSecret',
          'secretsmanager:GetSecretValue',
          'secretsmanager:PutSecretValue',
          'secretsmanager:UpdateSecretVersionStage',
        ],
        Resource: secrets,
      },
      {
        Effect: 'Allow',
        Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
        Resource: { 'Fn::GetAtt': [logicalId(template, 'AWS::KMS::Key', 'BotreportsSecretsKey'), 'Arn'] },
        Condition: {
          StringEquals: {
            'kms:ViaService': {
              'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.amazonaws.com']],
            },
            'kms:EncryptionContext:SecretARN': secrets,
          },
        },
      },
      {
        Effect: 'Allow',
        Action: ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'],
        Resource: queue,
      },
    ]);
    expect(resourcesOf(template, 'AWS::IAM::Role')[role]?.Properties.ManagedPolicyArns).toBeUndefined();
  });

  it('denies writes to each output secret to every principal but its bot (a resource policy)', () => {
    const policies = resourcesOf(template, 'AWS::SecretsManager::ResourcePolicy');
    expect(Object.keys(policies)).toHaveLength(3);
    for (const [id, p] of Object.entries(policies)) {
      const bot = id.startsWith('Botorders') ? 'orders' : 'reports';
      const output = id.replace(/^Bot(orders|reports)(Output\d+).*$/, '$2');
      expect(p.Properties).toEqual({
        SecretId: { Ref: logicalId(template, 'AWS::SecretsManager::Secret', `Bot${bot}${output}Secret`) },
        BlockPublicPolicy: true,
        ResourcePolicy: {
          Version: '2012-10-17',
          Statement: [
            {
              Sid: 'OnlyTheBotWrites',
              Effect: 'Deny',
              Principal: { AWS: '*' },
              Action: ['secretsmanager:PutSecretValue', 'secretsmanager:UpdateSecretVersionStage'],
              Resource: '*',
              Condition: {
                ArnNotEquals: {
                  'aws:PrincipalArn': {
                    'Fn::GetAtt': [logicalId(template, 'AWS::IAM::Role', `Bot${bot}FunctionRole`), 'Arn'],
                  },
                },
              },
            },
          ],
        },
      });
    }
  });

  it('gives the scheduler a role that may invoke only the unqualified bot function', () => {
    const schedule = Object.values(resourcesOf(template, 'AWS::Scheduler::Schedule')).find((s) =>
      JSON.stringify(s.Properties.Target).includes('BotordersFunction'),
    );
    const target = schedule?.Properties.Target as { RoleArn: { 'Fn::GetAtt': string[] } } | undefined;
    const roleId = target?.RoleArn['Fn::GetAtt'][0] as string;
    expect(statementsOfRole(template, roleId)).toEqual([
      {
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: {
          'Fn::GetAtt': [logicalId(template, 'AWS::Lambda::Function', 'BotordersFunction'), 'Arn'],
        },
      },
      {
        Effect: 'Allow',
        Action: 'sqs:SendMessage',
        Resource: {
          'Fn::GetAtt': [logicalId(template, 'AWS::SQS::Queue', 'BotordersDeadLetterQueue'), 'Arn'],
        },
      },
    ]);
  });

  it('alarms on failed runs, on dead letters, and on each output nearing expiry', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [
        {
          Name: 'FunctionName',
          Value: { Ref: logicalId(template, 'AWS::Lambda::Function', 'BotordersFunction') },
        },
      ],
      Statistic: 'Sum',
      Period: 1200,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Threshold: 1,
    });
    // The bot publishes SecondsToExpiry only when it wrote a bundle: 40 one-minute periods without a new
    // bundle (ttl 1h − margin 20m) mean the newest certificate has less than 20 minutes left.
    for (const dim of [
      'orders_app@orders-postgres/orders',
      'reports_ro@orders-postgres/orders',
      'reports_ro@orders-mariadb/orders',
    ])
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'Broker',
        MetricName: 'SecondsToExpiry',
        Dimensions: [
          { Name: 'Output', Value: dim },
          { Name: 'Stack', Value: 'Broker' },
        ],
        Statistic: 'Maximum',
        Period: 60,
        EvaluationPeriods: 40,
        DatapointsToAlarm: 40,
        Threshold: 1200,
        ComparisonOperator: 'LessThanThreshold',
        TreatMissingData: 'breaching',
        AlarmActions: [{ Ref: Match.stringLikeRegexp('^AlarmsTopic') }],
      });
  });

  it('enables source maps only when asked (sourceMaps: true)', () => {
    const env = (props: Partial<BotProps>) =>
      lambdaEnv(Template.fromStack(makeBot(props).stack), 'BotFunction');
    expect(env({}).NODE_OPTIONS).toBeUndefined();
    expect(env({ sourceMaps: true }).NODE_OPTIONS).toBe('--enable-source-maps');
  });

  it('takes a configurable expiry margin', () => {
    const t = Template.fromStack(makeBot({ expiryAlarmMargin: Duration.minutes(10) }).stack);
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'SecondsToExpiry',
      Threshold: 600,
      EvaluationPeriods: 50,
    });
  });
});

describe('Bot props', () => {
  const fails = (config: string, pattern: RegExp, props: Partial<BotProps> = {}) =>
    expect(() => makeBot(props, config)).toThrow(pattern);

  it('refuses a bot the resources do not define', () => {
    expect(() => makeBot({ name: 'ghost' })).toThrow(
      /S\/Bot: name is "ghost": the authority resources define no `kind: bot`/,
    );
  });

  it('refuses token joins, stored identities and non-secretsmanager outputs, naming the file and the fix', () => {
    fails(
      ordersConfig.replace('join_method: iam', 'join_method: token'),
      /orders\.yaml onboarding\.join_method is "token": .*; set join_method: iam/,
    );
    fails(
      ordersConfig.replace('type: memory', 'type: directory\n  path: /tmp/bot'),
      /orders\.yaml storage\.type is "directory": .*; set storage: \{ type: memory \}/,
    );
    fails(
      ordersConfig.replace(
        'type: secretsmanager\n      name: broker/orders/orders-postgres',
        'type: directory\n      path: /tmp/out',
      ),
      /outputs\[0\]\.destination\.type is "directory": the bot Lambda has no lasting file system; use destination: \{ type: secretsmanager/,
    );
    fails(
      ordersConfig.replace(
        'name: broker/orders/orders-postgres',
        'name: broker/orders/orders-postgres\n      region: us-east-1',
      ),
      /outputs\.0\.destination\.region: unknown field/,
    );
  });

  it('refuses an onboarding token that is not a name, without printing it', () => {
    const secret = 'file:///run/secrets/one-time-token';
    expect(() => makeBot({}, ordersConfig.replace('token: orders-bot-iam', `token: ${secret}`))).toThrow(
      /orders\.yaml onboarding\.token \(value not shown\) is not a resource name/,
    );
    try {
      makeBot({}, ordersConfig.replace('token: orders-bot-iam', `token: ${secret}`));
    } catch (err) {
      expect((err as Error).message).not.toContain(secret);
    }
  });

  it('refuses an output for a database service the resources do not define', () => {
    fails(
      ordersConfig.replace('service: orders-postgres', 'service: nowhere'),
      /outputs\[0\]\.service is "nowhere": .*add the db resource/,
    );
  });

  it('refuses a renewal interval EventBridge Scheduler cannot express', () => {
    fails(
      withInterval('10m30s'),
      /orders\.yaml renewal_interval is "10m30s": not a whole number of minutes.*; use e\.g\. "20m"/,
    );
  });

  it('refuses at synth a renewal interval under 10 minutes, with the Secrets Manager version rule', () => {
    // Through parseBotConfig: the output secrets inherit the 5m interval.
    fails(
      withInterval('5m'),
      /orders\.yaml: .*renewal_interval: renewal_interval \(5m0s\) writes secret "broker\/orders\/orders-postgres" more often than every 10m0s: Secrets Manager keeps every version of a secret younger than 24 hours and advises at most one write per secret per 10 minutes/,
    );
    // Through the schedule: every output overrides 20m, but the top-level 5m sets the schedule's rate.
    const overridden = withInterval('5m').replace(
      /username: (\w+)/g,
      'username: $1\n    credential_ttl: 1h\n    renewal_interval: 20m',
    );
    fails(
      overridden,
      /S\/Bot: orders\.yaml renewal_interval is "5m0s": every run writes every output secret, more often than every 10m0s: Secrets Manager keeps every version .* per 10 minutes; use at least "10m"/,
    );
    expect(() => makeBot({}, withInterval('10m'))).not.toThrow();
  });

  it('refuses a timeout not shorter than the renewal interval', () => {
    expect(() => makeBot({ timeout: Duration.minutes(10) }, withInterval('10m'))).toThrow(
      /S\/Bot: timeout is 10 minutes: not shorter than the renewal interval \(10 minutes\): runs could overlap; give a shorter timeout/,
    );
    expect(() => makeBot({ timeout: Duration.minutes(16) })).toThrow(
      /timeout is 16 minutes: longer than 15 minutes/,
    );
  });

  it('refuses an expiry margin that leaves no renewal before the alarm', () => {
    expect(() => makeBot({ expiryAlarmMargin: Duration.minutes(45) })).toThrow(
      /expiryAlarmMargin is 45 minutes: for output 0 of orders\.yaml .* must be at least 1 minute and leave more than one renewal interval/,
    );
  });

  it('refuses two bots writing one secret and two bots sharing an iam token', () => {
    const stack = new Stack(new App(), 'S');
    const authority = new Authority(stack, 'Authority', {
      resourcesYaml: read('examples/aws/resources.yaml'),
      code: inlineCode(),
    });
    new Bot(stack, 'A', { name: 'orders', configYaml: ordersConfig, authority, code: inlineCode() });
    const reports = read('examples/aws/bots/reports.yaml');
    expect(
      () =>
        new Bot(stack, 'B', {
          name: 'reports',
          configYaml: reports.replace('broker/reports/orders-postgres', 'broker/orders/orders-postgres'),
          authority,
          code: inlineCode(),
        }),
    ).toThrow(
      /S\/B: bot reports outputs\[0\]\.destination\.name is "broker\/orders\/orders-postgres": bot "orders" writes that secret already/,
    );
    expect(
      () =>
        new Bot(stack, 'C', {
          name: 'reports',
          configYaml: reports.replace('reports-bot-iam', 'orders-bot-iam'),
          authority,
          code: inlineCode(),
        }),
    ).toThrow(/bots "orders" and "reports" both join with the iam token "orders-bot-iam"/);
  });

  it('parses the config with the bot runtime parser (errors name the file)', () => {
    expect(() => parseBotConfig('version: v3\n', 'x.yaml')).toThrow(/x\.yaml/);
    expect(() => makeBot({}, 'version: v3\n')).toThrow(/orders\.yaml/);
  });
});
