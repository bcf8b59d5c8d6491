import { createPrivateKey, createPublicKey, type KeyObject, sign } from 'node:crypto';
import { publicKeyOf } from './keys.js';

/** The certificate signature algorithms: SHA-256 with the CA key's own scheme. */
export type SignatureAlgorithm = 'sha256WithRSAEncryption' | 'ecdsa-with-SHA256';

/**
 * Signs the to-be-signed bytes of a certificate with a CA key. The local implementation signs with Node's
 * native crypto; the AWS implementation asks KMS to sign the digest. RSA keys sign PKCS#1 v1.5 SHA-256,
 * EC P-256 keys ECDSA SHA-256 (DER-encoded, as X.509 carries it).
 */
export interface Signer {
  /** SPKI PEM of the signing key's public half. */
  readonly publicKeyPem: string;
  /** Which signature `sign` makes; when left out, read from the public key. */
  readonly signatureAlgorithm?: SignatureAlgorithm;
  /** Returns the SHA-256 signature over `data` in the form X.509 carries it. */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** The signature algorithm of a key: ECDSA for EC keys, PKCS#1 v1.5 for RSA keys. */
export function signatureAlgorithmOfKey(key: KeyObject): SignatureAlgorithm {
  if (key.asymmetricKeyType === 'rsa') return 'sha256WithRSAEncryption';
  if (key.asymmetricKeyType === 'ec') return 'ecdsa-with-SHA256';
  throw new Error(`a CA key must be RSA or EC P-256, not ${key.asymmetricKeyType ?? 'unknown'}`);
}

const byPublicKey = new Map<string, SignatureAlgorithm>();

/** The algorithm a signer signs with: its own word, or what its public key says (remembered per key). */
export function signatureAlgorithmOf(signer: Signer): SignatureAlgorithm {
  if (signer.signatureAlgorithm) return signer.signatureAlgorithm;
  let alg = byPublicKey.get(signer.publicKeyPem);
  if (!alg) {
    alg = signatureAlgorithmOfKey(createPublicKey(signer.publicKeyPem));
    if (byPublicKey.size >= 64) byPublicKey.clear();
    byPublicKey.set(signer.publicKeyPem, alg);
  }
  return alg;
}

/** A Signer holding the private key in this process. */
export class LocalSigner implements Signer {
  readonly publicKeyPem: string;
  readonly signatureAlgorithm: SignatureAlgorithm;
  private readonly key: KeyObject;
  constructor(privateKeyPem: string) {
    this.key = createPrivateKey(privateKeyPem);
    this.publicKeyPem = publicKeyOf(privateKeyPem);
    this.signatureAlgorithm = signatureAlgorithmOfKey(this.key);
  }
  /** Signs on libuv's thread pool, so concurrent issuance uses every core. */
  sign(data: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      sign('sha256', data, this.key, (err, signature) => (err ? reject(err) : resolve(signature)));
    });
  }
}
