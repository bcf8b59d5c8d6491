import type { SignedStsRequest } from '../credentials/iam.js';
import { BrokerError } from '../errors.js';
import { ConflictError } from '../state/errors.js';
import { arnMatches } from './arn.js';
import { Challenges, type IssuedChallenge } from './challenges.js';
import { type AuthorityContext, type Decision, withRequestId } from './context.js';
import { type AwsCallerIdentity, StsUnavailableError } from './iam-join.js';
import type { Identities, IssuedIdentity } from './identity.js';
import { assertPublicKey } from './limits.js';
import type { Locks } from './locks.js';
import { tokenId } from './secrets.js';
import { type StoredToken, stateKeys } from './state-keys.js';

/** What a `token` join sends: the one-time token and the public key of the identity to issue. */
export interface TokenJoinInput {
  token: string;
  publicKeyPem: string;
  ttlMs?: number;
  requestId?: string;
}

/** What an `iam` join sends: the iam token's name, the challenge it answers and the signed STS request. */
export interface IamJoinInput {
  tokenName: string;
  challengeId: string;
  stsRequest: SignedStsRequest;
  publicKeyPem: string;
  ttlMs?: number;
  requestId?: string;
}

/** How bots get their first identity: a one-time token, or an AWS identity proven through STS. */
export class Joins {
  private readonly challenges: Challenges;

  constructor(
    private readonly ctx: AuthorityContext,
    private readonly identities: Identities,
    private readonly locks: Locks,
  ) {
    this.challenges = new Challenges(ctx);
  }

  /** Joins a bot with a one-time `token`: consumes the token and issues generation 1 of its identity. */
  async joinWithToken(input: TokenJoinInput): Promise<IssuedIdentity> {
    const id = tokenId(input.token);
    const deny = (reason: string, bot?: string) =>
      this.ctx.deny(
        {
          event: 'bot.join',
          reason,
          name: id.slice(0, 12),
          ...(bot ? { bot } : {}),
          ...withRequestId(input.requestId),
        },
        `join refused: ${reason}`,
      );
    const item = await this.ctx.state.get(stateKeys.token(id));
    if (!item)
      return deny(
        'the join token is unknown or was already used; create a new one with `broker tokens add --type=bot --bot NAME`',
      );
    const token = item.value;
    if (token.joinMethod !== 'token')
      return deny(`this token is for the ${token.joinMethod} join method`, token.botName);
    if (token.expires && new Date(token.expires) <= this.ctx.clock.now())
      return deny(`the join token expired at ${token.expires}; create a new one`, token.botName);
    // Checked before the token is consumed, so a refused join does not burn it.
    assertPublicKey(input.publicKeyPem);
    await this.locks.assertNotLocked(token.botName, 'bot.join', input.requestId);
    try {
      await this.ctx.state.delete(stateKeys.token(id), item.version);
    } catch (err) {
      if (err instanceof ConflictError) return deny('the join token was already used', token.botName);
      throw err;
    }
    return this.identities.issueIdentity({
      bot: token.botName,
      publicKeyPem: input.publicKeyPem,
      ttlMs: input.ttlMs,
      generation: 1,
      event: 'bot.join',
      requestId: input.requestId,
    });
  }

  /** A one-time challenge for the iam join method, valid five minutes; handing it out stores nothing. */
  createChallenge(): Promise<IssuedChallenge> {
    return this.challenges.create();
  }

  /**
   * Joins a bot with the `iam` method: consumes the challenge (one use, compare-and-swap), has STS verify the
   * signed GetCallerIdentity request bound to it, matches the caller's account and ARN against the iam token's
   * allow rules and issues generation 1 of an identity. The token is not consumed: such bots join on every
   * run. Every decision is audited with the AWS account and ARN (never the signature).
   */
  async joinWithIam(input: IamJoinInput): Promise<IssuedIdentity> {
    const { state, clock } = this.ctx;
    const id = tokenId(input.tokenName);
    let caller: AwsCallerIdentity | undefined;
    let token: StoredToken | undefined;
    const decision = (reason: string): Decision => ({
      event: 'bot.join',
      // An unknown name is not echoed: it might be a one-time secret typed into the wrong field.
      name: token?.name ?? id.slice(0, 12),
      reason: caller ? `${reason} (AWS account ${caller.account}, ARN ${caller.arn})` : reason,
      ...(token ? { bot: token.botName } : {}),
      ...withRequestId(input.requestId),
    });
    const deny = (reason: string) => this.ctx.deny(decision(reason), `iam join refused: ${reason}`);
    const failed = (reason: string) => {
      const { event, ...detail } = decision(reason);
      return this.ctx.record({ event, outcome: 'error', ...detail });
    };

    const consumed = await this.challenges.consume(input.challengeId, input.stsRequest);
    if ('refused' in consumed) return deny(consumed.refused);

    const item = await state.get(stateKeys.token(id));
    if (item?.value.joinMethod !== 'iam')
      return deny('there is no iam token with that name; create one (kind: token, join_method: iam)');
    token = item.value;
    if (token.expires && new Date(token.expires) <= clock.now())
      return deny(`iam token "${token.name}" expired at ${token.expires}`);
    assertPublicKey(input.publicKeyPem);

    try {
      caller = await this.ctx.iamVerifier(input.stsRequest, consumed.challenge);
    } catch (err) {
      if (err instanceof StsUnavailableError) {
        await failed(err.message);
        throw err;
      }
      if (err instanceof BrokerError) return deny(err.message);
      await failed('the STS verification failed unexpectedly');
      throw err;
    }
    const who = caller;
    const allowed = (token.allow ?? []).some(
      (rule) =>
        rule.aws_account === who.account &&
        // Segment by segment; a rule the parser would refuse today (stored before) matches nothing.
        (rule.aws_arn === undefined || arnMatches(rule.aws_arn, who.arn)),
    );
    if (!allowed)
      return deny(
        `the AWS identity ${who.arn} (account ${who.account}) matches no allow rule of iam token "${token.name}"`,
      );
    if (!(await state.has(stateKeys.bot(token.botName))))
      return deny(`bot "${token.botName}" does not exist any more`);
    const lock = await state.get(stateKeys.lock(token.botName));
    if (lock)
      return deny(
        `bot "${token.botName}" is locked (${lock.value.reason}); an operator must run \`broker locks rm --bot ${token.botName}\``,
      );
    return this.identities.issueIdentity({
      bot: token.botName,
      publicKeyPem: input.publicKeyPem,
      ttlMs: input.ttlMs,
      generation: 1,
      event: 'bot.join',
      requestId: input.requestId,
      auditDetail: {
        name: token.name ?? id.slice(0, 12),
        reason: `iam: AWS account ${who.account}, ARN ${who.arn}`,
      },
    });
  }
}
