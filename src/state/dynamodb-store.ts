import {
  type AttributeValue,
  ConditionalCheckFailedException,
  CreateTableCommand,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { ConflictError, StateError } from './errors.js';
import { assertValidKey, type Expect, type StateStore, type Versioned } from './store.js';

/**
 * Sort key of a single-segment key (`x`). DynamoDB refuses an empty string in a key attribute, and no later
 * segment of a valid key can start with '.', so this never collides with a real sort key.
 */
const WHOLE_KEY_SK = '.';

/** The TTL attribute (epoch seconds) that `createStateTable` enables. */
export const TTL_ATTRIBUTE = 'expiresAt';

type Item = Record<string, AttributeValue>;

interface Condition {
  ConditionExpression?: string;
  ReturnValuesOnConditionCheckFailure?: 'ALL_OLD';
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: Item;
}

export interface DynamoDbStateStoreOptions {
  /**
   * Partitions (first key segments) whose items are short-lived: each gets the TTL attribute from its value's
   * ISO `expires`. DynamoDB deletes expired items lazily (typically within days, not seconds), so TTL only
   * bounds the table's growth: readers must still check `expires` themselves, as the authority does. The
   * owner of the keys names them (the authority: `shortLivedPrefixes`); by default none.
   */
  ttlPartitions?: readonly string[];
}

/**
 * StateStore on one DynamoDB table. Item shape: `pk` = the key's first segment (`roles`), `sk` = the rest
 * (`example-role`), `value` = the value as JSON, `version` = number, and `expiresAt` (epoch seconds, the TTL
 * attribute) in the TTL partitions. Every write is one conditional UpdateItem or DeleteItem, so
 * compare-and-swap is atomic per key, and reads are strongly consistent so a read-modify-write sees the
 * latest version.
 */
export class DynamoDbStateStore implements StateStore {
  private readonly ttlPartitions: ReadonlySet<string>;

  constructor(
    private readonly client: DynamoDBClient,
    readonly tableName: string,
    options: DynamoDbStateStoreOptions = {},
  ) {
    this.ttlPartitions = new Set(options.ttlPartitions ?? []);
  }

  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    const itemKey = keyOf(key);
    const result = await this.send('GetItem', key, () =>
      this.client.send(new GetItemCommand({ TableName: this.tableName, Key: itemKey, ConsistentRead: true })),
    );
    return result.Item ? this.parse<T>(key, result.Item) : undefined;
  }

  async put(key: string, value: unknown, expect?: Expect): Promise<number> {
    const itemKey = keyOf(key);
    const json = JSON.stringify(value);
    if (json === undefined) throw new StateError(`cannot store ${key}: its value has no JSON form`);
    const expiresAt = this.ttlPartitions.has(itemKey.pk.S) ? expiresAtOf(value) : undefined;
    const condition = conditionOf(expect);
    // ADD increments atomically on the server, so even unconditional writers racing on one key each get
    // their own version; a missing item counts as version 0. REMOVE drops a TTL the new value no longer has.
    const update =
      expiresAt === undefined
        ? 'SET #value = :value ADD #version :one REMOVE #expiresAt'
        : 'SET #value = :value, #expiresAt = :expiresAt ADD #version :one';
    try {
      const result = await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: itemKey,
          UpdateExpression: update,
          ...condition,
          ExpressionAttributeNames: {
            '#value': 'value',
            '#version': 'version',
            '#expiresAt': TTL_ATTRIBUTE,
            ...condition.ExpressionAttributeNames,
          },
          ExpressionAttributeValues: {
            ':value': { S: json },
            ':one': { N: '1' },
            ...(expiresAt === undefined ? {} : { ':expiresAt': { N: String(expiresAt) } }),
            ...condition.ExpressionAttributeValues,
          },
          ReturnValues: 'UPDATED_NEW',
        }),
      );
      const version = Number(result.Attributes?.version?.N);
      if (!Number.isSafeInteger(version))
        throw new StateError(
          `DynamoDB table ${this.tableName} returned no version after UpdateItem of ${key}`,
        );
      return version;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw await this.conflict(key, expect, err.Item);
      throw this.failure('UpdateItem', key, err);
    }
  }

  async delete(key: string, expect?: Expect): Promise<boolean> {
    const itemKey = keyOf(key);
    try {
      const result = await this.client.send(
        new DeleteItemCommand({
          TableName: this.tableName,
          Key: itemKey,
          ...conditionOf(expect),
          ReturnValues: 'ALL_OLD',
        }),
      );
      return result.Attributes !== undefined;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw await this.conflict(key, expect, err.Item);
      throw this.failure('DeleteItem', key, err);
    }
  }

  async list<T>(prefix: string): Promise<Versioned<T>[]> {
    const base = prefix.replace(/\/?$/, '');
    const { pk } = keyOf(base);
    // A nested prefix (`roles/sub`) narrows the sort key; only direct children are listed, like a directory.
    const skPrefix = base.includes('/') ? `${base.slice(base.indexOf('/') + 1)}/` : '';
    const out: Versioned<T>[] = [];
    let startKey: Item | undefined;
    do {
      const page = await this.send('Query', base, () =>
        this.client.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: skPrefix ? '#pk = :pk AND begins_with(#sk, :skPrefix)' : '#pk = :pk',
            ExpressionAttributeNames: { '#pk': 'pk', ...(skPrefix ? { '#sk': 'sk' } : {}) },
            ExpressionAttributeValues: { ':pk': pk, ...(skPrefix ? { ':skPrefix': { S: skPrefix } } : {}) },
            ConsistentRead: true,
            ...(startKey ? { ExclusiveStartKey: startKey } : {}),
          }),
        ),
      );
      for (const item of page.Items ?? []) {
        const sk = item.sk?.S;
        if (sk === undefined || sk === WHOLE_KEY_SK) continue;
        const rest = sk.slice(skPrefix.length);
        if (rest === '' || rest.includes('/')) continue;
        out.push(this.parse<T>(`${pk.S}/${sk}`, item));
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    // DynamoDB orders sort keys by UTF-8 bytes; sorting here pins the plain code-unit order of every store.
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  private parse<T>(key: string, item: Item): Versioned<T> {
    const json = item.value?.S;
    const version = Number(item.version?.N);
    if (json === undefined || !Number.isSafeInteger(version))
      throw new StateError(
        `item ${key} in DynamoDB table ${this.tableName} is corrupt (no string value or numeric version)`,
      );
    try {
      return { key, value: JSON.parse(json) as T, version };
    } catch {
      // JSON.parse's message quotes the text, which may be secret; so no message and no cause.
      throw new StateError(
        `item ${key} in DynamoDB table ${this.tableName} is corrupt (its value is not JSON); restore it from a backup`,
      );
    }
  }

  /** The ConflictError of a failed condition, naming the version found (from the failure or a fresh read). */
  private async conflict(key: string, expect: Expect, old: Item | undefined): Promise<ConflictError> {
    if (expect === 'absent') return new ConflictError(`${key} already exists`);
    // Real DynamoDB returns the old item when it exists; without one (missing item, or dynalite, which
    // ignores ReturnValuesOnConditionCheckFailure) read it. The message may then name a later version.
    let found: number | string;
    try {
      found = (old ? this.parse(key, old) : await this.get(key))?.version ?? 'none';
    } catch {
      found = 'unknown';
    }
    return new ConflictError(`${key} changed concurrently (expected version ${expect}, found ${found})`);
  }

  private async send<R>(operation: string, key: string, call: () => Promise<R>): Promise<R> {
    try {
      return await call();
    } catch (err) {
      throw this.failure(operation, key, err);
    }
  }

  /** Maps an AWS error to a StateError naming the table, operation and key, never the value. */
  private failure(operation: string, key: string, err: unknown): StateError {
    if (err instanceof StateError) return err;
    return new StateError(
      `DynamoDB ${operation} of ${key} on table ${this.tableName} failed: ${describeAwsError(err)}`,
      { cause: err },
    );
  }
}

/**
 * Creates the state table (`pk`/`sk` strings, on-demand billing), waits until it is active and enables TTL on
 * `expiresAt`. For tests and local tooling; in AWS the CDK stack creates the table. Returns whether TTL is on:
 * dynalite has no UpdateTimeToLive and answers UnknownOperationException, which alone is tolerated.
 */
export async function createStateTable(
  client: DynamoDBClient,
  tableName: string,
): Promise<{ timeToLiveEnabled: boolean }> {
  const fail = (operation: string, err: unknown) =>
    new StateError(
      `cannot create DynamoDB state table ${tableName}: ${operation} failed: ${describeAwsError(err)}`,
      {
        cause: err,
      },
    );
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    // The first check is immediate; on AWS a new table takes a few seconds to become ACTIVE.
    await waitUntilTableExists(
      { client, minDelay: 1, maxDelay: 5, maxWaitTime: 300 },
      { TableName: tableName },
    );
  } catch (err) {
    throw fail('CreateTable', err);
  }
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
      }),
    );
    return { timeToLiveEnabled: true };
  } catch (err) {
    if (err instanceof Error && err.name === 'UnknownOperationException') return { timeToLiveEnabled: false };
    throw fail('UpdateTimeToLive', err);
  }
}

/** The item key of a state key: first segment and the rest. Rejects invalid keys. */
function keyOf(key: string): { pk: AttributeValue.SMember; sk: AttributeValue.SMember } {
  assertValidKey(key);
  const slash = key.indexOf('/');
  return slash < 0
    ? { pk: { S: key }, sk: { S: WHOLE_KEY_SK } }
    : { pk: { S: key.slice(0, slash) }, sk: { S: key.slice(slash + 1) } };
}

/** The TTL of a value with an ISO `expires`, in epoch seconds rounded up. */
function expiresAtOf(value: unknown): number | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const expires = (value as { expires?: unknown }).expires;
  const ms = typeof expires === 'string' ? Date.parse(expires) : Number.NaN;
  return Number.isFinite(ms) ? Math.ceil(ms / 1000) : undefined;
}

function conditionOf(expect: Expect): Condition {
  if (expect === undefined) return {};
  if (expect === 'absent') return { ConditionExpression: 'attribute_not_exists(pk)' };
  return {
    ConditionExpression: '#version = :expected',
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    ExpressionAttributeNames: { '#version': 'version' },
    ExpressionAttributeValues: { ':expected': { N: String(expect) } },
  };
}

/** The error's name (code for network errors) and a hint on what to do; AWS messages are left in `cause`. */
function describeAwsError(err: unknown): string {
  const e = err as { name?: unknown; code?: unknown; $metadata?: { attempts?: number } };
  const name = typeof e.code === 'string' ? e.code : typeof e.name === 'string' ? e.name : 'unknown error';
  const attempts = e.$metadata?.attempts;
  switch (name) {
    case 'ResourceNotFoundException':
      return `${name}; the table does not exist in this account and region: deploy the stack or check the table name`;
    case 'AccessDeniedException':
    case 'UnrecognizedClientException':
      return `${name}; grant this role access to the table`;
    case 'ProvisionedThroughputExceededException':
    case 'ThrottlingException':
    case 'RequestLimitExceeded':
      return `${name}${attempts ? ` after ${attempts} attempt(s)` : ''}; DynamoDB is throttling: retry later`;
    default:
      return name;
  }
}
