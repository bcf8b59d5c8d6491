/**
 * "Deploys" a synthesized CloudFormation template onto the local AWS doubles, the way CloudFormation would:
 * each resource the broker's runtime touches gets a physical name or id (KMS CA keys and secrets are created
 * in the doubles, the state table in DynamoDB), and every intrinsic in the template (Ref, Fn::GetAtt,
 * Fn::Join, Fn::Base64, pseudo parameters) resolves to those values. Tests then run the real handlers with the
 * environment the template gives each function, and containers with the environment of their task definition.
 */
import { createHash } from 'node:crypto';
import { CreateKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { CreateSecretCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { createStateTable } from '../../../src/state/dynamodb-store.js';
import type { LocalDynamoDb } from './dynalite.js';
import type { StsTestPrincipal } from './sts.js';

/** One resource of a synthesized template. */
export interface TemplateResource {
  Type: string;
  Properties?: Record<string, unknown>;
  DependsOn?: string[];
}

export interface Template {
  Resources: Record<string, TemplateResource>;
}

/** The account, region and partition the doubles answer for (the Lambda double's own). */
export const DEPLOY_ACCOUNT = '123456789012';
export const DEPLOY_REGION = 'us-east-1';

interface Physical {
  ref: string;
  attrs: Record<string, string>;
}

export interface DeployTargets {
  stackName: string;
  kms: KMSClient;
  secretsManager: SecretsManagerClient;
  dynamo: LocalDynamoDb;
}

/** A template with physical values for its resources: resolves intrinsics, reads function and container settings. */
export class DeployedTemplate {
  private readonly physical = new Map<string, Physical>();

  private constructor(
    readonly template: Template,
    readonly stackName: string,
  ) {}

  /**
   * Creates, in the doubles, what the runtime uses: the RSA signing keys (the CA keys), the secrets (no
   * value, as the stack creates them) and the DynamoDB tables; names every other resource.
   */
  static async deploy(template: Template, targets: DeployTargets): Promise<DeployedTemplate> {
    const d = new DeployedTemplate(template, targets.stackName);
    for (const [id, r] of Object.entries(template.Resources)) {
      const name = `${targets.stackName}-${id}`.slice(0, 64);
      const p = r.Properties ?? {};
      switch (r.Type) {
        case 'AWS::KMS::Key': {
          if (p.KeySpec === 'RSA_2048' && p.KeyUsage === 'SIGN_VERIFY') {
            const created = await targets.kms.send(
              new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }),
            );
            const keyId = created.KeyMetadata?.KeyId as string;
            d.physical.set(id, { ref: keyId, attrs: { Arn: created.KeyMetadata?.Arn as string } });
          } else {
            // Symmetric keys (secrets, alarm topic): the Secrets Manager double does not encrypt.
            const keyId = `00000000-0000-4000-8000-${id.slice(-12).padStart(12, '0').toLowerCase()}`;
            d.physical.set(id, {
              ref: keyId,
              attrs: { Arn: `arn:aws:kms:${DEPLOY_REGION}:${DEPLOY_ACCOUNT}:key/${keyId}` },
            });
          }
          break;
        }
        case 'AWS::SecretsManager::Secret': {
          const created = await targets.secretsManager.send(
            new CreateSecretCommand({ Name: p.Name as string }),
          );
          d.physical.set(id, { ref: created.ARN as string, attrs: {} });
          break;
        }
        case 'AWS::DynamoDB::Table':
          await createStateTable(targets.dynamo.client, name);
          d.physical.set(id, {
            ref: name,
            attrs: { Arn: `arn:aws:dynamodb:${DEPLOY_REGION}:${DEPLOY_ACCOUNT}:table/${name}` },
          });
          break;
        case 'AWS::IAM::Role':
          d.physical.set(id, {
            ref: name,
            attrs: { Arn: `arn:aws:iam::${DEPLOY_ACCOUNT}:role/${name}` },
          });
          break;
        case 'AWS::Lambda::Function':
          d.physical.set(id, {
            ref: name,
            attrs: { Arn: `arn:aws:lambda:${DEPLOY_REGION}:${DEPLOY_ACCOUNT}:function:${name}` },
          });
          break;
        default:
          d.physical.set(id, { ref: name, attrs: { Arn: `arn:aws:cloudformation:::${name}` } });
      }
    }
    // A version's Ref is the function ARN with its qualifier. The Lambda double has no published versions:
    // a version made by this deployment runs the code $LATEST runs, so it is invoked as $LATEST.
    for (const [id, r] of Object.entries(template.Resources))
      if (r.Type === 'AWS::Lambda::Version') {
        const fn = (r.Properties?.FunctionName ?? {}) as { Ref?: string };
        const arn = d.resolve({ 'Fn::GetAtt': [fn.Ref, 'Arn'] });
        d.physical.set(id, { ref: `${arn}:$LATEST`, attrs: {} });
      }
    return d;
  }

  /** A value of the template with every intrinsic resolved to this deployment's values. */
  resolve(value: unknown): string {
    if (typeof value === 'string') return value;
    if (typeof value === 'number' || typeof value === 'boolean') return String(value);
    const v = value as Record<string, unknown>;
    if ('Ref' in v) {
      const ref = v.Ref as string;
      const pseudo: Record<string, string> = {
        'AWS::AccountId': DEPLOY_ACCOUNT,
        'AWS::Region': DEPLOY_REGION,
        'AWS::Partition': 'aws',
        'AWS::URLSuffix': 'amazonaws.com',
        'AWS::StackName': this.stackName,
      };
      const found = pseudo[ref] ?? this.physical.get(ref)?.ref;
      if (found === undefined) throw new Error(`deploy: Ref to unknown ${ref}`);
      return found;
    }
    if ('Fn::GetAtt' in v) {
      const [id, attr] = v['Fn::GetAtt'] as [string, string];
      const found = this.physical.get(id)?.attrs[attr];
      if (found === undefined) throw new Error(`deploy: no attribute ${attr} of ${id}`);
      return found;
    }
    if ('Fn::Join' in v) {
      const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
      return parts.map((p) => this.resolve(p)).join(sep);
    }
    if ('Fn::Base64' in v) return Buffer.from(this.resolve(v['Fn::Base64'])).toString('base64');
    throw new Error(`deploy: cannot resolve ${JSON.stringify(value)}`);
  }

  /** The physical name (Ref) of a resource. */
  ref(logicalId: string): string {
    return this.resolve({ Ref: logicalId });
  }

  /** Logical ids of the resources of `type` (optionally whose id starts with `prefix`), in template order. */
  ids(type: string, prefix = ''): string[] {
    return Object.entries(this.template.Resources)
      .filter(([id, r]) => r.Type === type && id.startsWith(prefix))
      .map(([id]) => id);
  }

  resource(logicalId: string): TemplateResource {
    const r = this.template.Resources[logicalId];
    if (!r) throw new Error(`deploy: no resource ${logicalId}`);
    return r;
  }

  /** The environment the template gives a Lambda function, resolved. */
  functionEnv(logicalId: string): Record<string, string> {
    const vars = ((
      this.resource(logicalId).Properties?.Environment as { Variables?: Record<string, unknown> }
    )?.Variables ?? {}) as Record<string, unknown>;
    return Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, this.resolve(v)]));
  }

  /** The function's name from an ARN the template holds (the unqualified name, a version's qualifier dropped). */
  functionName(arn: unknown): string {
    const text = this.resolve(arn);
    const name = /:function:([^:]+)/.exec(text)?.[1];
    if (!name) throw new Error(`deploy: ${text} is not a function ARN`);
    return name;
  }

  /**
   * The STS identity a function runs as: a session of its execution role, as STS reports it to the
   * authority (`arn:aws:sts::<account>:assumed-role/<role>/<function>`), with test credentials.
   */
  principalOf(functionId: string): StsTestPrincipal {
    const roleArn = this.resolve(this.resource(functionId).Properties?.Role);
    const role = roleArn.slice(roleArn.lastIndexOf('/') + 1);
    const fn = this.ref(functionId);
    const key = createHash('sha256').update(functionId).digest('hex').slice(0, 16).toUpperCase();
    return {
      accessKeyId: `ASIA${key}`.padEnd(20, '0').slice(0, 20),
      secretAccessKey: `secret-of-${functionId}-do-not-log`,
      sessionToken: `session-of-${functionId}-do-not-log`,
      account: DEPLOY_ACCOUNT,
      arn: `arn:aws:sts::${DEPLOY_ACCOUNT}:assumed-role/${role}/${fn}`,
      userId: `AROA${key}:${fn}`,
    };
  }

  /** A container of a task definition, with its environment resolved. */
  container(
    taskId: string,
    name: string,
  ): {
    environment: Record<string, string>;
    healthCheck?: { Command: string[] };
    raw: Record<string, unknown>;
  } {
    const defs = (this.resource(taskId).Properties?.ContainerDefinitions ?? []) as Record<string, unknown>[];
    const c = defs.find((d) => d.Name === name);
    if (!c) throw new Error(`deploy: task ${taskId} has no container ${name}`);
    const environment = Object.fromEntries(
      ((c.Environment ?? []) as { Name: string; Value: unknown }[]).map((e) => [
        e.Name,
        this.resolve(e.Value),
      ]),
    );
    return {
      environment,
      ...(c.HealthCheck ? { healthCheck: c.HealthCheck as { Command: string[] } } : {}),
      raw: c,
    };
  }
}
