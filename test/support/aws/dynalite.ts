/**
 * A local DynamoDB for tests: dynalite, in this process, on 127.0.0.1 and a free port.
 *
 * What dynalite models: DynamoDB's JSON API (the real SDK talks to it over HTTP) on LevelDB, in memory by
 * default (memory-level); tables and key schemas, the validation errors of real DynamoDB (for example an
 * empty string in a key attribute), condition and update expressions, conditional writes serialised per item
 * (so compare-and-swap races are real), ConsistentRead, Query with the 1 MB page limit and LastEvaluatedKey.
 * What it does not model: TTL deletion (there is no UpdateTimeToLive; expired items stay), IAM and
 * signatures (any credentials are accepted), throttling, ReturnValuesOnConditionCheckFailure (a failed
 * condition never returns the old item), eventual consistency (every read is consistent).
 */

import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';

interface DynaliteOptions {
  /** How long a new table stays CREATING; 0 makes it ACTIVE at once. */
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
}

// dynalite is CommonJS without type declarations; this is the part of its API the tests use.
const requireCjs = createRequire(import.meta.url);
const dynalite = requireCjs('dynalite') as (options: DynaliteOptions) => Server;

export interface LocalDynamoDb {
  endpoint: string;
  /** A client for the local endpoint with throwaway credentials (dynalite checks none). */
  client: DynamoDBClient;
  /** Destroys the client and stops the server; its in-memory tables are gone. */
  close(): Promise<void>;
}

/** Starts dynalite on a free loopback port. */
export async function startDynalite(): Promise<LocalDynamoDb> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  return {
    endpoint,
    client,
    async close() {
      client.destroy();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}
