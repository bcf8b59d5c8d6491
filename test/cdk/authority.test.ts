import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { Authority, DENIED_AUDIT_FILTER } from '../../cdk/constructs/authority.js';
import { StdoutAuditLog } from '../../src/authority/aws-bootstrap.js';
import { parseResources, type TokenResource } from '../../src/authority/resources.js';
import {
  actionsOf,
  decodeEnv,
  exampleStack,
  inlineCode,
  lambdaEnv,
  logicalId,
  read,
  resourcesOf,
  resourcesOfStatement,
  statementsOfRole,
} from '../support/cdk.js';

/** The db resources of examples/aws/resources.yaml, sorted (as CDK sorts policy resources): each has its own client CA key. */
const SERVICES = ['orders-mariadb', 'orders-postgres'];

let template: Template;
let env: Record<string, unknown>;
let authorityRole: string;

beforeAll(() => {
  template = Template.fromStack(exampleStack());
  env = lambdaEnv(template, 'AuthorityFunction');
  authorityRole = logicalId(template, 'AWS::IAM::Role', 'AuthorityFunctionRole');
});

describe('Authority', () => {
  it('enables source maps only when asked (sourceMaps: true)', () => {
    const stack = new Stack(new App(), 'S');
    new Authority(stack, 'Authority', {
      resourcesYaml: read('examples/aws/resources.yaml'),
      code: inlineCode(),
      sourceMaps: true,
    });
    expect(lambdaEnv(Template.fromStack(stack), 'AuthorityFunction').NODE_OPTIONS).toBe(
      '--enable-source-maps',
    );
  });

  it('runs on the newest Node.js runtime, ARM64, without source maps, and its own log group kept a year', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('authority'),
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      LoggingConfig: { LogGroup: { Ref: Match.stringLikeRegexp('^AuthorityFunctionLogGroup') } },
    });
    // Source maps are opt-in (sourceMaps: true): loading them slows every cold start.
    expect(env.NODE_OPTIONS).toBeUndefined();
    const group = resourcesOf(template, 'AWS::Logs::LogGroup')[
      logicalId(template, 'AWS::Logs::LogGroup', 'AuthorityFunctionLogGroup')
    ];
    expect(group?.Properties.RetentionInDays).toBe(365);
    expect(group?.DeletionPolicy).toBe('Retain');
  });

  it('keeps its state in a pk/sk table with on-demand billing, point-in-time recovery and TTL on expiresAt', () => {
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      Properties: {
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        DeletionProtectionEnabled: true,
      },
    });
  });

  it('holds three CA keys in KMS (RSA_2048, SIGN_VERIFY) that only the authority may sign with', () => {
    const keys = Object.entries(resourcesOf(template, 'AWS::KMS::Key')).filter(([id]) =>
      id.startsWith('AuthorityCaKey'),
    );
    expect(keys.map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort()).toEqual([
      'AuthorityCaKeybot',
      'AuthorityCaKeydbclient',
      'AuthorityCaKeydbserver',
    ]);
    for (const [, key] of keys) {
      expect(key.DeletionPolicy).toBe('Retain');
      expect(key.Properties).toMatchObject({
        KeySpec: 'RSA_2048',
        KeyUsage: 'SIGN_VERIFY',
        PendingWindowInDays: 30,
      });
      const statements = (key.Properties.KeyPolicy as { Statement: Record<string, unknown>[] }).Statement;
      // The account administers the key (the CDK default, so IAM policies decide), and nobody else signs.
      expect(statements).toHaveLength(2);
      expect(statements[0]).toMatchObject({ Effect: 'Allow', Action: 'kms:*', Resource: '*' });
      expect(JSON.stringify(statements[0]?.Principal)).toContain(':root');
      expect(statements[1]).toEqual({
        Sid: 'OnlyTheAuthoritySigns',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: 'kms:Sign',
        Resource: '*',
        Condition: { ArnNotEquals: { 'aws:PrincipalArn': { 'Fn::GetAtt': [authorityRole, 'Arn'] } } },
      });
    }
  });

  it('holds one client CA key per db resource (RSA_2048, SIGN_VERIFY), passes their ids, and lets only itself sign', () => {
    const keys = Object.entries(resourcesOf(template, 'AWS::KMS::Key')).filter(([id]) =>
      id.startsWith('AuthorityDbClientCaKey'),
    );
    expect(keys.map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort()).toEqual(
      SERVICES.map((service) => `AuthorityDbClientCaKey${service.replace(/-/g, '')}`).sort(),
    );
    for (const [, key] of keys) {
      expect(key.DeletionPolicy).toBe('Retain');
      expect(key.Properties).toMatchObject({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
      const statements = (key.Properties.KeyPolicy as { Statement: Record<string, unknown>[] }).Statement;
      expect(statements[1]).toMatchObject({
        Sid: 'OnlyTheAuthoritySigns',
        Effect: 'Deny',
        Action: 'kms:Sign',
      });
    }
    // The environment maps each service to its key's id, which the authority's bootstrap reads.
    const text = JSON.stringify(env.BROKER_DB_CLIENT_CA_KEYS);
    for (const service of SERVICES) {
      expect(text).toContain(`\\"${service}\\":\\"`);
      expect(text).toContain(
        logicalId(template, 'AWS::KMS::Key', `AuthorityDbClientCaKey${service.replace(/-/g, '')}`),
      );
    }
  });

  it('may use only its table, sign only with its keys (DIGEST, RSASSA_PKCS1_V1_5_SHA_256) and write its log group', () => {
    const statements = statementsOfRole(template, authorityRole);
    const table = logicalId(template, 'AWS::DynamoDB::Table', 'AuthorityStateTable');
    const keyArns = [
      ...['bot', 'dbclient', 'dbserver'].map((t) => `AuthorityCaKey${t}`),
      ...SERVICES.map((service) => `AuthorityDbClientCaKey${service.replace(/-/g, '')}`),
    ].map((id) => ({ 'Fn::GetAtt': [logicalId(template, 'AWS::KMS::Key', id), 'Arn'] }));
    expect(statements).toEqual([
      {
        Effect: 'Allow',
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: {
          'Fn::GetAtt': [logicalId(template, 'AWS::Logs::LogGroup', 'AuthorityFunctionLogGroup'), 'Arn'],
        },
      },
      {
        Effect: 'Allow',
        Action: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem'],
        Resource: { 'Fn::GetAtt': [table, 'Arn'] },
      },
      {
        Effect: 'Allow',
        Action: 'kms:Sign',
        Resource: keyArns,
        Condition: {
          StringEquals: { 'kms:SigningAlgorithm': 'RSASSA_PKCS1_V1_5_SHA_256', 'kms:MessageType': 'DIGEST' },
        },
      },
      { Effect: 'Allow', Action: 'kms:GetPublicKey', Resource: keyArns },
    ]);
    for (const s of statements) expect(resourcesOfStatement(s)).not.toContain('*');
    // No AWS managed policy (AWSLambdaBasicExecutionRole would grant logs:CreateLogGroup on *).
    expect(
      resourcesOf(template, 'AWS::IAM::Role')[authorityRole]?.Properties.ManagedPolicyArns,
    ).toBeUndefined();
    expect(statements.flatMap(actionsOf).some((a) => a.includes('*'))).toBe(false);
  });

  it('gets the table and the CA keys by reference, and the cluster name', () => {
    expect(env).toMatchObject({
      BROKER_TABLE_NAME: { Ref: logicalId(template, 'AWS::DynamoDB::Table', 'AuthorityStateTable') },
      BROKER_CA_KEY_BOT: { 'Fn::GetAtt': [logicalId(template, 'AWS::KMS::Key', 'AuthorityCaKeybot'), 'Arn'] },
      BROKER_CA_KEY_DB_CLIENT: {
        'Fn::GetAtt': [logicalId(template, 'AWS::KMS::Key', 'AuthorityCaKeydbclient'), 'Arn'],
      },
      BROKER_CA_KEY_DB_SERVER: {
        'Fn::GetAtt': [logicalId(template, 'AWS::KMS::Key', 'AuthorityCaKeydbserver'), 'Arn'],
      },
      BROKER_CLUSTER_NAME: 'broker',
    });
  });

  it('delivers the resources plus one iam token per bot, bound to that bot Lambda role, in a form parseResources reads', () => {
    const resources = parseResources(decodeEnv(env.BROKER_RESOURCES), 'BROKER_RESOURCES');
    const fromFile = parseResources(read('examples/aws/resources.yaml'), 'examples/aws/resources.yaml');
    expect(resources.slice(0, fromFile.length)).toEqual(fromFile);
    const tokens = resources.filter((r): r is TokenResource => r.kind === 'token');
    expect(tokens).toEqual(
      ['orders', 'reports'].map((bot) => ({
        kind: 'token',
        version: 'v2',
        metadata: { name: `${bot}-bot-iam` },
        spec: {
          join_method: 'iam',
          bot_name: bot,
          allow: [
            {
              aws_account: '123456789012',
              aws_arn: `arn:aws:sts::123456789012:assumed-role/<${logicalId(template, 'AWS::IAM::Role', `Bot${bot}FunctionRole`)}>/*`,
            },
          ],
        },
      })),
    );
  });

  it('counts audited refusals with a metric filter that matches the lines the runtime writes, and alarms on a spike', async () => {
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: DENIED_AUDIT_FILTER,
      LogGroupName: { Ref: logicalId(template, 'AWS::Logs::LogGroup', 'AuthorityFunctionLogGroup') },
      MetricTransformations: [
        { MetricNamespace: 'Broker', MetricName: 'AuthorityDenials', MetricValue: '1' },
      ],
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Broker',
      MetricName: 'AuthorityDenials',
      Statistic: 'Sum',
      Period: 300,
      Threshold: 5,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
    const lines: string[] = [];
    await new StdoutAuditLog((l) => lines.push(l)).write({
      time: '2026-01-01T00:00:00Z',
      event: 'bot.join',
      outcome: 'denied',
      reason: 'test',
    });
    const line = JSON.parse(lines[0] as string) as Record<string, unknown>;
    expect(line).toMatchObject({ audit: true, outcome: 'denied' });
  });
});

describe('Authority props', () => {
  const make = (props: Partial<ConstructorParameters<typeof Authority>[2]> = {}) =>
    new Authority(new Stack(new App(), 'S'), 'Authority', {
      resourcesYaml: read('examples/aws/resources.yaml'),
      code: inlineCode(),
      ...props,
    });

  it('refuses a cluster name that cannot fit the CA subject, naming the prop, the value and the fix', () => {
    expect(() => make({ clusterName: 'x'.repeat(60) })).toThrow(
      /S\/Authority: clusterName is "x{60}": not 1-50 letters.*; use a short name/,
    );
  });

  it('refuses a bot that names a role the file does not define', () => {
    const yaml = 'kind: bot\nversion: v1\nmetadata: { name: b }\nspec: { roles: [missing] }\n';
    expect(() => make({ resourcesYaml: yaml, resourcesFile: 'r.yaml' })).toThrow(
      /r\.yaml: bot "b" names role "missing", which the file does not define; add the role/,
    );
  });

  it('reports bad YAML with the file name (the authority parser)', () => {
    expect(() => make({ resourcesYaml: 'kind: role\nversion: v5\n', resourcesFile: 'r.yaml' })).toThrow(
      /r\.yaml/,
    );
  });

  it('refuses resources that would not fit in the 4 KB Lambda environment', () => {
    const roles = Array.from(
      { length: 40 },
      (_, i) =>
        `kind: role\nversion: v6\nmetadata: { name: role-${i}, description: "${'d'.repeat(40)}" }\nspec: {}\n`,
    ).join('---\n');
    expect(() => make({ resourcesYaml: roles })).toThrow(/over Lambda's 4096-byte limit; .* must shrink/);
  });
});
