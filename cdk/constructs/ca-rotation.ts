import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { type Authority, CA_KEY_SPECS } from './authority.js';
import { BrokerFunction, functionBundle } from './broker-function.js';
import { BrokerPropError } from './props.js';

export interface CaRotationProps {
  /**
   * The authority whose CAs rotate.
   * @default - none: required
   */
  readonly authority: Authority;
  /**
   * The CAs to rotate next: `bot`, `db-server`, `db-client` (the shared one) or `db-client/<service>` for a
   * db resource. The stack creates one KMS key for each, which `broker auth rotate --phase init` (this
   * construct's function) makes the CA's new key. After the rotation, remove the name (the key stays: it is
   * the CA's key now) before naming the CA again for the next rotation.
   * @default - none: required
   */
  readonly nextCaKeys: readonly string[];
  /**
   * What happens to the next keys when they leave the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * The rotation action's code. Unit tests pass lambda.Code.fromInline to skip the bundle.
   * @default - the esbuild bundle dist/functions/authority-rotate
   */
  readonly code?: lambda.Code;
}

/**
 * CA rotation in AWS mode: the next KMS key of each CA named in `nextCaKeys`, and the rotation action, a
 * Lambda of its own (the authority's function is invoked by every bot; only operators granted `grantRotate`
 * may invoke this one) that runs `broker auth rotate` on the authority's state. It may sign only with the
 * next keys (the new CA certificate is self-signed by its key) and schedule the deletion of a CA key, which
 * it does at standby for the key that left. The authority may sign with the next keys too, from
 * update_clients on.
 */
export class CaRotation extends Construct {
  readonly function: BrokerFunction;
  /** The next key of each CA, by CA name. */
  readonly nextKeys: Readonly<Record<string, kms.Key>>;
  private readonly signers = new Map<string, { statement: iam.PolicyStatement; roles: string[] }>();

  constructor(scope: Construct, id: string, props: CaRotationProps) {
    super(scope, id);
    const { authority } = props;
    const services = Object.keys(authority.dbClientCaKeys);
    const allowed = ['bot', 'db-server', 'db-client', ...services.map((s) => `db-client/${s}`)];
    const { keySpec, signingAlgorithm } = CA_KEY_SPECS[authority.caKeySpec];
    const next: Record<string, kms.Key> = {};
    for (const ca of props.nextCaKeys) {
      if (!allowed.includes(ca))
        throw new BrokerPropError(
          `${this.node.path}: nextCaKeys names ${JSON.stringify(ca)}, which is not a CA of this authority; use one of ${allowed.join(', ')}`,
        );
      next[ca] = new kms.Key(this, `NextCaKey-${ca.replace('/', '-')}`, {
        description: `next key of the ${ca} CA, for its rotation (broker auth rotate)`,
        keySpec,
        keyUsage: kms.KeyUsage.SIGN_VERIFY,
        pendingWindow: Duration.days(30),
        removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      });
    }
    this.nextKeys = next;
    this.function = new BrokerFunction(this, 'Function', {
      code: props.code ?? functionBundle('authority-rotate'),
      description: 'CA rotation action of the credential broker authority (operators only)',
      memorySize: 512,
      timeout: Duration.seconds(30),
      logRetention: logs.RetentionDays.ONE_YEAR,
      environment: {
        ...authority.environment,
        BROKER_CA_NEXT_KEYS: Stack.of(this).toJsonString(
          Object.fromEntries(Object.entries(next).map(([ca, key]) => [ca, key.keyId])),
        ),
      },
    });
    const rotator = this.function.executionRole;
    const signer = authority.function.executionRole;
    const nextArns = Object.values(next).map((k) => k.keyArn);
    // The state, as the authority reads and writes it (a cold start may apply a changed resource file).
    rotator.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Query'],
        resources: [authority.table.tableArn],
      }),
    );
    const sign = new iam.PolicyStatement({
      actions: ['kms:Sign'],
      resources: nextArns,
      conditions: { StringEquals: { 'kms:SigningAlgorithm': signingAlgorithm, 'kms:MessageType': 'DIGEST' } },
    });
    const read = new iam.PolicyStatement({ actions: ['kms:GetPublicKey'], resources: nextArns });
    if (nextArns.length > 0)
      for (const role of [rotator, signer]) {
        role.addToPrincipalPolicy(sign);
        role.addToPrincipalPolicy(read);
      }
    // At standby the key that left its CA (the old one, or the new one after a rollback) is scheduled for deletion.
    const caKeys = [
      ...Object.values(authority.caKeys),
      ...Object.values(authority.dbClientCaKeys),
      ...Object.values(next),
    ];
    rotator.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:ScheduleKeyDeletion'],
        resources: caKeys.map((k) => k.keyArn),
      }),
    );
    for (const [ca, key] of Object.entries(next)) {
      const roles = [signer.roleArn, rotator.roleArn];
      const statement = new iam.PolicyStatement({
        sid: 'OnlyTheAuthorityAndItsRotationSign',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['kms:Sign'],
        resources: ['*'],
        conditions: { ArnNotEquals: { 'aws:PrincipalArn': roles } },
      });
      key.addToResourcePolicy(statement);
      this.signers.set(ca, { statement, roles });
    }
  }

  /**
   * Lets `role` sign with the next key of `ca` past its key policy (the server certificate action signs
   * with the next db-server key from update_clients on); the role still needs its own kms:Sign statement.
   */
  allowNextKeySigner(ca: string, role: iam.IRole): void {
    const signer = this.signers.get(ca);
    if (!signer) return;
    signer.roles.push(role.roleArn);
    signer.statement.addCondition('ArnNotEquals', { 'aws:PrincipalArn': [...signer.roles] });
  }

  /** Lets `grantee` (an operator's role) run the rotation action. */
  grantRotate(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['lambda:InvokeFunction'],
      resourceArns: [this.function.functionArn],
    });
  }
}
