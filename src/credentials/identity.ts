/** The bot identity as a bot holds and stores it. Pure: schema and type only. */
import * as z from '../config/zod.js';

/** The identity a bot holds: its key, its certificate from the bot CA and the generation inside it. */
export interface BotIdentity {
  certificatePem: string;
  privateKeyPem: string;
  generation: number;
  expires: string;
  /** Bot CA bundle: what the bot trusts for the authority's server certificate. */
  botCaPem: string;
}

/** The stored form of a BotIdentity (identity stores validate what they read with it). */
export const botIdentitySchema = z.object({
  certificatePem: z.string().check(z.minLength(1)),
  privateKeyPem: z.string().check(z.minLength(1)),
  generation: z.number().check(z.int(), z.positive()),
  expires: z.string(),
  botCaPem: z.string(),
});

/** The identity's fields in a fixed order, so a stored identity always serializes to the same text. */
export function serializeIdentity(identity: BotIdentity): string {
  return JSON.stringify({
    certificatePem: identity.certificatePem,
    privateKeyPem: identity.privateKeyPem,
    generation: identity.generation,
    expires: identity.expires,
    botCaPem: identity.botCaPem,
  });
}
