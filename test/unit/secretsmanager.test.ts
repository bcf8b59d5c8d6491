/**
 * The JSON bundle, the `secretsmanager` destination, the identity store and the proxy's bundle source,
 * against the in-process Secrets Manager double (real SDK over loopback HTTP, no AWS) and, for fault
 * injection, aws-sdk-client-mock.
 */
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  PutSecretValueCommand,
  type SecretsManagerClient,
  SecretsManagerServiceException,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { SECRET_VALUE_MAX_BYTES, versionToken, withThrottlingRetry } from '../../src/aws/secrets.js';
import { SecretsManagerIdentityStore } from '../../src/bot/secretsmanager-identity-store.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { BundleError, parseBundle, serializeBundle } from '../../src/credentials/bundle.js';
import type { BotIdentity } from '../../src/credentials/identity.js';
import { SecretsManagerDestination } from '../../src/destinations/secretsmanager.js';
import { SecretsManagerBundleSource } from '../../src/proxy/sources/secretsmanager.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { testBundle } from '../support/fixtures.js';

const PEM_BODY = /MII[A-Za-z0-9+/]{20}/;

let double: SecretsManagerDouble;
let sm: SecretsManagerClient;
let secretSeq = 0;
/** A fresh secret name per test, so tests share one double without seeing each other's versions. */
let secretId: string;

beforeAll(async () => {
  double = new SecretsManagerDouble();
  sm = double.client();
});
afterAll(async () => {
  sm.destroy();
  await double.close();
});
beforeEach(async () => {
  secretId = `broker/test/out-${++secretSeq}`;
  await sm.send(new CreateSecretCommand({ Name: secretId }));
});

const noSleep = { sleep: async () => undefined };
const destination = (extra: Partial<ConstructorParameters<typeof SecretsManagerDestination>[0]> = {}) =>
  new SecretsManagerDestination({ client: sm, secretId, retry: noSleep, ...extra });
const requestCount = () => double.requests.length;

describe('the JSON bundle', () => {
  it('serializes canonically and parses back to the same bundle', async () => {
    const b = await testBundle({ slot: 0 });
    const text = serializeBundle(b);
    expect(parseBundle(text)).toEqual(b);
    const { files, ...meta } = b;
    const reordered = Object.fromEntries(Object.entries(meta).reverse());
    const shuffled = {
      files: Object.fromEntries(Object.entries(files).reverse()),
      ...reordered,
    } as CredentialBundle;
    expect(serializeBundle(shuffled)).toBe(text);
    expect(Object.keys(JSON.parse(text) as object)).toEqual([
      'kind',
      'version',
      'service',
      'protocol',
      'endpoint',
      'serverName',
      'database',
      'username',
      'format',
      'serial',
      'issuedAt',
      'expiresAt',
      'files',
    ]);
  });

  it('refuses text that is not JSON without quoting it', async () => {
    const b = await testBundle({ slot: 0 });
    const broken = serializeBundle(b).slice(0, -10);
    const err = (() => {
      try {
        parseBundle(broken, 'secret x');
      } catch (e) {
        return e as BundleError;
      }
      throw new Error('parseBundle accepted broken JSON');
    })();
    expect(err).toBeInstanceOf(BundleError);
    expect(err.code).toBe('bad_bundle');
    expect(err.message).toMatch(/^secret x is not JSON/);
    expect(err.message).not.toMatch(PEM_BODY);
    expect(err.message).not.toContain('PRIVATE KEY');
  });

  it('names the schema path and the bad value, but never a file value', async () => {
    const b = await testBundle({ slot: 0 });
    const doc = JSON.parse(serializeBundle(b)) as Record<string, unknown>;
    expect(() => parseBundle(JSON.stringify({ ...doc, protocol: 'oracle' }))).toThrow(
      /protocol: .*\(got "oracle"\)/,
    );
    expect(() => parseBundle(JSON.stringify({ ...doc, version: 2 }))).toThrow(/version: .*\(got 2\)/);
    const files = doc.files as Record<string, string>;
    const noKey = { ...doc, files: { ...files, key: 'not a key' } };
    const err = (() => {
      try {
        parseBundle(JSON.stringify(noKey));
      } catch (e) {
        return e as Error;
      }
      throw new Error('accepted a bundle without a PEM key');
    })();
    expect(err.message).toMatch(/files\.key: must be a PEM private key/);
    expect(err.message).not.toContain('not a key');
    expect(() => parseBundle(JSON.stringify({ ...doc, files: { ...files, '../escape': 'x' } }))).toThrow(
      /files\.\.\.\/escape: bad artifact name/,
    );
  });

  it('refuses a key that does not match the certificate, and a serial that is not the certificate’s', async () => {
    const a = await testBundle({ slot: 0 });
    const b = await testBundle({ slot: 1 });
    const mixed = { ...a, files: { ...a.files, key: b.files.key as string } };
    expect(() => parseBundle(JSON.stringify(mixed))).toThrow(/files\.key does not match the certificate/);
    expect(() => parseBundle(JSON.stringify({ ...a, serial: 'abcdef' }))).toThrow(
      /serial abcdef does not match the certificate's serial/,
    );
  });
});

describe('the Secrets Manager double (version-stage semantics of the AWS API reference)', () => {
  const put = (value: string, extra: Record<string, unknown> = {}) =>
    sm.send(new PutSecretValueCommand({ SecretId: secretId, SecretString: value, ...extra }));

  it('moves AWSCURRENT to a new version and AWSPREVIOUS to the old one when no stages are given', async () => {
    const v1 = (await put('one')).VersionId!;
    expect(double.holder(secretId, 'AWSCURRENT')?.versionId).toBe(v1);
    const v2 = (await put('two')).VersionId!;
    const v3 = (await put('three')).VersionId!;
    expect(double.versions(secretId).map((v) => [v.versionId, v.stages])).toEqual([
      [v1, []],
      [v2, ['AWSPREVIOUS']],
      [v3, ['AWSCURRENT']],
    ]);
    const previous = await sm.send(
      new GetSecretValueCommand({ SecretId: secretId, VersionStage: 'AWSPREVIOUS' }),
    );
    expect(previous.SecretString).toBe('two');
    // Deprecated versions stay readable by id, and DescribeSecret lists only labelled ones.
    expect(
      (await sm.send(new GetSecretValueCommand({ SecretId: secretId, VersionId: v1 }))).SecretString,
    ).toBe('one');
    const described = await sm.send(new DescribeSecretCommand({ SecretId: secretId }));
    expect(described.VersionIdsToStages).toEqual({ [v2]: ['AWSPREVIOUS'], [v3]: ['AWSCURRENT'] });
    const listed = await sm.send(new ListSecretVersionIdsCommand({ SecretId: secretId }));
    expect(listed.Versions?.map((v) => v.VersionId)).toEqual([v2, v3]);
    const all = await sm.send(
      new ListSecretVersionIdsCommand({ SecretId: secretId, IncludeDeprecated: true }),
    );
    expect(all.Versions?.map((v) => v.VersionId)).toEqual([v1, v2, v3]);
  });

  it('attaches only AWSPENDING when asked (but the first version of a secret is always AWSCURRENT)', async () => {
    const first = (await put('first', { VersionStages: ['AWSPENDING'] })).VersionId!;
    expect(double.holder(secretId, 'AWSCURRENT')?.versionId).toBe(first);
    const second = await put('second', { VersionStages: ['AWSPENDING'] });
    expect(second.VersionStages).toEqual(['AWSPENDING']);
    expect(double.versions(secretId).map((v) => v.stages)).toEqual([['AWSCURRENT'], ['AWSPENDING']]);
    const current = await sm.send(new GetSecretValueCommand({ SecretId: secretId }));
    expect(current.SecretString).toBe('first');
  });

  it('treats a repeated ClientRequestToken as idempotent for the same value and refuses another value', async () => {
    const token = versionToken('test', secretId, '1');
    await put('v', { ClientRequestToken: token });
    const again = await put('v', { ClientRequestToken: token, VersionStages: ['AWSPENDING'] });
    expect(again.VersionId).toBe(token);
    expect(double.versions(secretId)).toHaveLength(1);
    expect(double.versions(secretId)[0]?.stages).toEqual(['AWSCURRENT']); // the repeat moved nothing
    await expect(put('other', { ClientRequestToken: token })).rejects.toMatchObject({
      name: 'ResourceExistsException',
    });
    await expect(put('v', { ClientRequestToken: 'short' })).rejects.toMatchObject({
      name: 'ValidationException',
    });
  });

  it('refuses values over 65,536 bytes and unknown secrets', async () => {
    await expect(put('é'.repeat(SECRET_VALUE_MAX_BYTES / 2 + 1))).rejects.toMatchObject({
      name: 'ValidationException',
    });
    await expect(put('x'.repeat(SECRET_VALUE_MAX_BYTES))).resolves.toBeDefined();
    await expect(sm.send(new GetSecretValueCommand({ SecretId: 'no/such/secret' }))).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });
  });

  it('moves labels with UpdateSecretVersionStage only when RemoveFromVersionId names the holder', async () => {
    const v1 = (await put('one')).VersionId!;
    const v2 = (await put('two', { VersionStages: ['AWSPENDING'] })).VersionId!;
    const move = (extra: Record<string, unknown>) =>
      sm.send(
        new UpdateSecretVersionStageCommand({ SecretId: secretId, VersionStage: 'AWSCURRENT', ...extra }),
      );
    await expect(move({ MoveToVersionId: v2 })).rejects.toMatchObject({ name: 'InvalidParameterException' });
    await expect(move({ MoveToVersionId: v2, RemoveFromVersionId: v2 })).rejects.toMatchObject({
      name: 'InvalidParameterException',
    });
    await expect(move({ RemoveFromVersionId: v1 })).rejects.toMatchObject({
      name: 'InvalidParameterException',
    });
    await move({ MoveToVersionId: v2, RemoveFromVersionId: v1 });
    expect(double.versions(secretId).map((v) => v.stages)).toEqual([
      ['AWSPREVIOUS'],
      ['AWSPENDING', 'AWSCURRENT'],
    ]);
    await sm.send(
      new UpdateSecretVersionStageCommand({
        SecretId: secretId,
        VersionStage: 'AWSPENDING',
        RemoveFromVersionId: v2,
      }),
    );
    expect(double.versions(secretId).map((v) => v.stages)).toEqual([['AWSPREVIOUS'], ['AWSCURRENT']]);
  });

  it('keeps at most 100 versions, dropping the oldest deprecated ones', async () => {
    for (let i = 0; i < 103; i++) await put(`v${i}`);
    const versions = double.versions(secretId);
    expect(versions).toHaveLength(100);
    expect(versions[0]?.secretString).toBe('v3');
    expect(versions.at(-1)?.stages).toEqual(['AWSCURRENT']);
  });
});

describe('SecretsManagerDestination', () => {
  it('writes a bundle that read() returns, promoted to AWSCURRENT with no AWSPENDING left behind', async () => {
    const b = await testBundle({ slot: 0 });
    const dest = destination();
    expect(dest.description).toBe(`secretsmanager ${secretId}`);
    await dest.write(b);
    expect(await dest.read()).toEqual(b);
    const versions = double.versions(secretId);
    expect(versions).toHaveLength(1);
    expect(versions[0]).toMatchObject({
      versionId: versionToken('database-credentials', secretId, b.serial),
      stages: ['AWSCURRENT'],
    });
  });

  it('keeps the previous bundle readable as AWSPREVIOUS after a renewal', async () => {
    const dest = destination();
    const first = await testBundle({ slot: 0 });
    const second = await testBundle({ slot: 1 });
    await dest.write(first);
    await dest.write(second);
    expect(await dest.read()).toEqual(second);
    const previous = await sm.send(
      new GetSecretValueCommand({ SecretId: secretId, VersionStage: 'AWSPREVIOUS' }),
    );
    expect(parseBundle(previous.SecretString!)).toEqual(first);
    expect(double.holder(secretId, 'AWSPENDING')).toBeUndefined();
    // The promotion is the three-step dance, not a plain PutSecretValue.
    expect(double.requestsOf('PutSecretValue').at(-1)?.body.VersionStages).toEqual(['AWSPENDING']);
    expect(double.requestsOf('UpdateSecretVersionStage').at(-2)?.body).toMatchObject({
      VersionStage: 'AWSCURRENT',
      MoveToVersionId: versionToken('database-credentials', secretId, second.serial),
      RemoveFromVersionId: versionToken('database-credentials', secretId, first.serial),
    });
  });

  it('makes a retried renewal idempotent: the same serial never creates a second version', async () => {
    const dest = destination();
    const first = await testBundle({ slot: 0 });
    const second = await testBundle({ slot: 1 });
    await dest.write(first);
    // The first attempt dies after staging (its read-back fails): AWSCURRENT must not move.
    double.fail('GetSecretValue', { type: 'InternalServiceError' });
    await expect(dest.write(second)).rejects.toThrow(
      /GetSecretValue \(read back the staged version\) failed: InternalServiceError.*AWSCURRENT is unchanged/,
    );
    expect(await dest.read()).toEqual(first);
    await dest.write(second); // the retry
    await dest.write(second); // and a retry of a renewal that had fully succeeded
    expect(await dest.read()).toEqual(second);
    expect(double.versions(secretId).map((v) => v.stages)).toEqual([['AWSPREVIOUS'], ['AWSCURRENT']]);
  });

  it('refuses to promote a stale retry of a renewal that has since been superseded', async () => {
    const dest = destination();
    const first = await testBundle({ slot: 0 });
    const second = await testBundle({ slot: 1 });
    await dest.write(first);
    await dest.write(second);
    await expect(dest.write(first)).rejects.toThrow(
      /has since been superseded.*not promoting an older bundle/,
    );
    expect(await dest.read()).toEqual(second);
  });

  it('refuses a bundle over 64 KiB before any AWS call, naming the size', async () => {
    const dest = destination();
    const first = await testBundle({ slot: 0 });
    await dest.write(first);
    const big = await testBundle({ slot: 1 });
    big.files['teleport-host-ca.crt'] = `${big.files['teleport-host-ca.crt']}${'#'.repeat(70_000)}`;
    const before = requestCount();
    const err = await dest.write(big).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(
      /the bundle is \d{5} bytes of JSON, over the Secrets Manager limit of 65536 bytes/,
    );
    expect(err?.message).toMatch(/nothing was sent and AWSCURRENT is unchanged/);
    expect(requestCount()).toBe(before);
    expect(await dest.read()).toEqual(first);
  });

  it('refuses a bundle whose key does not match its certificate, before any AWS call', async () => {
    const dest = destination();
    const a = await testBundle({ slot: 0 });
    const b = await testBundle({ slot: 1 });
    const before = requestCount();
    await expect(dest.write({ ...a, files: { ...a.files, key: b.files.key as string } })).rejects.toThrow(
      /refusing to write serial .*files\.key does not match the certificate/,
    );
    expect(requestCount()).toBe(before);
    expect(double.versions(secretId)).toEqual([]);
  });

  it('leaves AWSCURRENT unchanged when the test connection fails', async () => {
    const first = await testBundle({ slot: 0 });
    const second = await testBundle({ slot: 1 });
    await destination().write(first);
    const testConnection = vi.fn(async (b: CredentialBundle) => {
      if (b.serial === second.serial) throw new Error('password authentication failed for user "alice"');
    });
    const dest = destination({ testConnection });
    await expect(dest.write(second)).rejects.toThrow(
      /test connection failed: password authentication failed for user "alice"; AWSCURRENT is unchanged \(still version /,
    );
    expect(testConnection).toHaveBeenCalledWith(second);
    expect(await dest.read()).toEqual(first);
    expect(double.holder(secretId, 'AWSPENDING')?.versionId).toBe(
      versionToken('database-credentials', secretId, second.serial),
    );
  });

  it('leaves AWSCURRENT unchanged when the promotion itself is refused', async () => {
    const dest = destination();
    const first = await testBundle({ slot: 0 });
    await dest.write(first);
    double.fail('UpdateSecretVersionStage', { type: 'InternalServiceError' });
    await expect(dest.write(await testBundle({ slot: 1 }))).rejects.toThrow(
      /UpdateSecretVersionStage \(promote to AWSCURRENT\) failed: InternalServiceError: .*AWSCURRENT is unchanged \(still version/,
    );
    expect(await dest.read()).toEqual(first);
  });

  it('reads undefined while the secret is missing or empty, and names a missing secret on write', async () => {
    expect(await destination().read()).toBeUndefined(); // created, no version yet
    const missing = new SecretsManagerDestination({
      client: sm,
      secretId: 'broker/test/missing',
      retry: noSleep,
    });
    expect(await missing.read()).toBeUndefined();
    await expect(missing.write(await testBundle({ slot: 0 }))).rejects.toThrow(
      /PutSecretValue \(stage AWSPENDING\) failed: .*the secret does not exist \(ResourceNotFoundException: .*create it first/,
    );
  });

  it('creates the secret when allowed to', async () => {
    const id = `broker/test/created-${secretSeq}`;
    const dest = new SecretsManagerDestination({
      client: sm,
      secretId: id,
      createIfMissing: true,
      retry: noSleep,
    });
    const b = await testBundle({ slot: 0 });
    await dest.write(b);
    expect(await dest.read()).toEqual(b);
    expect(double.versions(id).map((v) => v.stages)).toEqual([['AWSCURRENT']]);
  });
});

describe('SecretsManagerDestination: throttling and errors (aws-sdk-client-mock)', () => {
  const awsError = (name: string, message: string, status = 400) =>
    new SecretsManagerServiceException({
      name,
      $fault: 'client',
      message,
      $metadata: { httpStatusCode: status },
    });

  it('retries throttled calls with capped, jittered exponential back-off and then succeeds', async () => {
    const b = await testBundle({ slot: 0 });
    const text = serializeBundle(b);
    const token = versionToken('database-credentials', 'mocked', b.serial);
    const mock = mockClient(sm);
    try {
      mock
        .on(PutSecretValueCommand)
        .rejectsOnce(awsError('ThrottlingException', 'Rate exceeded'))
        .rejectsOnce(awsError('TooManyRequestsException', 'Too many requests', 429))
        .resolves({ VersionId: token, VersionStages: ['AWSPENDING'] });
      mock.on(GetSecretValueCommand).resolves({ VersionId: token, SecretString: text });
      mock
        .on(DescribeSecretCommand)
        .resolves({ VersionIdsToStages: { old: ['AWSCURRENT'], [token]: ['AWSPENDING'] } });
      mock.on(UpdateSecretVersionStageCommand).resolves({});
      const delays: number[] = [];
      const dest = new SecretsManagerDestination({
        client: sm,
        secretId: 'mocked',
        retry: {
          sleep: async (ms) => void delays.push(ms),
          random: () => 0.999,
          baseDelayMs: 100,
          maxDelayMs: 150,
        },
      });
      await dest.write(b);
      // Every attempt carries the one version token, so a throttled retry can never add a version.
      expect(mock.commandCalls(PutSecretValueCommand).map((c) => c.args[0].input.ClientRequestToken)).toEqual(
        [token, token, token],
      );
      expect(delays).toEqual([99, 149]); // 100 × 2^0, then min(150, 100 × 2^1), times the jitter factor
      const updates = mock.commandCalls(UpdateSecretVersionStageCommand).map((c) => c.args[0].input);
      expect(updates).toEqual([
        {
          SecretId: 'mocked',
          VersionStage: 'AWSCURRENT',
          MoveToVersionId: token,
          RemoveFromVersionId: 'old',
        },
        { SecretId: 'mocked', VersionStage: 'AWSPENDING', RemoveFromVersionId: token },
      ]);
    } finally {
      mock.restore();
    }
  });

  it('gives up after the bounded number of throttled attempts', async () => {
    const mock = mockClient(sm);
    try {
      mock.on(PutSecretValueCommand).rejects(awsError('ThrottlingException', 'Rate exceeded'));
      const dest = new SecretsManagerDestination({
        client: sm,
        secretId: 'mocked',
        retry: { ...noSleep, maxAttempts: 4 },
      });
      await expect(dest.write(await testBundle({ slot: 0 }))).rejects.toThrow(
        /PutSecretValue \(stage AWSPENDING\) failed: throttled by AWS 4 times in a row \(ThrottlingException: Rate exceeded\); AWSCURRENT is unchanged/,
      );
      expect(mock.commandCalls(PutSecretValueCommand)).toHaveLength(4);
    } finally {
      mock.restore();
    }
  });

  it('surfaces a non-retryable error at once, naming the step and the AWS error', async () => {
    const mock = mockClient(sm);
    try {
      mock
        .on(PutSecretValueCommand)
        .rejects(
          awsError(
            'AccessDeniedException',
            'User is not authorized to perform: secretsmanager:PutSecretValue',
          ),
        );
      const sleep = vi.fn(async () => undefined);
      const dest = new SecretsManagerDestination({ client: sm, secretId: 'mocked', retry: { sleep } });
      const b = await testBundle({ slot: 0 });
      await expect(dest.write(b)).rejects.toThrow(
        `could not write serial ${b.serial} to secret mocked: PutSecretValue (stage AWSPENDING) failed: AccessDeniedException: User is not authorized to perform: secretsmanager:PutSecretValue; AWSCURRENT is unchanged`,
      );
      expect(mock.commandCalls(PutSecretValueCommand)).toHaveLength(1);
      expect(sleep).not.toHaveBeenCalled();
    } finally {
      mock.restore();
    }
  });

  it('says so when the promotion got no answer, instead of claiming AWSCURRENT is unchanged', async () => {
    const b = await testBundle({ slot: 0 });
    const token = versionToken('database-credentials', 'mocked', b.serial);
    const mock = mockClient(sm);
    try {
      mock.on(PutSecretValueCommand).resolves({ VersionId: token });
      mock.on(GetSecretValueCommand).resolves({ VersionId: token, SecretString: serializeBundle(b) });
      mock
        .on(DescribeSecretCommand)
        .resolves({ VersionIdsToStages: { old: ['AWSCURRENT'], [token]: ['AWSPENDING'] } });
      mock
        .on(UpdateSecretVersionStageCommand)
        .rejects(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
      const dest = new SecretsManagerDestination({ client: sm, secretId: 'mocked', retry: noSleep });
      await expect(dest.write(b)).rejects.toThrow(
        /promote to AWSCURRENT\) failed: socket hang up; it is unknown whether AWSCURRENT moved/,
      );
    } finally {
      mock.restore();
    }
  });

  it('retries nothing but throttling', async () => {
    let calls = 0;
    await expect(
      withThrottlingRetry(async () => {
        calls++;
        throw awsError('InternalServiceError', 'boom', 500);
      }, noSleep),
    ).rejects.toMatchObject({ name: 'InternalServiceError' });
    expect(calls).toBe(1);
  });
});

describe('SecretsManagerBundleSource', () => {
  it('fetches the secret value only when the AWSCURRENT version changed', async () => {
    const source = new SecretsManagerBundleSource({ client: sm, secretId, retry: noSleep });
    expect(source.description).toBe(`secretsmanager ${secretId}`);
    const gets = () => double.requestsOf('GetSecretValue').filter((r) => r.body.SecretId === secretId).length;
    expect(await source.load()).toBeUndefined(); // secret without a version
    const dest = destination();
    const first = await testBundle({ slot: 0 });
    await dest.write(first);
    const afterWrite = gets();
    expect(await source.load()).toEqual(first);
    expect(await source.load()).toEqual(first);
    expect(await source.load()).toEqual(first);
    expect(gets()).toBe(afterWrite + 1);
    const second = await testBundle({ slot: 1 });
    await dest.write(second);
    const afterRenewal = gets();
    expect(await source.load()).toEqual(second);
    expect(await source.load()).toEqual(second);
    expect(gets()).toBe(afterRenewal + 1);
  });

  it('returns undefined for a missing secret and refuses a bad bundle', async () => {
    expect(
      await new SecretsManagerBundleSource({ client: sm, secretId: 'broker/none', retry: noSleep }).load(),
    ).toBeUndefined();
    await sm.send(
      new PutSecretValueCommand({ SecretId: secretId, SecretString: '{"kind":"database-credentials"}' }),
    );
    await expect(new SecretsManagerBundleSource({ client: sm, secretId }).load()).rejects.toThrow(
      /is not a version 1 database-credentials bundle: version: /,
    );
  });
});

describe('SecretsManagerIdentityStore', () => {
  async function identity(generation: number, slot: number): Promise<BotIdentity> {
    const b = await testBundle({ slot: slot });
    return {
      certificatePem: b.files.tlscert as string,
      privateKeyPem: b.files.key as string,
      generation,
      expires: b.expiresAt,
      botCaPem: b.files['teleport-host-ca.crt'] as string,
    };
  }

  it('stores the identity as AWSCURRENT, keeps the previous one, and retries idempotently', async () => {
    const store = new SecretsManagerIdentityStore({ client: sm, secretId, retry: noSleep });
    expect(await store.load()).toBeUndefined();
    const one = await identity(1, 0);
    const two = await identity(2, 1);
    await store.save(one);
    await store.save(two);
    await store.save(two); // a retry after a lost response
    expect(await store.load()).toEqual(two);
    expect(double.versions(secretId).map((v) => v.stages)).toEqual([['AWSPREVIOUS'], ['AWSCURRENT']]);
  });

  it('refuses a corrupt identity with advice and without quoting it', async () => {
    const one = await identity(1, 0);
    const other = await identity(1, 1);
    await sm.send(
      new PutSecretValueCommand({
        SecretId: secretId,
        SecretString: JSON.stringify({ ...one, privateKeyPem: other.privateKeyPem }),
      }),
    );
    const store = new SecretsManagerIdentityStore({ client: sm, secretId });
    const err = await store.load().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/the key does not match the certificate.*join again with a new token/);
    expect(err?.message).not.toMatch(PEM_BODY);
  });

  it('creates its secret when allowed to', async () => {
    const id = `broker/test/identity-${secretSeq}`;
    const store = new SecretsManagerIdentityStore({ client: sm, secretId: id, createIfMissing: true });
    const one = await identity(1, 0);
    await store.save(one);
    expect(await store.load()).toEqual(one);
  });
});
