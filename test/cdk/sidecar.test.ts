import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BrokerStack } from '../../cdk/broker-stack.js';
import { DatabaseProxySidecar } from '../../cdk/constructs/database-proxy-sidecar.js';
import {
  exampleStack,
  inlineCode,
  lambdaEnv,
  logicalId,
  resourcesOf,
  statementsOfRole,
} from '../support/cdk.js';

interface ContainerDef {
  Name: string;
  Essential?: boolean;
  StopTimeout?: number;
  ReadonlyRootFilesystem?: boolean;
  HealthCheck?: Record<string, unknown>;
  DependsOn?: { ContainerName: string; Condition: string }[];
  Environment?: { Name: string; Value: unknown }[];
  MountPoints?: { SourceVolume: string; ContainerPath: string; ReadOnly: boolean }[];
  LogConfiguration?: { LogDriver: string };
}

let stack: BrokerStack;
let template: Template;
const image = ecs.ContainerImage.fromRegistry('broker-proxy:test');

function containersOf(family: string): ContainerDef[] {
  const td = Object.values(resourcesOf(template, 'AWS::ECS::TaskDefinition')).find(
    (t) => t.Properties.Family === family,
  );
  return td?.Properties.ContainerDefinitions as ContainerDef[];
}
const env = (c: ContainerDef | undefined) =>
  Object.fromEntries((c?.Environment ?? []).map((e) => [e.Name, e.Value]));

beforeAll(() => {
  stack = exampleStack();
  const proxy = new DatabaseProxySidecar(stack, 'Proxy', { image });
  const output = stack.output('broker/orders/orders-postgres');

  const tcp = new ecs.FargateTaskDefinition(stack, 'TcpTask', { family: 'tcp' });
  tcp.addContainer('app', { image: ecs.ContainerImage.fromRegistry('app:1') });
  proxy.addTo(tcp, { output });
  // Added after the proxy: still waits for it.
  tcp.addContainer('worker', { image: ecs.ContainerImage.fromRegistry('worker:1') });

  const unix = new ecs.FargateTaskDefinition(stack, 'UnixTask', { family: 'unix' });
  unix.addContainer('app', { image: ecs.ContainerImage.fromRegistry('app:1') });
  proxy.addTo(unix, {
    output: stack.output('broker/reports/orders-mariadb'),
    unixSocket: '/var/run/broker/db.sock',
    tunnel: false,
    essential: false,
    stopTimeout: Duration.seconds(60),
    maxConnections: 100,
  });

  const consumer = new lambda.Function(stack, 'Consumer', {
    runtime: lambda.Runtime.NODEJS_24_X,
    handler: 'index.handler',
    code: inlineCode(),
  });
  output.bindToFunction(consumer, 'DB_SECRET_ID');
  template = Template.fromStack(stack);
}, 180_000);

describe('DatabaseProxySidecar', () => {
  it('adds the proxy with a health check on its readiness and a stop timeout that fits the drain', () => {
    const proxy = containersOf('tcp').find((c) => c.Name === 'broker-proxy');
    expect(proxy).toMatchObject({
      Essential: true,
      StopTimeout: 30,
      ReadonlyRootFilesystem: true,
      HealthCheck: {
        // The image's few-line script (proxy-container/healthcheck.mjs), not the proxy bundle.
        Command: ['CMD', 'node', '/app/healthcheck.mjs'],
        Interval: 10,
        Timeout: 5,
        Retries: 3,
        StartPeriod: 30,
      },
      LogConfiguration: { LogDriver: 'awslogs' },
    });
    expect(env(proxy)).toEqual({
      BROKER_BUNDLE_SECRET_ID: {
        Ref: logicalId(template, 'AWS::SecretsManager::Secret', 'BotordersOutput0Secret'),
      },
      BROKER_SERVICE: 'orders-postgres',
      BROKER_PROXY_PORT: '5432',
      BROKER_PROXY_TUNNEL: 'true',
      BROKER_DIAG_ADDR: '127.0.0.1:9090',
      BROKER_MAX_SIGTERM_DELAY: '25s',
    });
  });

  it('makes every other container, even one added later, wait until the proxy is HEALTHY', () => {
    const containers = containersOf('tcp');
    for (const name of ['app', 'worker'])
      expect(containers.find((c) => c.Name === name)?.DependsOn).toEqual([
        { ContainerName: 'broker-proxy', Condition: 'HEALTHY' },
      ]);
    expect(containers.find((c) => c.Name === 'broker-proxy')?.DependsOn).toBeUndefined();
  });

  it('grants the task role read on that one secret and decrypt on its key for that secret only', () => {
    const roleId = logicalId(template, 'AWS::IAM::Role', 'TcpTaskTaskRole');
    const secret = { Ref: logicalId(template, 'AWS::SecretsManager::Secret', 'BotordersOutput0Secret') };
    expect(statementsOfRole(template, roleId)).toEqual([
      {
        Effect: 'Allow',
        Action: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'],
        Resource: secret,
      },
      {
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: { 'Fn::GetAtt': [logicalId(template, 'AWS::KMS::Key', 'BotordersSecretsKey'), 'Arn'] },
        Condition: {
          StringEquals: {
            'kms:ViaService': {
              'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.amazonaws.com']],
            },
            'kms:EncryptionContext:SecretARN': secret,
          },
        },
      },
    ]);
  });

  it('can listen on a unix socket in a task volume every container mounts, non-tunnel and not essential', () => {
    const containers = containersOf('unix');
    const proxy = containers.find((c) => c.Name === 'broker-proxy');
    const mount = { SourceVolume: 'broker-proxy-socket', ContainerPath: '/var/run/broker', ReadOnly: false };
    expect(proxy).toMatchObject({ Essential: false, StopTimeout: 60, MountPoints: [mount] });
    expect(env(proxy)).toMatchObject({
      BROKER_PROXY_UNIX_SOCKET: '/var/run/broker/db.sock',
      BROKER_PROXY_TUNNEL: 'false',
      BROKER_MAX_SIGTERM_DELAY: '55s',
      BROKER_MAX_CONNECTIONS: '100',
    });
    expect(env(proxy).BROKER_PROXY_PORT).toBeUndefined();
    expect(containers.find((c) => c.Name === 'app')).toMatchObject({
      MountPoints: [mount],
      DependsOn: [{ ContainerName: 'broker-proxy', Condition: 'HEALTHY' }],
    });
  });

  it('refuses a drain longer than the stop timeout, a port in bridge mode, and port plus socket', () => {
    const s = new Stack(new App(), 'S');
    const proxy = new DatabaseProxySidecar(s, 'Proxy', { image });
    const output = stack.output('broker/orders/orders-postgres');
    const fargate = new ecs.FargateTaskDefinition(s, 'T');
    expect(() => proxy.addTo(fargate, { output, maxSigtermDelay: Duration.seconds(30) })).toThrow(
      /S\/Proxy: maxSigtermDelay is 30 seconds: not shorter than stopTimeout \(30 seconds\): ECS would kill the proxy mid-drain; leave a few seconds/,
    );
    expect(() => proxy.addTo(fargate, { output, stopTimeout: Duration.minutes(3) })).toThrow(
      /stopTimeout is 3 minutes: longer than 2 minutes/,
    );
    const bridge = new ecs.Ec2TaskDefinition(s, 'B', { networkMode: ecs.NetworkMode.BRIDGE });
    expect(() => proxy.addTo(bridge, { output })).toThrow(
      /port is 5432: the task definition's network mode is bridge.*; use NetworkMode\.AWS_VPC/,
    );
    expect(() => proxy.addTo(fargate, { output, port: 5432, unixSocket: '/run/x/s.sock' })).toThrow(
      /port and unixSocket .* both given; give one/,
    );
    for (const elsewhere of [
      'relative.sock',
      '/run/x/s.sock',
      '/var/run/broker/sub/s.sock',
      '/var/run/broker/../s.sock',
    ])
      expect(() => proxy.addTo(fargate, { output, unixSocket: elsewhere })).toThrow(
        `S/Proxy: unixSocket is ${JSON.stringify(elsewhere)}: not a socket file directly in /var/run/broker, the one directory the proxy image owns`,
      );
  });

  it('acknowledges cdk-nag ECS2 on the task definition only while the proxy is the only container with environment variables', () => {
    const acks = (task: ecs.TaskDefinition) => {
      const app = task.node.root as App;
      app.synth({ force: true });
      return (task.node.defaultChild as IConstruct).node.metadata
        .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
        .flatMap((m) => Object.keys(m.data as Record<string, string>))
        .map((id) => id.replace(/^annotation::/i, ''));
    };
    const s1 = exampleStack();
    const quiet = new ecs.FargateTaskDefinition(s1, 'T');
    quiet.addContainer('app', { image: ecs.ContainerImage.fromRegistry('app:1') });
    new DatabaseProxySidecar(s1, 'Proxy', { image }).addTo(quiet, {
      output: s1.output('broker/orders/orders-postgres'),
    });
    expect(acks(quiet)).toEqual(['AwsSolutions-ECS2']);

    const s2 = exampleStack();
    const chatty = new ecs.FargateTaskDefinition(s2, 'T');
    new DatabaseProxySidecar(s2, 'Proxy', { image }).addTo(chatty, {
      output: s2.output('broker/orders/orders-postgres'),
    });
    // Added after the sidecar: the application's own variables are its owner's to acknowledge.
    chatty.addContainer('app', {
      image: ecs.ContainerImage.fromRegistry('app:1'),
      environment: { PGHOST: '127.0.0.1' },
    });
    expect(acks(chatty)).toEqual([]);
  });
});

describe('BotOutput for Lambda workloads', () => {
  it('bindToFunction sets the secret ARN variable and grants read on that secret and its key only', () => {
    const secret = { Ref: logicalId(template, 'AWS::SecretsManager::Secret', 'BotordersOutput0Secret') };
    expect(lambdaEnv(template, 'Consumer')).toEqual({
      DB_SECRET_ID: secret,
    });
    const statements = statementsOfRole(
      template,
      logicalId(template, 'AWS::IAM::Role', 'ConsumerServiceRole'),
    );
    expect(statements).toEqual([
      {
        Effect: 'Allow',
        Action: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'],
        Resource: secret,
      },
      expect.objectContaining({
        Action: 'kms:Decrypt',
        Condition: expect.objectContaining({ StringEquals: expect.anything() }),
      }),
    ]);
  });

  it('refuses an environment variable name that is not one', () => {
    const fn = new lambda.Function(stack, 'Other', {
      runtime: lambda.Runtime.NODEJS_24_X,
      handler: 'index.handler',
      code: inlineCode(),
    });
    expect(() => stack.output('broker/orders/orders-postgres').bindToFunction(fn, 'db-secret')).toThrow(
      /Output0: the envName of bindToFunction is "db-secret": not an environment variable name; use letters/,
    );
  });

  it('names the known outputs when asked for an unknown one', () => {
    expect(() => stack.output('nope')).toThrow(
      /no bot writes a secret named "nope"; the outputs are "broker\/orders\/orders-postgres"/,
    );
  });
});
