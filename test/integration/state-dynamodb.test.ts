import {
  ConditionalCheckFailedException,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  ProvisionedThroughputExceededException,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { shortLivedPrefixes } from '../../src/authority/state-keys.js';
import { createStateTable, DynamoDbStateStore } from '../../src/state/dynamodb-store.js';
import { ConflictError, StateError } from '../../src/state/errors.js';
import { casIncrement, stateStoreContract } from '../contracts/state-store.js';
import { type LocalDynamoDb, startDynalite } from '../support/aws/dynalite.js';

let db: LocalDynamoDb;
let tables = 0;

beforeAll(async () => {
  db = await startDynalite();
});
afterAll(async () => {
  await db?.close();
});

/** A fresh table (dynalite creates it at once) and a store on it, expiring the partitions `ttlPartitions`. */
async function openStore(
  ttlPartitions: readonly string[] = [],
): Promise<{ store: DynamoDbStateStore; table: string }> {
  const table = `state-${++tables}`;
  await createStateTable(db.client, table);
  return { store: new DynamoDbStateStore(db.client, table, { ttlPartitions }), table };
}

async function scanItems(table: string) {
  return (await db.client.send(new ScanCommand({ TableName: table, ConsistentRead: true }))).Items ?? [];
}

/** A client for the running dynalite, separate from `db.client` so mocks and middleware stay local. */
function separateClient(options: { maxAttempts?: number } = {}): DynamoDBClient {
  return new DynamoDBClient({
    endpoint: db.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    ...options,
  });
}

stateStoreContract('DynamoDbStateStore on dynalite', async () => (await openStore()).store);

describe('DynamoDbStateStore on dynalite', () => {
  it('lands 20 parallel compare-and-swap increments exactly once each, through real conflicts', async () => {
    const { store } = await openStore();
    const conflicts = await Promise.all(Array.from({ length: 20 }, () => casIncrement(store, 'counters/n')));
    expect(await store.get('counters/n')).toEqual({ key: 'counters/n', value: 20, version: 20 });
    // The writers raced over HTTP rather than running one after another.
    expect(conflicts.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  });

  it('gives 20 parallel unconditional writers distinct versions 1..20', async () => {
    const { store } = await openStore();
    const versions = await Promise.all(Array.from({ length: 20 }, (_, i) => store.put('counters/u', i)));
    expect([...versions].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const last = await store.get<number>('counters/u');
    expect(last?.version).toBe(20);
    // The stored value is the one written with the highest version.
    expect(last?.value).toBe(versions.indexOf(20));
  });

  it('lists a partition larger than one 1 MB Query page, following LastEvaluatedKey', async () => {
    const { store } = await openStore();
    const big = 'x'.repeat(40 * 1024);
    const names = Array.from({ length: 30 }, (_, i) => `r${String(i).padStart(2, '0')}`);
    await Promise.all(names.map((n) => store.put(`roles/${n}`, { name: n, big })));
    const send = vi.spyOn(db.client, 'send');
    try {
      const listed = await store.list<{ name: string; big: string }>('roles');
      expect(listed.map((i) => i.key)).toEqual(names.map((n) => `roles/${n}`));
      expect(listed.every((i) => i.value.big === big && i.version === 1)).toBe(true);
      const queries = send.mock.calls.filter(([command]) => command instanceof QueryCommand);
      expect(queries.length).toBeGreaterThanOrEqual(2);
    } finally {
      send.mockRestore();
    }
  });

  it('stores the documented item shape: pk, sk, value as JSON, version', async () => {
    const { store, table } = await openStore();
    await store.put('roles/example-role', { kind: 'role' });
    await store.put('roles/example-role', { kind: 'role', v: 2 });
    await store.put('roles/sub/deeper', 1);
    await store.put('x', 'single segment');
    const items = await scanItems(table);
    expect(items).toHaveLength(3);
    expect(items).toEqual(
      expect.arrayContaining([
        {
          pk: { S: 'roles' },
          sk: { S: 'example-role' },
          value: { S: '{"kind":"role","v":2}' },
          version: { N: '2' },
        },
        { pk: { S: 'roles' }, sk: { S: 'sub/deeper' }, value: { S: '1' }, version: { N: '1' } },
        // DynamoDB refuses '' in a key attribute, so a single-segment key gets the sort key '.'.
        { pk: { S: 'x' }, sk: { S: '.' }, value: { S: '"single segment"' }, version: { N: '1' } },
      ]),
    );
    expect(await store.get('x')).toEqual({ key: 'x', value: 'single segment', version: 1 });
  });

  it('sets the expiresAt TTL attribute in the partitions it is given only, and drops it when the value loses expires', async () => {
    const { store, table } = await openStore(['challenges']);
    const expires = '2030-01-02T03:04:05.500Z';
    await store.put('challenges/c1', { challenge: 'abc', expires }, 'absent');
    await store.put('tokens/t1', { botName: 'b', expires });
    const item = async (pk: string, sk: string) =>
      (await db.client.send(new GetItemCommand({ TableName: table, Key: { pk: { S: pk }, sk: { S: sk } } })))
        .Item;
    // Rounded up, so DynamoDB never deletes a challenge before it expires.
    expect((await item('challenges', 'c1'))?.expiresAt).toEqual({
      N: String(Date.parse(expires) / 1000 + 0.5),
    });
    expect(await item('tokens', 't1')).not.toHaveProperty('expiresAt');
    await store.put('challenges/c1', { challenge: 'abc' }, 1);
    expect(await item('challenges', 'c1')).not.toHaveProperty('expiresAt');
    await store.put('challenges/c1', { challenge: 'abc', expires: 'not a date' });
    expect(await item('challenges', 'c1')).not.toHaveProperty('expiresAt');
  });

  it("expires every short-lived partition of the authority's, and nothing else", async () => {
    const { store, table } = await openStore(shortLivedPrefixes);
    const expires = '2030-01-02T03:04:05.000Z';
    const keys = ['challenges/n1', 'requests/r1.d', 'nonces/n2', 'botstate/b', 'tokens/t', 'locks/b'];
    for (const key of keys) await store.put(key, { expires });
    const ttl = Object.fromEntries(
      (await scanItems(table)).map((item) => [`${item.pk?.S}/${item.sk?.S}`, item.expiresAt?.N]),
    );
    const at = String(Date.parse(expires) / 1000);
    expect(ttl).toEqual({
      'challenges/n1': at,
      'requests/r1.d': at,
      'nonces/n2': at,
      'botstate/b': undefined,
      'tokens/t': undefined,
      'locks/b': undefined,
    });
  });

  it('still returns an expired challenge: TTL deletion is lazy, so readers check expires themselves', async () => {
    const { store } = await openStore();
    const expires = new Date(Date.now() - 60_000).toISOString();
    await store.put('challenges/old', { challenge: 'abc', expires });
    expect(await store.get('challenges/old')).toMatchObject({ value: { expires } });
  });

  it('creates the table with pk/sk string keys and on-demand billing; dynalite has no TTL to enable', async () => {
    const table = `state-${++tables}`;
    expect(await createStateTable(db.client, table)).toEqual({ timeToLiveEnabled: false });
    const described = (await db.client.send(new DescribeTableCommand({ TableName: table }))).Table;
    expect(described?.TableStatus).toBe('ACTIVE');
    expect(described?.KeySchema).toEqual([
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ]);
    expect(described?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    const again = await createStateTable(db.client, table).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(StateError);
    expect((again as StateError).message).toMatch(
      `state table ${table}: CreateTable failed: ResourceInUseException`,
    );
  });

  it('reports a missing table as a StateError naming the table and operation', async () => {
    const store = new DynamoDbStateStore(db.client, 'no-such-table');
    for (const [call, operation] of [
      [() => store.get('roles/a'), 'GetItem'],
      [() => store.put('roles/a', { secret: 's3cr3t' }), 'UpdateItem'],
      [() => store.delete('roles/a'), 'DeleteItem'],
      [() => store.list('roles'), 'Query'],
    ] as const) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateError);
      expect((err as StateError).message).toContain(`DynamoDB ${operation} of roles`);
      expect((err as StateError).message).toContain('table no-such-table failed: ResourceNotFoundException');
      expect((err as StateError).message).not.toContain('s3cr3t');
    }
  });

  it('reports a corrupt item as a StateError without quoting its value', async () => {
    const { store, table } = await openStore();
    await db.client.send(
      new PutItemCommand({
        TableName: table,
        Item: {
          pk: { S: 'roles' },
          sk: { S: 'bad' },
          value: { S: '{"secret": s3cr3t' },
          version: { N: '1' },
        },
      }),
    );
    for (const read of [() => store.get('roles/bad'), () => store.list('roles')]) {
      const err = await read().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateError);
      expect((err as StateError).message).toBe(
        `item roles/bad in DynamoDB table ${table} is corrupt (its value is not JSON); restore it from a backup`,
      );
      expect(JSON.stringify(err)).not.toContain('s3cr3t');
    }
  });
});

describe('DynamoDbStateStore with injected faults', () => {
  it('surfaces throttling that outlasted the SDK retries as a StateError naming the table', async () => {
    // aws-sdk-client-mock replaces `send`, so the SDK's retry middleware never runs: this is the error the
    // store sees once the SDK has given up.
    const client = separateClient();
    const mock = mockClient(client);
    mock
      .on(UpdateItemCommand)
      .rejects(new ProvisionedThroughputExceededException({ message: 'Rate exceeded', $metadata: {} }));
    try {
      const store = new DynamoDbStateStore(client, 'state-throttled');
      const err = await store.put('tokens/t', { secret: 's3cr3t' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateError);
      expect((err as StateError).message).toBe(
        'DynamoDB UpdateItem of tokens/t on table state-throttled failed: ProvisionedThroughputExceededException; DynamoDB is throttling: retry later',
      );
      expect((err as StateError).cause).toBeInstanceOf(ProvisionedThroughputExceededException);
      expect(mock.commandCalls(UpdateItemCommand)).toHaveLength(1);
    } finally {
      mock.restore();
      client.destroy();
    }
  });

  it('lets the SDK retry throttling before the store sees it (standard retry mode)', async () => {
    const { table } = await openStore();
    const client = separateClient({ maxAttempts: 2 });
    let throttle = 1;
    let attempts = 0;
    // Inside the retry middleware, like a throttled HTTP response from DynamoDB.
    client.middlewareStack.add(
      (next) => async (args) => {
        attempts++;
        if (throttle-- > 0)
          throw new ProvisionedThroughputExceededException({ message: 'Rate exceeded', $metadata: {} });
        return next(args);
      },
      { step: 'deserialize', name: 'injectThrottling' },
    );
    try {
      const store = new DynamoDbStateStore(client, table);
      expect(await store.put('tokens/t', 'v')).toBe(1);
      expect(attempts).toBe(2);
      throttle = Number.POSITIVE_INFINITY;
      const err = await store.put('tokens/t', 'v2').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateError);
      expect((err as StateError).message).toContain(
        `table ${table} failed: ProvisionedThroughputExceededException after 2 attempt(s)`,
      );
      expect(attempts).toBe(4);
    } finally {
      client.destroy();
    }
  });

  it('names the version DynamoDB returns with a failed condition, without a second read', async () => {
    // Real DynamoDB honours ReturnValuesOnConditionCheckFailure; dynalite does not, hence the mock.
    const client = separateClient();
    const mock = mockClient(client);
    mock.on(UpdateItemCommand).rejects(
      new ConditionalCheckFailedException({
        message: 'The conditional request failed',
        $metadata: {},
        Item: { pk: { S: 'botstate' }, sk: { S: 'b' }, value: { S: '{}' }, version: { N: '7' } },
      }),
    );
    try {
      const store = new DynamoDbStateStore(client, 'state-mocked');
      const err = await store.put('botstate/b', {}, 5).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as ConflictError).message).toBe(
        'botstate/b changed concurrently (expected version 5, found 7)',
      );
      expect(mock.commandCalls(GetItemCommand)).toHaveLength(0);
    } finally {
      mock.restore();
      client.destroy();
    }
  });
});
