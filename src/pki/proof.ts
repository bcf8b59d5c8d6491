import { createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { memoByText } from './memo.js';

// A bot signs every request of a cycle with one identity key, and the authority checks them all against
// that identity's public key: each is parsed once, not once per request.
const privateKeyOf = memoByText(4, createPrivateKey);
const publicKeyOf = memoByText(256, createPublicKey);

/**
 * Proof of possession of a bot identity key. Every authenticated request carries a signature by the
 * identity's private key over its type, time, a nonce and its parameters, because some transports (Lambda
 * Invoke) carry no caller identity of their own and a captured request must not be reusable for another.
 */
export interface Proof {
  timestamp: string;
  nonce: string;
  /** base64 RSA-SHA256 signature over `proofPayload(...)`. */
  signature: string;
}

/** How far a request's timestamp may be from the authority's clock. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

export function proofPayload(type: string, timestamp: string, nonce: string, params: unknown): Buffer {
  return Buffer.from(`broker-proof-v1\n${type}\n${timestamp}\n${nonce}\n${JSON.stringify(params)}`); // UTF-8
}

export function createProof(type: string, params: unknown, privateKeyPem: string, now: Date): Proof {
  const timestamp = now.toISOString();
  const nonce = randomBytes(16).toString('hex');
  const signature = sign('sha256', proofPayload(type, timestamp, nonce, params), privateKeyOf(privateKeyPem));
  return { timestamp, nonce, signature: signature.toString('base64') };
}

export function verifyProof(type: string, params: unknown, proof: Proof, publicKeyPem: string): boolean {
  try {
    return verify(
      'sha256',
      proofPayload(type, proof.timestamp, proof.nonce, params),
      publicKeyOf(publicKeyPem),
      Buffer.from(proof.signature, 'base64'),
    );
  } catch {
    return false;
  }
}
