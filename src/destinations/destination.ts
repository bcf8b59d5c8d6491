import type { DbProtocol } from '../authority/resources.js';
import type { OutputFormat } from '../bot/formats.js';

/** What a database output holds besides its files: where the database is and what the certificate is for. */
export interface BundleMeta {
  kind: 'database-credentials';
  version: 1;
  service: string;
  protocol: DbProtocol;
  endpoint: string;
  serverName: string;
  database: string;
  username: string;
  format: OutputFormat;
  serial: string;
  issuedAt: string;
  expiresAt: string;
}

/** A credential bundle: metadata plus the artifact files by name (DESIGN.md §4). */
export interface CredentialBundle extends BundleMeta {
  files: Record<string, string>;
}

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
