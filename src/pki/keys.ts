import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';

const generateKeyPairAsync = promisify(generateKeyPair);

/** A PEM key pair. The private key is PKCS#8; the public key is SPKI. */
export interface KeyPairPem {
  privateKeyPem: string;
  publicKeyPem: string;
}

/**
 * The key algorithms the broker generates (bot identities, workload keys, local CA keys): RSA-2048, or ECDSA
 * on NIST P-256 (prime256v1), which every supported database engine accepts and which takes a fraction of
 * a millisecond to generate instead of tens to hundreds.
 */
export const KEY_ALGORITHMS = ['rsa2048', 'ecdsa-p256'] as const;
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];

/** What a bot generates when its configuration names no key_algorithm (see README, "Key algorithms"). */
export const DEFAULT_KEY_ALGORITHM: KeyAlgorithm = 'rsa2048';

function pemPair(privateKey: KeyObject, publicKey: KeyObject): KeyPairPem {
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Generates an RSA-2048 key pair with Node's native crypto (off the event loop). */
export async function generateRsaKeyPair(): Promise<KeyPairPem> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    publicExponent: 0x10001,
  });
  return pemPair(privateKey, publicKey);
}

/** Generates an ECDSA P-256 key pair (named curve, so every TLS stack reads it). */
export async function generateEcdsaKeyPair(): Promise<KeyPairPem> {
  const { privateKey, publicKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
  return pemPair(privateKey, publicKey);
}

/** Generates a key pair of `algorithm`. */
export function generateKeyPairOf(algorithm: KeyAlgorithm): Promise<KeyPairPem> {
  return algorithm === 'ecdsa-p256' ? generateEcdsaKeyPair() : generateRsaKeyPair();
}

/** The SPKI PEM of a private key's public half. */
export function publicKeyOf(privateKeyPem: string): string {
  return createPublicKey(createPrivateKey(privateKeyPem)).export({ type: 'spki', format: 'pem' }).toString();
}

/** Parses a public key PEM, returning undefined when it is not one. */
export function tryParsePublicKey(pem: string): KeyObject | undefined {
  try {
    const key = createPublicKey(pem);
    return key.type === 'public' ? key : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The broker's name for a key's algorithm: `rsa2048` for RSA of 2048 bits or more, `ecdsa-p256` for EC
 * keys on P-256; undefined for anything else (other curves, Ed25519, DSA, short RSA).
 */
export function keyAlgorithmOf(key: KeyObject): KeyAlgorithm | undefined {
  if (key.asymmetricKeyType === 'rsa')
    return (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048 ? 'rsa2048' : undefined;
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1')
    return 'ecdsa-p256';
  return undefined;
}
