import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { beforeAll, describe, expect, it } from 'vitest';
import { DatabaseProxySidecar } from '../../cdk/constructs/database-proxy-sidecar.js';
import { parseResources } from '../../src/authority/resources.js';
import { parseBotConfig } from '../../src/bot/config.js';
import {
  actionsOf,
  decodeEnv,
  exampleStack,
  renderIntrinsic,
  resourcesOf,
  resourcesOfStatement,
  type Statement,
} from '../support/cdk.js';

let template: Template;

beforeAll(() => {
  const stack = exampleStack();
  const task = new ecs.FargateTaskDefinition(stack, 'Task');
  task.addContainer('app', { image: ecs.ContainerImage.fromRegistry('app:1') });
  new DatabaseProxySidecar(stack, 'Proxy', { image: ecs.ContainerImage.fromRegistry('proxy:1') }).addTo(
    task,
    {
      output: stack.output('broker/orders/orders-postgres'),
    },
  );
  template = Template.fromStack(stack);
});

/**
 * The role of aws-cdk-lib's trigger provider (the Lambda behind each bot's run during `cdk deploy`): not the
 * broker's code, checked on its own below.
 */
const TRIGGER_PROVIDER = 'AWSCDKTriggerCustomResourceProvider';
const brokerRoles = () =>
  Object.entries(resourcesOf(template, 'AWS::IAM::Role'))
    .filter(([id]) => !id.startsWith(TRIGGER_PROVIDER))
    .map(([, r]) => r);

/** Every statement of every identity policy in the template (policies and roles' inline policies). */
function identityStatements(): Statement[] {
  const policies = Object.values(resourcesOf(template, 'AWS::IAM::Policy')).map(
    (p) => p.Properties.PolicyDocument as { Statement: Statement[] },
  );
  const inline = brokerRoles().flatMap((r) =>
    ((r.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[] | undefined) ?? []).map(
      (p) => p.PolicyDocument,
    ),
  );
  return [...policies, ...inline].flatMap((d) => d.Statement);
}

const SERVICES = ['secretsmanager:', 'kms:', 'dynamodb:', 'lambda:'];

describe('least privilege across the stack', () => {
  it('grants no Secrets Manager, KMS, DynamoDB or Lambda action on a "*" or wildcard resource', () => {
    const statements = identityStatements().filter((s) =>
      actionsOf(s).some((a) => SERVICES.some((p) => a.startsWith(p))),
    );
    expect(statements.length).toBeGreaterThan(10);
    for (const s of statements)
      for (const r of resourcesOfStatement(s)) {
        expect(r).not.toBe('*');
        expect(renderIntrinsic(r)).not.toContain('*');
      }
  });

  it('grants no wildcard action and uses no AWS managed policy', () => {
    for (const s of identityStatements()) for (const a of actionsOf(s)) expect(a).not.toContain('*');
    for (const role of brokerRoles()) expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    template.resourceCountIs('AWS::IAM::ManagedPolicy', 0);
  });

  it("lets aws-cdk-lib's trigger provider write its logs and invoke the bots' function versions, nothing else", () => {
    const [provider, ...more] = Object.entries(resourcesOf(template, 'AWS::IAM::Role')).filter(([id]) =>
      id.startsWith(TRIGGER_PROVIDER),
    );
    expect(more).toEqual([]);
    const props = provider?.[1].Properties as {
      ManagedPolicyArns: unknown[];
      Policies: { PolicyDocument: { Statement: Statement[] } }[];
    };
    expect(props.ManagedPolicyArns).toEqual([
      // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation's Fn::Sub syntax, not JavaScript's
      { 'Fn::Sub': 'arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole' },
    ]);
    const statements = props.Policies.flatMap((p) => p.PolicyDocument.Statement);
    expect(
      statements.map((st) => [st.Effect, actionsOf(st), resourcesOfStatement(st).map(renderIntrinsic)]),
    ).toEqual([
      ['Allow', ['lambda:InvokeFunction'], [expect.stringMatching(/^<BotordersFunction[0-9A-F]+\.Arn>:\*$/)]],
      [
        'Allow',
        ['lambda:InvokeFunction'],
        [expect.stringMatching(/^<BotreportsFunction[0-9A-F]+\.Arn>:\*$/)],
      ],
    ]);
  });

  it('lets only the bots write secrets and only their own', () => {
    const writers = identityStatements().filter((s) =>
      actionsOf(s).includes('secretsmanager:PutSecretValue'),
    );
    expect(writers).toHaveLength(2);
    const written = writers.map((s) =>
      resourcesOfStatement(s)
        .map((r) => renderIntrinsic(r))
        .sort(),
    );
    expect(written).toEqual([
      ['<BotordersOutput0Secret7C126440>'],
      expect.arrayContaining([
        expect.stringMatching(/^<BotreportsOutput0Secret/),
        expect.stringMatching(/^<BotreportsOutput1Secret/),
      ]),
    ]);
  });

  it('ties every KMS use of a secrets key to Secrets Manager and to named secrets', () => {
    const secretsKeyUse = identityStatements().filter((s) =>
      actionsOf(s).some((a) => ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey'].includes(a)),
    );
    expect(secretsKeyUse.length).toBeGreaterThanOrEqual(3);
    for (const s of secretsKeyUse) {
      expect(s.Condition?.StringEquals?.['kms:ViaService']).toBeDefined();
      expect(s.Condition?.StringEquals?.['kms:EncryptionContext:SecretARN']).toBeDefined();
    }
  });
});

describe('KMS actions each principal uses', () => {
  it('grants kms:Encrypt to no principal, in no identity policy and no key policy', () => {
    // Secrets Manager writes a version under a data key (kms:GenerateDataKey) and reads it with kms:Decrypt;
    // SNS and CloudWatch use the alarm key the same way. Nothing in the stack calls kms:Encrypt. (The keys'
    // default statement for the account root, `kms:*`, only delegates to IAM policies, checked here too.)
    const keyPolicies = Object.values(resourcesOf(template, 'AWS::KMS::Key')).flatMap(
      (k) => (k.Properties.KeyPolicy as { Statement: Statement[] }).Statement,
    );
    expect(keyPolicies.length).toBeGreaterThan(0);
    for (const s of [...identityStatements(), ...keyPolicies])
      expect(actionsOf(s).filter((a) => a === 'kms:Encrypt' || a.startsWith('kms:ReEncrypt'))).toEqual([]);
  });

  it('gives each bot exactly kms:GenerateDataKey and kms:Decrypt on its secrets key', () => {
    const writers = identityStatements()
      .filter(
        (s) => actionsOf(s).includes('kms:GenerateDataKey') && actionsOf(s).some((a) => a === 'kms:Decrypt'),
      )
      .filter((s) => s.Condition?.StringEquals?.['kms:ViaService'] !== undefined);
    expect(writers).toHaveLength(2);
    for (const s of writers) expect([...actionsOf(s)].sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
  });
});

describe('encryption and retention', () => {
  it('encrypts every secret with a customer-managed key of the stack, every queue and the alarm topic', () => {
    const keys = Object.keys(resourcesOf(template, 'AWS::KMS::Key'));
    for (const s of Object.values(resourcesOf(template, 'AWS::SecretsManager::Secret'))) {
      const key = (s.Properties.KmsKeyId as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0];
      expect(keys).toContain(key);
    }
    for (const q of Object.values(resourcesOf(template, 'AWS::SQS::Queue')))
      expect(q.Properties.SqsManagedSseEnabled === true || q.Properties.KmsMasterKeyId !== undefined).toBe(
        true,
      );
    const topics = Object.values(resourcesOf(template, 'AWS::SNS::Topic'));
    expect(topics).toHaveLength(1);
    expect(topics[0]?.Properties.KmsMasterKeyId).toEqual({
      'Fn::GetAtt': [expect.stringMatching(/^AlarmsKey/), 'Arn'],
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('rotates every symmetric key yearly (asymmetric CA keys cannot rotate)', () => {
    for (const [id, key] of Object.entries(resourcesOf(template, 'AWS::KMS::Key')))
      if (key.Properties.KeySpec === undefined)
        expect([id, key.Properties.EnableKeyRotation]).toEqual([id, true]);
      else expect(key.Properties.KeyUsage).toBe('SIGN_VERIFY');
  });

  it('gives every log group a retention', () => {
    const groups = Object.values(resourcesOf(template, 'AWS::Logs::LogGroup'));
    expect(groups.length).toBe(4); // authority, two bots, the proxy container
    for (const g of groups) expect(g.Properties.RetentionInDays).toBeGreaterThan(0);
  });
});

describe('environment variables', () => {
  const allEnv = (): [string, unknown][] => [
    ...Object.values(resourcesOf(template, 'AWS::Lambda::Function')).flatMap((f) =>
      Object.entries(
        (f.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {},
      ),
    ),
    ...Object.values(resourcesOf(template, 'AWS::ECS::TaskDefinition')).flatMap((t) =>
      (t.Properties.ContainerDefinitions as { Environment?: { Name: string; Value: unknown }[] }[]).flatMap(
        (c) => (c.Environment ?? []).map((e): [string, unknown] => [e.Name, e.Value]),
      ),
    ),
  ];

  it('hold no secret in plain text: no key material, no join token, references for keys and secrets', () => {
    const vars = allEnv();
    expect(vars.length).toBeGreaterThan(10);
    for (const [name, value] of vars) {
      const text =
        name.startsWith('BROKER_RESOURCES') || name === 'BROKER_BOT_CONFIG'
          ? decodeEnv(value)
          : renderIntrinsic(value);
      expect(text).not.toMatch(/-----BEGIN|PRIVATE KEY|aws_secret_access_key|password/i);
      expect(name).not.toMatch(/PASSWORD|TOKEN|PRIVATE/);
      // Key and secret identifiers are deploy-time references, never pasted values.
      if (/_KEY_|SECRET_ID$/.test(name)) expect(typeof value).not.toBe('string');
    }
  });

  it('carry bot configs whose onboarding token is only the name of an iam token, not a secret', () => {
    const resources = allEnv().filter(([n]) => n === 'BROKER_RESOURCES');
    expect(resources).toHaveLength(1);
    const tokenNames = parseResources(decodeEnv(resources[0]?.[1]), 'BROKER_RESOURCES')
      .filter((r) => r.kind === 'token')
      .map((r) => r.metadata.name);
    const configs = allEnv().filter(([n]) => n === 'BROKER_BOT_CONFIG');
    expect(configs).toHaveLength(2);
    for (const [, value] of configs) {
      const config = parseBotConfig(decodeEnv(value), 'BROKER_BOT_CONFIG');
      expect(config.onboarding.join_method).toBe('iam');
      expect(tokenNames).toContain(config.onboarding.token);
    }
  });
});
