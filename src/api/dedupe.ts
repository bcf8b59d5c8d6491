import { stateKeys, TypedState } from '../authority/state-keys.js';
import type { Clock } from '../clock.js';
import type { JsonLogger as Logger } from '../log.js';
import { ConflictError } from '../state/errors.js';
import type { StateStore } from '../state/store.js';
import type { ApiResponse } from './protocol.js';

/** How long a request id is remembered: longer than any SDK retry window. */
export const DEDUPE_WINDOW_MS = 15 * 60_000;

interface Remembered {
  response: ApiResponse;
  expires: string;
}

export interface RunOnceOptions {
  store: StateStore;
  clock: Clock;
  /** The request id, with a digest of the request's content. */
  key: string;
  /**
   * Checks that this request may be given the remembered answer — for a signed request, that its proof
   * holds — and throws (a BrokerError) when not. A request id alone is no credential.
   */
  verify?: () => Promise<void>;
  log?: Logger | undefined;
}

/**
 * Runs a join or an issuance at most once per request id. A transport retry (Lambda Invoke after a timeout,
 * an HTTP client resending) gets the first successful answer instead of a second certificate. Failed
 * answers are not remembered, so a retry after a failure runs again. Responses hold certificates, never keys.
 * Renewals do not come here: the authority commits their answer with the renewal itself (renewal.ts).
 *
 * A failing read throws (the request does not run). A failing write of the answer does not: the work is
 * done and its answer is returned; only a retry of this one request would run again. The remembered items
 * expire: the authority prunes them (`pruneExpired`) and DynamoDB deletes them by TTL.
 */
export async function runOnce(options: RunOnceOptions, fn: () => Promise<ApiResponse>): Promise<ApiResponse> {
  const { clock, log } = options;
  const state = new TypedState(options.store);
  const key = stateKeys.request<Remembered>(options.key);
  const seen = await state.get(key);
  if (seen && new Date(seen.value.expires) > clock.now()) {
    await options.verify?.();
    return seen.value.response;
  }
  const response = await fn();
  if (response.ok) {
    const expires = new Date(clock.now().getTime() + DEDUPE_WINDOW_MS).toISOString();
    try {
      await state.put(key, { response, expires }, seen ? seen.version : 'absent');
    } catch (err) {
      // ConflictError: a concurrent duplicate finished first; both callers got a valid answer.
      if (!(err instanceof ConflictError))
        log?.error(
          { err, requestId: options.key.split('.')[0] },
          'could not remember the answer of a request; it was answered, but a retry of it would run again',
        );
    }
  }
  return response;
}
