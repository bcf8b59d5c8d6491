/**
 * The broker's error taxonomy. Every error says what failed and what to do about it; none carries
 * secret values. Each module keeps its own errors beside it (config/errors.ts, state/errors.ts, …); the ones
 * here cross the authority API, so both its sides need them. Exit codes are the CLI's business (cli/errors.ts).
 */
export class BrokerError extends Error {
  override name = 'BrokerError';
  /** Stable machine-readable code, also used on the authority API. */
  readonly code: string;
  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** The authority refused a request (RBAC, lock, bad proof). The message is safe to show the caller. */
export class AccessDeniedError extends BrokerError {
  override name = 'AccessDeniedError';
  constructor(message: string) {
    super('access_denied', message);
  }
}

/** A renewal presented another generation than the stored one: the identity was copied. */
export class GenerationMismatchError extends BrokerError {
  override name = 'GenerationMismatchError';
  constructor(message: string) {
    super('generation_mismatch', message);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
