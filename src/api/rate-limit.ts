import { type Clock, systemClock } from '../clock.js';

export interface RateLimitOptions {
  /** Requests a caller may make per second, on average. */
  perSecond: number;
  /** Requests a caller may make at once, after being quiet. */
  burst: number;
  /** Callers remembered at most; beyond, the least recently seen are forgotten (default 10,000). */
  maxCallers?: number;
  clock?: Clock;
}

/** The default for the authority's unauthenticated requests (join, challenge, ca-bundles), per caller. */
export const UNAUTHENTICATED_RATE: RateLimitOptions = { perSecond: 5, burst: 30 };

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per caller (an address, or one bucket for a unix socket), in memory, with a bounded number
 * of callers: a flood of addresses cannot grow it past `maxCallers`.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxCallers: number;
  private readonly clock: Clock;

  constructor(private readonly options: RateLimitOptions) {
    this.maxCallers = options.maxCallers ?? 10_000;
    this.clock = options.clock ?? systemClock;
  }

  /** How many callers are remembered. */
  get size(): number {
    return this.buckets.size;
  }

  /** Takes one request from `caller`'s bucket: 0 when allowed, else the milliseconds until it would be. */
  take(caller: string): number {
    const now = this.clock.now().getTime();
    const { perSecond, burst } = this.options;
    const seen = this.buckets.get(caller);
    const tokens = seen ? Math.min(burst, seen.tokens + ((now - seen.at) / 1000) * perSecond) : burst;
    const allowed = tokens >= 1;
    // Re-inserted, so the map's order is least recently seen first.
    this.buckets.delete(caller);
    this.buckets.set(caller, { tokens: allowed ? tokens - 1 : tokens, at: now });
    while (this.buckets.size > this.maxCallers) {
      const oldest = this.buckets.keys().next().value as string;
      this.buckets.delete(oldest);
    }
    return allowed ? 0 : Math.ceil(((1 - tokens) / perSecond) * 1000);
  }
}
