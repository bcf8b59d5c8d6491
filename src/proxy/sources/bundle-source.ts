import type { CredentialBundle } from '../../credentials/bundle.js';

/**
 * Where the proxy gets the current credential bundle: a directory output on a machine, a Secrets Manager
 * secret in AWS. Every implementation passes the contract suite in test/contracts/bundle-source.ts.
 */
export interface BundleSource {
  /** Names the source in log lines and error messages, e.g. `directory var/out/example`. */
  readonly description: string;
  /**
   * The newest bundle, or undefined when none was written yet. A corrupt or partial bundle is an error,
   * never a half bundle.
   */
  load(): Promise<CredentialBundle | undefined>;
}
