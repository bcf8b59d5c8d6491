import { BrokerError } from '../errors.js';

/**
 * A connection the proxy gave up on. `code` is an errno-like label (DIAL_TIMEOUT, USER_MISMATCH, …) that
 * `outcomeOf` turns into the outcome counted in the metrics.
 */
export class ProxyError extends BrokerError {
  override name = 'ProxyError';
  constructor(message: string, code: string, options: { cause?: unknown } = {}) {
    super(code, message, options);
  }
}
