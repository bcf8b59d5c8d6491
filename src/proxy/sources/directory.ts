import { type CredentialBundle, checkBundleKeyPair } from '../../credentials/bundle.js';
import { readDirectoryOutput } from '../../destinations/directory.js';
import type { BundleSource } from './bundle-source.js';

/** The proxy's view of a `directory` output: the bundle the bot last wrote there. */
export class DirectoryBundleSource implements BundleSource {
  readonly description: string;
  constructor(readonly dir: string) {
    this.description = `directory ${dir}`;
  }

  async load(): Promise<CredentialBundle | undefined> {
    const bundle = await readDirectoryOutput(this.dir);
    // The reader checks the shape; a key that is not the certificate's (a file replaced by hand) must fail
    // here too, as it does in the Secrets Manager source, rather than reach the proxy as half a bundle.
    if (bundle) checkBundleKeyPair(bundle, `the output in ${this.dir}`);
    return bundle;
  }
}
