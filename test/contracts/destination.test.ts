/** The Destination contract on every destination: directory, Secrets Manager (in-process double), memory. */
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll } from 'vitest';
import { DirectoryDestination } from '../../src/destinations/directory.js';
import { MemoryDestination } from '../../src/destinations/memory.js';
import { SecretsManagerDestination } from '../../src/destinations/secretsmanager.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { outputPath } from '../support/directory-output.js';
import { testBundle } from '../support/fixtures.js';
import { removeTempDirs } from '../support/temp.js';
import { destinationContract } from './destination.js';

afterAll(removeTempDirs);

destinationContract('DirectoryDestination', async () => {
  const dir = await outputPath();
  return { destination: new DirectoryDestination(dir), reopen: () => new DirectoryDestination(dir) };
}, [
  {
    what: 'an artifact name longer than the file system allows',
    write: async ({ destination }) =>
      destination.write(await testBundle({ slot: 1, files: { [`${'x'.repeat(300)}.crt`]: 'x' } })),
  },
  {
    what: 'an artifact name with a NUL byte',
    write: async ({ destination }) =>
      destination.write(await testBundle({ slot: 1, files: { 'bad\0name': 'x' } })),
  },
]);

const sm = new SecretsManagerDouble();
const client = sm.client();
let secrets = 0;
const noSleep = { sleep: async () => undefined };
afterAll(() => client.destroy());

destinationContract('SecretsManagerDestination', async () => {
  const secretId = `broker/contract/out-${++secrets}`;
  await client.send(new CreateSecretCommand({ Name: secretId }));
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
    what: 'a bundle over the 64 KiB secret size',
    write: async ({ destination }) =>
      destination.write(await testBundle({ slot: 1, files: { padding: 'x'.repeat(70_000) } })),
  },
  {
    what: 'AWS refusing the promotion to AWSCURRENT',
    write: async ({ destination }) => {
      sm.fail('UpdateSecretVersionStage', { type: 'InternalServiceError' });
      return destination.write(await testBundle({ slot: 1 }));
    },
  },
  {
    what: 'a failed test connection',
    write: async ({ secretId }) =>
      new SecretsManagerDestination({
        client,
        secretId,
        retry: noSleep,
        testConnection: async () => {
          throw new Error('connection refused');
        },
      }).write(await testBundle({ slot: 1 })),
  },
]);

destinationContract('MemoryDestination', async () => {
  const destination = new MemoryDestination();
  return { destination, reopen: () => destination };
});
