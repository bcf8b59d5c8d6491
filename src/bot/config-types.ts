/** The bot configuration as the bot runs it, after config.ts has read and resolved the file. */
import type { OutputFormat } from '../credentials/formats.js';
import type { KeyAlgorithm } from '../pki/keys.js';

/** One of tbot's ACL readers of a directory. */
export type AclReader = { user: string | number } | { group: string | number };

/** A destination as the bot uses it: tbot's `readers` list is kept apart from the project's readers mode. */
export type DestinationConfig =
  | {
      type: 'directory';
      path: string;
      readers: 'owner' | 'group';
      /** tbot's ACL readers: kept to warn about, as tbot does where it cannot set ACLs. */
      aclReaders: AclReader[];
      symlinks?: 'secure' | 'try-secure' | 'insecure' | undefined;
      acls?: 'off' | 'try' | 'required' | undefined;
    }
  | { type: 'secretsmanager'; name: string }
  | { type: 'memory' };

/** A `database` output (from `outputs`, or a `database` entry of `services`). */
export interface DatabaseOutputConfig {
  type: 'database';
  destination: DestinationConfig;
  service: string;
  database?: string | undefined;
  /** Empty when the file leaves it out (tbot allows that); `broker start` refuses such an output by name. */
  username: string;
  format: OutputFormat;
  roles?: string[] | undefined;
  name?: string | undefined;
  credential_ttl?: number | undefined;
  renewal_interval?: number | undefined;
  key_algorithm?: KeyAlgorithm | undefined;
  /** Where it sits in the file (`outputs.0`, `services.2`), for messages. */
  origin: string;
}

/** A `database-tunnel` service. */
export interface DatabaseTunnelConfig {
  listen: string;
  roles?: string[] | undefined;
  service: string;
  database: string;
  username: string;
  origin: string;
}

/** The bot configuration as the bot runs it: tbot's spellings and defaults resolved. */
export interface BotConfig {
  version: 'v2';
  auth_server: string;
  ca_pins: string[];
  ca_path?: string | undefined;
  onboarding: { join_method: 'token' | 'iam'; token: string };
  storage:
    | { type: 'directory'; path: string; symlinks?: string | undefined; acls?: string | undefined }
    | { type: 'memory' }
    | { type: 'secretsmanager'; name: string };
  credential_ttl: number;
  renewal_interval: number;
  /** The identity key's algorithm and the outputs' default; DEFAULT_KEY_ALGORITHM when left out. */
  key_algorithm?: KeyAlgorithm | undefined;
  oneshot: boolean;
  debug: boolean;
  diag_addr?: string | undefined;
  outputs: DatabaseOutputConfig[];
  tunnels: DatabaseTunnelConfig[];
  /** What tbot would log as a warning about this configuration (the bot logs them at start). */
  warnings: string[];
}
