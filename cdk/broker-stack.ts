import { CfnOutput, type Duration, Stack, type StackProps } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { AlarmTopic } from './constructs/alarm-topic.js';
import { Authority } from './constructs/authority.js';
import { Bot } from './constructs/bot.js';
import type { BotOutput } from './constructs/bot-output.js';
import { BrokerPropError } from './constructs/props.js';

/** One bot of the stack: its name (a `kind: bot` resource) and its configuration text. */
export interface BrokerBotDefinition {
  /**
   * The bot resource's name.
   * @default - none: required
   */
  readonly name: string;
  /**
   * The bot configuration (tbot v2 YAML).
   * @default - none: required
   */
  readonly configYaml: string;
  /**
   * Where it came from, for error messages.
   * @default `bot <name>`
   */
  readonly configFile?: string;
}

export interface BrokerStackProps extends StackProps {
  /**
   * The resource YAML (roles, dbs, bots) the authority is deployed with.
   * @default - none: required
   */
  readonly resourcesYaml: string;
  /**
   * The file the resources came from, for error messages.
   * @default 'resources'
   */
  readonly resourcesFile?: string;
  /**
   * The bots, one scheduled Lambda each.
   * @default - none: required (at least one)
   */
  readonly bots: readonly BrokerBotDefinition[];
  /**
   * The cluster name in the CA certificates.
   * @default 'broker'
   */
  readonly clusterName?: string;
  /**
   * Lambda code overrides; unit tests pass lambda.Code.fromInline to skip the esbuild bundles.
   * @default - the bundles in dist/functions (run `npm run build` first)
   */
  readonly code?: { readonly authority?: lambda.Code; readonly bot?: lambda.Code };
  /**
   * Create an encrypted SNS topic that receives every alarm of the stack.
   * @default false, or true when `alarmEmail` is given
   */
  readonly alarmTopic?: boolean;
  /**
   * Subscribe this address to the alarm topic.
   * @default - no subscription
   */
  readonly alarmEmail?: string;
  /**
   * Alarm when an output's certificate has less than this long to live.
   * @default - see BotProps.expiryAlarmMargin
   */
  readonly expiryAlarmMargin?: Duration;
}

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
      ...stackProps
    } = props;
    super(scope, id, {
      description:
        'Credential broker: authority, scheduled bots and their Secrets Manager credential bundles',
      ...stackProps,
    });
    if (props.bots.length === 0)
      throw new BrokerPropError(
        `${this.node.path}: bots is empty: a broker without bots issues nothing; give at least one bot configuration (-c bots=path.yaml)`,
      );
    this.authority = new Authority(this, 'Authority', {
      resourcesYaml: props.resourcesYaml,
      ...(props.resourcesFile ? { resourcesFile: props.resourcesFile } : {}),
      ...(props.clusterName ? { clusterName: props.clusterName } : {}),
      ...(props.code?.authority ? { code: props.code.authority } : {}),
    });
    const bots = new Map<string, Bot>();
    for (const def of props.bots) {
      if (bots.has(def.name))
        throw new BrokerPropError(
          `${this.node.path}: bots names ${JSON.stringify(def.name)} twice${def.configFile ? ` (${def.configFile})` : ''}; give each bot one configuration`,
        );
      bots.set(
        def.name,
        new Bot(this, `Bot-${def.name}`, {
          name: def.name,
          configYaml: def.configYaml,
          authority: this.authority,
          ...(def.configFile ? { configFile: def.configFile } : {}),
          ...(props.code?.bot ? { code: props.code.bot } : {}),
          ...(props.expiryAlarmMargin ? { expiryAlarmMargin: props.expiryAlarmMargin } : {}),
        }),
      );
    }
    this.bots = bots;

    this.alarmTopic =
      (props.alarmTopic ?? props.alarmEmail !== undefined)
        ? new AlarmTopic(this, 'Alarms', props.alarmEmail ? { email: props.alarmEmail } : {})
        : undefined;
    if (this.alarmTopic)
      for (const alarm of [...this.authority.alarms, ...[...bots.values()].flatMap((b) => b.alarms)])
        this.alarmTopic.notify(alarm);

    new CfnOutput(this, 'AuthorityFunctionName', {
      description: 'The authority Lambda (aws lambda invoke ... ca-bundles prints the CA certificates)',
      value: this.authority.function.functionName,
    });
    new CfnOutput(this, 'StateTableName', {
      description: 'The authority state table (locks live under pk "locks")',
      value: this.authority.table.tableName,
    });
    for (const bot of bots.values()) {
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
  }

  /** The output (of any bot) that writes the secret `secretName`. */
  output(secretName: string): BotOutput {
    for (const bot of this.bots.values()) {
      const found = bot.outputs.find((o) => o.secretName === secretName);
      if (found) return found;
    }
    throw new BrokerPropError(
      `${this.node.path}: no bot writes a secret named ${JSON.stringify(secretName)}; the outputs are ${[
        ...this.bots.values(),
      ]
        .flatMap((b) => b.outputs.map((o) => JSON.stringify(o.secretName)))
        .join(', ')}`,
    );
  }
}
