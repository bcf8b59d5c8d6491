import type { CredentialBundle } from '../credentials/bundle.js';

/**
 * Where a bot delivers an output. `write` is all-or-nothing: a reader sees the previous complete bundle or
 * the new complete bundle, and a failed write leaves the previous one in place.
 */
export interface Destination {
  readonly description: string;
  write(bundle: CredentialBundle): Promise<void>;
  /** The current bundle, or undefined when nothing was written yet. */
  read(): Promise<CredentialBundle | undefined>;
}
