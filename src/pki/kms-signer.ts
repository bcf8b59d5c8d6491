import { createHash, createPublicKey, verify, X509Certificate } from 'node:crypto';
import {
  GetPublicKeyCommand,
  type GetPublicKeyCommandOutput,
  type KMSClient,
  SignCommand,
} from '@aws-sdk/client-kms';
import type { Clock } from '../clock.js';
import { BrokerError } from '../errors.js';
import { type CaKey, type CaType, caSubject, type ServiceCaFactory, type SignerFactory } from './ca.js';
import { buildCertificate, toPem } from './certificate.js';
import { type SignatureAlgorithm, type Signer, signatureAlgorithmOfKey } from './signer.js';

/** The KMS signing algorithm for RSA CA keys: certificates are sha256WithRSAEncryption. */
export const KMS_SIGNING_ALGORITHM = 'RSASSA_PKCS1_V1_5_SHA_256';
/** The KMS signing algorithm for ECC_NIST_P256 CA keys: certificates are ecdsa-with-SHA256. */
export const KMS_ECDSA_SIGNING_ALGORITHM = 'ECDSA_SHA_256';

/** The KMS key specs a CA key may have, and the signing algorithm each signs certificates with. */
export const KMS_CA_KEY_SPECS = {
  RSA_2048: KMS_SIGNING_ALGORITHM,
  ECC_NIST_P256: KMS_ECDSA_SIGNING_ALGORITHM,
} as const;

const KMS_ALGORITHM_OF: Record<
  SignatureAlgorithm,
  typeof KMS_SIGNING_ALGORITHM | typeof KMS_ECDSA_SIGNING_ALGORITHM
> = {
  sha256WithRSAEncryption: KMS_SIGNING_ALGORITHM,
  'ecdsa-with-SHA256': KMS_ECDSA_SIGNING_ALGORITHM,
};

/** Same lifetime as a local CA (src/authority/cas.ts): ten years. */
const CA_VALIDITY_MS = 10 * 365 * 24 * 3_600_000;

/** A KMS call that failed. Carries the key id and the operation, never the data being signed. */
export class KmsSignerError extends BrokerError {
  override name = 'KmsSignerError';
  readonly keyId: string;
  readonly operation: string;
  constructor(keyId: string, operation: string, message: string, options: { cause?: unknown } = {}) {
    super('kms_error', `KMS ${operation} with key ${keyId} failed: ${message}`, options);
    this.keyId = keyId;
    this.operation = operation;
  }
}

/** Turns an SDK error into a KmsSignerError whose message says what to do about the common cases. */
function kmsFailure(keyId: string, operation: string, err: unknown): KmsSignerError {
  const name = err instanceof Error ? err.name : 'Error';
  const detail = err instanceof Error ? err.message : String(err);
  const hint: Record<string, string> = {
    AccessDeniedException: `the authority's role needs kms:${operation} on this key (check its IAM policy and the key policy)`,
    NotFoundException: 'no such key in this account and region (check the key id or ARN)',
    DisabledException: 'the key is disabled; enable it or rotate the CA to another key',
    KMSInvalidStateException: 'the key is not usable in its current state (pending deletion or import?)',
    InvalidKeyUsageException:
      'the key is not a SIGN_VERIFY key allowing RSASSA_PKCS1_V1_5_SHA_256 (RSA_2048) or ECDSA_SHA_256 (ECC_NIST_P256)',
    ThrottlingException: 'KMS throttled the request; retry later or raise the Sign quota',
  };
  return new KmsSignerError(keyId, operation, `${name}: ${detail}${hint[name] ? `; ${hint[name]}` : ''}`, {
    cause: err,
  });
}

/**
 * A Signer backed by an AWS KMS asymmetric key (KeySpec RSA_2048 or ECC_NIST_P256, KeyUsage SIGN_VERIFY). The
 * private key never leaves KMS: the digest is computed here and KMS signs it (`MessageType: DIGEST`), so a
 * certificate of any size costs one 32-byte request. KMS returns ECDSA signatures DER-encoded, as X.509
 * carries them.
 */
export class KmsSigner implements Signer {
  private readonly publicKey: ReturnType<typeof createPublicKey>;
  readonly signatureAlgorithm: SignatureAlgorithm;

  private constructor(
    private readonly client: KMSClient,
    readonly keyId: string,
    readonly publicKeyPem: string,
  ) {
    this.publicKey = createPublicKey(publicKeyPem);
    this.signatureAlgorithm = signatureAlgorithmOfKey(this.publicKey);
  }

  /** Reads the key's public half from KMS once (GetPublicKey) and checks the key can sign certificates. */
  static async create(client: KMSClient, keyId: string): Promise<KmsSigner> {
    let out: GetPublicKeyCommandOutput;
    try {
      out = await client.send(new GetPublicKeyCommand({ KeyId: keyId }));
    } catch (err) {
      throw kmsFailure(keyId, 'GetPublicKey', err);
    }
    if (!out.PublicKey) throw new KmsSignerError(keyId, 'GetPublicKey', 'the response holds no public key');
    const spec = out.KeySpec ?? '';
    const wanted = Object.hasOwn(KMS_CA_KEY_SPECS, spec)
      ? KMS_CA_KEY_SPECS[spec as keyof typeof KMS_CA_KEY_SPECS]
      : undefined;
    if (out.KeyUsage !== 'SIGN_VERIFY' || !wanted || !out.SigningAlgorithms?.includes(wanted))
      throw new KmsSignerError(
        keyId,
        'GetPublicKey',
        `the key has KeySpec ${out.KeySpec ?? 'unknown'}, KeyUsage ${out.KeyUsage ?? 'unknown'} and algorithms ${out.SigningAlgorithms?.join(', ') ?? 'none'}; create it with KeySpec RSA_2048 or ECC_NIST_P256 and KeyUsage SIGN_VERIFY`,
      );
    return new KmsSigner(client, keyId, toPem('PUBLIC KEY', Buffer.from(out.PublicKey)));
  }

  /**
   * A signer whose public key is already known (from the CA certificate, which holds the KMS key's public
   * half), so nothing is fetched until the first signature.
   */
  static withPublicKey(client: KMSClient, keyId: string, publicKeyPem: string): KmsSigner {
    return new KmsSigner(client, keyId, publicKeyPem);
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    const digest = createHash('sha256').update(data).digest();
    let signature: Uint8Array | undefined;
    try {
      const out = await this.client.send(
        new SignCommand({
          KeyId: this.keyId,
          Message: digest,
          MessageType: 'DIGEST',
          SigningAlgorithm: KMS_ALGORITHM_OF[this.signatureAlgorithm],
        }),
      );
      signature = out.Signature;
    } catch (err) {
      throw kmsFailure(this.keyId, 'Sign', err);
    }
    if (!signature) throw new KmsSignerError(this.keyId, 'Sign', 'the response holds no signature');
    // A signature by another key than the CA certificate's would yield certificates nobody can verify;
    // checking costs microseconds and catches a state entry pointing at the wrong KMS key.
    if (!verify('sha256', data, this.publicKey, signature))
      throw new KmsSignerError(
        this.keyId,
        'Sign',
        "the signature does not verify with the CA certificate's public key: this CA entry names the wrong KMS key",
      );
    return signature;
  }
}

/** SPKI PEM of the public key in a certificate. */
function certificatePublicKeyPem(certificatePem: string): string {
  return new X509Certificate(certificatePem).publicKey.export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * A SignerFactory for CA keys held in KMS. The public key comes from `publicKeys` (keyId → SPKI PEM) or else
 * from the CA certificate itself, whose public key is the KMS key's: no network call at construction.
 */
export function kmsSignerFactory(
  client: KMSClient,
  publicKeys: ReadonlyMap<string, string> = new Map(),
): SignerFactory {
  return (key: CaKey) => {
    if (!key.kmsKeyId)
      throw new BrokerError(
        'bad_state',
        'this CA key has no kmsKeyId, but the authority is configured to sign with KMS; rotate the CA to a KMS key',
      );
    const publicKeyPem = publicKeys.get(key.kmsKeyId) ?? certificatePublicKeyPem(key.certificatePem);
    return KmsSigner.withPublicKey(client, key.kmsKeyId, publicKeyPem);
  };
}

/**
 * Creates a self-signed CA whose key is the KMS key `keyId` (valid ten years, like a local CA); `service` for
 * a database service's own client CA.
 */
export async function createKmsCa(
  type: CaType,
  options: { clusterName: string; kmsClient: KMSClient; keyId: string; clock: Clock; service?: string },
): Promise<CaKey> {
  const { clusterName, kmsClient, keyId, clock } = options;
  const signer = await KmsSigner.create(kmsClient, keyId);
  const now = clock.now();
  const { certificatePem } = await buildCertificate(
    {
      subject: caSubject(type, clusterName, options.service),
      publicKeyPem: signer.publicKeyPem,
      issuedAt: now,
      notAfter: new Date(now.getTime() + CA_VALIDITY_MS),
      profile: 'ca',
    },
    { signer },
  );
  return { certificatePem, kmsKeyId: keyId };
}

/**
 * Makes each database service's client CA from that service's own KMS key (`keyIds`: service → key id or
 * ARN, one key per db resource, created by the stack). A service without a key gets no CA: its certificates
 * are refused until the stack that defines the db resource is deployed.
 */
export function kmsServiceCaFactory(options: {
  kmsClient: KMSClient;
  keyIds: Readonly<Record<string, string>>;
  clock: Clock;
}): ServiceCaFactory {
  return async (service, clusterName) => {
    const keyId = Object.hasOwn(options.keyIds, service) ? options.keyIds[service] : undefined;
    if (!keyId)
      throw new BrokerError(
        'bad_state',
        `there is no KMS key for the client CA of database service "${service}"; the stack creates one per db resource: add the db resource to the stack's resources and deploy`,
      );
    return createKmsCa('db-client', { ...options, keyId, service, clusterName });
  };
}
