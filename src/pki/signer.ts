import { createPrivateKey, type KeyObject, sign } from 'node:crypto';
import { publicKeyOf } from './keys.js';

/**
 * Signs the to-be-signed bytes of a certificate with a CA key. The local implementation signs with Node's
 * native crypto; the AWS implementation asks KMS to sign the digest. Only `sha256WithRSAEncryption`.
 */
export interface Signer {
  /** SPKI PEM of the signing key's public half. */
  readonly publicKeyPem: string;
  /** Returns the PKCS#1 v1.5 SHA-256 signature over `data`. */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** A Signer holding the private key in this process. */
export class LocalSigner implements Signer {
  readonly publicKeyPem: string;
  private readonly key: KeyObject;
  constructor(privateKeyPem: string) {
    this.key = createPrivateKey(privateKeyPem);
    this.publicKeyPem = publicKeyOf(privateKeyPem);
  }
  /** Signs on libuv's thread pool, so concurrent issuance uses every core. */
  sign(data: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      sign('sha256', data, this.key, (err, signature) => (err ? reject(err) : resolve(signature)));
    });
  }
}
