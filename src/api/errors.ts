/** Errors of the authority API as its client sees them. */
import { BrokerError } from '../errors.js';

/** The bot's configured authority could not be reached or answered garbage. Retryable. */
export class AuthorityUnavailableError extends BrokerError {
  override name = 'AuthorityUnavailableError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('authority_unavailable', message, options);
  }
}
