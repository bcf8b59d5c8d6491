import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { AlarmTopic } from './constructs/alarm-topic.js';
import type { Authority } from './constructs/authority.js';
import type { Bot } from './constructs/bot.js';
import type { BotOutput } from './constructs/bot-output.js';
import type { CaRotation } from './constructs/ca-rotation.js';
import { addBrokerParts, type BrokerDefinitionProps, findOutput } from './constructs/credential-broker.js';
import type { DbServerCertificates } from './constructs/db-server-certificates.js';

export type { BrokerBotDefinition } from './constructs/credential-broker.js';

/** The broker's definition (BrokerDefinitionProps) and the stack's own props. */
export interface BrokerStackProps extends StackProps, BrokerDefinitionProps {}

/**
 * The credential broker in one stack: the authority (Lambda, CA keys in KMS, DynamoDB state), one scheduled
 * bot Lambda per bot configuration with a Secrets Manager secret per output, alarms, and optionally an
 * encrypted SNS topic for them. Workloads read outputs with `stack.output(name).grantRead(...)` or the
 * DatabaseProxySidecar.
 */
export class BrokerStack extends Stack {
  readonly authority: Authority;
  readonly bots: ReadonlyMap<string, Bot>;
  readonly alarmTopic: AlarmTopic | undefined;
  readonly rotation: CaRotation | undefined;
  readonly serverCertificates: DbServerCertificates | undefined;

  constructor(scope: Construct, id: string, props: BrokerStackProps) {
    const {
      resourcesYaml: _resources,
      resourcesFile: _file,
      bots: _bots,
      clusterName: _cluster,
      code: _code,
      alarmTopic: _topic,
      alarmEmail: _email,
      expiryAlarmMargin: _margin,
      runOnDeploy: _run,
      caKeySpec: _keySpec,
      nextCaKeys: _nextKeys,
      dbServerCertificates: _serverCerts,
      ...stackProps
    } = props;
    super(scope, id, {
      description:
        'Credential broker: authority, scheduled bots and their Secrets Manager credential bundles',
      ...stackProps,
    });
    const parts = addBrokerParts(this, props);
    this.authority = parts.authority;
    this.bots = parts.bots;
    this.alarmTopic = parts.alarmTopic;
    this.rotation = parts.rotation;
    this.serverCertificates = parts.serverCertificates;

    new CfnOutput(this, 'AuthorityFunctionName', {
      description: 'The authority Lambda (aws lambda invoke ... ca-bundles prints the CA certificates)',
      value: this.authority.function.functionName,
    });
    new CfnOutput(this, 'StateTableName', {
      description: 'The authority state table (locks live under pk "locks")',
      value: this.authority.table.tableName,
    });
    for (const bot of this.bots.values()) {
      new CfnOutput(this, `BotFunction-${bot.botName}`, {
        description: `Bot ${bot.botName}'s Lambda (invoke it asynchronously to renew now)`,
        value: bot.function.functionName,
      });
      bot.outputs.forEach((o, i) => {
        new CfnOutput(this, `Bundle-${bot.botName}-${i}`, {
          description: `Secret holding the bundle of ${o.metricDimension} (bot ${bot.botName})`,
          value: o.secretArn,
        });
      });
    }
    if (this.alarmTopic)
      new CfnOutput(this, 'AlarmTopicArn', {
        description: 'Alarm notifications',
        value: this.alarmTopic.topic.topicArn,
      });
    if (this.rotation)
      new CfnOutput(this, 'RotationFunctionName', {
        description: 'The CA rotation action (operators only): invoke with {"type":..., "phase":...}',
        value: this.rotation.function.functionName,
      });
    if (this.serverCertificates)
      new CfnOutput(this, 'DbServerCertFunctionName', {
        description:
          'The database server certificate action (operators only): broker auth sign --format=db --function <this>',
        value: this.serverCertificates.function.functionName,
      });
  }

  /** The output (of any bot) that writes the secret `secretName`. */
  output(secretName: string): BotOutput {
    return findOutput(this, this.bots, secretName);
  }
}
