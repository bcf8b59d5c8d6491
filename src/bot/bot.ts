import { randomUUID } from 'node:crypto';
import type { AuthorityClient } from '../api/client.js';
import type { IdentityResult } from '../api/protocol.js';
import { mapBounded } from '../bounded.js';
import type { Clock } from '../clock.js';
import { ConfigError } from '../config/errors.js';
import type { CredentialBundle } from '../credentials/bundle.js';
import { renderDatabaseArtifacts } from '../credentials/formats.js';
import type { BotIdentity } from '../credentials/identity.js';
import type { DatabaseRoute } from '../credentials/route.js';
import type { Destination } from '../destinations/destination.js';
import { formatDuration } from '../duration.js';
import { AccessDeniedError, BrokerError, errorMessage, GenerationMismatchError } from '../errors.js';
import type { JsonLogger as Logger } from '../log.js';
import { DEFAULT_KEY_ALGORITHM, generateKeyPairOf, type KeyAlgorithm, type KeyPairPem } from '../pki/keys.js';
import { parseCertificate } from '../pki/parse.js';
import type { BotConfig, DatabaseOutputConfig } from './config.js';
import type { IdentityStore } from './identity-store.js';
import { describeOutput, routeOf } from './output-names.js';
import { StorageError } from './private-dir.js';
import { saveOrRescue } from './save-identity.js';

export interface BotDependencies {
  config: BotConfig;
  client: AuthorityClient;
  identityStore: IdentityStore;
  destinationFor(output: DatabaseOutputConfig): Destination;
  /** Resolves the onboarding token when a join is needed (never earlier, never logged). */
  joinToken(): Promise<string>;
  /**
   * The `iam` join: proves the bot's AWS identity to the authority. IAM-joined bots keep no identity
   * between runs and join again on every cycle instead of renewing.
   */
  iamJoin?: (client: AuthorityClient, publicKeyPem: string, ttlMs: number) => Promise<IdentityResult>;
  clock: Clock;
  log: Logger;
  /**
   * Checks what can be checked before a one-time join token is spent (destinations, outputs) and fixes what
   * it safely can; returns what it changed. Runs after the identity store's own `prepare`.
   */
  preflight?: () => Promise<string[]>;
  generateKeyPair?: (algorithm: KeyAlgorithm) => Promise<KeyPairPem>;
  random?: () => number;
  /** Waits between attempts to save a newly issued identity (default 250 ms, then 1 s). */
  saveRetryDelaysMs?: readonly number[];
}

export interface OutputResult {
  output: string;
  route: DatabaseRoute;
  ok: boolean;
  serial?: string;
  expires?: string;
  error?: string;
}

/** Clock differences the bot warns about: certificates are back-dated a minute, so more than that is odd. */
const SKEW_WARNING_MS = 60_000;

export { describeOutput, routeOf } from './output-names.js';

/**
 * The bot: joins once, renews its identity every cycle (moving the generation forward), and renders every
 * database output that is due into its destination. It never removes good credentials: a failed renewal or
 * issuance leaves the previous output in place.
 */
export class Bot {
  private identity: BotIdentity | undefined;
  private pendingRenewal: { requestId: string; keys: KeyPairPem; generation: number } | undefined;
  /** An identity the authority issued that storage has not taken yet: kept, and saved first every cycle. */
  private unsaved: BotIdentity | undefined;
  private preflightDone = false;
  /** Serializes identity changes and on-demand issuance (see `exclusive`). */
  private identityTurn: Promise<unknown> = Promise.resolve();
  /** What the last cycle did, for /readyz (`broker wait`): ready once a cycle rendered every output. */
  readonly health: { ready: boolean; lastSuccess?: string; lastError?: string } = { ready: false };
  private readonly lastRendered = new Map<number, number>();
  private readonly deps: BotDependencies;
  private readonly genKeys: (algorithm: KeyAlgorithm) => Promise<KeyPairPem>;
  /** The identity key's algorithm, and every output's that names none. */
  private readonly keyAlgorithm: KeyAlgorithm;

  constructor(deps: BotDependencies) {
    this.deps = deps;
    this.genKeys = deps.generateKeyPair ?? generateKeyPairOf;
    this.keyAlgorithm = deps.config.key_algorithm ?? DEFAULT_KEY_ALGORITHM;
  }

  /**
   * Everything that can fail before a join, checked before the join: the storage directory (created, or
   * tightened when `mkdir -p` left it open to others), a write into it, and the outputs' destinations.
   */
  async preflight(): Promise<void> {
    const { identityStore, log } = this.deps;
    const changes = [
      ...((await identityStore.prepare?.()) ?? []),
      ...((await this.deps.preflight?.()) ?? []),
    ];
    for (const change of changes) log.info({ storage: identityStore.description }, change);
    this.preflightDone = true;
  }

  /**
   * Saves an identity the authority issued. It is the bot's identity from now on whether or not the save
   * works: a join token is spent and the old generation is dead. A failed save is retried; if storage still
   * refuses it, the identity goes to the store's rescue file (beside the storage, 0600), where the next start
   * takes it back, and the error says where it is. In memory it is also kept and saved again at the start
   * of every cycle until storage takes it.
   */
  private async keep(identity: BotIdentity, what: string): Promise<void> {
    const { identityStore: store, log } = this.deps;
    this.identity = identity;
    this.unsaved = identity;
    await saveOrRescue(identity, {
      store,
      log,
      what,
      ...(this.deps.saveRetryDelaysMs ? { delaysMs: this.deps.saveRetryDelaysMs } : {}),
    });
    this.unsaved = undefined;
  }

  /** Loads the stored identity or joins with the onboarding token. */
  async ensureIdentity(): Promise<{ identity: BotIdentity; joined: boolean }> {
    const { log, clock, identityStore, config } = this.deps;
    const iam = config.onboarding.join_method === 'iam';
    if (this.unsaved) await this.keep(this.unsaved, 'the bot holds an identity it was issued');
    if (!iam && !this.identity) {
      this.identity = await identityStore.load();
      for (const note of identityStore.takeNotes?.() ?? [])
        log.info({ storage: identityStore.description }, note);
    }
    const now = clock.now();
    if (!iam && this.identity && new Date(this.identity.expires) > now)
      return { identity: this.identity, joined: false };
    if (this.identity && !iam)
      log.warn(
        { expired: this.identity.expires },
        'the stored bot identity has expired; joining again with the onboarding token',
      );
    // A token is spent by the join: everything that could make the bot fail right after it is checked first.
    if (!iam && !this.preflightDone) await this.preflight();
    const keys = await this.genKeys(this.keyAlgorithm);
    let result: IdentityResult;
    try {
      if (iam) {
        if (!this.deps.iamJoin)
          throw new ConfigError('join_method iam needs AWS credentials (it runs in the bot Lambda)');
        result = await this.deps.iamJoin(this.deps.client, keys.publicKeyPem, config.credential_ttl);
      } else {
        result = await this.deps.client.joinWithToken(
          await this.deps.joinToken(),
          keys.publicKeyPem,
          config.credential_ttl,
        );
      }
    } catch (err) {
      if (err instanceof AccessDeniedError && this.identity)
        throw new AccessDeniedError(
          `${err.message}. The bot's identity expired at ${this.identity.expires}, so it needs a new join token: broker tokens add --type=bot --bot NAME`,
        );
      throw err;
    }
    const identity: BotIdentity = {
      certificatePem: result.certificatePem,
      privateKeyPem: keys.privateKeyPem,
      generation: result.generation,
      expires: result.expires,
      botCaPem: result.botCaPem,
    };
    if (iam) this.identity = identity;
    else await this.keep(identity, 'joined the authority');
    this.checkSkew(result.certificatePem);
    log.info(
      {
        generation: result.generation,
        serial: result.serial,
        expires: result.expires,
        storage: identityStore.description,
      },
      'joined the authority',
    );
    return { identity, joined: true };
  }

  /** Renews the identity: a new key, proof with the old one, generation + 1. Saved before it is used. */
  async renewIdentity(current: BotIdentity): Promise<BotIdentity> {
    // A renewal whose answer was lost is retried with the same request id and key: the authority replays
    // its first answer instead of seeing a second renewal from the old generation (which would lock the bot).
    this.pendingRenewal ??= {
      requestId: randomUUID(),
      keys: await this.genKeys(this.keyAlgorithm),
      generation: current.generation,
    };
    if (this.pendingRenewal.generation !== current.generation)
      this.pendingRenewal = {
        requestId: randomUUID(),
        keys: await this.genKeys(this.keyAlgorithm),
        generation: current.generation,
      };
    const { keys, requestId } = this.pendingRenewal;
    const result = await this.deps.client.renew(
      current,
      keys.publicKeyPem,
      this.deps.config.credential_ttl,
      requestId,
    );
    this.pendingRenewal = undefined;
    const identity: BotIdentity = {
      certificatePem: result.certificatePem,
      privateKeyPem: keys.privateKeyPem,
      generation: result.generation,
      expires: result.expires,
      botCaPem: result.botCaPem,
    };
    await this.keep(identity, `renewed the identity to generation ${identity.generation}`);
    this.checkSkew(result.certificatePem);
    this.deps.log.info(
      { generation: identity.generation, serial: result.serial, expires: identity.expires },
      'renewed the bot identity',
    );
    return identity;
  }

  private checkSkew(certificatePem: string): void {
    const info = parseCertificate(certificatePem);
    const issuedAt = info.notBefore.getTime() + 60_000;
    const skew = this.deps.clock.now().getTime() - issuedAt;
    if (Math.abs(skew) > SKEW_WARNING_MS)
      this.deps.log.warn(
        { skewSeconds: Math.round(skew / 1000) },
        `this machine's clock is ${formatDuration(Math.abs(skew))} ${skew < 0 ? 'behind' : 'ahead of'} the authority; certificates may look not-yet-valid or expired to databases: fix the clock (NTP)`,
      );
  }

  /** Issues and writes one output with a fresh key pair. */
  async renderOutput(identity: BotIdentity, output: DatabaseOutputConfig): Promise<OutputResult> {
    const route = routeOf(output);
    const name = describeOutput(output);
    const ttl = output.credential_ttl ?? this.deps.config.credential_ttl;
    const keys = await this.genKeys(output.key_algorithm ?? this.keyAlgorithm);
    const issued = await this.deps.client.issueDatabaseCertificate(identity, route, keys.publicKeyPem, {
      ttlMs: ttl,
      roles: output.roles,
    });
    const files = renderDatabaseArtifacts(output.format, {
      certificatePem: issued.certificatePem,
      privateKeyPem: keys.privateKeyPem,
      serverCaPem: issued.serverCaPem,
    });
    const bundle: CredentialBundle = {
      kind: 'database-credentials',
      version: 1,
      service: issued.db.service,
      protocol: issued.db.protocol,
      endpoint: issued.db.uri,
      serverName: issued.db.serverName,
      database: route.database,
      username: output.username,
      format: output.format,
      serial: issued.serial,
      issuedAt: issued.issuedAt,
      expiresAt: issued.expires,
      files,
    };
    await this.deps.destinationFor(output).write(bundle);
    this.deps.log.info(
      {
        output: name,
        route,
        serial: issued.serial,
        expires: issued.expires,
        format: output.format || 'default',
      },
      'rendered database output',
    );
    return { output: name, route, ok: true, serial: issued.serial, expires: issued.expires };
  }

  /**
   * Runs `fn` alone among identity changes and on-demand issuance: a certificate request signed with one
   * generation must never cross a renewal to the next, since the authority locks a bot that presents a
   * superseded generation.
   */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const turn = this.identityTurn.then(fn, fn);
    this.identityTurn = turn.catch(() => undefined);
    return turn;
  }

  /**
   * Issues and writes one output now with the current identity, never renewing it: a database-tunnel's
   * certificate just in time, when a connection finds the cached one expired or about to expire.
   */
  renderNow(output: DatabaseOutputConfig): Promise<OutputResult> {
    return this.exclusive(async () => this.renderOutput((await this.ensureIdentity()).identity, output));
  }

  /**
   * One cycle: make sure of the identity (join or renew), then render every output that is due (all of them
   * when `force`). Identity failures fail the cycle; output failures are reported per output.
   */
  async runCycle(force = true): Promise<OutputResult[]> {
    const { config, clock } = this.deps;
    const identity = await this.exclusive(async () => {
      const ensured = await this.ensureIdentity();
      return ensured.joined ? ensured.identity : this.renewIdentity(ensured.identity);
    });
    // Four outputs at a time: each waits on key generation, the authority and fsync, which overlap.
    const results = await mapBounded([...config.outputs.entries()], 4, async ([i, output]) => {
      const interval = output.renewal_interval ?? config.renewal_interval;
      const last = this.lastRendered.get(i);
      if (!force && last !== undefined && clock.now().getTime() - last < interval * 0.9) return undefined;
      try {
        const result = await this.renderOutput(identity, output);
        this.lastRendered.set(i, clock.now().getTime());
        return result;
      } catch (err) {
        if (err instanceof GenerationMismatchError) throw err;
        const route = routeOf(output);
        this.deps.log.error(
          { output: describeOutput(output), route, err },
          `output failed; its previous credentials stay in place: ${errorMessage(err)}`,
        );
        return { output: describeOutput(output), route, ok: false, error: errorMessage(err) };
      }
    });
    return results.filter((r): r is OutputResult => r !== undefined);
  }

  private noteCycle(error: string | undefined): void {
    if (error === undefined) {
      this.health.ready = true;
      this.health.lastSuccess = this.deps.clock.now().toISOString();
      delete this.health.lastError;
    } else {
      this.health.ready = false;
      this.health.lastError = error;
    }
  }

  /** How long to wait after `failures` consecutive failed cycles: exponential from 1 s, jittered, capped. */
  backoffMs(failures: number): number {
    const cap = Math.min(this.deps.config.renewal_interval, 5 * 60_000);
    const base = Math.min(cap, 1000 * 2 ** Math.max(0, failures - 1));
    const random = this.deps.random ?? Math.random;
    return Math.round(base / 2 + (random() * base) / 2);
  }

  /** The next regular cycle: the shortest renewal interval, with ±10% jitter so bots do not march in step. */
  nextIntervalMs(): number {
    const { config } = this.deps;
    const shortest = Math.min(
      config.renewal_interval,
      ...config.outputs.map((o) => o.renewal_interval ?? config.renewal_interval),
    );
    const random = this.deps.random ?? Math.random;
    return Math.round(shortest * (0.9 + random() * 0.2));
  }

  /**
   * The long-running loop. `wait(ms)` resolves after ms or earlier when woken (SIGHUP) and reports whether
   * the loop should stop (SIGTERM). A cycle in progress always completes its write before the loop stops.
   */
  async runLoop(wait: (ms: number) => Promise<'tick' | 'wake' | 'stop'>): Promise<void> {
    let failures = 0;
    let force = true;
    for (;;) {
      let delay: number;
      try {
        const results = await this.runCycle(force);
        const failed = results.filter((r) => !r.ok).length;
        this.noteCycle(failed === 0 ? undefined : `${failed} of ${results.length} output(s) failed`);
        failures = failed > 0 ? failures + 1 : 0;
        delay = failed > 0 ? this.backoffMs(failures) : this.nextIntervalMs();
        force = failed > 0;
      } catch (err) {
        if (err instanceof GenerationMismatchError) {
          this.deps.log.fatal({ err }, 'the authority locked this bot; stopping');
          throw err;
        }
        this.noteCycle(errorMessage(err));
        failures++;
        delay = this.backoffMs(failures);
        force = true;
        const retryable =
          !(err instanceof BrokerError) ||
          err instanceof StorageError ||
          err.code === 'authority_unavailable';
        this.deps.log.error(
          { err, retryInSeconds: Math.round(delay / 1000), failures },
          `renewal failed${retryable ? '' : ' (the authority refused)'}; the last good outputs stay in place: ${errorMessage(err)}`,
        );
      }
      const why = await wait(delay);
      if (why === 'stop') return;
      if (why === 'wake') force = true;
    }
  }
}
