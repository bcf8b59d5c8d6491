import { type AuthorityContext, withRequestId } from './context.js';
import { NotFoundError } from './errors.js';
import { type Lock, stateKeys } from './state-keys.js';

/** Locked bots: an operator's (or a generation mismatch's) stop on every join, renewal and issuance. */
export class Locks {
  constructor(private readonly ctx: AuthorityContext) {}

  /** Locks a bot; replaces the reason of an existing lock. */
  async add(bot: string, reason: string): Promise<Lock> {
    const lock: Lock = { bot, reason, createdAt: this.ctx.clock.now().toISOString() };
    await this.ctx.state.put(stateKeys.lock(bot), lock);
    await this.ctx.record({ event: 'lock.create', outcome: 'success', bot, reason });
    return lock;
  }

  /** Every lock, sorted by bot. */
  list(): Promise<Lock[]> {
    return this.ctx.state.values(stateKeys.locks);
  }

  /** Unlocks a bot. */
  async remove(bot: string): Promise<void> {
    if (!(await this.ctx.state.delete(stateKeys.lock(bot))))
      throw new NotFoundError(`bot "${bot}" is not locked`);
    await this.ctx.record({ event: 'lock.delete', outcome: 'success', bot });
  }

  /** Refuses, and audits as `event`, any request for a locked bot. */
  async assertNotLocked(bot: string, event: string, requestId?: string): Promise<void> {
    const lock = await this.ctx.state.get(stateKeys.lock(bot));
    if (lock)
      await this.ctx.deny(
        { event, bot, reason: `locked: ${lock.value.reason}`, ...withRequestId(requestId) },
        `bot "${bot}" is locked (${lock.value.reason}); an operator must run \`broker locks rm --bot ${bot}\` and, if its identity was lost, issue a new join token`,
      );
  }
}
