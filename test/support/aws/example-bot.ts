/**
 * The reference guide's example bot as the stack runs it in AWS mode: a bot Lambda whose execution role joins
 * with an `iam` token and writes alice's bundle for `example-server`/`example` to a Secrets Manager secret.
 * Its resources, its tbot.yaml and the environment of its Lambda, defined once for the AWS tests.
 */
import { exampleResourcesYaml } from '../fixtures.js';
import type { StsTestPrincipal } from './sts.js';

/** The name of the bot's `iam` join token. */
export const EXAMPLE_BOT_IAM_TOKEN = 'example-bot-iam';

/** The bot Lambda's execution role session, as STS reports it (Lambda credentials carry a session token). */
export const EXAMPLE_BOT_PRINCIPAL: StsTestPrincipal = {
  accessKeyId: 'ASIAEXAMPLEBOT000001',
  secretAccessKey: 'example-bot-secret-access-key-do-not-log',
  sessionToken: 'example-bot-session-token-do-not-log',
  account: '111111111111',
  arn: 'arn:aws:sts::111111111111:assumed-role/example-bot/session',
  userId: 'AROAEXAMPLEBOT000001:session',
};

/**
 * The example (its role without a session cap) on a database at localhost:`port`, and the bot's iam token,
 * which admits the example-bot role of account 111111111111.
 */
export const iamExampleResources = (port: number): string =>
  exampleResourcesYaml({
    role: { maxSessionTtl: null },
    db: { uri: `localhost:${port}`, serverName: 'localhost' },
    extra: `kind: token
version: v2
metadata: { name: ${EXAMPLE_BOT_IAM_TOKEN} }
spec:
  join_method: iam
  bot_name: example
  allow:
    - aws_account: '111111111111'
      aws_arn: 'arn:aws:sts::111111111111:assumed-role/example-bot/*'
`,
  });

/**
 * The bot's tbot.yaml: the iam join, memory storage and one database output to the secret `secret`.
 * auth_server is not used in AWS mode: the handler reaches the authority through BROKER_AUTHORITY_FUNCTION.
 */
export const secretsManagerBotConfig = (authorityFunction: string, secret: string): string => `version: v2
auth_server: lambda://${authorityFunction}
onboarding: { join_method: iam, token: ${EXAMPLE_BOT_IAM_TOKEN} }
storage: { type: memory }
outputs:
  - type: database
    destination: { type: secretsmanager, name: ${secret} }
    service: example-server
    database: example
    username: alice
`;

/** The environment the stack gives the bot Lambda, running with `principal`'s credentials in `region`. */
export function botLambdaEnv(options: {
  config: string;
  authorityFunction: string;
  principal: StsTestPrincipal;
  region: string;
}): Record<string, string> {
  const { principal } = options;
  return {
    BROKER_BOT_CONFIG: options.config,
    BROKER_AUTHORITY_FUNCTION: options.authorityFunction,
    BROKER_STACK_NAME: 'Broker',
    AWS_REGION: options.region,
    AWS_ACCESS_KEY_ID: principal.accessKeyId,
    AWS_SECRET_ACCESS_KEY: principal.secretAccessKey,
    ...(principal.sessionToken ? { AWS_SESSION_TOKEN: principal.sessionToken } : {}),
  };
}
