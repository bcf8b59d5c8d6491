/** The CLI's own errors, and the one place where an error becomes a process exit code. */
import { BrokerError } from '../errors.js';

/** Bad command-line usage. */
export class UsageError extends BrokerError {
  override name = 'UsageError';
  constructor(message: string) {
    super('usage', message);
  }
}

/** Exit status for an error: 2 for bad usage (as commander and POSIX tools do), 1 for everything else. */
export function exitCodeOf(err: unknown): 1 | 2 {
  return err instanceof UsageError ? 2 : 1;
}
