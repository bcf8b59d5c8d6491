/** Errors of the authority's administration: resources that are missing or already there. */
import { BrokerError } from '../errors.js';

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

/** A CA rotation request that does not fit the CA's phase; the message names the phase and what comes next. */
export class RotationError extends BrokerError {
  override name = 'RotationError';
  constructor(message: string) {
    super('rotation_phase', message);
  }
}
