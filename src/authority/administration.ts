import { ConfigError } from '../config/errors.js';
import { ConflictError } from '../state/errors.js';
import type { AuthorityContext } from './context.js';
import { AlreadyExistsError, NotFoundError } from './errors.js';
import type { Locks } from './locks.js';
import { type Bot, RESOURCE_KINDS, type Resource, type TokenResource } from './resources-schema.js';
import { randomToken, tokenId } from './secrets.js';
import {
  type NamedKind,
  type NamedResource,
  type StateKey,
  type StoredToken,
  stateKeys,
} from './state-keys.js';

export const DEFAULT_TOKEN_TTL_MS = 3_600_000;
const MAX_TOKEN_TTL_MS = 7 * 24 * 3_600_000;

/** A bot as `bots ls` shows it: the resource and where its identity stands. */
export type BotStatus = Bot & { status: { generation?: number; identityExpires?: string; locked?: string } };

/** What operators manage: roles, dbs and bots, and the join tokens that let bots in. */
export class Administration {
  constructor(
    private readonly ctx: AuthorityContext,
    private readonly locks: Locks,
  ) {}

  /**
   * Creates resources from one file. Everything is checked first — references between resources, existing
   * names without `force` — so a bad file leaves the state unchanged.
   */
  async createResources(resources: readonly Resource[], options: { force?: boolean } = {}): Promise<void> {
    const { state } = this.ctx;
    const roles = new Set((await state.values(stateKeys.roles)).map((r) => r.metadata.name));
    const bots = new Set((await state.values(stateKeys.bots)).map((b) => b.metadata.name));
    for (const r of resources) if (r.kind === 'role') roles.add(r.metadata.name);
    for (const r of resources) if (r.kind === 'bot') bots.add(r.metadata.name);
    for (const r of resources) {
      if (r.kind === 'bot') {
        const missing = r.spec.roles.filter((role) => !roles.has(role));
        if (missing.length)
          throw new ConfigError(
            `bot "${r.metadata.name}" names unknown role(s) ${missing.join(', ')}; create them first`,
          );
      }
      if (r.kind === 'token' && !bots.has(r.spec.bot_name))
        throw new ConfigError(
          `a ${r.spec.join_method} token names unknown bot "${r.spec.bot_name}"; create the bot first`,
        );
      if (!options.force && (await state.has(storageKey(r))))
        throw new AlreadyExistsError(
          r.kind === 'token'
            ? 'a token with that name already exists; use --force to replace it'
            : `${r.kind} "${r.metadata.name}" already exists; use --force to overwrite it`,
        );
    }
    for (const r of resources) {
      if (r.kind === 'token') await state.put(stateKeys.token(tokenId(r.metadata.name)), this.storedToken(r));
      else await state.put(stateKeys.resource(r.kind, r.metadata.name), r);
      await this.ctx.record({
        event: r.kind === 'token' ? 'token.create' : 'resource.create',
        outcome: 'success',
        kind: r.kind,
        ...(r.kind === 'token' ? { bot: r.spec.bot_name } : { name: r.metadata.name }),
      });
    }
  }

  /** One resource by name (NotFoundError when missing), or every resource of a kind. */
  async getResources<K extends NamedKind>(kind: K, name?: string): Promise<NamedResource<K>[]> {
    if (name === undefined) return this.ctx.state.values(stateKeys.resources(kind));
    const item = await this.ctx.state.get(stateKeys.resource(kind, name));
    if (!item) throw new NotFoundError(`${kind} "${name}" not found`);
    return [item.value];
  }

  /** Removes a resource; a role still in use is refused, a bot takes its renewal state and tokens along. */
  async removeResource(kind: NamedKind, name: string): Promise<void> {
    const { state } = this.ctx;
    if (kind === 'role') {
      const users = (await state.values(stateKeys.bots)).filter((b) => b.spec.roles.includes(name));
      if (users.length)
        throw new ConflictError(
          `role "${name}" is used by bot(s) ${users.map((b) => b.metadata.name).join(', ')}; remove it from them first (broker bots update NAME --remove-roles ${name})`,
        );
    }
    if (!(await state.delete(stateKeys.resource(kind, name))))
      throw new NotFoundError(`${kind} "${name}" not found`);
    if (kind === 'bot') {
      await state.delete(stateKeys.botState(name));
      for (const t of await this.listTokens())
        if (t.botName === name) await state.delete(stateKeys.token(t.id));
    }
    await this.ctx.record({ event: 'resource.delete', outcome: 'success', kind, name });
  }

  /** Creates a bot and a one-time join token for it (`tctl bots add`). */
  async addBot(name: string, roles: readonly string[], tokenTtlMs = DEFAULT_TOKEN_TTL_MS) {
    const bot = RESOURCE_KINDS.bot.schema.parse({
      kind: 'bot',
      version: 'v1',
      metadata: { name },
      spec: { roles: [...roles] },
    }) as Bot;
    await this.createResources([bot]);
    return this.addToken(name, tokenTtlMs);
  }

  /** Adds and removes roles of a bot; every added role must exist. */
  async updateBot(
    name: string,
    change: { add?: readonly string[]; remove?: readonly string[] },
  ): Promise<Bot> {
    const { state } = this.ctx;
    const item = await state.get(stateKeys.bot(name));
    if (!item) throw new NotFoundError(`bot "${name}" not found`);
    const known = new Set((await state.values(stateKeys.roles)).map((r) => r.metadata.name));
    const unknown = (change.add ?? []).filter((r) => !known.has(r));
    if (unknown.length)
      throw new NotFoundError(
        `role(s) ${unknown.join(', ')} not found; create them with \`broker create -f role.yaml\``,
      );
    const roles = new Set(item.value.spec.roles);
    for (const r of change.add ?? []) roles.add(r);
    for (const r of change.remove ?? []) roles.delete(r);
    const bot: Bot = { ...item.value, spec: { ...item.value.spec, roles: [...roles] } };
    await state.put(stateKeys.bot(name), bot, item.version);
    await this.ctx.record({ event: 'resource.update', outcome: 'success', kind: 'bot', name });
    return bot;
  }

  /** Every bot with its current generation, identity expiry and lock. */
  async listBots(): Promise<BotStatus[]> {
    const locks = new Map((await this.locks.list()).map((l) => [l.bot, l.reason]));
    const out: BotStatus[] = [];
    for (const bot of await this.ctx.state.values(stateKeys.bots)) {
      const state = await this.ctx.state.get(stateKeys.botState(bot.metadata.name));
      const lock = locks.get(bot.metadata.name);
      out.push({
        ...bot,
        status: {
          ...(state ? { generation: state.value.generation, identityExpires: state.value.expires } : {}),
          ...(lock !== undefined ? { locked: lock } : {}),
        },
      });
    }
    return out;
  }

  /** Creates a one-time `token` join token for a bot. The secret is returned once and only its hash is stored. */
  async addToken(
    botName: string,
    ttlMs = DEFAULT_TOKEN_TTL_MS,
  ): Promise<{ token: string; id: string; expires: string }> {
    if (!(await this.ctx.state.has(stateKeys.bot(botName))))
      throw new NotFoundError(`bot "${botName}" not found`);
    if (!(ttlMs > 0 && ttlMs <= MAX_TOKEN_TTL_MS))
      throw new ConfigError('token TTL must be between 1s and 168h');
    const token = randomToken();
    const now = this.ctx.clock.now();
    const expires = new Date(now.getTime() + ttlMs).toISOString();
    const stored: StoredToken = {
      id: tokenId(token),
      joinMethod: 'token',
      botName,
      createdAt: now.toISOString(),
      expires,
    };
    await this.ctx.state.put(stateKeys.token(stored.id), stored, 'absent');
    await this.ctx.record({
      event: 'token.create',
      outcome: 'success',
      bot: botName,
      name: stored.id.slice(0, 12),
      expires,
    });
    return { token, id: stored.id, expires };
  }

  /** Every join token as stored (hashes, never secrets). */
  listTokens(): Promise<StoredToken[]> {
    return this.ctx.state.values(stateKeys.tokens);
  }

  /** Removes a token given its secret, its id, or a unique prefix of its id (as `tokens ls` shows it). */
  async removeToken(ref: string): Promise<StoredToken> {
    const tokens = await this.listTokens();
    const hashed = tokenId(ref);
    const matches = tokens.filter((t) => t.id === hashed || (ref.length >= 8 && t.id.startsWith(ref)));
    if (matches.length !== 1)
      throw new NotFoundError(
        matches.length === 0
          ? 'no such token (give the token, or its id from `broker tokens ls`)'
          : 'that id prefix matches several tokens; give more characters',
      );
    const token = matches[0] as StoredToken;
    await this.ctx.state.delete(stateKeys.token(token.id));
    await this.ctx.record({
      event: 'token.delete',
      outcome: 'success',
      bot: token.botName,
      name: token.id.slice(0, 12),
    });
    return token;
  }

  private storedToken(r: TokenResource): StoredToken {
    return {
      id: tokenId(r.metadata.name),
      joinMethod: r.spec.join_method,
      botName: r.spec.bot_name,
      createdAt: this.ctx.clock.now().toISOString(),
      ...(r.metadata.expires ? { expires: new Date(r.metadata.expires).toISOString() } : {}),
      ...(r.spec.join_method === 'iam' ? { name: r.metadata.name, allow: r.spec.allow ?? [] } : {}),
    };
  }
}

/** Where a resource from a file is stored: tokens by the hash of their name, the rest by name. */
function storageKey(r: Resource): StateKey<unknown> {
  return r.kind === 'token'
    ? stateKeys.token(tokenId(r.metadata.name))
    : stateKeys.resource(r.kind, r.metadata.name);
}
