import { createHash, randomBytes } from 'node:crypto';

/** A fresh random secret (128 bits, hex): join tokens, challenge ids and challenges. */
export function randomToken(): string {
  return randomBytes(16).toString('hex');
}

/** SHA-256 of a token secret; the id under which it is stored and shown. */
export function tokenId(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}
