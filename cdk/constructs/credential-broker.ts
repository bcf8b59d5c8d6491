import type { Duration } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { type BrokerBotDefinition, readBrokerFiles } from '../broker-files.js';
import { AlarmTopic } from './alarm-topic.js';
import { Authority, type AuthorityProps } from './authority.js';
import { Bot } from './bot.js';
import type { BotOutput } from './bot-output.js';
import { CaRotation } from './ca-rotation.js';
import { DbServerCertificates } from './db-server-certificates.js';
import { BrokerPropError } from './props.js';

export type { BrokerBotDefinition } from '../broker-files.js';

/** What the broker is built from, given as text (resourcesYaml, bots). */
export interface BrokerDefinitionProps {
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
   * @default - the bundles in dist/functions (run `npm run build` first; an installed package ships them)
   */
  readonly code?: {
    readonly authority?: lambda.Code;
    readonly bot?: lambda.Code;
    readonly rotate?: lambda.Code;
    readonly serverCertificates?: lambda.Code;
  };
  /**
   * Create an encrypted SNS topic that receives every alarm.
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
  /**
   * Run each bot once during `cdk deploy` (see BotProps.runOnDeploy).
   * @default true
   */
  readonly runOnDeploy?: boolean;
  /**
   * The KMS key spec of every CA key (see AuthorityProps.caKeySpec).
   * @default 'RSA_2048'
   */
  readonly caKeySpec?: AuthorityProps['caKeySpec'];
  /**
   * CAs to rotate next (see CaRotationProps.nextCaKeys): the stack creates a next KMS key for each and the
   * rotation action, an operator-only Lambda that runs `broker auth rotate`.
   * @default - no rotation action and no next keys
   */
  readonly nextCaKeys?: readonly string[];
  /**
   * Create the database server certificate action (DbServerCertificates), an operator-only Lambda that
   * signs with the KMS-held db-server CA (`broker auth sign --format=db --function`).
   * @default - true when nextCaKeys names db-server (its update_servers phase needs new server certificates), else false
   */
  readonly dbServerCertificates?: boolean;
}

/** The parts of a broker, as the CredentialBroker construct and the BrokerStack hold them. */
export interface BrokerParts {
  readonly authority: Authority;
  readonly bots: ReadonlyMap<string, Bot>;
  readonly alarmTopic: AlarmTopic | undefined;
  /** The rotation action and next CA keys, when `nextCaKeys` names any. */
  readonly rotation: CaRotation | undefined;
  /** The database server certificate action, when `dbServerCertificates` (or a db-server rotation) asks for it. */
  readonly serverCertificates: DbServerCertificates | undefined;
}

/**
 * Builds the authority, one Bot per definition and the optional alarm topic directly in `scope` (the
 * BrokerStack passes itself, so its construct paths stay `Broker/Authority`, `Broker/Bot-<name>`).
 */
export function addBrokerParts(scope: Construct, props: BrokerDefinitionProps): BrokerParts {
  if (props.bots.length === 0)
    throw new BrokerPropError(
      `${scope.node.path}: bots is empty: a broker without bots issues nothing; give at least one bot configuration`,
    );
  const authority = new Authority(scope, 'Authority', {
    resourcesYaml: props.resourcesYaml,
    ...(props.resourcesFile ? { resourcesFile: props.resourcesFile } : {}),
    ...(props.clusterName ? { clusterName: props.clusterName } : {}),
    ...(props.code?.authority ? { code: props.code.authority } : {}),
    ...(props.caKeySpec ? { caKeySpec: props.caKeySpec } : {}),
  });
  const rotation = props.nextCaKeys?.length
    ? new CaRotation(scope, 'CaRotation', {
        authority,
        nextCaKeys: props.nextCaKeys,
        ...(props.code?.rotate ? { code: props.code.rotate } : {}),
      })
    : undefined;
  const serverCertificates =
    (props.dbServerCertificates ?? props.nextCaKeys?.includes('db-server'))
      ? new DbServerCertificates(scope, 'DbServerCertificates', {
          authority,
          ...(rotation ? { rotation } : {}),
          ...(props.code?.serverCertificates ? { code: props.code.serverCertificates } : {}),
        })
      : undefined;
  const bots = new Map<string, Bot>();
  for (const def of props.bots) {
    if (bots.has(def.name))
      throw new BrokerPropError(
        `${scope.node.path}: bots names ${JSON.stringify(def.name)} twice${def.configFile ? ` (${def.configFile})` : ''}; give each bot one configuration`,
      );
    bots.set(
      def.name,
      new Bot(scope, `Bot-${def.name}`, {
        name: def.name,
        configYaml: def.configYaml,
        authority,
        ...(def.configFile ? { configFile: def.configFile } : {}),
        ...(props.code?.bot ? { code: props.code.bot } : {}),
        ...(props.expiryAlarmMargin ? { expiryAlarmMargin: props.expiryAlarmMargin } : {}),
        ...(props.runOnDeploy !== undefined ? { runOnDeploy: props.runOnDeploy } : {}),
      }),
    );
  }
  const alarmTopic =
    (props.alarmTopic ?? props.alarmEmail !== undefined)
      ? new AlarmTopic(scope, 'Alarms', props.alarmEmail ? { email: props.alarmEmail } : {})
      : undefined;
  if (alarmTopic)
    for (const alarm of [...authority.alarms, ...[...bots.values()].flatMap((b) => b.alarms)])
      alarmTopic.notify(alarm);
  return { authority, bots, alarmTopic, rotation, serverCertificates };
}

/** The output (of any bot) that writes the secret `secretName`, or an error naming the ones there are. */
export function findOutput(scope: Construct, bots: ReadonlyMap<string, Bot>, secretName: string): BotOutput {
  for (const bot of bots.values()) {
    const found = bot.outputs.find((o) => o.secretName === secretName);
    if (found) return found;
  }
  throw new BrokerPropError(
    `${scope.node.path}: no bot writes a secret named ${JSON.stringify(secretName)}; the outputs are ${[
      ...bots.values(),
    ]
      .flatMap((b) => b.outputs.map((o) => JSON.stringify(o.secretName)))
      .join(', ')}`,
  );
}

export interface CredentialBrokerProps extends Omit<BrokerDefinitionProps, 'resourcesYaml' | 'bots'> {
  /**
   * The resource YAML as text. Give it, or `resourcesFile` alone to have the file read.
   * @default - read from `resourcesFile`
   */
  readonly resourcesYaml?: string;
  /**
   * The resource file (roles, dbs, bots): read at synth when `resourcesYaml` is not given, and named in
   * error messages either way. Relative paths are relative to the working directory of `cdk synth`.
   * @default - none: give `resourcesFile` or `resourcesYaml`
   */
  readonly resourcesFile?: string;
  /**
   * The bots, as text. Give these, or `botConfigFiles`, or both.
   * @default - none
   */
  readonly bots?: readonly BrokerBotDefinition[];
  /**
   * Bot configuration files, read at synth; each bot is named after its file (`bots/orders.yaml` → bot
   * `orders`, which the resources must define).
   * @default - none
   */
  readonly botConfigFiles?: readonly string[];
}

/**
 * The credential broker in your own CDK app: the authority (Lambda, CA keys in KMS, DynamoDB state), one
 * scheduled bot Lambda per bot configuration with a Secrets Manager secret per output, alarms, and
 * optionally an encrypted SNS topic for them — built from a resource file and bot configurations, each
 * validated with the broker's own parsers and access rules at synth.
 *
 * ```ts
 * const broker = new CredentialBroker(stack, 'Broker', {
 *   resourcesFile: 'broker/resources.yaml',
 *   botConfigFiles: ['broker/bots/orders.yaml'],
 * });
 * new DatabaseProxySidecar(stack, 'DbProxy').addTo(task, { output: broker.output('broker/orders/orders-postgres') });
 * ```
 */
export class CredentialBroker extends Construct implements BrokerParts {
  readonly authority: Authority;
  readonly bots: ReadonlyMap<string, Bot>;
  readonly alarmTopic: AlarmTopic | undefined;
  readonly rotation: CaRotation | undefined;
  readonly serverCertificates: DbServerCertificates | undefined;

  constructor(scope: Construct, id: string, props: CredentialBrokerProps) {
    super(scope, id);
    const { resourcesYaml, resourcesFile, bots, botConfigFiles, ...rest } = props;
    if (resourcesYaml === undefined && resourcesFile === undefined)
      throw new BrokerPropError(
        `${this.node.path}: resourcesFile is not set: give the resource file (roles, dbs, bots), or its text as resourcesYaml`,
      );
    const fromFiles = readBrokerFiles(
      resourcesYaml === undefined ? (resourcesFile as string) : undefined,
      botConfigFiles ?? [],
    );
    const parts = addBrokerParts(this, {
      ...rest,
      resourcesYaml: resourcesYaml ?? fromFiles.resourcesYaml ?? '',
      ...(resourcesFile !== undefined ? { resourcesFile } : {}),
      bots: [...(bots ?? []), ...fromFiles.bots],
    });
    this.authority = parts.authority;
    this.bots = parts.bots;
    this.alarmTopic = parts.alarmTopic;
    this.rotation = parts.rotation;
    this.serverCertificates = parts.serverCertificates;
  }

  /** The output (of any bot) that writes the secret `secretName`: pass it to the sidecar or grant read on it. */
  output(secretName: string): BotOutput {
    return findOutput(this, this.bots, secretName);
  }

  /** Every alarm of the broker: the authority's and each bot's. */
  get alarms(): cloudwatch.Alarm[] {
    return [...this.authority.alarms, ...[...this.bots.values()].flatMap((b) => b.alarms)];
  }
}
