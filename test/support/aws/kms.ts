/**
 * An AWS KMS double for tests that speaks the KMS JSON 1.1 protocol (`POST /`,
 * `X-Amz-Target: TrentService.<Operation>`, `application/x-amz-json-1.1`, blobs as base64, errors as
 * `{"__type": ..., "message": ...}` with status 400), so the real `@aws-sdk/client-kms` talks to it
 * unchanged: in-process (`new KmsDouble()`, no socket) or over loopback HTTP (`KmsDouble.start()`). See
 * ./http-double.ts.
 *
 * What it models: CreateKey (KeySpec RSA_2048/3072/4096 or ECC_NIST_P256, KeyUsage SIGN_VERIFY only),
 * DescribeKey; key states after the KMS Developer Guide ("Key states of AWS KMS keys"): ScheduleKeyDeletion
 * (PendingWindowInDays 7 to 30, default 30; the key becomes PendingDeletion with a DeletionDate),
 * CancelKeyDeletion (a PendingDeletion key becomes Disabled, as KMS leaves it), EnableKey and DisableKey; a
 * PendingDeletion key refuses Sign, Verify, GetPublicKey, EnableKey, DisableKey and a second
 * ScheduleKeyDeletion with KMSInvalidStateException, a Disabled key refuses Sign, Verify and GetPublicKey with
 * DisabledException, and CancelKeyDeletion of a key not pending deletion is KMSInvalidStateException;
 * GetPublicKey (DER SPKI), Sign and Verify with RSASSA_PKCS1_V1_5_SHA_256 (RSA keys) and Sign with
 * ECDSA_SHA_256 (ECC_NIST_P256 keys, DER signatures; see ./ecdsa-digest.ts) for MessageType RAW (at most 4096
 * bytes, hashed here) and DIGEST (exactly 32 bytes, signed as given), key lookup by key id or key ARN, NotFoundException for unknown
 * keys and ValidationException for bad input. Keys are real RSA keys generated in this process and the
 * signatures are real, so certificates signed through it verify with `openssl`.
 *
 * What it does not model: request signatures (SigV4 is not checked), key policies, grants, IAM, aliases,
 * the deletion itself (a key stays PendingDeletion past its DeletionDate), key rotation, multi-region keys, other key specs and algorithms
 * (PSS, other curves, SHA-384/512), Verify on ECC keys, quotas and throttling. Faults are injected with aws-sdk-client-mock instead.
 */
import {
  constants,
  createHash,
  generateKeyPair,
  type KeyObject,
  privateEncrypt,
  publicDecrypt,
  randomUUID,
} from 'node:crypto';
import { KMSClient } from '@aws-sdk/client-kms';
import { signP256Digest } from './ecdsa-digest.js';
import {
  AwsFault,
  type AwsJsonProtocol,
  type DoubleRequest,
  type DoubleResponse,
  HttpDouble,
  TEST_REGION as REGION,
  serveAwsJson,
} from './http-double.js';

const ACCOUNT = '111122223333';
const ALGORITHM = 'RSASSA_PKCS1_V1_5_SHA_256';
const ECDSA_ALGORITHM = 'ECDSA_SHA_256';
const algorithmOf = (keySpec: string) => (keySpec === 'ECC_NIST_P256' ? ECDSA_ALGORITHM : ALGORITHM);
/** DER prefix of DigestInfo { AlgorithmIdentifier sha256, NULL; OCTET STRING (32) } (RFC 8017 §9.2 note 1). */
const SHA256_DIGEST_INFO_PREFIX = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/** One request the double received: its operation and its JSON body (blobs still base64). */
export interface KmsRequestRecord {
  operation: string;
  body: Record<string, unknown>;
}

interface StoredKey {
  keyId: string;
  arn: string;
  keySpec: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  creationDate: number;
  state: 'Enabled' | 'Disabled' | 'PendingDeletion';
  /** Epoch seconds, while PendingDeletion. */
  deletionDate?: number;
  pendingWindowInDays?: number;
}

/** KMS answers every error, its own internal ones included, with status 400. */
const PROTOCOL: AwsJsonProtocol = {
  targetPrefix: 'TrentService.',
  messageKey: 'message',
  internalFault: (message) => new AwsFault('KMSInternalException', message),
};

export class KmsDouble extends HttpDouble {
  /** Every request, in order of arrival. */
  readonly requests: KmsRequestRecord[] = [];
  private readonly keys = new Map<string, StoredKey>();

  /** A double serving over loopback HTTP (`endpoint`), for integration tests and child processes. */
  static async start(): Promise<KmsDouble> {
    const double = new KmsDouble();
    await double.listen();
    return double;
  }

  /**
   * A real KMS client for this double: in-process, or over loopback when it listens (test credentials, one
   * attempt, so faults surface at once).
   */
  client(): KMSClient {
    return new KMSClient({
      region: REGION,
      ...this.transport(),
      credentials: { accessKeyId: 'AKIDKMSDOUBLE', secretAccessKey: 'kms-double-secret' },
      maxAttempts: 1,
    });
  }

  /** Requests of one operation, e.g. `Sign`. */
  requestsOf(operation: string): KmsRequestRecord[] {
    return this.requests.filter((r) => r.operation === operation);
  }

  protected respond(request: DoubleRequest): Promise<DoubleResponse> {
    return serveAwsJson(request, PROTOCOL, (operation, body) => {
      this.requests.push({ operation, body });
      return this.dispatch(operation, body);
    });
  }

  private async dispatch(operation: string, body: Record<string, unknown>): Promise<unknown> {
    switch (operation) {
      case 'CreateKey':
        return this.createKey(body);
      case 'DescribeKey':
        return { KeyMetadata: this.metadata(this.key(body.KeyId)) };
      case 'ScheduleKeyDeletion':
        return this.scheduleKeyDeletion(body);
      case 'CancelKeyDeletion': {
        const key = this.key(body.KeyId);
        if (key.state !== 'PendingDeletion')
          throw new AwsFault('KMSInvalidStateException', `${key.arn} is not pending deletion.`);
        key.state = 'Disabled';
        delete key.deletionDate;
        delete key.pendingWindowInDays;
        return { KeyId: key.arn };
      }
      case 'EnableKey':
      case 'DisableKey': {
        const key = this.key(body.KeyId);
        if (key.state === 'PendingDeletion')
          throw new AwsFault('KMSInvalidStateException', `${key.arn} is pending deletion.`);
        key.state = operation === 'EnableKey' ? 'Enabled' : 'Disabled';
        return {};
      }
      case 'GetPublicKey': {
        const key = this.usableKey(body.KeyId);
        return {
          KeyId: key.arn,
          KeySpec: key.keySpec,
          KeyUsage: 'SIGN_VERIFY',
          SigningAlgorithms: [algorithmOf(key.keySpec)],
          PublicKey: key.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
        };
      }
      case 'Sign': {
        const key = this.usableKey(body.KeyId);
        const digest = this.digestOf(body, algorithmOf(key.keySpec));
        if (key.keySpec === 'ECC_NIST_P256') {
          const signature = signP256Digest(key.privateKey, digest);
          return {
            KeyId: key.arn,
            Signature: signature.toString('base64'),
            SigningAlgorithm: ECDSA_ALGORITHM,
          };
        }
        const signature = privateEncrypt(
          { key: key.privateKey, padding: constants.RSA_PKCS1_PADDING },
          Buffer.concat([SHA256_DIGEST_INFO_PREFIX, digest]),
        );
        return { KeyId: key.arn, Signature: signature.toString('base64'), SigningAlgorithm: ALGORITHM };
      }
      case 'Verify': {
        const key = this.usableKey(body.KeyId);
        if (key.keySpec === 'ECC_NIST_P256')
          throw new AwsFault(
            'UnsupportedOperationException',
            'the KMS double does not model Verify on ECC keys',
          );
        const digest = this.digestOf(body, ALGORITHM);
        const signature = Buffer.from(String(body.Signature ?? ''), 'base64');
        // Recovering the DigestInfo with the public key is PKCS#1 v1.5 verification of a precomputed digest.
        let valid = false;
        try {
          const recovered = publicDecrypt(
            { key: key.publicKey, padding: constants.RSA_PKCS1_PADDING },
            signature,
          );
          valid = recovered.equals(Buffer.concat([SHA256_DIGEST_INFO_PREFIX, digest]));
        } catch {
          valid = false;
        }
        if (!valid) throw new AwsFault('KMSInvalidSignatureException', 'the signature is not valid');
        return { KeyId: key.arn, SignatureValid: true, SigningAlgorithm: ALGORITHM };
      }
      default:
        throw new AwsFault('UnsupportedOperationException', `the KMS double does not model ${operation}`);
    }
  }

  private async createKey(body: Record<string, unknown>): Promise<unknown> {
    const keySpec = String(body.KeySpec ?? 'SYMMETRIC_DEFAULT');
    const bits = { RSA_2048: 2048, RSA_3072: 3072, RSA_4096: 4096 }[keySpec];
    const ec = keySpec === 'ECC_NIST_P256';
    if ((!bits && !ec) || body.KeyUsage !== 'SIGN_VERIFY')
      throw new AwsFault(
        'ValidationException',
        `the KMS double models only RSA and ECC_NIST_P256 SIGN_VERIFY keys, not KeySpec ${keySpec} with KeyUsage ${String(body.KeyUsage)}`,
      );
    const { privateKey, publicKey } = await new Promise<{ privateKey: KeyObject; publicKey: KeyObject }>(
      (resolve, reject) => {
        const done = (err: Error | null, publicKey: KeyObject, privateKey: KeyObject) =>
          err ? reject(err) : resolve({ privateKey, publicKey });
        if (ec) generateKeyPair('ec', { namedCurve: 'P-256' }, done);
        else generateKeyPair('rsa', { modulusLength: bits as number }, done);
      },
    );
    const keyId = randomUUID();
    const arn = `arn:aws:kms:${REGION}:${ACCOUNT}:key/${keyId}`;
    const key: StoredKey = {
      keyId,
      arn,
      keySpec,
      privateKey,
      publicKey,
      creationDate: Date.now() / 1000,
      state: 'Enabled',
    };
    this.keys.set(keyId, key);
    return { KeyMetadata: this.metadata(key) };
  }

  /** KeyMetadata as CreateKey and DescribeKey return it. */
  private metadata(key: StoredKey): Record<string, unknown> {
    return {
      KeyId: key.keyId,
      Arn: key.arn,
      AWSAccountId: ACCOUNT,
      KeySpec: key.keySpec,
      KeyUsage: 'SIGN_VERIFY',
      KeyState: key.state,
      Enabled: key.state === 'Enabled',
      SigningAlgorithms: [algorithmOf(key.keySpec)],
      CreationDate: key.creationDate,
      ...(key.deletionDate === undefined
        ? {}
        : { DeletionDate: key.deletionDate, PendingDeletionWindowInDays: key.pendingWindowInDays }),
    };
  }

  /** ScheduleKeyDeletion: PendingWindowInDays 7 to 30 (default 30); the key signs nothing from then on. */
  private scheduleKeyDeletion(body: Record<string, unknown>): unknown {
    const key = this.key(body.KeyId);
    const days = body.PendingWindowInDays ?? 30;
    if (typeof days !== 'number' || !Number.isInteger(days) || days < 7 || days > 30)
      throw new AwsFault(
        'ValidationException',
        `1 validation error detected: Value '${String(days)}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value ${typeof days === 'number' && days > 30 ? 'less than or equal to 30' : 'greater than or equal to 7'}`,
      );
    if (key.state === 'PendingDeletion')
      throw new AwsFault('KMSInvalidStateException', `${key.arn} is pending deletion.`);
    key.state = 'PendingDeletion';
    key.pendingWindowInDays = days;
    key.deletionDate = Math.floor(Date.now() / 1000) + days * 86_400;
    return {
      KeyId: key.arn,
      DeletionDate: key.deletionDate,
      KeyState: 'PendingDeletion',
      PendingWindowInDays: days,
    };
  }

  /** A key that may sign or give its public key: Enabled. */
  private usableKey(ref: unknown): StoredKey {
    const key = this.key(ref);
    if (key.state === 'PendingDeletion')
      throw new AwsFault('KMSInvalidStateException', `${key.arn} is pending deletion.`);
    if (key.state === 'Disabled') throw new AwsFault('DisabledException', `${key.arn} is disabled.`);
    return key;
  }

  private key(ref: unknown): StoredKey {
    const text = String(ref ?? '');
    const id = text.startsWith('arn:aws:kms:') ? text.slice(text.lastIndexOf('/') + 1) : text;
    const key = this.keys.get(id);
    if (!key || (text.startsWith('arn:') && text !== key.arn))
      throw new AwsFault('NotFoundException', `Key '${text}' does not exist`);
    return key;
  }

  /** The SHA-256 digest a Sign or Verify request is about, per its MessageType. */
  private digestOf(body: Record<string, unknown>, algorithm: string): Buffer {
    if (body.SigningAlgorithm !== algorithm)
      throw new AwsFault(
        'ValidationException',
        `this key signs with ${algorithm}, not ${String(body.SigningAlgorithm)}`,
      );
    const message = Buffer.from(String(body.Message ?? ''), 'base64');
    const type = body.MessageType ?? 'RAW';
    if (type === 'DIGEST') {
      if (message.length !== 32)
        throw new AwsFault('ValidationException', 'a DIGEST message for SHA-256 must be 32 bytes');
      return message;
    }
    if (type !== 'RAW') throw new AwsFault('ValidationException', `unknown MessageType ${String(type)}`);
    if (message.length === 0 || message.length > 4096)
      throw new AwsFault('ValidationException', 'a RAW message must be 1 to 4096 bytes');
    return createHash('sha256').update(message).digest();
  }
}
