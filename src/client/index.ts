/**
 * The client module for Lambda workloads (DESIGN.md §6): read an output's credential bundle from Secrets
 * Manager, keep it cached for the execution environment until shortly before it expires, and hand ready TLS
 * options to `pg`, `mysql2`, `mongodb` and `ioredis`.
 *
 *     const creds = createCredentialClient({ secretId: 'broker/example/db' });
 *     export const handler = async () => {
 *       const client = new pg.Client(pgOptions(await creds.getBundle()));
 *       ...
 *     };
 */
export type { BundleMeta, CredentialBundle } from '../credentials/bundle.js';
export {
  type CredentialClient,
  CredentialClientError,
  type CredentialClientOptions,
  clearCredentialCache,
  createCredentialClient,
  DEFAULT_REFRESH_MARGIN_MS,
} from './credential-client.js';
export {
  type IoredisOptions,
  ioredisOptions,
  type MongodbOptions,
  type Mysql2Options,
  mongodbOptions,
  mysql2Options,
  type PgOptions,
  pgOptions,
} from './driver-options.js';
