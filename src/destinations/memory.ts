import type { CredentialBundle } from '../credentials/bundle.js';
import type { Destination } from './destination.js';

/** Holds the bundle in memory: for tests and for in-process consumers. */
export class MemoryDestination implements Destination {
  readonly description = 'memory';
  bundle: CredentialBundle | undefined;
  writes = 0;
  async write(bundle: CredentialBundle): Promise<void> {
    this.bundle = structuredClone(bundle);
    this.writes++;
  }
  async read(): Promise<CredentialBundle | undefined> {
    return this.bundle && structuredClone(this.bundle);
  }
}
