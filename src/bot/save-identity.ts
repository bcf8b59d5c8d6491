/** Saving an identity the authority just issued: retried, and never dropped silently when storage fails. */
import type { BotIdentity } from '../credentials/identity.js';
import { errorMessage } from '../errors.js';
import type { JsonLogger as Logger } from '../log.js';
import type { IdentityStore } from './identity-store.js';
import { StorageError } from './private-dir.js';

/**
 * Saves `identity` to `store`, retrying after each of `delaysMs` (default 250 ms, then 1 s) with a warning.
 * If storage still refuses it, writes it to the store's rescue file (beside the storage, 0600), where the
 * next start takes it back, and throws a StorageError that names the storage, the problem, and where the
 * identity is (or that only this process holds it).
 */
export async function saveOrRescue(
  identity: BotIdentity,
  options: { store: IdentityStore; log: Logger; what: string; delaysMs?: readonly number[] },
): Promise<void> {
  const { store, log, what } = options;
  const delays = options.delaysMs ?? [250, 1000];
  let failure: unknown;
  for (let attempt = 0; ; attempt++) {
    try {
      await store.save(identity);
      return;
    } catch (err) {
      failure = err;
    }
    const delay = delays[attempt];
    if (delay === undefined) break;
    log.warn(
      { storage: store.description, attempt: attempt + 1, of: delays.length + 1 },
      `could not save the bot identity to ${store.description}: ${errorMessage(failure)}; retrying in ${delay} ms`,
    );
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  let where: string;
  try {
    if (!store.rescue) throw new Error(`${store.description} has no place beside it`);
    const file = await store.rescue(identity);
    where = `It was written to ${file} (mode 0600) instead: fix the storage and start the bot again with the same configuration; it takes the identity from there, no new join token is needed`;
  } catch (err) {
    where = `It could not be kept anywhere else either (${errorMessage(err)}): this process keeps it in memory and saves it as soon as storage works; once the process ends, the bot needs a new join token (broker tokens add --type=bot --bot NAME)`;
  }
  throw new StorageError(
    `${what}, but could not save the identity to ${store.description} (${delays.length + 1} attempts): ${errorMessage(failure)}. ${where}`,
    { cause: failure },
  );
}
