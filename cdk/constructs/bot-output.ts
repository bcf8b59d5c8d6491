import { Aws, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct, DependencyGroup } from 'constructs';
import type { DbProtocol } from '../../src/credentials/route.js';
import { badProp } from './props.js';

/** The route an output holds a certificate for. */
export interface OutputRoute {
  /**
   * The database service (a `kind: db` resource).
   * @default - none: required
   */
  readonly service: string;
  /**
   * The database name.
   * @default - none: required
   */
  readonly database: string;
  /**
   * The database user: the certificate's common name.
   * @default - none: required
   */
  readonly username: string;
}

export interface BotOutputProps {
  /**
   * The secret's name: the bot config's `destination.name`, which the bot writes by name.
   * @default - none: required
   */
  readonly secretName: string;
  /**
   * The customer-managed KMS key that encrypts the secret.
   * @default - none: required
   */
  readonly encryptionKey: kms.IKey;
  /**
   * The database route of the output.
   * @default - none: required
   */
  readonly route: OutputRoute;
  /**
   * The protocol of the output's database service, when the resources define it.
   * @default - unknown
   */
  readonly protocol?: DbProtocol;
  /**
   * What happens to the secret when it leaves the stack.
   * @default RemovalPolicy.DESTROY
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Who reads the secret besides its bot, in a sentence, for the secret's description.
   * @default - a generic description
   */
  readonly description?: string;
}

/**
 * One `secretsmanager` output of a bot: the Secrets Manager secret its credential bundle lives in, encrypted
 * with a customer-managed KMS key. The secret is created *without a value*: the bot's first PutSecretValue
 * becomes AWSCURRENT, and until then every reader (the proxy, the client module) sees "no bundle yet"
 * instead of a placeholder that would not parse as a bundle.
 */
export class BotOutput extends Construct {
  readonly secretName: string;
  /** The full secret ARN (with its random suffix), resolved at deploy time. */
  readonly secretArn: string;
  readonly secret: secretsmanager.ISecret;
  readonly encryptionKey: kms.IKey;
  readonly route: OutputRoute;
  readonly protocol: DbProtocol | undefined;
  /** The value of the `Output` dimension of the bot's metrics (`username@service/database`, see functions/bot.ts). */
  readonly metricDimension: string;
  /**
   * Done when the bot's first run during the deployment wrote this output (BotProps.runOnDeploy); empty
   * when the bot does not run on deploy. Consumers made with grantRead, bindToFunction or the proxy sidecar
   * depend on it, so they are created only once a bundle exists.
   */
  readonly firstRun = new DependencyGroup();

  constructor(scope: Construct, id: string, props: BotOutputProps) {
    super(scope, id);
    this.secretName = props.secretName;
    this.encryptionKey = props.encryptionKey;
    this.route = props.route;
    this.protocol = props.protocol;
    this.metricDimension = `${props.route.username}@${props.route.service}/${props.route.database}`;
    // CfnSecret, not the L2 Secret: the L2 always generates a random value when given none, and a secret
    // without SecretString or GenerateSecretString is created empty (no version), which is what the
    // runtime expects before the bot's first write.
    const cfn = new secretsmanager.CfnSecret(this, 'Secret', {
      name: props.secretName,
      description:
        props.description ??
        `Database credential bundle for ${this.metricDimension}, written by its broker bot (JSON, see docs/aws.md)`,
      kmsKeyId: props.encryptionKey.keyArn,
    });
    cfn.applyRemovalPolicy(props.removalPolicy ?? RemovalPolicy.DESTROY);
    Validations.of(cfn).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The bot replaces this value every renewal_interval with a newly issued short-lived certificate and key (default TTL 1h); a Secrets Manager rotation Lambda would have nothing of its own to rotate.',
    });
    this.secretArn = cfn.ref;
    this.secret = secretsmanager.Secret.fromSecretAttributes(this, 'Imported', {
      secretCompleteArn: cfn.ref,
      encryptionKey: props.encryptionKey,
    });
  }

  /**
   * Conditions that tie a KMS permission to this secret: only through Secrets Manager in this region, and
   * only for this secret's data keys (Secrets Manager's encryption context names the secret ARN).
   */
  kmsConditions(): Record<string, Record<string, unknown>> {
    return {
      StringEquals: {
        'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com`,
        'kms:EncryptionContext:SecretARN': this.secretArn,
      },
    };
  }

  /**
   * Makes `writer` the only principal that can change the bundle: a resource policy on the secret denies
   * PutSecretValue and UpdateSecretVersionStage to every other principal, administrators included (who
   * can still change the policy itself, which CloudTrail records).
   */
  restrictWritesTo(writer: iam.IRole): void {
    new secretsmanager.CfnResourcePolicy(this, 'OnlyTheBotWrites', {
      secretId: this.secretArn,
      blockPublicPolicy: true,
      resourcePolicy: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'OnlyTheBotWrites',
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: ['secretsmanager:PutSecretValue', 'secretsmanager:UpdateSecretVersionStage'],
            Resource: '*',
            Condition: { ArnNotEquals: { 'aws:PrincipalArn': writer.roleArn } },
          },
        ],
      },
    });
  }

  /**
   * Lets `grantee` read the bundle: GetSecretValue and DescribeSecret on this one secret, and kms:Decrypt on
   * its key for this secret only. That is all the proxy sidecar and the client module (src/client) call.
   */
  grantRead(grantee: iam.IGrantable): iam.Grant {
    const secret = iam.Grant.addToPrincipal({
      grantee,
      actions: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
      resourceArns: [this.secretArn],
    });
    const key = iam.Grant.addToPrincipal({
      grantee,
      actions: ['kms:Decrypt'],
      resourceArns: [this.encryptionKey.keyArn],
      conditions: this.kmsConditions(),
    });
    secret.assertSuccess();
    key.assertSuccess();
    // The consumer is created after the bot's first run, so its first read finds a bundle.
    if (Construct.isConstruct(grantee)) grantee.node.addDependency(this.firstRun);
    return secret.combine(key);
  }

  /**
   * For a Lambda workload: grants read (grantRead) and sets `envName` to the secret ARN, which the client
   * module takes as `createCredentialClient({ secretId: process.env[envName] })`.
   */
  bindToFunction(fn: lambda.Function, envName = 'BROKER_BUNDLE_SECRET_ID'): iam.Grant {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(envName))
      badProp(
        this,
        'the envName of bindToFunction',
        envName,
        'not an environment variable name',
        'use letters, digits and "_", e.g. DB_SECRET_ID',
      );
    fn.addEnvironment(envName, this.secretArn);
    return this.grantRead(fn);
  }
}
