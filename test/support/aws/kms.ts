/**
 * An AWS KMS double for tests that speaks the KMS JSON 1.1 protocol (`POST /`,
 * `X-Amz-Target: TrentService.<Operation>`, `application/x-amz-json-1.1`, blobs as base64, errors as
 * `{"__type": ..., "message": ...}` with status 400), so the real `@aws-sdk/client-kms` talks to it
 * unchanged: in-process (`new KmsDouble()`, no socket) or over loopback HTTP (`KmsDouble.start()`). See
 * ./http-double.ts.
 *
 * What it models: CreateKey (KeySpec RSA_2048/3072/4096 or ECC_NIST_P256, KeyUsage SIGN_VERIFY only),
 * GetPublicKey (DER SPKI), Sign and Verify with RSASSA_PKCS1_V1_5_SHA_256 (RSA keys) and Sign with
 * ECDSA_SHA_256 (ECC_NIST_P256 keys, DER signatures; see ./ecdsa-digest.ts) for MessageType RAW (at most 4096
 * bytes, hashed here) and DIGEST (exactly 32 bytes, signed as given), key lookup by key id or key ARN, NotFoundException for unknown
 * keys and ValidationException for bad input. Keys are real RSA keys generated in this process and the
 * signatures are real, so certificates signed through it verify with `openssl`.
 *
 * What it does not model: request signatures (SigV4 is not checked), key policies, grants, IAM, aliases,
 * key states (disable, deletion), key rotation, multi-region keys, other key specs and algorithms
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
      case 'GetPublicKey': {
        const key = this.key(body.KeyId);
        return {
          KeyId: key.arn,
          KeySpec: key.keySpec,
          KeyUsage: 'SIGN_VERIFY',
          SigningAlgorithms: [algorithmOf(key.keySpec)],
          PublicKey: key.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
        };
      }
      case 'Sign': {
        const key = this.key(body.KeyId);
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
        const key = this.key(body.KeyId);
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
    this.keys.set(keyId, { keyId, arn, keySpec, privateKey, publicKey });
    return {
      KeyMetadata: {
        KeyId: keyId,
        Arn: arn,
        AWSAccountId: ACCOUNT,
        KeySpec: keySpec,
        KeyUsage: 'SIGN_VERIFY',
        KeyState: 'Enabled',
        Enabled: true,
        SigningAlgorithms: [algorithmOf(keySpec)],
        CreationDate: Date.now() / 1000,
      },
    };
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
