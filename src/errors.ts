/**
 * The broker's error taxonomy. Every error says what failed and what to do about it; none carries
 * secret values. `exitCode` is the CLI mapping (1 = failed, 2 = usage), kept here in one place.
 */
export class BrokerError extends Error {
  override name = 'BrokerError';
  /** Stable machine-readable code, also used on the authority API. */
  readonly code: string;
  readonly exitCode: 1 | 2;
  constructor(code: string, message: string, options: { cause?: unknown; exitCode?: 1 | 2 } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.exitCode = options.exitCode ?? 1;
  }
}

/** A configuration or resource file that does not validate. */
export class ConfigError extends BrokerError {
  override name = 'ConfigError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('bad_config', message, { ...options, exitCode: 1 });
  }
}

/** Bad command-line usage. */
export class UsageError extends BrokerError {
  override name = 'UsageError';
  constructor(message: string) {
    super('usage', message, { exitCode: 2 });
  }
}

/** A resource that does not exist. */
export class NotFoundError extends BrokerError {
  override name = 'NotFoundError';
  constructor(message: string) {
    super('not_found', message);
  }
}

/** A resource that already exists. */
export class AlreadyExistsError extends BrokerError {
  override name = 'AlreadyExistsError';
  constructor(message: string) {
    super('already_exists', message);
  }
}

/** The authority refused a request (RBAC, lock, bad proof). The message is safe to show the caller. */
export class AccessDeniedError extends BrokerError {
  override name = 'AccessDeniedError';
  constructor(message: string) {
    super('access_denied', message);
  }
}

/** A state directory that is missing, uninitialised or has unsafe permissions. */
export class StateError extends BrokerError {
  override name = 'StateError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('bad_state', message, options);
  }
}

/** A compare-and-swap that lost a race: the stored version was not the expected one. */
export class ConflictError extends BrokerError {
  override name = 'ConflictError';
  constructor(message: string) {
    super('conflict', message);
  }
}

/** A renewal presented another generation than the stored one: the identity was copied. */
export class GenerationMismatchError extends BrokerError {
  override name = 'GenerationMismatchError';
  constructor(message: string) {
    super('generation_mismatch', message);
  }
}

/** The bot's configured authority could not be reached or answered garbage. Retryable. */
export class AuthorityUnavailableError extends BrokerError {
  override name = 'AuthorityUnavailableError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('authority_unavailable', message, options);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
