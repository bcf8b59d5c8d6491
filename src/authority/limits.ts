/** Checks every issued certificate obeys, whatever the request: its lifetime and its subject key. */
import { BrokerError } from '../errors.js';
import { keyAlgorithmOf, tryParsePublicKey } from '../pki/keys.js';
import { MAX_TTL_MS } from './rbac.js';

export const DEFAULT_CERT_TTL_MS = 3_600_000;

/** A requested TTL, refused when not positive and capped at the longest any certificate may live. */
export function clampTtl(ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0)
    throw new BrokerError('bad_request', 'the requested TTL must be positive');
  return Math.min(ttlMs, MAX_TTL_MS);
}

/** Refuses a subject key that is not an RSA key of at least 2048 bits or an EC P-256 key, in SPKI PEM. */
export function assertPublicKey(pem: string): void {
  const key = pem.trimStart().startsWith('-----BEGIN PUBLIC KEY-----') ? tryParsePublicKey(pem) : undefined;
  if (!key || keyAlgorithmOf(key) === undefined)
    throw new BrokerError(
      'bad_request',
      'the public key must be an RSA key of at least 2048 bits or an ECDSA P-256 key, in SPKI PEM (BEGIN PUBLIC KEY)',
    );
}
