/** Errors of configuration and resource files. */
import { BrokerError } from '../errors.js';

/** A configuration or resource file that does not validate. */
export class ConfigError extends BrokerError {
  override name = 'ConfigError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('bad_config', message, options);
  }
}
