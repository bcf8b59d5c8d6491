import { readFileSync } from 'node:fs';
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { BrokerStack, type BrokerStackProps } from '../../cdk/broker-stack.js';
import { REPO_ROOT } from '../../cdk/constructs/broker-function.js';

/** The context of cdk.json (feature flags and the example configuration), so tests synthesize like the app. */
export function cdkJsonContext(): Record<string, unknown> {
  const json = JSON.parse(readFileSync(path.join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
    context: Record<string, unknown>;
  };
  return json.context;
}

/** Stand-in Lambda code: unit tests never bundle. */
export const inlineCode = (): lambda.Code =>
  lambda.Code.fromInline('export const handler = async () => ({});');

export const read = (file: string): string => readFileSync(path.join(REPO_ROOT, file), 'utf8');

/** The example configuration in examples/aws/, as the app reads it. */
export function exampleProps(overrides: Partial<BrokerStackProps> = {}): BrokerStackProps {
  return {
    resourcesYaml: read('examples/aws/resources.yaml'),
    resourcesFile: 'examples/aws/resources.yaml',
    bots: ['orders', 'reports'].map((name) => ({
      name,
      configYaml: read(`examples/aws/bots/${name}.yaml`),
      configFile: `examples/aws/bots/${name}.yaml`,
    })),
    alarmTopic: true,
    code: { authority: inlineCode(), bot: inlineCode() },
    ...overrides,
  };
}

/** A fresh app with cdk.json's feature flags. */
export function testApp(): App {
  return new App({ context: cdkJsonContext() });
}

/** The example stack with bundling skipped. */
export function exampleStack(overrides: Partial<BrokerStackProps> = {}, app = testApp()): BrokerStack {
  return new BrokerStack(app, 'Broker', exampleProps(overrides));
}

/** A resource of a synthesized template. */
export interface CfnResourceJson {
  Type: string;
  Properties: Record<string, unknown>;
  DeletionPolicy?: string;
}

/** Every resource of `type` in a template, by logical id. */
export function resourcesOf(template: Template, type: string): Record<string, CfnResourceJson> {
  const found = template.findResources(type) as Record<string, Partial<CfnResourceJson>>;
  return Object.fromEntries(
    Object.entries(found).map(([id, r]) => [id, { ...r, Type: type, Properties: r.Properties ?? {} }]),
  );
}

/** The one resource of `type` whose logical id starts with `prefix`. */
export function resourceOf(template: Template, type: string, prefix: string): CfnResourceJson {
  return resourcesOf(template, type)[logicalId(template, type, prefix)] as CfnResourceJson;
}

/** The environment variables of the Lambda function whose logical id starts with `prefix`. */
export function lambdaEnv(template: Template, prefix: string): Record<string, unknown> {
  const env = resourceOf(template, 'AWS::Lambda::Function', prefix).Properties.Environment as
    | { Variables: Record<string, unknown> }
    | undefined;
  return env?.Variables ?? {};
}

export interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
  Principal?: unknown;
  Sid?: string;
}

/** The statements of every IAM policy attached to the role `roleLogicalId`. */
export function statementsOfRole(template: Template, roleLogicalId: string): Statement[] {
  return Object.values(resourcesOf(template, 'AWS::IAM::Policy'))
    .filter((p) =>
      (p.Properties.Roles as unknown[]).some(
        (r) => JSON.stringify(r) === JSON.stringify({ Ref: roleLogicalId }),
      ),
    )
    .flatMap((p) => (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
}

export const actionsOf = (s: Statement): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);
export const resourcesOfStatement = (s: Statement): unknown[] =>
  Array.isArray(s.Resource) ? s.Resource : [s.Resource];

/** The logical id of the one resource of `type` whose id starts with `prefix`. */
export function logicalId(template: Template, type: string, prefix: string): string {
  const ids = Object.keys(resourcesOf(template, type)).filter((id) => id.startsWith(prefix));
  if (ids.length !== 1)
    throw new Error(`expected one ${type} starting with ${prefix}, found ${ids.join(', ') || 'none'}`);
  return ids[0] as string;
}

/**
 * Renders an intrinsic-bearing value to text with stand-ins for deploy-time values (Ref → `<Id>`,
 * Fn::GetAtt → `<Id.Attr>`, pseudo parameters → realistic values, Fn::Base64 → real base64).
 */
export function renderIntrinsic(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if ('Ref' in v) {
    const ref = v.Ref as string;
    if (ref === 'AWS::AccountId') return '123456789012';
    if (ref === 'AWS::Partition') return 'aws';
    if (ref === 'AWS::Region') return 'eu-west-1';
    return `<${ref}>`;
  }
  if ('Fn::GetAtt' in v) return `<${(v['Fn::GetAtt'] as string[]).join('.')}>`;
  if ('Fn::Join' in v) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(renderIntrinsic).join(sep);
  }
  if ('Fn::Base64' in v) return Buffer.from(renderIntrinsic(v['Fn::Base64'])).toString('base64');
  throw new Error(`cannot render ${JSON.stringify(value)}`);
}

/** `base64:...` environment values as the Lambda's decodeText sees them. */
export function decodeEnv(value: unknown): string {
  const text = renderIntrinsic(value);
  if (!text.startsWith('base64:')) throw new Error(`not a base64: value: ${text.slice(0, 40)}`);
  return Buffer.from(text.slice('base64:'.length), 'base64').toString('utf8');
}
