import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { childrenOf, readElement, tlv } from './der.js';

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
    const key = importSpkiDirectly(pem) ?? createPublicKey(pem);
    return key.type === 'public' ? key : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The broker's name for a key's algorithm: `rsa2048` for RSA of 2048 bits or more with an odd public
 * exponent of at least 3, `ecdsa-p256` for EC keys on P-256 with a point on the curve; undefined for
 * anything else (other curves, Ed25519, DSA, short RSA, degenerate keys).
 */
export function keyAlgorithmOf(key: KeyObject): KeyAlgorithm | undefined {
  if (key.asymmetricKeyType === 'rsa') {
    const details = key.asymmetricKeyDetails;
    const e = details?.publicExponent;
    // With e = 1 a "signature" is the padded digest itself: anyone can sign for such a key without any
    // private key, so it proves nothing. An even exponent is not an RSA key.
    if ((details?.modulusLength ?? 0) < 2048 || e === undefined || e < 3n || e % 2n === 0n) return undefined;
    return 'rsa2048';
  }
  if (key.asymmetricKeyType === 'ec') {
    // Decided from the key's own SPKI encoding, never from asymmetricKeyDetails: Node 20 aborts the whole
    // process (a failed internal assertion, not an exception) reading the details of an EC key whose point
    // is the point at infinity, which an SPKI can encode as a single 00 byte. Exporting such a key throws.
    let der: Buffer;
    try {
      der = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'der', type: 'spki' });
    } catch {
      return undefined;
    }
    // SEQUENCE (89) { the P-256 AlgorithmIdentifier, BIT STRING (66) { 0 unused bits, 04 ‖ X ‖ Y } }
    const p256 =
      der.length === 91 &&
      der[0] === 0x30 &&
      der[1] === 89 &&
      der.subarray(2, 2 + P256_ALGORITHM.length).equals(P256_ALGORITHM) &&
      der[23] === 0x03 &&
      der[24] === 66 &&
      der[25] === 0 &&
      der[26] === 0x04;
    return p256 ? 'ecdsa-p256' : undefined;
  }
  return undefined;
}

// The AlgorithmIdentifier of an RSA key (rsaEncryption, NULL parameters) and of an EC P-256 key
// (id-ecPublicKey, prime256v1), byte for byte as an SPKI holds them.
const RSA_ALGORITHM = Buffer.from('300d06092a864886f70d0101010500', 'hex');
const P256_ALGORITHM = Buffer.from('301306072a8648ce3d020106082a8648ce3d030107', 'hex');
const SPKI_PEM = /^-----BEGIN PUBLIC KEY-----\r?\n((?:[A-Za-z0-9+/=]+\r?\n)+)-----END PUBLIC KEY-----$/;

/**
 * The key of a canonical SPKI PEM of an RSA or EC P-256 key, imported from its parts (PKCS#1 DER, or the
 * curve point as a JWK) rather than through OpenSSL 3's generic decoder, which takes ten times as long: the
 * authority checks a fresh public key on every issuance. Anything else (other algorithms, other PEM
 * spellings, DER that is not canonical) returns undefined and goes through createPublicKey as before; the
 * key itself is still parsed and checked by OpenSSL either way.
 */
function importSpkiDirectly(pem: string): KeyObject | undefined {
  const body = SPKI_PEM.exec(pem.trim())?.[1]?.replace(/\r?\n/g, '');
  if (!body) return undefined;
  const der = Buffer.from(body, 'base64');
  if (der.toString('base64') !== body) return undefined;
  let algorithm: Buffer;
  let bits: Buffer;
  try {
    const [alg, bitString, ...rest] = childrenOf(der, readElement(der, 0));
    if (!alg || !bitString || rest.length || bitString.tag !== 0x03 || der[bitString.start] !== 0)
      return undefined;
    algorithm = der.subarray(alg.offset, alg.end);
    bits = der.subarray(bitString.start + 1, bitString.end);
  } catch {
    return undefined;
  }
  // Only the canonical encoding of exactly these parts (no other lengths, no trailing bytes).
  if (!tlv(0x30, Buffer.concat([algorithm, tlv(0x03, Buffer.concat([Buffer.from([0]), bits]))])).equals(der))
    return undefined;
  if (algorithm.equals(RSA_ALGORITHM)) return createPublicKey({ key: bits, format: 'der', type: 'pkcs1' });
  if (algorithm.equals(P256_ALGORITHM) && bits.length === 65 && bits[0] === 0x04)
    return createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: bits.subarray(1, 33).toString('base64url'),
        y: bits.subarray(33).toString('base64url'),
      },
      format: 'jwk',
    });
  return undefined;
}
