/**
 * An authority whose CAs are keys in the KMS double issues certificates the real `openssl` verifies, and
 * KMS only ever signs digests. The KmsSigner itself is unit-tested in test/unit/kms-signer.test.ts.
 */
import type { KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stateKeys } from '../../src/authority/state-keys.js';
import { CA_TYPES, type CaKey } from '../../src/pki/ca.js';
import { kmsTestAuthority } from '../support/authority.js';
import { KmsDouble } from '../support/aws/kms.js';
import {
  exampleResourcesYaml,
  INTERNAL_DB_URI,
  EXAMPLE_ROUTE as ROUTE,
  testKeyPair,
} from '../support/fixtures.js';
import { opensslVerify } from '../support/openssl.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

let kms: KmsDouble;
let client: KMSClient;
let dir: string;

beforeAll(async () => {
  kms = new KmsDouble();
  client = kms.client();
  dir = await makeTempDir('broker-kms-');
});

afterAll(async () => {
  client.destroy();
  await kms.close();
  await removeTempDirs();
});

const kmsAuthority = () =>
  kmsTestAuthority({ client, resources: exampleResourcesYaml({ db: { uri: INTERNAL_DB_URI }, bots: [] }) });

describe('an authority whose CAs are KMS keys', () => {
  it('issues identities and database certificates that openssl verifies, signing only digests', async () => {
    const { authority, store, cas } = await kmsAuthority();
    const signsBefore = kms.requestsOf('Sign').length;

    const { token } = await authority.addBot('example', ['example-role']);
    const botKeys = await testKeyPair(1);
    const identity = await authority.joinWithToken({ token, publicKeyPem: botKeys.publicKeyPem });
    const dbCert = await authority.issueDatabaseCertificate(
      'example',
      ROUTE,
      (await testKeyPair(2)).publicKeyPem,
    );
    const server = await authority.signDatabaseServer(['db.internal'], { service: 'example-server' });

    const checks: Array<[string, string, string, string[]]> = [
      ['bot identity', cas.bot.certificatePem, identity.certificatePem, ['-purpose', 'sslclient']],
      [
        "db client (its service's own client CA)",
        await authority.dbClientCaBundle(ROUTE.service),
        dbCert.certificatePem,
        ['-purpose', 'sslclient'],
      ],
      ['db server', cas['db-server'].certificatePem, server.certificatePem, ['-purpose', 'sslserver']],
      ['bot CA (self-signed)', cas.bot.certificatePem, cas.bot.certificatePem, []],
    ];
    for (const [what, caPem, leafPem, args] of checks) {
      const result = await opensslVerify(dir, caPem, leafPem, args);
      // `what` rides along so a failure names the certificate; stderr says why openssl refused.
      expect({ what, code: result.code, stdout: result.stdout.trim(), stderr: result.stderr }).toEqual({
        what,
        code: 0,
        stdout: expect.stringMatching(/: OK$/),
        stderr: '',
      });
    }

    // Three certificates and the service's client CA (made from its own KMS key on first issuance): four
    // KMS Sign calls, each a 32-byte SHA-256 digest.
    const signs = kms.requestsOf('Sign').slice(signsBefore);
    expect(signs).toHaveLength(4);
    for (const sign of signs) {
      expect(sign.body.MessageType).toBe('DIGEST');
      expect(sign.body.SigningAlgorithm).toBe('RSASSA_PKCS1_V1_5_SHA_256');
      expect(Buffer.from(String(sign.body.Message), 'base64')).toHaveLength(32);
    }
    // No CA private key exists anywhere in the state.
    for (const key of [...CA_TYPES.map((type) => stateKeys.ca(type)), stateKeys.dbClientCa(ROUTE.service)]) {
      const keys = (await store.get<{ keys: CaKey[] }>(key))?.value.keys ?? [];
      expect(keys.length).toBeGreaterThan(0);
      expect(keys.every((k) => k.privateKeyPem === undefined && typeof k.kmsKeyId === 'string')).toBe(true);
    }
  });
});
