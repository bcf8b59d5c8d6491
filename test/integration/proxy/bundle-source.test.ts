/**
 * The BundleSource contract (test/contracts/bundle-source.ts) against both sources the proxy reads: a
 * directory output written by DirectoryDestination, and a Secrets Manager secret written by
 * SecretsManagerDestination to the in-process double (real SDK over loopback HTTP, hence integration).
 */
import { readlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PutSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll } from 'vitest';
import { type CredentialBundle, serializeBundle } from '../../../src/credentials/bundle.js';
import { DirectoryDestination } from '../../../src/destinations/directory.js';
import { SecretsManagerDestination } from '../../../src/destinations/secretsmanager.js';
import { DirectoryBundleSource } from '../../../src/proxy/sources/directory.js';
import { SecretsManagerBundleSource } from '../../../src/proxy/sources/secretsmanager.js';
import { bundleSourceContract } from '../../contracts/bundle-source.js';
import { SecretsManagerDouble } from '../../support/aws/secretsmanager.js';
import { HOUR, nowSeconds, testBundle, testKeyPair } from '../../support/fixtures.js';
import { tempDir } from '../../support/temp.js';

let first: CredentialBundle;
let newer: CredentialBundle;
let otherKeyPem: string;
let work: Awaited<ReturnType<typeof tempDir>>;
let double: SecretsManagerDouble;
let subjects = 0;

beforeAll(async () => {
  const issuedAt = nowSeconds();
  first = await testBundle({ issuedAt, slot: 0 });
  newer = await testBundle({ issuedAt: new Date(issuedAt.getTime() + 60_000), ttlMs: HOUR, slot: 1 });
  otherKeyPem = (await testKeyPair(2)).privateKeyPem;
  work = await tempDir('bundle-source');
  double = await SecretsManagerDouble.start();
});
afterAll(async () => {
  await double?.close();
  await work?.cleanup();
});

const bundles = () => ({ first, newer, otherKeyPem });

/** `bundle` with another issuance's key beside its certificate. */
const mixed = (bundle: CredentialBundle, keyPem: string): CredentialBundle => ({
  ...bundle,
  files: { ...bundle.files, key: keyPem },
});

bundleSourceContract('directory', {
  bundles,
  subject: async () => {
    const dir = path.join(work.dir, `out-${++subjects}`);
    const destination = new DirectoryDestination(dir);
    /** The file `name` of the version `.current` points at. */
    const current = async (name: string) =>
      path.resolve(dir, await readlink(path.join(dir, '.current')), name);
    return {
      source: new DirectoryBundleSource(dir),
      where: dir,
      write: (bundle) => destination.write(bundle),
      writeTruncated: async (bundle) => {
        await destination.write(bundle);
        await truncate(await current('.broker.json'), 20);
      },
      // The destination refuses a bundle whose key is not its certificate's: the damage is done after it.
      writeMixed: async (bundle, keyPem) => {
        await destination.write(bundle);
        await writeFile(await current('key'), keyPem);
      },
      close: async () => undefined,
    };
  },
});

bundleSourceContract('secretsmanager', {
  bundles,
  subject: async () => {
    const client = double.client();
    const secretId = `broker/contract-${++subjects}`;
    const destination = new SecretsManagerDestination({ client, secretId, createIfMissing: true });
    /** A value the destination would refuse, put straight into the secret as AWSCURRENT. */
    const putRaw = async (text: string) => {
      await destination.write(first); // makes sure the secret exists
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
      writeMixed: (bundle, keyPem) => putRaw(JSON.stringify(mixed(bundle, keyPem))),
      close: async () => client.destroy(),
    };
  },
});
