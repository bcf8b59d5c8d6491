/**
 * The Secrets Manager code paths against moto in server mode (test/support/aws/moto.ts) as well as the
 * double: the destination, the identity store and the proxy's bundle source keep their contracts on moto's
 * implementation of version stages and ClientRequestToken too. Where moto and the double answer one request
 * differently, the last block names which one follows AWS's documentation (the Secrets Manager API
 * Reference) and pins both answers, so a change on either side is seen.
 */
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretsManagerIdentityStore } from '../../src/bot/secretsmanager-identity-store.js';
import { type CredentialBundle, serializeBundle } from '../../src/credentials/bundle.js';
import { SecretsManagerDestination } from '../../src/destinations/secretsmanager.js';
import { SecretsManagerBundleSource } from '../../src/proxy/sources/secretsmanager.js';
import { bundleSourceContract } from '../contracts/bundle-source.js';
import { destinationContract } from '../contracts/destination.js';
import { identityStoreContract } from '../contracts/identity-store.js';
import { type MotoServer, requirePythonTool, startMoto } from '../support/aws/moto.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { HOUR, nowSeconds, testBundle, testIdentity, testKeyPair } from '../support/fixtures.js';

const motoServer = requirePythonTool('moto_server');
let moto: MotoServer;
let client: SecretsManagerClient;
let secrets = 0;
const noSleep = { sleep: async () => undefined };

beforeAll(async () => {
  if (!motoServer) return;
  moto = await startMoto(motoServer);
  client = new SecretsManagerClient({ ...moto.clientOptions(), maxAttempts: 1 });
});
afterAll(async () => {
  client?.destroy();
  await moto?.close();
});

const newSecret = async (): Promise<string> => {
  const secretId = `broker/moto/out-${++secrets}`;
  await client.send(new CreateSecretCommand({ Name: secretId }));
  return secretId;
};

describe.skipIf(!motoServer)('Secrets Manager on moto', () => {
  destinationContract('SecretsManagerDestination on moto', async () => {
    const secretId = await newSecret();
    const open = () => new SecretsManagerDestination({ client, secretId, retry: noSleep });
    return { destination: open(), reopen: open, secretId };
  }, [
    {
      what: 'a key that does not match the certificate, refused before any AWS call',
      write: async ({ destination }) => {
        const b = await testBundle({ slot: 1 });
        const other = await testBundle({ slot: 2 });
        return destination.write({ ...b, files: { ...b.files, key: other.files.key as string } });
      },
    },
    {
      what: 'a bundle over the 64 KiB secret size (moto itself would take it: see below)',
      write: async ({ destination }) =>
        destination.write(await testBundle({ slot: 1, files: { padding: 'x'.repeat(70_000) } })),
    },
  ]);

  identityStoreContract(
    'SecretsManagerIdentityStore on moto',
    async () => {
      const secretId = await newSecret();
      const open = () => new SecretsManagerIdentityStore({ client, secretId, retry: noSleep });
      return { store: open(), reopen: open, secretId };
    },
    {
      failingSaves: [
        {
          what: 'an identity over the 64 KiB secret size, refused before any AWS call',
          save: async ({ store }) =>
            store.save({ ...(await testIdentity(2, 1)), botCaPem: 'x'.repeat(70_000) }),
        },
      ],
      corrupt: ({ secretId }, text) =>
        client
          .send(new PutSecretValueCommand({ SecretId: secretId, SecretString: text }))
          .then(() => undefined),
    },
  );

  let first: CredentialBundle;
  let newer: CredentialBundle;
  let otherKeyPem: string;
  beforeAll(async () => {
    const issuedAt = nowSeconds();
    first = await testBundle({ issuedAt, slot: 0 });
    newer = await testBundle({ issuedAt: new Date(issuedAt.getTime() + 60_000), ttlMs: HOUR, slot: 1 });
    otherKeyPem = (await testKeyPair(2)).privateKeyPem;
  });

  bundleSourceContract('SecretsManagerBundleSource on moto', {
    bundles: () => ({ first, newer, otherKeyPem }),
    subject: async () => {
      const secretId = `broker/moto/source-${++secrets}`;
      const destination = new SecretsManagerDestination({ client, secretId, createIfMissing: true });
      const putRaw = async (text: string) => {
        await destination.write(first);
        await client.send(new PutSecretValueCommand({ SecretId: secretId, SecretString: text }));
      };
      return {
        source: new SecretsManagerBundleSource({ client, secretId }),
        where: secretId,
        write: (bundle) => destination.write(bundle),
        writeTruncated: async (bundle) => {
          const text = serializeBundle(bundle);
          await putRaw(text.slice(0, Math.floor(text.length / 2)));
        },
        writeMixed: (bundle, keyPem) =>
          putRaw(JSON.stringify({ ...bundle, files: { ...bundle.files, key: keyPem } })),
        close: async () => undefined,
      };
    },
  });

  it('a renewal stages AWSPENDING, promotes it to AWSCURRENT and leaves the old bundle as AWSPREVIOUS', async () => {
    const secretId = await newSecret();
    const destination = new SecretsManagerDestination({ client, secretId, retry: noSleep });
    await destination.write(first);
    await destination.write(newer);
    const stages = (await client.send(new DescribeSecretCommand({ SecretId: secretId }))).VersionIdsToStages;
    const byStage = (stage: string) =>
      Object.entries(stages ?? {})
        .filter(([, s]) => s.includes(stage))
        .map(([id]) => id);
    expect(byStage('AWSCURRENT')).toHaveLength(1);
    expect(byStage('AWSPREVIOUS')).toHaveLength(1);
    expect(byStage('AWSPENDING')).toEqual([]);
    const previous = await client.send(
      new GetSecretValueCommand({ SecretId: secretId, VersionStage: 'AWSPREVIOUS' }),
    );
    expect(previous.SecretString).toBe(serializeBundle(first));
    expect(await destination.read()).toEqual(newer);
  });
});

/**
 * One request, sent to moto and to the double on fresh secrets; each case quotes what the API Reference
 * says, and the expectations say which of the two follows it.
 */
describe.skipIf(!motoServer)('where moto and the Secrets Manager double disagree', () => {
  const double = new SecretsManagerDouble();
  const doubleClient = double.client({ maxAttempts: 1 });
  afterAll(() => doubleClient.destroy());
  const T1 = `${'1'.repeat(8)}-1111-4111-8111-${'1'.repeat(12)}`;
  const T2 = `${'2'.repeat(8)}-2222-4222-8222-${'2'.repeat(12)}`;

  /** Runs `steps` on a fresh secret on both; returns what each answered (error name or the stages map). */
  async function onBoth(
    steps: (c: SecretsManagerClient, secretId: string) => Promise<unknown>,
  ): Promise<{ moto: unknown; double: unknown }> {
    const one = async (c: SecretsManagerClient) => {
      const secretId = `broker/disagree-${++secrets}`;
      await c.send(new CreateSecretCommand({ Name: secretId }));
      return steps(c, secretId).catch((err: { name?: string; $metadata?: { httpStatusCode?: number } }) => ({
        error: err.name,
        status: err.$metadata?.httpStatusCode,
      }));
    };
    return { moto: await one(client), double: await one(doubleClient) };
  }
  const stagesOf = async (c: SecretsManagerClient, secretId: string) =>
    (await c.send(new DescribeSecretCommand({ SecretId: secretId }))).VersionIdsToStages;
  const put = (c: SecretsManagerClient, secretId: string, value: string, token: string, stages?: string[]) =>
    c.send(
      new PutSecretValueCommand({
        SecretId: secretId,
        SecretString: value,
        ClientRequestToken: token,
        ...(stages ? { VersionStages: stages } : {}),
      }),
    );

  it('both: the first version gets AWSCURRENT even when staged as AWSPENDING; a promotion moves AWSPREVIOUS', async () => {
    const answers = await onBoth(async (c, id) => {
      await put(c, id, 'v1', T1, ['AWSPENDING']);
      const afterFirst = await stagesOf(c, id);
      await c.send(
        new UpdateSecretVersionStageCommand({
          SecretId: id,
          VersionStage: 'AWSPENDING',
          RemoveFromVersionId: T1,
        }),
      );
      await put(c, id, 'v2', T2, ['AWSPENDING']);
      await c.send(
        new UpdateSecretVersionStageCommand({
          SecretId: id,
          VersionStage: 'AWSCURRENT',
          MoveToVersionId: T2,
          RemoveFromVersionId: T1,
        }),
      );
      return { afterFirst, afterPromotion: await stagesOf(c, id) };
    });
    const documented = {
      afterFirst: { [T1]: ['AWSPENDING', 'AWSCURRENT'] },
      afterPromotion: { [T1]: ['AWSPREVIOUS'], [T2]: ['AWSPENDING', 'AWSCURRENT'] },
    };
    const sorted = (a: unknown) =>
      JSON.parse(JSON.stringify(a, (_k, v) => (Array.isArray(v) ? [...v].sort() : v)));
    expect(sorted(answers.double)).toEqual(sorted(documented));
    expect(sorted(answers.moto)).toEqual(sorted(documented));
  });

  it('"If a version with a version ID with the same value as the ClientRequestToken parameter already exists and you specify the same secret data, the operation succeeds but does nothing": the double follows it, moto moves the labels', async () => {
    // The destination's retried renewal sends exactly this: the same serial, token and value again after
    // the version became AWSCURRENT.
    const answers = await onBoth(async (c, id) => {
      await put(c, id, 'v1', T1, ['AWSPENDING']);
      await put(c, id, 'v1', T1, ['AWSPENDING']);
      return stagesOf(c, id);
    });
    expect(answers.double).toEqual({ [T1]: ['AWSPENDING', 'AWSCURRENT'] });
    // moto 5.2.5 re-applies VersionStages: AWSCURRENT is gone and the secret has no current value.
    expect(answers.moto).toEqual({ [T1]: ['AWSPENDING'] });
  });

  it('"If a version with this value already exists and the version of the SecretString and SecretBinary values are different from those in the request, then the request fails": both follow it', async () => {
    const answers = await onBoth(async (c, id) => {
      await put(c, id, 'v1', T1);
      await put(c, id, 'v2', T1);
      return (await c.send(new GetSecretValueCommand({ SecretId: id, VersionId: T1 }))).SecretString;
    });
    expect(answers.double).toEqual({ error: 'ResourceExistsException', status: 400 });
    expect(answers.moto).toEqual(answers.double);
  });

  it('SecretString "Length Constraints: Maximum length of 65536": the double refuses one byte more, moto stores it', async () => {
    const answers = await onBoth(async (c, id) => {
      await put(c, id, 'x'.repeat(65_537), T1);
      return 'stored';
    });
    expect(answers.double).toEqual({ error: 'ValidationException', status: 400 });
    expect(answers.moto).toBe('stored');
  });

  it('UpdateSecretVersionStage: "If the staging label is already attached to a different version of the secret, then you must also specify the RemoveFromVersionId parameter": both refuse with InvalidParameterException', async () => {
    const answers = await onBoth(async (c, id) => {
      await put(c, id, 'v1', T1);
      await put(c, id, 'v2', T2, ['AWSPENDING']);
      await c.send(
        new UpdateSecretVersionStageCommand({
          SecretId: id,
          VersionStage: 'AWSCURRENT',
          MoveToVersionId: T2,
        }),
      );
      return 'moved';
    });
    expect(answers.double).toEqual({ error: 'InvalidParameterException', status: 400 });
    expect(answers.moto).toEqual(answers.double);
  });

  it('CreateSecret retried with the same ClientRequestToken and value "is ignored": both follow it (the double was fixed to)', async () => {
    const answers = await onBoth(async (c) => {
      const name = `broker/created-${++secrets}`;
      const create = () =>
        c.send(new CreateSecretCommand({ Name: name, SecretString: 'v1', ClientRequestToken: T1 }));
      const a = await create();
      const b = await create();
      const other = await c
        .send(new CreateSecretCommand({ Name: name, SecretString: 'v2', ClientRequestToken: T2 }))
        .then(
          () => 'created',
          (err: { name?: string }) => err.name,
        );
      return { same: a.ARN === b.ARN && b.VersionId === T1, other };
    });
    expect(answers.double).toEqual({ same: true, other: 'ResourceExistsException' });
    expect(answers.moto).toEqual(answers.double);
  });
});
