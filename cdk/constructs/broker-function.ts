import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { BrokerPropError, checkDuration, checkInteger } from './props.js';

/** The npm package's name: the library is `db-credential-broker/cdk`, the client module `…/client`. */
export const PACKAGE_NAME = 'db-credential-broker';

/**
 * The directory of this package's package.json: the repository root when the constructs run from source
 * (cdk/constructs/), the installed package when they run from its bundle (dist/cdk/index.mjs). The Lambda
 * bundles (dist/functions) and the proxy image's Dockerfile are found from here in both cases.
 */
export function packageRoot(from: string = fileURLToPath(import.meta.url)): string {
  for (let dir = path.dirname(from); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (
      existsSync(manifest) &&
      (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === PACKAGE_NAME
    )
      return dir;
    if (path.dirname(dir) === dir)
      throw new Error(
        `no package.json of ${PACKAGE_NAME} above ${from}: the constructs must run from the package`,
      );
  }
}

/** The package root (see packageRoot): the repository, or the installed package. */
export const REPO_ROOT = packageRoot();

/** The newest Node.js Lambda runtime aws-cdk-lib 2.276 offers (NODEJS_24_X); cdk-nag's AwsSolutions-L1 checks it. */
export const BROKER_LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

/** The Lambda entry points scripts/build.mjs bundles into dist/functions/<name>/index.mjs. */
export type BrokerFunctionName = 'authority' | 'authority-rotate' | 'authority-sign' | 'bot';

/**
 * The esbuild bundle of a broker Lambda as an asset. `npm run build` (scripts/build.mjs) must have run:
 * the CDK app does not bundle, so a missing bundle fails synth here with the command that makes it.
 */
export function functionBundle(name: BrokerFunctionName, root: string = REPO_ROOT): lambda.Code {
  const dir = path.join(root, 'dist', 'functions', name);
  if (!existsSync(path.join(dir, 'index.mjs')))
    throw new BrokerPropError(
      `${path.relative(process.cwd(), dir) || dir}/index.mjs does not exist: run \`npm run build\` before \`cdk synth\` or \`cdk deploy\` (or pass \`code\`, e.g. lambda.Code.fromInline in unit tests)`,
    );
  return lambda.Code.fromAsset(dir);
}

export interface BrokerFunctionProps {
  /**
   * The function's code: an esbuild bundle whose `index.mjs` exports `handler`.
   * @default - none: required
   */
  readonly code: lambda.Code;
  /**
   * What the function does, shown in the console.
   * @default - none: required
   */
  readonly description: string;
  /**
   * Stack traces through source maps: sets NODE_OPTIONS to `--enable-source-maps`. Build the bundles with
   * `BROKER_SOURCEMAP=1 npm run build` so that they ship their `.map` files. Off by default: loading the
   * map adds about 40% to a cold start.
   * @default false
   */
  readonly sourceMaps?: boolean;
  /**
   * Environment variables besides NODE_OPTIONS (which this construct sets when `sourceMaps` is on). Never
   * put secret values here: environment variables are readable by anyone who can read the function's
   * configuration.
   * @default {}
   */
  readonly environment?: Record<string, string>;
  /**
   * Memory in MiB (CPU scales with it; RSA key generation and signing are CPU-bound).
   * @default 512
   */
  readonly memorySize?: number;
  /**
   * Longest run.
   * @default Duration.seconds(30)
   */
  readonly timeout?: Duration;
  /**
   * How long the function's own log group keeps logs.
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * What happens to the log group when it leaves the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/**
 * The house Lambda defaults (Powertools examples/app shape): the newest Node.js runtime on ARM64, its own
 * log group with a retention, source maps only when asked, and its own role that may write to that log
 * group only (no AWS managed policy, no `logs:*` on `*`). Everything else it may do is granted explicitly
 * by the construct that owns it.
 */
export class BrokerFunction extends lambda.Function {
  /** The function's execution role: starts with log writing only. */
  readonly executionRole: iam.Role;
  /** The function's own log group (audit lines of the authority land here). */
  readonly functionLogGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: BrokerFunctionProps) {
    const role = new iam.Role(scope, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of ${props.description}`,
    });
    const logGroup = new logs.LogGroup(scope, `${id}LogGroup`, {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
    super(scope, id, {
      code: props.code,
      handler: 'index.handler',
      runtime: BROKER_LAMBDA_RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      description: props.description,
      memorySize: props.memorySize ?? 512,
      timeout: props.timeout ?? Duration.seconds(30),
      role,
      logGroup,
      environment: {
        // Stack traces point into the TypeScript sources (bundles built with BROKER_SOURCEMAP=1).
        ...(props.sourceMaps ? { NODE_OPTIONS: '--enable-source-maps' } : {}),
        ...props.environment,
      },
    });
    checkInteger(this, 'memorySize', props.memorySize ?? 512, 128, 10_240);
    if (props.timeout)
      checkDuration(this, 'timeout', props.timeout, { min: Duration.seconds(3), max: Duration.minutes(15) });
    this.executionRole = role;
    this.functionLogGroup = logGroup;
    // Only the two calls the Lambda runtime makes: the group exists already, so no logs:CreateLogGroup.
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
  }
}
