import { X509Certificate } from 'node:crypto';
import { AccessDeniedError, GenerationMismatchError } from '../errors.js';
import { buildCertificate } from '../pki/certificate.js';
import { OID_BOT_GENERATION, OID_BOT_NAME, OID_CERT_ROLE } from '../pki/oids.js';
import { parseCertificate } from '../pki/parse.js';
import { MAX_CLOCK_SKEW_MS, type Proof, verifyProof } from '../pki/proof.js';
import { ConflictError } from '../state/errors.js';
import type { AuditEvent } from './audit.js';
import type { CaRegistry } from './ca-registry.js';
import { type AuthorityContext, withRequestId } from './context.js';
import { assertPublicKey, clampTtl, DEFAULT_CERT_TTL_MS } from './limits.js';
import type { Locks } from './locks.js';
import { type BotState, type Lock, stateKeys } from './state-keys.js';

export interface IssuedIdentity {
  certificatePem: string;
  serial: string;
  generation: number;
  expires: string;
  /** Bot CA bundle: what the bot trusts for the authority's server certificate. */
  botCaPem: string;
}

/** A bot identity to issue: generation 1 on a join, the next one on a renewal. */
export interface IdentityRequest {
  bot: string;
  publicKeyPem: string;
  ttlMs?: number | undefined;
  generation: number;
  /** The audit event: `bot.join` or `bot.renew`. */
  event: string;
  requestId?: string | undefined;
  /** A renewal moves the lineage forward only from the renewal-state version it read. */
  expectStateVersion?: number;
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

/** Bot identities: issuing them, checking requests signed with them, and renewing them. */
export class Identities {
  constructor(
    private readonly ctx: AuthorityContext,
    private readonly cas: CaRegistry,
    private readonly locks: Locks,
  ) {}

  /** Issues a bot identity certificate and records its generation as the only one allowed to renew. */
  async issueIdentity(request: IdentityRequest): Promise<IssuedIdentity> {
    const { bot, publicKeyPem, generation, event, requestId } = request;
    if (!(await this.ctx.state.has(stateKeys.bot(bot))))
      throw new AccessDeniedError(`bot "${bot}" does not exist any more`);
    await this.locks.assertNotLocked(bot, event, requestId);
    assertPublicKey(publicKeyPem);
    const ttl = clampTtl(request.ttlMs ?? DEFAULT_CERT_TTL_MS);
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
        },
      },
      await this.cas.issuer('bot'),
    );
    const expires = new Date(now.getTime() + ttl).toISOString();
    const state: BotState = { generation, serial, expires };
    // Generation 1 (a join) resets the lineage; a renewal moves it forward only from the version it read.
    await this.ctx.state.put(stateKeys.botState(bot), state, request.expectStateVersion);
    await this.ctx.record({
      event,
      outcome: 'success',
      bot,
      serial,
      generation,
      expires,
      ...request.auditDetail,
      ...withRequestId(requestId),
    });
    return { certificatePem, serial, generation, expires, botCaPem: await this.cas.caBundle('bot') };
  }

  /**
   * Checks a request signed with a bot identity: issued by the bot CA, within its validity, fresh, signed
   * by the identity's key, not locked, and of the current generation. A superseded generation means two
   * copies of the identity exist: the bot is locked.
   */
  async authenticate(request: SignedRequest): Promise<Authenticated> {
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
    const cert = new X509Certificate(identityPem);
    const trusted = botCa.keys.some((k) => {
      const ca = new X509Certificate(k.certificatePem);
      return cert.checkIssued(ca) && cert.verify(ca.publicKey);
    });
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
    if (!verifyProof(type, request.params, proof, info.publicKeyPem))
      return deny('bad proof of possession', 'the request signature does not match the identity key');
    await this.locks.assertNotLocked(bot, type, requestId);
    if (!(await this.ctx.state.has(stateKeys.bot(bot))))
      return deny('bot does not exist', `bot "${bot}" does not exist any more; an operator removed it`);
    const state = await this.ctx.state.get(stateKeys.botState(bot));
    if (!state || state.value.generation !== generation)
      return this.lockCopiedIdentity({ bot, generation, expected: state?.value.generation, now, rid });
    return { bot, generation, stateVersion: state.version };
  }

  /** Renews a bot identity: proof with the current key, a new public key, generation + 1. */
  async renewIdentity(input: {
    identityPem: string;
    proof: Proof;
    params: { publicKeyPem: string; ttlMs?: number };
    requestId?: string;
  }): Promise<IssuedIdentity> {
    const who = await this.authenticate({ type: 'bot.renew', ...input });
    try {
      return await this.issueIdentity({
        bot: who.bot,
        publicKeyPem: input.params.publicKeyPem,
        ttlMs: input.params.ttlMs,
        generation: who.generation + 1,
        event: 'bot.renew',
        requestId: input.requestId,
        expectStateVersion: who.stateVersion,
      });
    } catch (err) {
      if (err instanceof ConflictError)
        return this.ctx.deny(
          { event: 'bot.renew', bot: who.bot, reason: 'concurrent renewal' },
          `another renewal of bot "${who.bot}" happened at the same moment; retry`,
        );
      throw err;
    }
  }

  /**
   * A presented generation other than the stored one means a copy of the identity renewed elsewhere: the
   * bot is locked until an operator has looked, and the refusal is a GenerationMismatchError, not a denial.
   */
  private async lockCopiedIdentity(seen: {
    bot: string;
    generation: number;
    expected: number | undefined;
    now: Date;
    rid: { requestId?: string };
  }): Promise<never> {
    const { bot, generation, rid } = seen;
    const expected = seen.expected ?? 'none';
    const reason = `generation mismatch: the identity presented generation ${generation}, the authority expects ${expected}; another copy of this identity has renewed`;
    const lock: Lock = { bot, reason, createdAt: seen.now.toISOString() };
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
