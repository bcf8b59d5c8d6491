import { type IAspect, Stack, Validations } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';

/** Why the task definition's environment variables are acceptable while only broker proxies have any. */
export const ECS2_REASON =
  "The broker-proxy container's environment holds the bundle secret's ARN, the database service name and listener settings (port or socket path, tunnel, diagnostics address, drain time): names and settings, never a secret; the credentials are read from Secrets Manager at run time with the task role.";

/** Why the execution role may call ecr:GetAuthorizationToken on every resource. */
export const IAM5_ECR_REASON =
  'ecr:GetAuthorizationToken, which ECS calls to pull the broker-proxy image, accepts no resource but "*" (https://docs.aws.amazon.com/AmazonECR/latest/userguide/security_iam_id-based-policy-examples.html); the pull itself (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer) is granted on the image repository only.';

/** A container definition as the L1 holds it (property names in camel case, before rendering). */
interface ResolvedContainer {
  name?: string;
  environment?: unknown[];
}

/**
 * Acknowledges the two cdk-nag AwsSolutions findings the proxy sidecar itself causes, each on the one
 * resource it is about and only while the sidecar is its only cause, so a finding about the application's
 * own containers is still reported:
 *
 * - `AwsSolutions-ECS2` (environment variables) on the task definition, when no container but a broker proxy
 *   has environment variables;
 * - `AwsSolutions-IAM5[Resource::*]` on the execution role's default policy, when its only statement on `*`
 *   is `ecr:GetAuthorizationToken` (the image pull).
 *
 * An aspect, because the application's containers and grants may be added after the sidecar.
 */
export class ProxySidecarFindings implements IAspect {
  private done = false;

  constructor(
    private readonly taskDefinition: ecs.TaskDefinition,
    private readonly isProxy: (containerName: string) => boolean,
  ) {}

  visit(node: IConstruct): void {
    if (node !== this.taskDefinition || this.done) return;
    this.done = true;
    const cfn = this.taskDefinition.node.defaultChild as ecs.CfnTaskDefinition;
    const stack = Stack.of(cfn);
    const containers = (stack.resolve(cfn.containerDefinitions) ?? []) as ResolvedContainer[];
    const withEnvironment = containers.filter((c) => (c.environment ?? []).length > 0);
    if (withEnvironment.length > 0 && withEnvironment.every((c) => this.isProxy(c.name ?? '')))
      Validations.of(cfn).acknowledge({ id: 'AwsSolutions-ECS2', reason: ECS2_REASON });

    const policy = this.taskDefinition.executionRole?.node.tryFindChild('DefaultPolicy');
    if (!(policy instanceof iam.Policy)) return;
    const statements = (stack.resolve(policy.document.toJSON()) as { Statement?: StatementJson[] }).Statement;
    const onEverything = (statements ?? []).filter((s) => asList(s.Resource).includes('*'));
    if (
      onEverything.length > 0 &&
      onEverything.every(
        (s) => s.Effect === 'Allow' && sameList(asList(s.Action), ['ecr:GetAuthorizationToken']),
      )
    )
      Validations.of(policy.node.defaultChild as IConstruct).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: IAM5_ECR_REASON,
      });
  }
}

interface StatementJson {
  Effect?: string;
  Action?: unknown;
  Resource?: unknown;
}

const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);
const sameList = (a: unknown[], b: unknown[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);
