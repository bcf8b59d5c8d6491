/**
 * examples/aws/app.ts, the user's own CDK app with `db-credential-broker/cdk`: CredentialBroker from the
 * shipped resources and bot files, and a Fargate task definition with the proxy sidecar as docs/aws.md
 * documents it, synthesized with cdk-nag's AwsSolutions pack and the real Lambda bundles.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IAM5_ECR_REASON } from '../../cdk/constructs/sidecar-findings.js';
import { OrdersStack } from '../../examples/aws/orders-stack.js';
import { ensureFunctionBundles } from '../support/bundles.js';
import { cdkJsonContext } from '../support/cdk.js';

interface Resource {
  Type: string;
  Properties: Record<string, unknown>;
  DependsOn?: string[];
  Metadata?: { cdk_nag?: { rules_to_suppress: { id: string; reason: string }[] } };
}

let outdir: string;
let app: App;
let stack: OrdersStack;
let assembly: CloudAssembly;
let resources: Record<string, Resource>;

beforeAll(() => {
  ensureFunctionBundles();
  outdir = mkdtempSync(path.join(tmpdir(), 'broker-orders-app-'));
  app = new App({ outdir, context: cdkJsonContext() });
  stack = new OrdersStack(app, 'Orders');
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
  assembly = app.synth(); // throws on any unacknowledged cdk-nag finding
  resources = (assembly.getStackByName('Orders').template as { Resources: Record<string, Resource> })
    .Resources;
}, 120_000);

afterAll(() => rmSync(outdir, { recursive: true, force: true }));

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);

function acknowledgements(root: IConstruct): string[] {
  return root.node
    .findAll()
    .flatMap((c) =>
      c.node.metadata
        .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
        .flatMap((m) =>
          Object.keys(m.data as Record<string, string>).map(
            (id) => `${c.node.path} ${id.replace(/^annotation::/i, '')}`,
          ),
        ),
    );
}

describe('examples/aws: a CDK app of its own with CredentialBroker and the proxy sidecar', () => {
  it('synthesizes under cdk-nag with each acknowledgement on the one resource it is about', () => {
    expect(new AwsSolutionsChecks().validateScope(app).violations).toEqual([]);
    expect(acknowledgements(app).sort()).toEqual([
      'Orders/Broker/Bot-orders/DeadLetterQueue/Resource AwsSolutions-SQS3',
      'Orders/Broker/Bot-orders/Output0/Secret AwsSolutions-SMG4',
      'Orders/Broker/Bot-reports/DeadLetterQueue/Resource AwsSolutions-SQS3',
      'Orders/Broker/Bot-reports/Output0/Secret AwsSolutions-SMG4',
      'Orders/Broker/Bot-reports/Output1/Secret AwsSolutions-SMG4',
      // The image pull's ecr:GetAuthorizationToken (the sidecar's), and the app's own environment (the app's).
      'Orders/OrdersApi/ExecutionRole/DefaultPolicy/Resource AwsSolutions-IAM5[Resource::*]',
      'Orders/OrdersApi/Resource AwsSolutions-ECS2',
    ]);
    const inTemplate = Object.values(resources).flatMap((r) => r.Metadata?.cdk_nag?.rules_to_suppress ?? []);
    expect(inTemplate.find((r) => r.id === 'AwsSolutions-IAM5[Resource::*]')?.reason).toBe(IAM5_ECR_REASON);
    for (const r of inTemplate) expect(r.reason.length).toBeGreaterThan(80);
  });

  it('builds the broker from the shipped files: the authority, both bots, three output secrets', () => {
    expect([...stack.broker.bots.keys()]).toEqual(['orders', 'reports']);
    expect(ofType('AWS::SecretsManager::Secret').map(([, r]) => r.Properties.Name)).toEqual([
      'broker/orders/orders-postgres',
      'broker/reports/orders-postgres',
      'broker/reports/orders-mariadb',
    ]);
    expect(ofType('Custom::Trigger')).toHaveLength(2);
    expect(ofType('AWS::Lambda::Function').filter(([id]) => id.startsWith('Broker'))).toHaveLength(3);
  });

  it('adds the sidecar for orders_app: its health check script, the secret, and after the first run', () => {
    const [[taskId, task]] = ofType('AWS::ECS::TaskDefinition') as [[string, Resource]];
    const containers = task.Properties.ContainerDefinitions as {
      Name: string;
      HealthCheck?: { Command: string[] };
      Environment?: { Name: string; Value: unknown }[];
      DependsOn?: unknown[];
    }[];
    const proxy = containers.find((c) => c.Name === 'broker-proxy');
    expect(proxy?.HealthCheck?.Command).toEqual(['CMD', 'node', '/app/healthcheck.mjs']);
    const secretId = ofType('AWS::SecretsManager::Secret').find(
      ([, r]) => r.Properties.Name === 'broker/orders/orders-postgres',
    )?.[0];
    expect(proxy?.Environment).toContainEqual({ Name: 'BROKER_BUNDLE_SECRET_ID', Value: { Ref: secretId } });
    expect(containers.find((c) => c.Name === 'api')?.DependsOn).toEqual([
      { ContainerName: 'broker-proxy', Condition: 'HEALTHY' },
    ]);
    const firstRun = ofType('Custom::Trigger').find(([id]) => id.startsWith('BrokerBotordersFirstRun'))?.[0];
    const taskRole = (task.Properties.TaskRoleArn as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0] as string;
    expect([...(task.DependsOn ?? []), ...(resources[taskRole]?.DependsOn ?? [])]).toContain(firstRun);
    expect(taskId).toMatch(/^OrdersApi/);
  });

  it('builds the proxy image from proxy-container/Dockerfile with the sources as context', () => {
    const assets = JSON.parse(readFileSync(path.join(assembly.directory, 'Orders.assets.json'), 'utf8')) as {
      dockerImages: Record<
        string,
        { source: { directory: string; dockerFile?: string; dockerBuildArgs?: Record<string, string> } }
      >;
    };
    const images = Object.values(assets.dockerImages);
    expect(images).toHaveLength(1);
    expect(images[0]?.source).toMatchObject({
      dockerFile: 'proxy-container/Dockerfile',
      dockerBuildArgs: { PROXY_BUNDLE: 'build' },
    });
    // Only what the Dockerfile copies: no node_modules, no dist, no tests.
    expect(readdirSync(path.join(assembly.directory, images[0]?.source.directory as string)).sort()).toEqual([
      '.dockerignore',
      'examples',
      'functions',
      'package-lock.json',
      'package.json',
      'proxy-container',
      'scripts',
      'src',
      'tsconfig.json',
    ]);
  });
});
