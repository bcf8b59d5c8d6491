/**
 * The KMS double's key states, after the KMS API Reference (ScheduleKeyDeletion, CancelKeyDeletion,
 * DescribeKey) and the Developer Guide's "Key states of AWS KMS keys": what a CA rotation's standby does to
 * the key that left (schedules its deletion) and what an operator's recovery does (cancels it), through the
 * real SDK client, with the signer the authority uses.
 */
import { createHash } from 'node:crypto';
import {
  CancelKeyDeletionCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  EnableKeyCommand,
  type KMSClient,
  KMSInvalidStateException,
  ScheduleKeyDeletionCommand,
  SignCommand,
} from '@aws-sdk/client-kms';
import { beforeEach, describe, expect, it } from 'vitest';
import { KmsSigner } from '../../src/pki/kms-signer.js';
import { KmsDouble } from '../support/aws/kms.js';

let kms: KMSClient;
let keyId: string;

const sign = (id = keyId) =>
  kms.send(
    new SignCommand({
      KeyId: id,
      Message: createHash('sha256').update('tbs').digest(),
      MessageType: 'DIGEST',
      SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256',
    }),
  );
const state = async () => (await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata;

beforeEach(async () => {
  kms = new KmsDouble().client();
  keyId = (await kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata
    ?.KeyId as string;
});

describe('KMS double key deletion', () => {
  it('schedules deletion after 7 to 30 days (default 30); the key then signs nothing', async () => {
    expect((await state())?.KeyState).toBe('Enabled');
    const signer = await KmsSigner.create(kms, keyId);
    const before = Date.now();
    const out = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
    expect(out).toMatchObject({ KeyState: 'PendingDeletion', PendingWindowInDays: 7 });
    expect(out.KeyId).toMatch(new RegExp(`^arn:aws:kms:.*:key/${keyId}$`));
    const days = ((out.DeletionDate as Date).getTime() - before) / 86_400_000;
    expect(days).toBeGreaterThan(6.99);
    expect(days).toBeLessThan(7.01);
    expect(await state()).toMatchObject({
      KeyState: 'PendingDeletion',
      Enabled: false,
      PendingDeletionWindowInDays: 7,
    });

    await expect(sign()).rejects.toBeInstanceOf(KMSInvalidStateException);
    await expect(sign()).rejects.toThrow(/is pending deletion/);
    // The authority's signer says what the state means.
    await expect(signer.sign(Buffer.from('tbs'))).rejects.toThrow(
      /KMSInvalidStateException.*pending deletion/,
    );
    // Scheduling twice is refused too.
    await expect(kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId }))).rejects.toBeInstanceOf(
      KMSInvalidStateException,
    );

    const other = (await kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' })))
      .KeyMetadata?.KeyId as string;
    const defaulted = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: other }));
    expect(defaulted.PendingWindowInDays).toBe(30);
  });

  it('refuses a waiting period outside 7 to 30 days, and changes nothing', async () => {
    for (const days of [6, 31])
      await expect(
        kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: days })),
      ).rejects.toMatchObject({
        name: 'ValidationException',
        message: expect.stringMatching(/pendingWindowInDays/),
      });
    expect((await state())?.KeyState).toBe('Enabled');
    await expect(sign()).resolves.toBeDefined();
  });

  it('cancelling leaves the key Disabled until EnableKey; cancelling an enabled key is refused', async () => {
    await expect(kms.send(new CancelKeyDeletionCommand({ KeyId: keyId }))).rejects.toBeInstanceOf(
      KMSInvalidStateException,
    );
    await kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 30 }));
    const cancelled = await kms.send(new CancelKeyDeletionCommand({ KeyId: keyId }));
    expect(cancelled.KeyId).toMatch(new RegExp(`key/${keyId}$`));
    expect(await state()).toMatchObject({ KeyState: 'Disabled', Enabled: false });
    expect((await state())?.DeletionDate).toBeUndefined();
    await expect(sign()).rejects.toMatchObject({ name: 'DisabledException' });
    await kms.send(new EnableKeyCommand({ KeyId: keyId }));
    await expect(sign()).resolves.toMatchObject({ SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256' });
  });
});
