import { Annotations, Aws, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as triggers from 'aws-cdk-lib/triggers';
import { Construct } from 'constructs';
import { resourceName } from '../../src/authority/resources.js';
import {
  type BotConfig,
  parseBotConfig,
  SECRET_WRITE_GUIDANCE,
  SECRET_WRITE_MIN_INTERVAL_MS,
} from '../../src/bot/config.js';
import { checkBotOutputs, describeRefusal } from '../../src/cli/check.js';
import { parseYamlDocuments } from '../../src/config/yaml.js';
import { formatDuration } from '../../src/duration.js';
import { type Authority, LAMBDA_ENVIRONMENT_MAX_BYTES, METRIC_NAMESPACE } from './authority.js';
import { BotOutput } from './bot-output.js';
import { BrokerFunction, functionBundle } from './broker-function.js';
import { BrokerPropError, badProp, checkDuration, checkInteger } from './props.js';

/**
 * The scheduler's Lambda target, granting its role lambda:InvokeFunction on the unqualified function only:
 * the stock target grants `<function>:*` too (every version and alias), which the schedule never calls.
 */
class InvokeUnqualified extends targets.LambdaInvoke {
  constructor(
    private readonly target: lambda.IFunction,
    props: targets.ScheduleTargetBaseProps,
  ) {
    super(target, props);
  }

  protected override addTargetActionToRole(role: iam.IRole): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [this.target.functionArn] }),
    );
  }
}

/** Secret names each stack has handed out, so two bots never write one secret. */
const claimedSecrets = new WeakMap<Stack, Map<string, string>>();

export interface BotProps {
  /**
   * The bot's name: a `kind: bot` resource in the authority's resources. The stack creates the iam join
   * token for it (named by the config's onboarding.token) from this construct's Lambda role.
   * @default - none: required
   */
  readonly name: string;
  /**
   * The bot configuration (tbot v2 YAML, one document), validated here with parseBotConfig and delivered to
   * the Lambda as BROKER_BOT_CONFIG, the document as JSON. In AWS mode: `onboarding.join_method: iam` with
   * `token` naming the iam token, `storage.type: memory`, and every output a `secretsmanager` destination.
   * `auth_server` and `ca_pins` are not used: the bot invokes the authority Lambda.
   * @default - none: required
   */
  readonly configYaml: string;
  /**
   * The file the configuration came from, for error messages.
   * @default `bot <name>`
   */
  readonly configFile?: string;
  /**
   * The authority the bot joins and asks for certificates.
   * @default - none: required
   */
  readonly authority: Authority;
  /**
   * The bot Lambda's code. Unit tests pass lambda.Code.fromInline to skip the bundle.
   * @default - the esbuild bundle dist/functions/bot (run `npm run build` first)
   */
  readonly code?: lambda.Code;
  /**
   * Memory of the bot Lambda in MiB (RSA key generation, two keys per output and run, is CPU-bound).
   * @default 1024
   */
  readonly memorySize?: number;
  /**
   * Longest run; must be shorter than the renewal interval.
   * @default Duration.minutes(2), or the renewal interval less one minute when that is shorter
   */
  readonly timeout?: Duration;
  /**
   * Stack traces through source maps (NODE_OPTIONS=--enable-source-maps); build with
   * `BROKER_SOURCEMAP=1 npm run build` so the bundle ships its map. Off by default: it slows cold starts.
   * @default false
   */
  readonly sourceMaps?: boolean;
  /**
   * How long the bot's log group keeps logs.
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * The customer-managed KMS key the output secrets are encrypted with.
   * @default - a new key for this bot, with yearly rotation
   */
  readonly encryptionKey?: kms.IKey;
  /**
   * How often EventBridge Scheduler retries a run it could not deliver to the Lambda (throttling, a
   * missing permission) before sending it to the dead-letter queue.
   * @default 3
   */
  readonly scheduleRetryAttempts?: number;
  /**
   * How often Lambda retries a run that failed (the scheduler invokes asynchronously, so a failed run is
   * retried by Lambda and then sent to the dead-letter queue, not by the scheduler's retry policy).
   * @default 2
   */
  readonly retryAttempts?: number;
  /**
   * Alarm when an output's certificate has less than this long to live. The bot publishes SecondsToExpiry
   * only when it wrote a bundle, so the alarm fires when no bundle was written for (credential_ttl − margin).
   * @default - half of (credential_ttl − renewal_interval) of each output: 20 minutes for 1h / 20m
   */
  readonly expiryAlarmMargin?: Duration;
  /**
   * Run the bot once during `cdk deploy` (an aws-cdk-lib `triggers.Trigger` invoking its Lambda and waiting
   * for the result), after the authority and the bot's own resources exist and again whenever the bot's
   * function changes, so that every output holds a bundle when the deployment ends. Consumers made with
   * grantRead, bindToFunction or DatabaseProxySidecar, and the expiry alarms, are created after it. A run
   * that fails fails the deployment with the bot's error. With `false` the first bundle comes with the first
   * scheduled run (within one renewal interval), and the expiry alarms fire until then.
   * @default true
   */
  readonly runOnDeploy?: boolean;
  /**
   * What happens to the output secrets and their key when they leave the stack. Bundles are short-lived
   * and the bot writes new ones, so nothing is kept by default.
   * @default RemovalPolicy.DESTROY
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * One bot in AWS mode: a Lambda run by an EventBridge Scheduler schedule every renewal interval (with a
 * retry policy and an encrypted SQS dead-letter queue, for the schedule and for failed runs), its own
 * role, the iam join token derived from that role, one Secrets Manager secret per output (customer-managed
 * KMS key, no initial value) and alarms on failed runs, dead letters and outputs near expiry.
 *
 * The bot may invoke only the authority, write only its own secrets, and use the key only for them.
 */
export class Bot extends Construct {
  readonly botName: string;
  readonly config: BotConfig;
  readonly function: BrokerFunction;
  readonly outputs: readonly BotOutput[];
  readonly encryptionKey: kms.IKey;
  readonly deadLetterQueue: sqs.Queue;
  readonly schedule: scheduler.Schedule;
  /** The schedule's period: the shortest renewal interval of the bot and its outputs. */
  readonly renewalInterval: Duration;
  readonly alarms: cloudwatch.Alarm[] = [];
  /** The run during `cdk deploy` (runOnDeploy), if any. */
  readonly firstRun: triggers.Trigger | undefined;

  constructor(scope: Construct, id: string, props: BotProps) {
    super(scope, id);
    const file = props.configFile ?? `bot ${props.name}`;
    const name = resourceName.safeParse(props.name);
    if (!name.success)
      badProp(
        this,
        'name',
        props.name,
        name.error.issues[0]?.message ?? 'not a resource name',
        'rename the bot',
      );
    if (!props.authority.hasBot(props.name))
      badProp(
        this,
        'name',
        props.name,
        'the authority resources define no `kind: bot` resource with that name',
        `add one to the resources, or name the bot config file after an existing bot (${file})`,
      );
    this.botName = props.name;
    this.config = parseBotConfig(props.configYaml, file);
    this.checkAwsMode(file, props.authority);
    const config = this.config;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.DESTROY;

    const intervals = [
      config.renewal_interval,
      ...config.outputs.map((o) => o.renewal_interval ?? config.renewal_interval),
    ];
    const shortest = Math.min(...intervals);
    if (shortest % 60_000 !== 0)
      badProp(
        this,
        `${file} renewal_interval`,
        formatDuration(shortest),
        'not a whole number of minutes, which an EventBridge Scheduler rate needs',
        'use e.g. "20m"',
      );
    // Every scheduled run writes every output, so the schedule's period is each secret's write interval
    // (parseBotConfig checked each output's own interval; a shorter top-level one sets the schedule too).
    if (shortest < SECRET_WRITE_MIN_INTERVAL_MS)
      badProp(
        this,
        `${file} renewal_interval`,
        formatDuration(shortest),
        `every run writes every output secret, more often than every 10m0s: ${SECRET_WRITE_GUIDANCE}`,
        'use at least "10m"',
      );
    this.renewalInterval = Duration.minutes(shortest / 60_000);
    const timeout =
      props.timeout ?? Duration.seconds(Math.min(120, this.renewalInterval.toSeconds() - 60) || 30);
    checkDuration(this, 'timeout', timeout, { min: Duration.seconds(10), max: Duration.minutes(15) });
    if (timeout.toSeconds() >= this.renewalInterval.toSeconds())
      badProp(
        this,
        'timeout',
        timeout,
        `not shorter than the renewal interval (${this.renewalInterval.toHumanString()}): runs could overlap`,
        'give a shorter timeout',
      );

    this.encryptionKey =
      props.encryptionKey ??
      new kms.Key(this, 'SecretsKey', {
        description: `Encrypts the credential bundles of broker bot ${props.name}`,
        enableKeyRotation: true,
        pendingWindow: Duration.days(7),
        removalPolicy,
      });

    const claimed = claimedSecrets.get(Stack.of(this)) ?? new Map<string, string>();
    claimedSecrets.set(Stack.of(this), claimed);
    this.outputs = config.outputs.map((o, i) => {
      if (o.destination.type !== 'secretsmanager') throw new Error('unreachable: checked in checkAwsMode');
      const secretName = o.destination.name;
      const owner = claimed.get(secretName);
      if (owner)
        badProp(
          this,
          `${file} outputs[${i}].destination.name`,
          secretName,
          `bot ${JSON.stringify(owner)} writes that secret already`,
          'give every output its own secret name',
        );
      claimed.set(secretName, props.name);
      const db = props.authority.db(o.service);
      const output = new BotOutput(this, `Output${i}`, {
        secretName,
        encryptionKey: this.encryptionKey,
        route: { service: o.service, database: o.database ?? '', username: o.username },
        removalPolicy,
        ...(db ? { protocol: db.spec.protocol } : {}),
      });
      return output;
    });
    const dimensions = new Map<string, number>();
    this.outputs.forEach((o, i) => {
      const seen = dimensions.get(o.metricDimension);
      if (seen !== undefined)
        Annotations.of(this).addWarningV2(
          'broker:SharedOutputMetric',
          `${file}: outputs ${seen} and ${i} have the same route ${o.metricDimension}; their SecondsToExpiry metrics share one series, so one output's expiry alarm can be held off by the other`,
        );
      dimensions.set(o.metricDimension, i);
    });

    // The validated document as compact JSON: the Lambda reads it without the YAML library (a faster cold
    // start), and comments and layout cost nothing in the 4 KB environment.
    const configJson = JSON.stringify(parseYamlDocuments(props.configYaml, file)[0]?.value ?? null);
    const configValue = `base64:${Buffer.from(configJson, 'utf8').toString('base64')}`;
    const envSize = configValue.length + 'BROKER_BOT_CONFIG'.length + 200;
    if (envSize > LAMBDA_ENVIRONMENT_MAX_BYTES)
      badProp(
        this,
        'configYaml',
        `${configJson.length} characters as JSON`,
        `BROKER_BOT_CONFIG would take about ${envSize} bytes of Lambda's ${LAMBDA_ENVIRONMENT_MAX_BYTES}-byte environment`,
        'shorten names and secret names, or split the outputs across bots',
      );
    this.function = new BrokerFunction(this, 'Function', {
      code: props.code ?? functionBundle('bot'),
      description: `credential broker bot ${props.name}`,
      memorySize: props.memorySize ?? 1024,
      timeout,
      logRetention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      sourceMaps: props.sourceMaps ?? false,
      environment: {
        BROKER_BOT_CONFIG: configValue,
        BROKER_AUTHORITY_FUNCTION: props.authority.function.functionArn,
        BROKER_STACK_NAME: Stack.of(this).stackName,
      },
    });
    const role = this.function.executionRole;
    props.authority.grantInvoke(this.function);
    props.authority.addIamJoinToken({ name: config.onboarding.token, botName: props.name, role });
    for (const output of this.outputs) output.restrictWritesTo(role);
    const secretArns = this.outputs.map((o) => o.secretArn);
    // Exactly what src/destinations/secretsmanager.ts calls to write a bundle, on this bot's secrets only.
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: [
          'secretsmanager:PutSecretValue',
          'secretsmanager:GetSecretValue',
          'secretsmanager:DescribeSecret',
          'secretsmanager:UpdateSecretVersionStage',
        ],
        resources: secretArns,
      }),
    );
    // Secrets Manager encrypts a new version under a data key (kms:GenerateDataKey) and reads one back
    // (kms:Decrypt); it never calls kms:Encrypt with the secret's key.
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [this.encryptionKey.keyArn],
        conditions: {
          StringEquals: {
            'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com`,
            'kms:EncryptionContext:SecretARN': secretArns,
          },
        },
      }),
    );

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    // On the queue resource itself, so that nothing else under the construct (its policy) inherits it.
    Validations.of(this.deadLetterQueue.node.defaultChild as sqs.CfnQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is the dead-letter queue: of the bot schedule (runs EventBridge Scheduler could not deliver) and of the bot Lambda (failed asynchronous runs, as on-failure destination); a queue behind it would only collect what nobody consumes from a DLQ.',
    });
    // A run older than one interval is superseded by the next scheduled run.
    const maxEventAge = Duration.seconds(Math.min(Math.max(this.renewalInterval.toSeconds(), 60), 6 * 3600));
    const retryAttempts = props.retryAttempts ?? 2;
    checkInteger(this, 'retryAttempts', retryAttempts, 0, 2);
    this.function.configureAsyncInvoke({
      onFailure: new destinations.SqsDestination(this.deadLetterQueue),
      retryAttempts,
      maxEventAge,
    });
    const scheduleRetryAttempts = props.scheduleRetryAttempts ?? 3;
    checkInteger(this, 'scheduleRetryAttempts', scheduleRetryAttempts, 0, 185);
    this.schedule = new scheduler.Schedule(this, 'Schedule', {
      description: `Runs broker bot ${props.name} every ${this.renewalInterval.toHumanString()}`,
      schedule: scheduler.ScheduleExpression.rate(this.renewalInterval),
      target: new InvokeUnqualified(this.function, {
        deadLetterQueue: this.deadLetterQueue,
        retryAttempts: scheduleRetryAttempts,
        maxEventAge,
      }),
    });

    this.firstRun = (props.runOnDeploy ?? true) ? this.runOnDeploy(props.authority, timeout) : undefined;
    this.createAlarms(props.expiryAlarmMargin, file);
  }

  /**
   * Invokes the bot once during the deployment, synchronously, after everything its run needs: the
   * authority (function, table, CA keys, the iam token in its resources) and this bot's role, policies and
   * secrets. Re-runs when the function's code or configuration changes (a new version).
   */
  private runOnDeploy(authority: Authority, timeout: Duration): triggers.Trigger {
    const needs = [authority, ...this.node.children];
    const trigger = new triggers.Trigger(this, 'FirstRun', {
      handler: this.function,
      invocationType: triggers.InvocationType.REQUEST_RESPONSE,
      // The provider waits for the synchronous invoke: the bot's own timeout and a minute for the cold start.
      timeout: Duration.seconds(Math.min(timeout.toSeconds() + 60, 900)),
      executeAfter: needs,
    });
    for (const output of this.outputs) output.firstRun.add(trigger);
    return trigger;
  }

  /** The output writing to the secret `secretName` (the config's destination.name). */
  output(secretName: string): BotOutput {
    const found = this.outputs.find((o) => o.secretName === secretName);
    if (!found)
      throw new BrokerPropError(
        `${this.node.path}: bot ${this.botName} has no output with secret ${JSON.stringify(secretName)}; it has ${this.outputs.map((o) => JSON.stringify(o.secretName)).join(', ')}`,
      );
    return found;
  }

  /** The configuration must be one the bot Lambda can run: iam join, no stored identity, secretsmanager outputs. */
  private checkAwsMode(file: string, authority: Authority): void {
    const c = this.config;
    if (c.onboarding.join_method !== 'iam')
      badProp(
        this,
        `${file} onboarding.join_method`,
        c.onboarding.join_method,
        'the bot Lambda joins with its role (a one-time token would need storage and a secret in the environment)',
        'set join_method: iam and token: <a name for the iam token>',
      );
    // The value is not shown: a one-time join token pasted here by mistake is a secret.
    if (!resourceName.safeParse(c.onboarding.token).success)
      throw new BrokerPropError(
        `${this.node.path}: ${file} onboarding.token (value not shown) is not a resource name: with join_method iam it names the iam token resource the stack creates; use a name such as "<bot>-bot-iam"`,
      );
    if (c.storage.type !== 'memory')
      badProp(
        this,
        `${file} storage.type`,
        c.storage.type,
        'an iam-joined bot joins again on every run and keeps no identity',
        'set storage: { type: memory }',
      );
    if (c.ca_pins.length > 0)
      Annotations.of(this).addWarningV2(
        'broker:CaPinsUnused',
        `${file}: ca_pins are not used in AWS mode (the bot reaches the authority through Lambda Invoke, not TLS)`,
      );
    c.outputs.forEach((o, i) => {
      const at = `${file} outputs[${i}]`;
      if (o.destination.type !== 'secretsmanager')
        badProp(
          this,
          `${at}.destination.type`,
          o.destination.type,
          'the bot Lambda has no lasting file system',
          'use destination: { type: secretsmanager, name: <secret name> }',
        );
      if (!authority.db(o.service))
        badProp(
          this,
          `${at}.service`,
          o.service,
          'the authority resources define no `kind: db` with that name, so every issuance would be refused',
          'add the db resource or fix the name',
        );
    });
    // The authority's own access decision for every output: one it would refuse fails synth, not each run.
    const refused = checkBotOutputs({
      resources: authority.resources,
      config: c,
      botName: this.botName,
    }).outputs.filter((o) => !o.allowed);
    const first = refused[0];
    if (first)
      badProp(
        this,
        `${file} outputs[${first.index}]`,
        first.output,
        `${describeRefusal(first)}${refused.length > 1 ? ` (and ${refused.length - 1} more output(s) of this bot)` : ''}`,
        'change the roles in the resources or the output; `broker check -f RESOURCES -c BOT_CONFIG` runs the same check',
      );
  }

  private createAlarms(margin: Duration | undefined, file: string): void {
    const interval = this.renewalInterval;
    this.alarms.push(
      this.function
        // One renewal interval, at most the day a CloudWatch alarm period can span.
        .metricErrors({
          period: Duration.seconds(Math.min(interval.toSeconds(), 86_400)),
          statistic: cloudwatch.Stats.SUM,
        })
        .createAlarm(this, 'ErrorsAlarm', {
          alarmDescription: `Broker bot ${this.botName} failed a run (join, issuance or a Secrets Manager write); the previous bundles stay until they expire. See its log group.`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
    );
    this.alarms.push(
      this.deadLetterQueue
        .metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(5),
          statistic: cloudwatch.Stats.MAXIMUM,
        })
        .createAlarm(this, 'DeadLetterAlarm', {
          alarmDescription: `Runs of broker bot ${this.botName} were given up (failed after retries, or not delivered by the scheduler); the messages in its dead-letter queue say why.`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
    );
    this.config.outputs.forEach((o, i) => {
      const output = this.outputs[i] as BotOutput;
      const ttl = o.credential_ttl ?? this.config.credential_ttl;
      const renew = o.renewal_interval ?? this.config.renewal_interval;
      const marginMs = margin?.toMilliseconds() ?? Math.floor((ttl - renew) / 2 / 60_000) * 60_000;
      const window = ttl - marginMs;
      if (marginMs < 60_000 || window < renew + 60_000)
        badProp(
          this,
          'expiryAlarmMargin',
          margin ?? formatDuration(marginMs),
          `for output ${i} of ${file} (credential_ttl ${formatDuration(ttl)}, renewal_interval ${formatDuration(renew)}) it must be at least 1 minute and leave more than one renewal interval before it`,
          'choose a margin between 1m and credential_ttl minus renewal_interval minus 1m, or lengthen credential_ttl',
        );
      if (window > 24 * 3_600_000)
        badProp(
          this,
          'expiryAlarmMargin',
          margin ?? formatDuration(marginMs),
          `for output ${i} of ${file} it leaves ${formatDuration(window)} without a renewal before the alarm, more than the 1 day an alarm can look back`,
          'choose a larger margin',
        );
      // Missing data counts as breaching: when no run wrote this output for (ttl − margin), its newest
      // certificate has less than `margin` left. A new certificate with less than `margin` alarms at once.
      const periods = Math.ceil(window / 60_000);
      const metric = new cloudwatch.Metric({
        namespace: METRIC_NAMESPACE,
        metricName: 'SecondsToExpiry',
        // Stack keeps the series of two stacks in one account and region apart (the bot emits the same pair).
        dimensionsMap: { Stack: Stack.of(this).stackName, Output: output.metricDimension },
        statistic: cloudwatch.Stats.MAXIMUM,
        period: Duration.minutes(1),
      });
      const alarm = metric.createAlarm(this, `ExpiryAlarm${i}`, {
        alarmDescription: `The credentials of ${output.metricDimension} (secret ${output.secretName}) expire within ${formatDuration(marginMs)}: broker bot ${this.botName} has not written them for ${formatDuration(window)}.`,
        threshold: marginMs / 1000,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: periods,
        datapointsToAlarm: periods,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      // Created after the first run: there is no "before the first bundle" for the alarm to count as
      // breaching. (CloudWatch evaluates a new alarm with the datapoints from before it was created.)
      if (this.firstRun) alarm.node.addDependency(this.firstRun);
      this.alarms.push(alarm);
    });
  }
}
