import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { CHALLENGE_HEADER, type SignedStsRequest } from '../credentials/iam.js';
import { ConflictError } from '../state/errors.js';
import type { AuthorityContext } from './context.js';
import { type ChallengeKey, stateKeys } from './state-keys.js';

/** How long an iam join challenge may be answered. */
export const CHALLENGE_TTL_MS = 5 * 60_000;

const CHALLENGE_ID = /^([0-9a-f]{32})\.([0-9]{10,11})$/;

export interface IssuedChallenge {
  challengeId: string;
  challenge: string;
  expires: string;
}

/**
 * Challenges of the iam join method, stateless: the id carries a random nonce and the expiry, and the
 * challenge is an HMAC of both under a key only the authority holds. Handing one out writes nothing, so
 * unauthenticated callers cannot grow the state with them; using one records its nonce until it expires,
 * so each is used once.
 */
export class Challenges {
  private key: Promise<Buffer> | undefined;

  constructor(private readonly ctx: AuthorityContext) {}

  async create(): Promise<IssuedChallenge> {
    const nonce = randomBytes(16).toString('hex');
    const expiresAt = Math.ceil((this.ctx.clock.now().getTime() + CHALLENGE_TTL_MS) / 1000);
    const challengeId = `${nonce}.${expiresAt}`;
    return {
      challengeId,
      challenge: await this.challengeOf(nonce, expiresAt),
      expires: new Date(expiresAt * 1000).toISOString(),
    };
  }

  /**
   * Checks that `challengeId` is one this authority handed out, unexpired, and that the signed request
   * carries its challenge, then marks it used. Returns the challenge, or why it is refused.
   */
  async consume(
    challengeId: string,
    stsRequest: SignedStsRequest,
  ): Promise<{ challenge: string } | { refused: string }> {
    const match = CHALLENGE_ID.exec(challengeId);
    if (!match) return { refused: 'the challenge id is malformed' };
    const [, nonce = '', exp = ''] = match;
    const expiresAt = Number(exp);
    const now = this.ctx.clock.now().getTime();
    const expires = new Date(expiresAt * 1000).toISOString();
    if (expiresAt * 1000 <= now) return { refused: `the challenge expired at ${expires}; ask for a new one` };
    if (expiresAt * 1000 > now + CHALLENGE_TTL_MS + 1000)
      return { refused: 'the challenge id was not issued by this authority' };
    const challenge = await this.challengeOf(nonce, expiresAt);
    const header = Object.entries(stsRequest.headers).find(
      ([name]) => name.toLowerCase() === CHALLENGE_HEADER,
    );
    const presented = Buffer.from(header?.[1] ?? '', 'utf8');
    const expected = Buffer.from(challenge, 'utf8');
    // Checked before the challenge is spent, so a request that cannot be this join's does not spend it.
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected))
      return {
        refused: `the ${CHALLENGE_HEADER} header does not hold this join's challenge (the challenge is unknown or was already used; ask this authority for a new challenge)`,
      };
    try {
      await this.ctx.state.put(stateKeys.challenge(nonce), { expires }, 'absent');
    } catch (err) {
      if (err instanceof ConflictError)
        return {
          refused: 'the challenge is unknown or was already used; ask this authority for a new challenge',
        };
      throw err;
    }
    return { challenge };
  }

  private async challengeOf(nonce: string, expiresAt: number): Promise<string> {
    return createHmac('sha256', await this.secret())
      .update(`broker-iam-challenge-v1\n${nonce}\n${expiresAt}`)
      .digest('hex');
  }

  /** The challenge key, made on first use (one writer wins; every authority sharing the state reads it). */
  private secret(): Promise<Buffer> {
    this.key ??= this.loadOrCreate().catch((err: unknown) => {
      this.key = undefined;
      throw err;
    });
    return this.key;
  }

  private async loadOrCreate(): Promise<Buffer> {
    const { state, clock } = this.ctx;
    const stored = await state.get(stateKeys.challengeKey);
    if (stored) return Buffer.from(stored.value.secret, 'base64');
    const fresh: ChallengeKey = {
      secret: randomBytes(32).toString('base64'),
      createdAt: clock.now().toISOString(),
    };
    try {
      await state.put(stateKeys.challengeKey, fresh, 'absent');
      return Buffer.from(fresh.secret, 'base64');
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      const winner = await state.get(stateKeys.challengeKey);
      if (!winner) throw err;
      return Buffer.from(winner.value.secret, 'base64');
    }
  }
}
