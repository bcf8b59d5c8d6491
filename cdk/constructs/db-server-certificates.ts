import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { type Authority, CA_KEY_SPECS } from './authority.js';
import { BrokerFunction, functionBundle } from './broker-function.js';
import type { CaRotation } from './ca-rotation.js';

export interface DbServerCertificatesProps {
  /**
   * The authority whose db-server CA signs.
   * @default - none: required
   */
  readonly authority: Authority;
  /**
   * A rotation whose next db-server key this action signs with too, from update_clients on.
   * @default - the db-server CA's key only
   */
  readonly rotation?: CaRotation;
  /**
   * The action's code. Unit tests pass lambda.Code.fromInline to skip the bundle.
   * @default - the esbuild bundle dist/functions/authority-sign
   */
  readonly code?: lambda.Code;
}

/**
 * Database server certificates from the KMS-held db-server CA (`broker auth sign --format=db --function`):
 * an operator-only Lambda of its own, since the authority's function is invoked by every bot. The operator's
 * machine makes the server's key pair and sends only the public key. The action reads the CA records from
 * the table (GetItem only: it creates nothing) and may sign, digests only, with the db-server CA's keys and
 * no other.
 */
export class DbServerCertificates extends Construct {
  readonly function: BrokerFunction;

  constructor(scope: Construct, id: string, props: DbServerCertificatesProps) {
    super(scope, id);
    const { authority, rotation } = props;
    const { signingAlgorithm } = CA_KEY_SPECS[authority.caKeySpec];
    this.function = new BrokerFunction(this, 'Function', {
      code: props.code ?? functionBundle('authority-sign'),
      description: 'Database server certificates from the credential broker db-server CA (operators only)',
      memorySize: 512,
      timeout: Duration.seconds(30),
      logRetention: logs.RetentionDays.ONE_YEAR,
      environment: {
        BROKER_TABLE_NAME: authority.table.tableName,
        BROKER_STACK_NAME: authority.environment.BROKER_STACK_NAME as string,
      },
    });
    const role = this.function.executionRole;
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['dynamodb:GetItem'], resources: [authority.table.tableArn] }),
    );
    const next = rotation?.nextKeys['db-server'];
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:Sign'],
        resources: [authority.caKeys['db-server'].keyArn, ...(next ? [next.keyArn] : [])],
        conditions: {
          StringEquals: { 'kms:SigningAlgorithm': signingAlgorithm, 'kms:MessageType': 'DIGEST' },
        },
      }),
    );
    authority.allowCaKeySigner('db-server', role);
    rotation?.allowNextKeySigner('db-server', role);
  }

  /** Lets `grantee` (an operator's role) sign database server certificates. */
  grantSign(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['lambda:InvokeFunction'],
      resourceArns: [this.function.functionArn],
    });
  }
}
