// The reference for the bot Lambda's import time: only the AWS SDK clients functions/bot.ts uses, bundled
// as scripts/build.mjs bundles the function. Exporting each client keeps esbuild from dropping it.
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

export const clients = [LambdaClient, SecretsManagerClient];
