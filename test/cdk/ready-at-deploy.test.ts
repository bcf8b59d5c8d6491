/**
 * Ready at deploy: each bot runs once during `cdk deploy` (a triggers.Trigger invoking its Lambda
 * synchronously), after everything its run needs; consumers and the expiry alarms are created after it.
 */
import { Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BrokerStack } from '../../cdk/broker-stack.js';
import { DatabaseProxySidecar } from '../../cdk/constructs/database-proxy-sidecar.js';
import { exampleStack, inlineCode, logicalId, resourcesOf, statementsOfRole } from '../support/cdk.js';

interface Resource {
  Type: string;
  Properties?: Record<string, unknown>;
  DependsOn?: string[];
}

let stack: BrokerStack;
let resources: Record<string, Resource>;
let template: Template;

/** Every resource a resource depends on, directly or through others (DependsOn and Ref/GetAtt). */
function dependenciesOf(id: string, seen = new Set<string>()): Set<string> {
  const r = resources[id];
  if (!r || seen.has(id)) return seen;
  seen.add(id);
  const refs = [
    ...JSON.stringify(r.Properties ?? {}).matchAll(/"(?:Ref|Fn::GetAtt)":\[?"([A-Za-z0-9]+)"/g),
  ].map((m) => m[1] as string);
  for (const dep of [...(r.DependsOn ?? []), ...refs]) dependenciesOf(dep, seen);
  return seen;
}
const dependsOn = (id: string, on: string) => dependenciesOf(id).has(on);
const firstRunOf = (bot: string) => logicalId(template, 'Custom::Trigger', `Bot${bot}FirstRun`);

beforeAll(() => {
  stack = exampleStack();
  const task = new ecs.FargateTaskDefinition(stack, 'Task');
  task.addContainer('app', { image: ecs.ContainerImage.fromRegistry('app:1') });
  new DatabaseProxySidecar(stack, 'Proxy', { image: ecs.ContainerImage.fromRegistry('proxy:1') }).addTo(
    task,
    {
      output: stack.output('broker/orders/orders-postgres'),
    },
  );
  const consumer = new lambda.Function(stack, 'Consumer', {
    runtime: lambda.Runtime.NODEJS_24_X,
    handler: 'index.handler',
    code: inlineCode(),
  });
  stack.output('broker/reports/orders-mariadb').bindToFunction(consumer, 'DB_SECRET_ID');
  template = Template.fromStack(stack);
  resources = template.toJSON().Resources as Record<string, Resource>;
}, 180_000);

describe('each bot runs once during cdk deploy', () => {
  it('invokes each bot Lambda synchronously through a trigger, re-run when the function changes', () => {
    for (const bot of ['orders', 'reports']) {
      const trigger = resources[firstRunOf(bot)] as Resource;
      const fn = logicalId(template, 'AWS::Lambda::Function', `Bot${bot}Function`);
      // The handler is the function's current version: a new version (new code or configuration) runs again.
      const version = logicalId(template, 'AWS::Lambda::Version', `Bot${bot}FunctionCurrentVersion`);
      expect(resources[version]?.Properties?.FunctionName).toEqual({ Ref: fn });
      expect(trigger.Properties).toMatchObject({
        HandlerArn: { Ref: version },
        InvocationType: 'RequestResponse',
        // The bot's timeout (2 minutes) and one for the cold start.
        Timeout: '180000',
      });
    }
  });

  it('runs after the authority, its iam token, the bot role policy, the secrets and their write policies', () => {
    const trigger = firstRunOf('orders');
    const needs = [
      logicalId(template, 'AWS::Lambda::Function', 'AuthorityFunction'),
      logicalId(template, 'AWS::DynamoDB::Table', 'AuthorityStateTable'),
      logicalId(template, 'AWS::KMS::Key', 'AuthorityDbClientCaKeyorderspostgres'),
      logicalId(template, 'AWS::IAM::Policy', 'BotordersFunctionRoleDefaultPolicy'),
      logicalId(template, 'AWS::SecretsManager::Secret', 'BotordersOutput0Secret'),
      logicalId(template, 'AWS::SecretsManager::ResourcePolicy', 'BotordersOutput0OnlyTheBotWrites'),
    ];
    for (const id of needs) expect(dependsOn(trigger, id), `${trigger} after ${id}`).toBe(true);
    // ... and the authority's BROKER_RESOURCES (with the bot's iam token) names the bot's role: the
    // authority is updated with it before the run.
    expect(
      dependsOn(
        logicalId(template, 'AWS::Lambda::Function', 'AuthorityFunction'),
        logicalId(template, 'AWS::IAM::Role', 'BotordersFunctionRole'),
      ),
    ).toBe(true);
  });

  it('creates the consumers after the first run of the bot that writes their bundle', () => {
    const task = logicalId(template, 'AWS::ECS::TaskDefinition', 'Task');
    expect(dependsOn(task, firstRunOf('orders'))).toBe(true);
    expect(dependsOn(task, firstRunOf('reports'))).toBe(false);
    const consumer = logicalId(template, 'AWS::Lambda::Function', 'Consumer');
    expect(dependsOn(consumer, firstRunOf('reports'))).toBe(true);
    expect(dependsOn(consumer, firstRunOf('orders'))).toBe(false);
  });

  it('creates the expiry alarms after the first run, so no alarm sees the time before the first bundle', () => {
    const expiry = Object.keys(resources).filter((id) => /^Bot.*ExpiryAlarm/.test(id));
    expect(expiry).toHaveLength(3);
    for (const id of expiry) {
      const bot = id.startsWith('Botorders') ? 'orders' : 'reports';
      expect(resources[id]?.DependsOn, id).toContain(firstRunOf(bot));
      // Missing data after the first run still counts: a bot that stops writing raises the alarm.
      expect(resources[id]?.Properties?.TreatMissingData).toBe('breaching');
    }
  });

  it("the trigger's provider may invoke only the bots' functions and their versions", () => {
    const [role] = Object.entries(resources).filter(
      ([id, r]) => r.Type === 'AWS::IAM::Role' && id.startsWith('AWSCDKTriggerCustomResourceProvider'),
    );
    expect(role).toBeDefined();
    const policies = (role?.[1].Properties?.Policies ?? []) as {
      PolicyDocument: { Statement: { Action: string[]; Resource: unknown }[] };
    }[];
    const statements = policies.flatMap((p) => p.PolicyDocument.Statement);
    expect(statements.map((s) => s.Action)).toEqual([['lambda:InvokeFunction'], ['lambda:InvokeFunction']]);
    // `<function ARN>:*`: the versions of the two bot functions (the handler is the current version).
    expect(statements.map((s) => JSON.stringify(s.Resource))).toEqual([
      expect.stringMatching(/BotordersFunction.*":\*"/),
      expect.stringMatching(/BotreportsFunction.*":\*"/),
    ]);
  });

  it('runOnDeploy: false makes no trigger and leaves consumers and alarms independent', () => {
    const s = exampleStack({ runOnDeploy: false });
    const fn = new lambda.Function(s, 'Consumer', {
      runtime: lambda.Runtime.NODEJS_24_X,
      handler: 'index.handler',
      code: inlineCode(),
    });
    s.output('broker/orders/orders-postgres').grantRead(fn);
    const t = Template.fromStack(s);
    expect(Object.keys(resourcesOf(t, 'Custom::Trigger'))).toEqual([]);
    const json = t.toJSON().Resources as Record<string, Resource>;
    expect(Object.values(json).some((r) => JSON.stringify(r.DependsOn ?? []).includes('FirstRun'))).toBe(
      false,
    );
    // The grant itself is the same.
    expect(statementsOfRole(t, logicalId(t, 'AWS::IAM::Role', 'ConsumerServiceRole'))).toHaveLength(2);
  });
});
