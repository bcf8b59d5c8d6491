import { createHash, createPublicKey, verify } from 'node:crypto';
import { GetPublicKeyCommand, KMSClient, KMSServiceException, SignCommand } from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handleApiRequest } from '../../src/api/handler.js';
import { ManualClock } from '../../src/clock.js';
import { BrokerError } from '../../src/errors.js';
import {
  createKmsCa,
  KMS_SIGNING_ALGORITHM,
  KmsSigner,
  KmsSignerError,
  kmsSignerFactory,
} from '../../src/pki/kms-signer.js';
import { parseCertificate } from '../../src/pki/parse.js';
import { createKmsKey, kmsTestAuthority } from '../support/authority.js';
import { KmsDouble } from '../support/aws/kms.js';
import { exampleResourcesYaml, INTERNAL_DB_URI, nowSeconds, testKeyPair } from '../support/fixtures.js';

const SEED = exampleResourcesYaml({ db: { uri: INTERNAL_DB_URI }, bots: [] });

let kms: KmsDouble;
let client: KMSClient;

beforeAll(() => {
  kms = new KmsDouble();
  client = kms.client();
});

afterAll(async () => {
  client.destroy();
  await kms.close();
});

/** A fresh RSA_2048 SIGN_VERIFY key in the double, created through the real SDK. */
const createKey = () => createKmsKey(client);

/** An AWS-shaped AccessDeniedException as the SDK raises it (KMS does not model this error). */
function accessDenied(action: string): KMSServiceException {
  return new KMSServiceException({
    name: 'AccessDeniedException',
    $fault: 'client',
    message: `User: arn:aws:sts::111122223333:assumed-role/authority/fn is not authorized to perform: kms:${action} on resource: arn:aws:kms:us-east-1:111122223333:key/denied because no identity-based policy allows the kms:${action} action`,
    $metadata: { httpStatusCode: 400 },
  });
}

/** An authority whose three CAs are KMS keys in the double (seeded as `initialize` would store them). */
const kmsAuthority = (signingClient: KMSClient = client) =>
  kmsTestAuthority({ client, signingClient, resources: SEED });

describe('KmsSigner against the KMS double', () => {
  it('reads the public key once and signs a locally computed SHA-256 digest (MessageType DIGEST)', async () => {
    const keyId = await createKey();
    const before = kms.requests.length;
    const signer = await KmsSigner.create(client, keyId);
    expect(createPublicKey(signer.publicKeyPem).asymmetricKeyDetails?.modulusLength).toBe(2048);

    const data = Buffer.from('to-be-signed bytes of a certificate, of any length '.repeat(50));
    const first = await signer.sign(data);
    const second = await signer.sign(Buffer.from('other data'));
    expect(verify('sha256', data, signer.publicKeyPem, first)).toBe(true);
    expect(verify('sha256', Buffer.from('other data'), signer.publicKeyPem, second)).toBe(true);

    const mine = kms.requests.slice(before);
    expect(mine.map((r) => r.operation)).toEqual(['GetPublicKey', 'Sign', 'Sign']);
    expect(mine[1]?.body).toEqual({
      KeyId: keyId,
      Message: createHash('sha256').update(data).digest('base64'),
      MessageType: 'DIGEST',
      SigningAlgorithm: KMS_SIGNING_ALGORITHM,
    });
  });

  it('kmsSignerFactory takes the public key from the CA certificate: nothing is fetched at construction', async () => {
    const keyId = await createKey();
    const ca = await createKmsCa('bot', {
      clusterName: 'factory',
      kmsClient: client,
      keyId,
      clock: new ManualClock(nowSeconds()),
    });
    expect(ca).toEqual({ certificatePem: expect.stringContaining('BEGIN CERTIFICATE'), kmsKeyId: keyId });
    const before = kms.requests.length;
    const signer = kmsSignerFactory(client)(ca);
    expect(kms.requests.length).toBe(before);
    expect(signer.publicKeyPem).toBe(parseCertificate(ca.certificatePem).publicKeyPem);

    // A pre-loaded map wins over the certificate (the two agree in a healthy state).
    const preloaded = kmsSignerFactory(client, new Map([[keyId, signer.publicKeyPem]]))(ca);
    expect(preloaded.publicKeyPem).toBe(signer.publicKeyPem);
    const signature = await preloaded.sign(Buffer.from('x'));
    expect(verify('sha256', Buffer.from('x'), signer.publicKeyPem, signature)).toBe(true);
  });

  it('refuses a CA key that is not in KMS', async () => {
    const local = { certificatePem: 'unused', privateKeyPem: (await testKeyPair()).privateKeyPem };
    expect(() => kmsSignerFactory(client)(local)).toThrow(/no kmsKeyId/);
  });

  it('catches a CA entry that names the wrong KMS key instead of issuing unverifiable certificates', async () => {
    const clock = new ManualClock(nowSeconds());
    const ca = await createKmsCa('db-client', {
      clusterName: 'wrong',
      kmsClient: client,
      keyId: await createKey(),
      clock,
    });
    const signer = kmsSignerFactory(client)({ ...ca, kmsKeyId: await createKey() });
    await expect(signer.sign(Buffer.from('tbs'))).rejects.toThrow(
      /KMS Sign with key .* failed: the signature does not verify with the CA certificate's public key/,
    );
  });

  it('maps errors the double answers (NotFoundException) to a KmsSignerError naming key and operation', async () => {
    const err = await KmsSigner.create(client, 'arn:aws:kms:us-east-1:111122223333:key/missing').catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KmsSignerError);
    expect((err as KmsSignerError).message).toMatch(
      /^KMS GetPublicKey with key arn:aws:kms:us-east-1:111122223333:key\/missing failed: NotFoundException: .*check the key id or ARN/,
    );
  });
});

describe('KMS faults (aws-sdk-client-mock)', () => {
  it('an AccessDeniedException on Sign becomes a KmsSignerError with key, operation and fix, and no data', async () => {
    const keyId = await createKey();
    const ca = await createKmsCa('db-client', {
      clusterName: 'denied',
      kmsClient: client,
      keyId,
      clock: new ManualClock(nowSeconds()),
    });
    const denied = new KMSClient({
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDDENIED', secretAccessKey: 'denied' },
    });
    const mock = mockClient(denied);
    mock.on(SignCommand).rejects(accessDenied('Sign'));
    try {
      const data = Buffer.from('secret-looking to-be-signed bytes');
      const err = await kmsSignerFactory(denied)(ca)
        .sign(data)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KmsSignerError);
      expect(err).toBeInstanceOf(BrokerError);
      const e = err as KmsSignerError;
      expect(e.code).toBe('kms_error');
      expect(e.keyId).toBe(keyId);
      expect(e.operation).toBe('Sign');
      expect(e.message).toContain(`KMS Sign with key ${keyId} failed: AccessDeniedException:`);
      expect(e.message).toContain("the authority's role needs kms:Sign on this key");
      for (const leaked of [
        data.toString('base64'),
        data.toString('hex'),
        createHash('sha256').update(data).digest('base64'),
        createHash('sha256').update(data).digest('hex'),
      ])
        expect(e.message).not.toContain(leaked);
      expect(mock.commandCalls(SignCommand)[0]?.args[0].input.MessageType).toBe('DIGEST');
    } finally {
      mock.restore();
      denied.destroy();
    }
  });

  it('an AccessDeniedException on GetPublicKey stops CA creation with a clear error', async () => {
    const denied = new KMSClient({
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDDENIED', secretAccessKey: 'denied' },
    });
    const mock = mockClient(denied);
    mock.on(GetPublicKeyCommand).rejects(accessDenied('GetPublicKey'));
    try {
      await expect(
        createKmsCa('bot', {
          clusterName: 'denied',
          kmsClient: denied,
          keyId: 'alias/broker-bot-ca',
          clock: new ManualClock(nowSeconds()),
        }),
      ).rejects.toThrow(
        /^KMS GetPublicKey with key alias\/broker-bot-ca failed: AccessDeniedException: .*needs kms:GetPublicKey/,
      );
    } finally {
      mock.restore();
      denied.destroy();
    }
  });

  it('a key that cannot sign is refused at creation', async () => {
    const wrong = new KMSClient({
      region: 'us-east-1',
      credentials: { accessKeyId: 'A', secretAccessKey: 'B' },
    });
    const mock = mockClient(wrong);
    mock.on(GetPublicKeyCommand).resolves({
      KeyId: 'k',
      PublicKey: new Uint8Array([1, 2, 3]),
      KeyUsage: 'ENCRYPT_DECRYPT',
      EncryptionAlgorithms: ['RSAES_OAEP_SHA_256'],
    });
    try {
      await expect(KmsSigner.create(wrong, 'k')).rejects.toThrow(/KeyUsage ENCRYPT_DECRYPT.*SIGN_VERIFY/);
    } finally {
      mock.restore();
      wrong.destroy();
    }
  });

  it('the API answers a join signed with a denied key with kms_error, not a generic internal error', async () => {
    const denied = new KMSClient({
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDDENIED', secretAccessKey: 'denied' },
    });
    const mock = mockClient(denied);
    mock.on(SignCommand).rejects(accessDenied('Sign'));
    try {
      const { authority } = await kmsAuthority(denied);
      const { token } = await authority.addBot('example', ['example-role']);
      const response = await handleApiRequest(authority, {
        v: 1,
        type: 'join',
        requestId: 'req-kms-denied-1',
        params: { joinMethod: 'token', token, publicKeyPem: (await testKeyPair(1)).publicKeyPem },
      });
      expect(response.ok).toBe(false);
      if (!response.ok) {
        expect(response.error.code).toBe('kms_error');
        expect(response.error.message).toMatch(/KMS Sign with key \S+ failed: AccessDeniedException/);
      }
    } finally {
      mock.restore();
      denied.destroy();
    }
  });
});
