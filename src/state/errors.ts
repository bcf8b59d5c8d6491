/** Errors of the state stores. */
import { BrokerError } from '../errors.js';

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
