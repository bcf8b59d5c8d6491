// The reference for the authority Lambda's import time: only the AWS SDK clients functions/authority.ts
// uses, bundled as scripts/build.mjs bundles the function. Exporting each client keeps esbuild from
// dropping it.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';

export const clients = [DynamoDBClient, KMSClient];
