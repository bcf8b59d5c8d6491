import { GenerationMismatchError } from '../errors.js';
import { buildCertificate } from '../pki/certificate.js';
import { OID_BOT_GENERATION, OID_BOT_LINEAGE, OID_BOT_NAME, OID_CERT_ROLE } from '../pki/oids.js';
import { isSignedBy, parseCertificate } from '../pki/parse.js';
import { MAX_CLOCK_SKEW_MS, type Proof, verifyProof } from '../pki/proof.js';
import { ConflictError } from '../state/errors.js';
import type { AuditEvent } from './audit.js';
import type { CaRegistry } from './ca-registry.js';
import { type AuthorityContext, withRequestId } from './context.js';
import { assertPublicKey, clampTtl, DEFAULT_CERT_TTL_MS } from './limits.js';
import { hasNonce, newLineage, type PresentedIdentity, type Standing, standingOf } from './lineage.js';
import type { Locks } from './locks.js';
import { type BotState, type Lock, type SeenNonce, stateKeys } from './state-keys.js';

export interface IssuedIdentity {
  certificatePem: string;
  serial: string;
  generation: number;
  expires: string;
  /** Bot CA bundle: what the bot trusts for the authority's server certificate. */
  botCaPem: string;
}

/** A join's bot identity to issue: generation 1 of a new lineage. */
export interface IdentityRequest {
  bot: string;
  publicKeyPem: string;
  ttlMs?: number | undefined;
  /** Always 1: a join starts a lineage (renewals go through `renewIdentity`). */
  generation: 1;
  /** The audit event: `bot.join`. */
  event: string;
  requestId?: string | undefined;
  auditDetail?: Pick<AuditEvent, 'name' | 'reason'>;
}

/** A request signed with a bot identity, as `authenticate` checks it. */
export interface SignedRequest {
  /** The request type, signed in the proof and used as the audit event. */
  type: string;
  identityPem: string;
  params: unknown;
  proof: Proof;
  requestId?: string | undefined;
}

/** Who signed an authenticated request, and the renewal-state version it was checked against. */
export interface Authenticated {
  bot: string;
  generation: number;
  stateVersion: number;
}

/** A signed request whose certificate (from the bot CA, in its validity) and proof hold. */
export interface Verified {
  bot: string;
  presented: PresentedIdentity;
}

/** A certificate to sign for a bot identity. */
export interface IdentityCertificate {
  bot: string;
  publicKeyPem: string;
  ttlMs?: number | undefined;
  generation: number;
  lineage: string | undefined;
}

/** How long a proof's nonce is remembered: until the proof is too old to be accepted anyway. */
export function nonceExpiry(proof: Proof): string {
  return new Date(new Date(proof.timestamp).getTime() + MAX_CLOCK_SKEW_MS + 1000).toISOString();
}

/**
 * Bot identities: issuing them, checking requests signed with them, and renewing them. Only the current
 * lineage and generation of a bot's identity is accepted (src/authority/lineage.ts).
 */
export class Identities {
  constructor(
    readonly ctx: AuthorityContext,
    private readonly cas: CaRegistry,
    readonly locks: Locks,
  ) {}

  /** Issues generation 1 of a new lineage for a joining bot; every older identity stops being accepted. */
  async issueIdentity(request: IdentityRequest): Promise<IssuedIdentity> {
    const { bot, event, requestId } = request;
    if (!(await this.ctx.state.has(stateKeys.bot(bot))))
      return this.ctx.deny(
        { event, bot, reason: 'bot does not exist', ...withRequestId(requestId) },
        `bot "${bot}" does not exist any more`,
      );
    await this.locks.assertNotLocked(bot, event, requestId);
    const lineage = newLineage();
    const issued = await this.sign({ ...request, lineage });
    const state: BotState = {
      generation: issued.generation,
      serial: issued.serial,
      expires: issued.expires,
      lineage,
    };
    await this.ctx.state.put(stateKeys.botState(bot), state);
    await this.ctx.record({
      event,
      outcome: 'success',
      bot,
      serial: issued.serial,
      generation: issued.generation,
      expires: issued.expires,
      ...request.auditDetail,
      ...withRequestId(requestId),
    });
    return issued.identity;
  }

  /** Signs an identity certificate carrying the bot, its generation and its lineage. */
  async sign(
    cert: IdentityCertificate,
  ): Promise<{ identity: IssuedIdentity } & Pick<BotState, 'serial' | 'expires' | 'generation' | 'lineage'>> {
    const { bot, publicKeyPem, generation, lineage } = cert;
    assertPublicKey(publicKeyPem);
    const ttl = clampTtl(cert.ttlMs ?? DEFAULT_CERT_TTL_MS);
    const now = this.ctx.clock.now();
    const { certificatePem, serial } = await buildCertificate(
      {
        subject: { commonName: bot, organization: 'broker-bot' },
        publicKeyPem,
        issuedAt: now,
        notAfter: new Date(now.getTime() + ttl),
        profile: 'client',
        privateExtensions: {
          [OID_CERT_ROLE]: 'bot-identity',
          [OID_BOT_NAME]: bot,
          [OID_BOT_GENERATION]: String(generation),
          ...(lineage ? { [OID_BOT_LINEAGE]: lineage } : {}),
        },
      },
      await this.cas.issuer('bot'),
    );
    const expires = new Date(now.getTime() + ttl).toISOString();
    const botCaPem = await this.cas.caBundle('bot');
    return {
      identity: { certificatePem, serial, generation, expires, botCaPem },
      serial,
      expires,
      generation,
      ...(lineage ? { lineage } : {}),
    };
  }

  /**
   * Checks the certificate and proof of a signed request: issued by the bot CA as a bot identity, within
   * its validity, fresh (clock skew) and signed by the identity's key. Says nothing about the bot's state.
   */
  async verify(request: SignedRequest): Promise<Verified> {
    const { type, identityPem, proof, requestId } = request;
    const rid = withRequestId(requestId);
    let info: ReturnType<typeof parseCertificate>;
    try {
      info = parseCertificate(identityPem);
    } catch {
      // Audited like any other refused identity: a corrupted or tampered certificate is worth seeing.
      return this.ctx.deny(
        { event: type, reason: 'identity is not a valid certificate', ...rid },
        'the identity is not a valid certificate; the bot must join again',
      );
    }
    const bot = info.privateExtensions[OID_BOT_NAME];
    const generation = Number(info.privateExtensions[OID_BOT_GENERATION]);
    const botCa = await this.cas.ca('bot');
    const trusted = botCa.keys.some((k) => isSignedBy(identityPem, k.certificatePem));
    if (
      !trusted ||
      !bot ||
      info.privateExtensions[OID_CERT_ROLE] !== 'bot-identity' ||
      !Number.isInteger(generation)
    )
      return this.ctx.deny(
        { event: type, reason: 'identity not issued by this authority', ...rid },
        'the identity was not issued by this authority (wrong CA or tampered certificate); the bot must join again',
      );
    const deny = (reason: string, message: string) =>
      this.ctx.deny({ event: type, bot, reason, ...rid }, message);
    const now = this.ctx.clock.now();
    const skew = Math.abs(new Date(proof.timestamp).getTime() - now.getTime());
    if (!(skew <= MAX_CLOCK_SKEW_MS))
      return deny(
        'request time outside the allowed clock skew',
        `the request time ${proof.timestamp} is ${Math.round(skew / 1000)}s away from the authority's clock (${now.toISOString()}); at most ${MAX_CLOCK_SKEW_MS / 1000}s is allowed: fix the clock (NTP) on the bot's machine`,
      );
    if (info.notAfter <= now)
      return deny(
        'identity expired',
        `the identity of bot "${bot}" expired at ${info.notAfter.toISOString()} and cannot renew; create a new join token (broker tokens add --type=bot --bot ${bot}) and start the bot with it`,
      );
    if (info.notBefore > now)
      return deny(
        'identity not yet valid',
        `the identity of bot "${bot}" is not valid before ${info.notBefore.toISOString()}; check the clocks`,
      );
    if (!/^[0-9a-f]{32}$/.test(proof.nonce) || !verifyProof(type, request.params, proof, info.publicKeyPem))
      return deny('bad proof of possession', 'the request signature does not match the identity key');
    return {
      bot,
      presented: { lineage: info.privateExtensions[OID_BOT_LINEAGE], generation, serial: info.serial },
    };
  }

  /**
   * Checks a request signed with a bot identity: `verify`, then not locked, not a replay, and of the
   * current lineage and generation. An older lineage is refused; a superseded generation of the current
   * lineage means two copies of the identity exist: the bot is locked. The proof's nonce is then spent.
   */
  async authenticate(request: SignedRequest): Promise<Authenticated> {
    const { type, proof, requestId } = request;
    const verified = await this.verify(request);
    const state = await this.currentState(type, verified.bot, requestId);
    await this.refuseReplay(request, verified.bot, state?.value);
    await this.requireCurrent(request, verified, state?.value);
    try {
      const seen: SeenNonce = { nonce: proof.nonce, expires: nonceExpiry(proof) };
      await this.ctx.state.put(stateKeys.nonce(proof.nonce), seen, 'absent');
    } catch (err) {
      if (err instanceof ConflictError) return this.denyReplay(request, verified.bot);
      throw err;
    }
    return {
      bot: verified.bot,
      generation: verified.presented.generation,
      stateVersion: state?.version ?? 0,
    };
  }

  /** Refuses a locked or removed bot; returns its renewal state. */
  async currentState(type: string, bot: string, requestId: string | undefined) {
    await this.locks.assertNotLocked(bot, type, requestId);
    if (!(await this.ctx.state.has(stateKeys.bot(bot))))
      return this.ctx.deny(
        { event: type, bot, reason: 'bot does not exist', ...withRequestId(requestId) },
        `bot "${bot}" does not exist any more; an operator removed it`,
      );
    return this.ctx.state.get(stateKeys.botState(bot));
  }

  /** Refuses a request whose proof was already accepted: a captured request sent again. */
  async refuseReplay(request: SignedRequest, bot: string, state: BotState | undefined): Promise<void> {
    const { nonce } = request.proof;
    if (
      hasNonce(state?.renewalNonces, nonce, this.ctx.clock.now()) ||
      (await this.ctx.state.has(stateKeys.nonce(nonce)))
    )
      await this.denyReplay(request, bot);
  }

  private denyReplay(request: SignedRequest, bot: string): Promise<never> {
    return this.ctx.deny(
      {
        event: request.type,
        bot,
        reason: 'replayed request: its proof was already used',
        ...withRequestId(request.requestId),
      },
      'this request was already received (its proof was used once); a replayed request is refused: sign a new one',
    );
  }

  /** Passes only the current lineage and generation; refuses older lineages and locks on a superseded generation. */
  async requireCurrent(
    request: SignedRequest,
    verified: Verified,
    state: BotState | undefined,
  ): Promise<void> {
    const standing: Standing = standingOf(state, verified.presented);
    if (standing === 'current') return;
    const { bot, presented } = verified;
    if (standing === 'superseded')
      return this.lockCopiedIdentity({
        bot,
        generation: presented.generation,
        expected: state?.generation,
        rid: withRequestId(request.requestId),
      });
    await this.ctx.deny(
      {
        event: request.type,
        bot,
        generation: presented.generation,
        reason:
          standing === 'not-joined'
            ? 'identity of an older lineage: the bot has not joined since it was created'
            : 'identity of an older lineage: the bot joined again since it was issued (a stolen or left-over copy)',
        ...withRequestId(request.requestId),
      },
      `this identity of bot "${bot}" belongs to an older lineage: the bot has joined again since it was issued, so it is no longer accepted. If this is the bot's own identity, give it a new join token (broker tokens add --type=bot --bot ${bot})`,
    );
  }

  /**
   * A presented generation other than the stored one, in the current lineage, means a copy of the identity
   * renewed elsewhere: the bot is locked until an operator has looked, and the refusal is a
   * GenerationMismatchError, not a denial.
   */
  private async lockCopiedIdentity(seen: {
    bot: string;
    generation: number;
    expected: number | undefined;
    rid: { requestId?: string };
  }): Promise<never> {
    const { bot, generation, rid } = seen;
    const expected = seen.expected ?? 'none';
    const reason = `generation mismatch: the identity presented generation ${generation}, the authority expects ${expected}; another copy of this identity has renewed`;
    const lock: Lock = { bot, reason, createdAt: this.ctx.clock.now().toISOString() };
    await this.ctx.state.put(stateKeys.lock(bot), lock);
    await this.ctx.record({
      event: 'bot.generation_mismatch',
      outcome: 'denied',
      bot,
      generation,
      reason,
      ...rid,
    });
    await this.ctx.record({ event: 'lock.create', outcome: 'success', bot, reason });
    throw new GenerationMismatchError(
      `bot "${bot}" is now locked: its identity presented generation ${generation} but the authority expected ${expected}, which means a copy of the identity was used elsewhere. Investigate, then run \`broker locks rm --bot ${bot}\` and \`broker tokens add --type=bot --bot ${bot}\`, and start the bot with the new token`,
    );
  }
}
