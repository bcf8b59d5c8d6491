// A CDK app of your own with the broker in it: the broker from this directory's resources.yaml and bot
// configurations, and an ECS task definition whose application reaches PostgreSQL through the broker's proxy
// sidecar. In your own project the import is the same (`npm install db-credential-broker`).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Stack, type StackProps, Validations } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type { Construct } from 'constructs';
import { CredentialBroker, DatabaseProxySidecar } from 'db-credential-broker/cdk';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface OrdersStackProps extends StackProps {
  /**
   * Subscribe this address to the broker's alarm topic.
   * @default - the topic without a subscription
   */
  readonly alarmEmail?: string;
}

/** The orders service's stack: the credential broker and the orders API task with its proxy sidecar. */
export class OrdersStack extends Stack {
  readonly broker: CredentialBroker;
  readonly task: ecs.FargateTaskDefinition;

  constructor(scope: Construct, id: string, props: OrdersStackProps = {}) {
    super(scope, id, props);
    this.broker = new CredentialBroker(this, 'Broker', {
      resourcesFile: path.join(here, 'resources.yaml'),
      botConfigFiles: [path.join(here, 'bots', 'orders.yaml'), path.join(here, 'bots', 'reports.yaml')],
      alarmTopic: true,
      ...(props.alarmEmail ? { alarmEmail: props.alarmEmail } : {}),
    });

    this.task = new ecs.FargateTaskDefinition(this, 'OrdersApi', { cpu: 256, memoryLimitMiB: 512 });
    this.task.addContainer('api', {
      image: ecs.ContainerImage.fromRegistry('example/orders-api:1.4'),
      // Tunnel mode: plain PostgreSQL to the sidecar on loopback; the sidecar does mutual TLS upstream with
      // the current certificate of orders_app. No password, no certificate in the application.
      environment: {
        PGHOST: '127.0.0.1',
        PGPORT: '5432',
        PGDATABASE: 'orders',
        PGUSER: 'orders_app',
        PGSSLMODE: 'disable',
      },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'api' }),
    });
    // The sidecar acknowledges cdk-nag's AwsSolutions-ECS2 for its own environment only while it is the only
    // container with one; this task's own variables are acknowledged here, for this task definition only.
    Validations.of(this.task.node.defaultChild as Construct).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason:
        'The api container gets the PostgreSQL connection settings (host, port, database, user, sslmode) and the broker-proxy container the bundle secret ARN and listener settings: no secret in either; credentials come from the broker at run time.',
    });
    new DatabaseProxySidecar(this, 'DbProxy').addTo(this.task, {
      output: this.broker.output('broker/orders/orders-postgres'),
    });
    // Run it with your cluster: new ecs.FargateService(this, 'Service', { cluster, taskDefinition: this.task })
  }
}
