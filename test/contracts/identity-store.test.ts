/** The IdentityStore contract on every identity store: directory, Secrets Manager (in-process double), memory. */
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CreateSecretCommand, PutSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll } from 'vitest';
import { DirectoryIdentityStore, MemoryIdentityStore } from '../../src/bot/identity-store.js';
import { SecretsManagerIdentityStore } from '../../src/bot/secretsmanager-identity-store.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { testIdentity } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';
import { identityStoreContract } from './identity-store.js';

afterAll(removeTempDirs);

identityStoreContract(
  'DirectoryIdentityStore',
  async () => {
    const dir = path.join(await makeTempDir(), 'storage');
    return { store: new DirectoryIdentityStore(dir), reopen: () => new DirectoryIdentityStore(dir), dir };
  },
  {
    failingSaves: [
      {
        what: 'a storage path that became a symlink',
        save: async ({ store, dir }) => {
          await rename(dir, `${dir}.real`);
          await symlink(`${dir}.real`, dir);
          return store.save(await testIdentity(2, 1));
        },
        repair: async ({ dir }) => {
          await rm(dir);
          await rename(`${dir}.real`, dir);
        },
      },
    ],
    corrupt: async ({ dir }, text) => {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(path.join(dir, 'identity.json'), text, { mode: 0o600 });
    },
  },
);

const sm = new SecretsManagerDouble();
const client = sm.client();
let secrets = 0;
const noSleep = { sleep: async () => undefined };
afterAll(() => client.destroy());

identityStoreContract(
  'SecretsManagerIdentityStore',
  async () => {
    const secretId = `broker/contract/identity-${++secrets}`;
    await client.send(new CreateSecretCommand({ Name: secretId }));
    const open = () => new SecretsManagerIdentityStore({ client, secretId, retry: noSleep });
    return { store: open(), reopen: open, secretId };
  },
  {
    failingSaves: [
      {
        what: 'AWS refusing PutSecretValue',
        save: async ({ store }) => {
          sm.fail('PutSecretValue', { type: 'InternalServiceError' });
          return store.save(await testIdentity(2, 1));
        },
      },
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

identityStoreContract('MemoryIdentityStore', async () => {
  const store = new MemoryIdentityStore();
  return { store, reopen: () => store };
});
