/** A stored value with the version a compare-and-swap is made against. Versions start at 1. */
export interface Versioned<T = unknown> {
  key: string;
  value: T;
  version: number;
}

/**
 * Precondition of a write: `'absent'` creates only when the key does not exist, a number replaces only
 * that version, undefined writes unconditionally.
 */
export type Expect = number | 'absent' | undefined;

/**
 * The authority's state: resources, CAs, tokens, locks, generation counters. Implementations: a state
 * directory (embedded mode) and DynamoDB (AWS). Both give atomic single-key writes with compare-and-swap,
 * which is all the authority needs for one-time tokens and generation counters.
 */
export interface StateStore {
  get<T = unknown>(key: string): Promise<Versioned<T> | undefined>;
  /** Writes `value`; throws ConflictError when `expect` does not hold. Returns the new version. */
  put(key: string, value: unknown, expect?: Expect): Promise<number>;
  /** Deletes; returns false when the key did not exist. Throws ConflictError when `expect` does not hold. */
  delete(key: string, expect?: Expect): Promise<boolean>;
  /** Every item whose key starts with `prefix`, sorted by key. */
  list<T = unknown>(prefix: string): Promise<Versioned<T>[]>;
}

const KEY = /^[a-z0-9][a-z0-9._-]*(\/[a-zA-Z0-9][a-zA-Z0-9._@-]*)*$/;

/** Keys are path-like (`roles/example-role`); anything else could escape a state directory. */
export function assertValidKey(key: string): void {
  if (!KEY.test(key) || key.includes('..')) throw new Error(`invalid state key ${JSON.stringify(key)}`);
}
