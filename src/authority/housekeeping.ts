import { ConflictError } from '../state/errors.js';
import type { AuthorityContext } from './context.js';
import { shortLivedPrefixes } from './state-keys.js';

/**
 * Removes the short-lived items whose time has passed: remembered API requests, used iam join challenges
 * and spent proof nonces. Each means nothing once expired (readers check `expires` themselves), so this
 * only bounds the state's size. A long-running authority calls it periodically; DynamoDB also expires
 * these items by TTL. Returns how many items were removed.
 */
export async function pruneExpired(ctx: AuthorityContext): Promise<number> {
  const now = ctx.clock.now().getTime();
  let removed = 0;
  for (const prefix of shortLivedPrefixes)
    for (const item of await ctx.state.list(prefix)) {
      const expires = Date.parse(String((item.value as { expires?: unknown } | null)?.expires));
      // An item without a readable expiry cannot be valid either: it goes too.
      if (expires > now) continue;
      try {
        if (await ctx.store.delete(item.key, item.version)) removed++;
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        // Rewritten meanwhile: the next round looks at it again.
      }
    }
  return removed;
}
