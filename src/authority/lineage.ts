/**
 * Lineages of bot identities (DESIGN.md §2, "Identities have a lineage"). A join starts a lineage: a random
 * 128-bit id carried in the identity certificate and stored in the bot's state. Renewals continue it, one
 * generation at a time. Only the current lineage and generation are ever accepted: an identity of an older
 * lineage (a copy taken before a re-join, a delete and re-create, or an earlier iam join) is refused, and a
 * superseded generation of the current lineage means two copies are in use, which locks the bot.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { BotState, SeenNonce } from './state-keys.js';

/** A new lineage id: 128 random bits, hex. */
export function newLineage(): string {
  return randomBytes(16).toString('hex');
}

/** What an identity presents about itself, read from its certificate. */
export interface PresentedIdentity {
  lineage: string | undefined;
  generation: number;
  serial: string;
}

/**
 * How a presented identity stands against the bot's state: `current`; `older-lineage` (or a bot that has
 * not joined since it was created), refused without locking; `superseded`, a past generation of the
 * current lineage, which locks the bot.
 */
export type Standing = 'current' | 'older-lineage' | 'not-joined' | 'superseded';

export function standingOf(state: BotState | undefined, presented: PresentedIdentity): Standing {
  if (!state) return 'not-joined';
  // A state from before lineages has none, as do the identities issued with it: they compare equal here,
  // and the serial below tells a copy from another join of the same generation apart.
  if (state.lineage !== presented.lineage) return 'older-lineage';
  if (state.generation !== presented.generation) return 'superseded';
  if (normalSerial(state.serial) !== normalSerial(presented.serial)) return 'older-lineage';
  return 'current';
}

/** Serials as hex without leading zero bytes, as parse.ts and the issuer may differ in them. */
function normalSerial(serial: string): string {
  return serial.toLowerCase().replace(/^(00)+(?=.)/, '');
}

/** Renewal nonces kept in a bot's state at most; far more than a bot renews within the skew window. */
export const MAX_RENEWAL_NONCES = 64;

/** `nonces` without the expired ones, with `seen` added, newest last and at most MAX_RENEWAL_NONCES. */
export function withNonce(nonces: readonly SeenNonce[] | undefined, seen: SeenNonce, now: Date): SeenNonce[] {
  const live = (nonces ?? []).filter((n) => new Date(n.expires) > now);
  return [...live, seen].slice(-MAX_RENEWAL_NONCES);
}

/** Whether `nonce` is among the live nonces of `nonces`. */
export function hasNonce(nonces: readonly SeenNonce[] | undefined, nonce: string, now: Date): boolean {
  return (nonces ?? []).some((n) => n.nonce === nonce && new Date(n.expires) > now);
}

/** A digest of a request's signed parameters: a retry must ask for exactly what the first attempt asked. */
export function paramsDigest(params: unknown): string {
  return createHash('sha256').update(JSON.stringify(params)).digest('hex');
}
