import { stateKeys, TypedState } from '../authority/state-keys.js';
import type { Clock } from '../clock.js';
import { ConflictError } from '../state/errors.js';
import type { StateStore } from '../state/store.js';
import type { ApiResponse } from './protocol.js';

/** How long a request id is remembered: longer than any SDK retry window. */
export const DEDUPE_WINDOW_MS = 15 * 60_000;

interface Remembered {
  response: ApiResponse;
  expires: string;
}

/**
 * Runs a state-changing request at most once per request id. A transport retry (Lambda Invoke after a
 * timeout, an HTTP client resending) gets the first successful answer instead of a second renewal —
 * which would look like a copied identity and lock the bot — or a second certificate. Failed answers are
 * not remembered, so a retry after a failure runs again. Responses hold certificates, never keys.
 */
export async function runOnce(
  store: StateStore,
  clock: Clock,
  requestId: string,
  fn: () => Promise<ApiResponse>,
): Promise<ApiResponse> {
  const state = new TypedState(store);
  const key = stateKeys.request<Remembered>(requestId);
  const seen = await state.get(key);
  if (seen && new Date(seen.value.expires) > clock.now()) return seen.value.response;
  const response = await fn();
  if (response.ok) {
    const expires = new Date(clock.now().getTime() + DEDUPE_WINDOW_MS).toISOString();
    try {
      await state.put(key, { response, expires }, seen ? seen.version : 'absent');
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      // A concurrent duplicate finished first; both callers got a valid answer.
    }
  }
  return response;
}

/** Removes remembered requests whose window has passed (the DynamoDB store also expires them by TTL). */
export async function pruneRequests(store: StateStore, clock: Clock): Promise<number> {
  let removed = 0;
  for (const item of await store.list<Remembered>(stateKeys.requests<Remembered>())) {
    if (new Date(item.value.expires) <= clock.now()) {
      await store.delete(item.key, item.version).catch(() => undefined);
      removed++;
    }
  }
  return removed;
}
