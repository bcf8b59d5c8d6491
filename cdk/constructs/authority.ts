import { Aws, Duration, Fn, Lazy, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import {
  type Db,
  parseResources,
  type Resource,
  resourceName,
  type TokenResource,
} from '../../src/authority/resources.js';
import { CA_DESCRIPTIONS, CA_TYPES, type CaType } from '../../src/pki/ca.js';
import { TTL_ATTRIBUTE } from '../../src/state/dynamodb-store.js';
import { BrokerFunction, functionBundle } from './broker-function.js';
import { BrokerPropError, badProp, checkDuration, checkInteger } from './props.js';

/** Lambda refuses a function whose environment variables (names and values) exceed 4 KB in total. */
export const LAMBDA_ENVIRONMENT_MAX_BYTES = 4096;

/** The namespace of every broker metric: the bot's EMF metrics and the authority's log metric. */
export const METRIC_NAMESPACE = 'Broker';

/** CloudWatch Logs filter for the authority's audit lines that record a refusal (src/aws/authority-bootstrap.ts). */
export const DENIED_AUDIT_FILTER = '{ ($.audit IS TRUE) && ($.outcome = "denied") }';

/**
 * The KMS key spec of the CA keys, and the algorithm src/pki/kms-signer.ts signs with for each (always with
 * message type DIGEST); the authority may sign no other way.
 */
export const CA_KEY_SPECS = {
  RSA_2048: { keySpec: kms.KeySpec.RSA_2048, signingAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256' },
  ECC_NIST_P256: { keySpec: kms.KeySpec.ECC_NIST_P256, signingAlgorithm: 'ECDSA_SHA_256' },
} as const;

export interface AuthorityProps {
  /**
   * The resource YAML (roles, dbs, bots; Teleport-shaped, several documents), validated here with the
   * authority's own parser (parseResources). The stack appends one iam `token` per Bot construct: do not
   * write those here.
   * @default - none: required
   */
  readonly resourcesYaml: string;
  /**
   * The file the resources came from, for error messages.
   * @default 'resources'
   */
  readonly resourcesFile?: string;
  /**
   * The cluster name, in the CA certificates' subjects (`<cluster> db-client CA`).
   * @default 'broker'
   */
  readonly clusterName?: string;
  /**
   * The KMS key spec of every CA key: `RSA_2048`, or `ECC_NIST_P256` for ECDSA CAs (ecdsa-with-SHA256
   * certificates, which every supported database accepts: README, "Key algorithms"). Changing it on a
   * deployed stack replaces the keys, and so the CAs: databases must be given the new client CAs.
   * @default 'RSA_2048'
   */
  readonly caKeySpec?: keyof typeof CA_KEY_SPECS;
  /**
   * The authority Lambda's code. Unit tests pass lambda.Code.fromInline to skip the bundle.
   * @default - the esbuild bundle dist/functions/authority (run `npm run build` first)
   */
  readonly code?: lambda.Code;
  /**
   * Memory of the authority Lambda in MiB.
   * @default 512
   */
  readonly memorySize?: number;
  /**
   * Longest authority request: an IAM join waits up to 10 s for AWS STS, then signs with KMS.
   * @default Duration.seconds(30)
   */
  readonly timeout?: Duration;
  /**
   * Stack traces through source maps (NODE_OPTIONS=--enable-source-maps); build with
   * `BROKER_SOURCEMAP=1 npm run build` so the bundle ships its map. Off by default: it slows cold starts.
   * @default false
   */
  readonly sourceMaps?: boolean;
  /**
   * How long the authority's log group (which holds the audit trail) keeps logs.
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * What happens to the state table, the CA keys and the log group when they leave the stack. Losing the
   * table or a CA key means new CAs that no database trusts yet, so the default keeps them.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Refusals (audit lines with outcome denied) per `denialAlarmPeriod` that raise the denial alarm.
   * @default 5
   */
  readonly denialAlarmThreshold?: number;
  /**
   * The window the denial alarm counts refusals in.
   * @default Duration.minutes(5)
   */
  readonly denialAlarmPeriod?: Duration;
}

/** An iam join token the stack derives from a bot Lambda's role. */
export interface IamJoinTokenOptions {
  /**
   * The token's name: the bot config's onboarding.token.
   * @default - none: required
   */
  readonly name: string;
  /**
   * The `kind: bot` resource the token joins as.
   * @default - none: required
   */
  readonly botName: string;
  /**
   * The role the bot Lambda runs as: STS reports it as `arn:<partition>:sts::<account>:assumed-role/<name>/<session>`.
   * @default - none: required
   */
  readonly role: iam.IRole;
}

/** Values the deploy fills in, as tokens (in the template) or as the longest real values (for size checks). */
interface DeployValues {
  account: string;
  partition: string;
  roleName(role: iam.IRole): string;
}

const TOKENS: DeployValues = {
  account: Aws.ACCOUNT_ID,
  partition: Aws.PARTITION,
  roleName: (r) => r.roleName,
};
const LONGEST: DeployValues = {
  account: '123456789012',
  partition: 'aws-us-gov',
  roleName: () => 'r'.repeat(64),
};

/**
 * The authority: its Lambda (the broker's Auth Service), the three CA keys in KMS (bot, database client,
 * database server; RSA_2048 or ECC_NIST_P256 SIGN_VERIFY, private keys never leave KMS) and one client CA key per db
 * resource (each database trusts only its own service's CA), the DynamoDB state table (CA
 * certificates, resources, tokens, challenges, generation counters, locks) and the resource configuration,
 * delivered to the Lambda as BROKER_RESOURCES and applied by it at cold start when it changed.
 */
export class Authority extends Construct {
  readonly function: BrokerFunction;
  readonly table: dynamodb.Table;
  readonly caKeys: Readonly<Record<CaType, kms.Key>>;
  /**
   * The key of each database service's own client CA, by service (db resource name): certificates for a
   * service are signed with its key only, and its database trusts only that CA.
   */
  readonly dbClientCaKeys: Readonly<Record<string, kms.Key>>;
  /** The authority Lambda's environment; the CA rotation action (./ca-rotation.ts) runs with the same. */
  readonly environment: Record<string, string>;
  /** The key spec of every CA key; a rotation's next keys have the same. */
  readonly caKeySpec: keyof typeof CA_KEY_SPECS;
  /** The resources from the YAML, parsed (without the iam tokens the stack adds). */
  readonly resources: readonly Resource[];
  /** Refusals audited by the authority, per `denialAlarmPeriod` (a metric filter on its log group). */
  readonly denialsMetric: cloudwatch.Metric;
  readonly alarms: cloudwatch.Alarm[] = [];
  private readonly resourcesFile: string;
  private readonly iamTokens: IamJoinTokenOptions[] = [];
  /** Each shared CA key's "only the authority signs" statement and the roles it lets sign. */
  private readonly signers = new Map<CaType, { statement: iam.PolicyStatement; roles: string[] }>();

  constructor(scope: Construct, id: string, props: AuthorityProps) {
    super(scope, id);
    this.resourcesFile = props.resourcesFile ?? 'resources';
    const clusterName = props.clusterName ?? 'broker';
    // The CA subject CN is `<cluster> <type> CA` and a CN holds at most 64 characters.
    if (!/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,49}$/.test(clusterName))
      badProp(
        this,
        'clusterName',
        clusterName,
        'not 1-50 letters, digits, spaces, ".", "_" or "-" starting with a letter or digit',
        'use a short name such as "broker" or "prod-broker"',
      );
    this.resources = parseResources(props.resourcesYaml, this.resourcesFile);
    this.checkReferences();
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const caKeySpec = props.caKeySpec ?? 'RSA_2048';
    if (!Object.hasOwn(CA_KEY_SPECS, caKeySpec))
      badProp(
        this,
        'caKeySpec',
        caKeySpec,
        'not a CA key spec',
        `use ${Object.keys(CA_KEY_SPECS).join(' or ')}`,
      );
    const { keySpec, signingAlgorithm } = CA_KEY_SPECS[caKeySpec];

    this.table = new dynamodb.Table(this, 'StateTable', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TTL_ATTRIBUTE,
      deletionProtection: removalPolicy === RemovalPolicy.RETAIN,
      removalPolicy,
    });

    const keys = {} as Record<CaType, kms.Key>;
    for (const type of CA_TYPES)
      keys[type] = new kms.Key(this, `CaKey-${type}`, {
        description: `${clusterName} ${type} CA: ${CA_DESCRIPTIONS[type]}`,
        keySpec,
        keyUsage: kms.KeyUsage.SIGN_VERIFY,
        pendingWindow: Duration.days(30),
        removalPolicy,
      });
    this.caKeys = keys;
    const dbClientKeys: Record<string, kms.Key> = {};
    for (const db of this.resources.filter((r): r is Db => r.kind === 'db'))
      dbClientKeys[db.metadata.name] = new kms.Key(this, `DbClientCaKey-${db.metadata.name}`, {
        description: `${clusterName} client CA of database service ${db.metadata.name}: signs its client certificates; only that database trusts it`,
        keySpec,
        keyUsage: kms.KeyUsage.SIGN_VERIFY,
        pendingWindow: Duration.days(30),
        removalPolicy,
      });
    this.dbClientCaKeys = dbClientKeys;
    const allKeys = [...CA_TYPES.map((t) => keys[t]), ...Object.values(dbClientKeys)];

    this.caKeySpec = caKeySpec;
    this.environment = {
      BROKER_TABLE_NAME: this.table.tableName,
      BROKER_CA_KEY_BOT: keys.bot.keyArn,
      BROKER_CA_KEY_DB_CLIENT: keys['db-client'].keyArn,
      BROKER_CA_KEY_DB_SERVER: keys['db-server'].keyArn,
      BROKER_CLUSTER_NAME: clusterName,
      // In every audit line, so that the denials metric of two stacks in one account and region keep apart.
      BROKER_STACK_NAME: Stack.of(this).stackName,
      // Key ids, not ARNs: the authority signs in its own account, and ids keep the 4 KB environment small.
      BROKER_DB_CLIENT_CA_KEYS: Stack.of(this).toJsonString(
        Object.fromEntries(Object.entries(dbClientKeys).map(([service, key]) => [service, key.keyId])),
      ),
      // Lazy: the Bot constructs add their iam tokens after this construct exists.
      BROKER_RESOURCES: Lazy.string({ produce: () => `base64:${Fn.base64(this.renderResources(TOKENS))}` }),
    };
    this.function = new BrokerFunction(this, 'Function', {
      code: props.code ?? functionBundle('authority'),
      description: `${clusterName} credential broker authority`,
      memorySize: props.memorySize ?? 512,
      timeout: props.timeout ?? Duration.seconds(30),
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      logRemovalPolicy: removalPolicy,
      sourceMaps: props.sourceMaps ?? false,
      environment: this.environment,
    });
    const role = this.function.executionRole;
    // Exactly what src/state/dynamodb-store.ts calls, on this table only (no index, no scan, no batch).
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Query'],
        resources: [this.table.tableArn],
      }),
    );
    const keyArns = allKeys.map((k) => k.keyArn);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:Sign'],
        resources: keyArns,
        conditions: {
          StringEquals: { 'kms:SigningAlgorithm': signingAlgorithm, 'kms:MessageType': 'DIGEST' },
        },
      }),
    );
    role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['kms:GetPublicKey'], resources: keyArns }));
    // Defence in depth: even an administrator's `kms:*` cannot sign with a CA key; only the authority can.
    for (const key of allKeys) {
      const statement = new iam.PolicyStatement({
        sid: 'OnlyTheAuthoritySigns',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['kms:Sign'],
        resources: ['*'],
        conditions: { ArnNotEquals: { 'aws:PrincipalArn': role.roleArn } },
      });
      key.addToResourcePolicy(statement);
      const type = CA_TYPES.find((t) => keys[t] === key);
      if (type) this.signers.set(type, { statement, roles: [role.roleArn] });
    }
    this.checkEnvironmentSize();

    const period = props.denialAlarmPeriod ?? Duration.minutes(5);
    checkDuration(this, 'denialAlarmPeriod', period, { min: Duration.minutes(1), max: Duration.hours(6) });
    const threshold = props.denialAlarmThreshold ?? 5;
    checkInteger(this, 'denialAlarmThreshold', threshold, 1, 1_000_000);
    new logs.MetricFilter(this, 'DenialsFilter', {
      logGroup: this.function.functionLogGroup,
      filterPattern: logs.FilterPattern.literal(DENIED_AUDIT_FILTER),
      metricNamespace: METRIC_NAMESPACE,
      metricName: 'AuthorityDenials',
      metricValue: '1',
      // The audit line's `stack` (BROKER_STACK_NAME): the same Stack dimension as the bots' SecondsToExpiry.
      dimensions: { Stack: '$.stack' },
    });
    this.denialsMetric = new cloudwatch.Metric({
      namespace: METRIC_NAMESPACE,
      metricName: 'AuthorityDenials',
      dimensionsMap: { Stack: Stack.of(this).stackName },
      statistic: cloudwatch.Stats.SUM,
      period,
    });
    this.alarms.push(
      this.denialsMetric.createAlarm(this, 'DenialsAlarm', {
        alarmDescription: `The ${clusterName} authority refused ${threshold} or more requests in ${period.toHumanString()} (failed joins, renewals from a stolen identity, issuance outside a bot's roles); see the audit lines with "outcome":"denied" in its log group`,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );
  }

  /**
   * Lets `role` sign with the `type` CA's key past its key policy (which denies kms:Sign to everyone but the
   * authority); the role still needs its own kms:Sign statement. For the operator-only actions.
   */
  allowCaKeySigner(type: CaType, role: iam.IRole): void {
    const signer = this.signers.get(type) as { statement: iam.PolicyStatement; roles: string[] };
    signer.roles.push(role.roleArn);
    signer.statement.addCondition('ArnNotEquals', { 'aws:PrincipalArn': [...signer.roles] });
  }

  /** The `kind: db` resource named `service`, if the resources define one. */
  db(service: string): Db | undefined {
    return this.resources.find((r): r is Db => r.kind === 'db' && r.metadata.name === service);
  }

  /** Whether the resources define the bot `name`. */
  hasBot(name: string): boolean {
    return this.resources.some((r) => r.kind === 'bot' && r.metadata.name === name);
  }

  /**
   * Adds an iam join token for a bot Lambda: the allow rule is the role's own account and assumed-role
   * ARN, so exactly the sessions of that role (the Lambda's) can join as the bot.
   */
  addIamJoinToken(token: IamJoinTokenOptions): void {
    const name = resourceName.safeParse(token.name);
    if (!name.success)
      throw new BrokerPropError(
        `${this.node.path}: an iam token name (not shown: it may be a secret pasted by mistake) ${name.error.issues[0]?.message ?? 'is not a resource name'}; change the bot config's onboarding.token`,
      );
    if (!this.hasBot(token.botName))
      throw new BrokerPropError(
        `${this.node.path}: iam token ${JSON.stringify(token.name)} is for bot ${JSON.stringify(token.botName)}, which ${this.resourcesFile} does not define; add a \`kind: bot\` resource named ${JSON.stringify(token.botName)}`,
      );
    if (this.resources.some((r) => r.kind === 'token' && r.metadata.name === token.name))
      throw new BrokerPropError(
        `${this.node.path}: ${this.resourcesFile} already defines a token named ${JSON.stringify(token.name)}; remove it from the file: the stack derives that bot's iam token from its Lambda role`,
      );
    const taken = this.iamTokens.find((t) => t.name === token.name);
    if (taken)
      throw new BrokerPropError(
        `${this.node.path}: bots ${JSON.stringify(taken.botName)} and ${JSON.stringify(token.botName)} both join with the iam token ${JSON.stringify(token.name)}; give each bot config its own onboarding.token`,
      );
    this.iamTokens.push(token);
    // The deployed text must parse with the authority's own parser, and fit in the Lambda environment.
    parseResources(this.renderResources(LONGEST), `${this.node.path} BROKER_RESOURCES`);
    this.checkEnvironmentSize();
  }

  /** Lets `grantee` invoke the authority (the unqualified function only: no versions or aliases). */
  grantInvoke(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['lambda:InvokeFunction'],
      resourceArns: [this.function.functionArn],
    });
  }

  /** The iam token resources the stack derived from bot roles, with deploy-time values as tokens. */
  iamTokenResources(values: DeployValues = TOKENS): TokenResource[] {
    return this.iamTokens.map((t) => ({
      kind: 'token',
      version: 'v2',
      metadata: { name: t.name },
      spec: {
        join_method: 'iam',
        bot_name: t.botName,
        allow: [
          {
            aws_account: values.account,
            aws_arn: `arn:${values.partition}:sts::${values.account}:assumed-role/${values.roleName(t.role)}/*`,
          },
        ],
      },
    }));
  }

  /**
   * BROKER_RESOURCES before base64: one compact JSON document per resource (YAML 1.2 reads JSON), so
   * comments and layout of the source file cost nothing in the 4 KB Lambda environment.
   */
  private renderResources(values: DeployValues): string {
    return [...this.resources, ...this.iamTokenResources(values)]
      .map((r) => JSON.stringify(r))
      .join('\n---\n');
  }

  /** Bots must name roles the file defines; tokens must name bots it defines (the authority checks again). */
  private checkReferences(): void {
    const roles = new Set(this.resources.filter((r) => r.kind === 'role').map((r) => r.metadata.name));
    const bots = new Set(this.resources.filter((r) => r.kind === 'bot').map((r) => r.metadata.name));
    for (const r of this.resources) {
      if (r.kind === 'bot')
        for (const role of r.spec.roles)
          if (!roles.has(role))
            throw new BrokerPropError(
              `${this.node.path}: ${this.resourcesFile}: bot ${JSON.stringify(r.metadata.name)} names role ${JSON.stringify(role)}, which the file does not define; add the role or remove it from the bot`,
            );
      if (r.kind === 'token' && !bots.has(r.spec.bot_name))
        throw new BrokerPropError(
          `${this.node.path}: ${this.resourcesFile}: a token names bot ${JSON.stringify(r.spec.bot_name)}, which the file does not define; add the bot`,
        );
    }
  }

  /** Estimates the authority's environment with the longest deploy-time values and refuses more than 4 KB. */
  private checkEnvironmentSize(): void {
    const resources = `base64:${Buffer.from(this.renderResources(LONGEST)).toString('base64')}`;
    const keyArn = `arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/${'0'.repeat(36)}`;
    const estimate: Record<string, number> = {
      NODE_OPTIONS: '--enable-source-maps'.length, // with sourceMaps; an upper bound without
      BROKER_TABLE_NAME: 255,
      BROKER_CA_KEY_BOT: keyArn.length,
      BROKER_CA_KEY_DB_CLIENT: keyArn.length,
      BROKER_CA_KEY_DB_SERVER: keyArn.length,
      BROKER_CLUSTER_NAME: 50,
      BROKER_STACK_NAME: 128,
      BROKER_DB_CLIENT_CA_KEYS: JSON.stringify(
        Object.fromEntries(
          this.resources.filter((r) => r.kind === 'db').map((r) => [r.metadata.name, '0'.repeat(36)]),
        ),
      ).length,
      BROKER_RESOURCES: resources.length,
    };
    const total = Object.entries(estimate).reduce((n, [k, v]) => n + k.length + v, 0);
    if (total > LAMBDA_ENVIRONMENT_MAX_BYTES)
      throw new BrokerPropError(
        `${this.node.path}: the authority's environment would be up to ${total} bytes (BROKER_RESOURCES alone ${resources.length}), over Lambda's ${LAMBDA_ENVIRONMENT_MAX_BYTES}-byte limit; ${this.resourcesFile} must shrink (fewer or shorter resources: labels, descriptions and long names count) or the bots must be split across stacks`,
      );
  }
}
