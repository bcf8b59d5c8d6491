/**
 * Renewal of a bot identity, idempotent per request: the new generation, the request id, the answer and the
 * proof's nonce are committed in one compare-and-swap of the bot's state. So a retry of a renewal whose
 * answer was lost — even one that arrives while the first attempt is still running — gets that answer
 * instead of looking like a second copy of the identity (which would lock the bot), and a captured renewal
 * sent again under a fresh request id is recognised by its nonce and refused without locking.
 */
import type { Proof } from '../pki/proof.js';
import { ConflictError } from '../state/errors.js';
import { withRequestId } from './context.js';
import { type Identities, type IssuedIdentity, nonceExpiry, type Verified } from './identity.js';
import { hasNonce, paramsDigest, withNonce } from './lineage.js';
import { type BotState, stateKeys } from './state-keys.js';

const TYPE = 'bot.renew';

export interface RenewalInput {
  identityPem: string;
  proof: Proof;
  params: { publicKeyPem: string; ttlMs?: number };
  requestId?: string;
}

/** Renews: proof with the current key, a new public key, generation + 1 of the same lineage. */
export async function renew(identities: Identities, input: RenewalInput): Promise<IssuedIdentity> {
  const { ctx } = identities;
  const request = { type: TYPE, ...input };
  const verified = await identities.verify(request);
  const { bot } = verified;
  const digest = paramsDigest(input.params);
  const state = await identities.currentState(TYPE, bot, input.requestId);
  const again = answerAgain(state?.value, { verified, digest, input, now: ctx.clock.now() });
  if (again) return retried(identities, bot, input, again);
  await identities.refuseReplay(request, bot, state?.value);
  await identities.requireCurrent(request, verified, state?.value);
  const current = (state as { value: BotState; version: number }).value;

  const issued = await identities.sign({
    bot,
    publicKeyPem: input.params.publicKeyPem,
    ttlMs: input.params.ttlMs,
    generation: current.generation + 1,
    lineage: current.lineage,
  });
  const next: BotState = {
    generation: issued.generation,
    serial: issued.serial,
    expires: issued.expires,
    ...(current.lineage ? { lineage: current.lineage } : {}),
    lastRenewal: {
      requestId: input.requestId ?? '',
      fromSerial: verified.presented.serial,
      paramsDigest: digest,
      answer: issued.identity,
    },
    renewalNonces: withNonce(
      current.renewalNonces,
      { nonce: input.proof.nonce, expires: nonceExpiry(input.proof) },
      ctx.clock.now(),
    ),
  };
  try {
    await ctx.state.put(stateKeys.botState(bot), next, (state as { version: number }).version);
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
    // Another renewal landed first. If it was this one (a retry racing the first attempt), its answer is ours.
    const now = await ctx.state.get(stateKeys.botState(bot));
    const theirs = answerAgain(now?.value, { verified, digest, input, now: ctx.clock.now() });
    if (theirs) return retried(identities, bot, input, theirs);
    return ctx.deny(
      { event: TYPE, bot, reason: 'concurrent renewal', ...withRequestId(input.requestId) },
      `another renewal of bot "${bot}" happened at the same moment; retry`,
    );
  }
  await ctx.record({
    event: TYPE,
    outcome: 'success',
    bot,
    serial: issued.serial,
    generation: issued.generation,
    expires: issued.expires,
    ...withRequestId(input.requestId),
  });
  return issued.identity;
}

/**
 * The remembered answer, when this request is the last renewal again: the same identity asking for the same
 * parameters, under the same request id, or under another one with a proof not used before (the bot
 * signing its retry anew). A request with a used proof and another request id is a replay: no answer.
 */
function answerAgain(
  state: BotState | undefined,
  ask: { verified: Verified; digest: string; input: RenewalInput; now: Date },
): IssuedIdentity | undefined {
  const last = state?.lastRenewal;
  if (!last || last.paramsDigest !== ask.digest) return undefined;
  if (normal(last.fromSerial) !== normal(ask.verified.presented.serial)) return undefined;
  if (ask.input.requestId && last.requestId === ask.input.requestId) return last.answer;
  return hasNonce(state.renewalNonces, ask.input.proof.nonce, ask.now) ? undefined : last.answer;
}

async function retried(
  identities: Identities,
  bot: string,
  input: RenewalInput,
  answer: IssuedIdentity,
): Promise<IssuedIdentity> {
  await identities.ctx.record({
    event: 'bot.renew_retry',
    outcome: 'success',
    bot,
    serial: answer.serial,
    generation: answer.generation,
    reason: 'a retry of the last renewal: answered with its first answer',
    ...withRequestId(input.requestId),
  });
  return answer;
}

function normal(serial: string): string {
  return serial.toLowerCase().replace(/^(00)+(?=.)/, '');
}
