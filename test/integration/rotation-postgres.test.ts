/**
 * The CA rotation proof against a real PostgreSQL server (`hostssl … cert`): while the database client CA
 * and then the database server CA rotate phase by phase (and the server is reconfigured with
 * `pg_reload_conf()` as the README says), a client opening a new connection every 100 ms and holding one
 * long-lived connection, through the tunnel proxy and directly with verify-full, sees no failed and no
 * dropped connection; afterwards every certificate chains only to the new keys. The rollback does the same.
 * Fails with an install message when the PostgreSQL server binaries are missing.
 */

import { PostgresEngine } from '../support/rotation-postgres.js';
import { rotationSuite } from '../support/rotation-proof.js';

rotationSuite('a real PostgreSQL server', () => new PostgresEngine());
