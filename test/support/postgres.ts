import { findPostgresBinaries, POSTGRES_INSTALL_HINT } from '../../src/devdb/postgres.js';

/**
 * The PostgreSQL server binaries, or an Error saying what to install. Integration tests fail (never skip)
 * without them: in CI a missing package must be seen, and on a developer machine the message says what
 * to install.
 */
export async function requirePostgres(): Promise<{ binDir: string; version: string }> {
  const found = await findPostgresBinaries();
  if (!found)
    throw new Error(`${POSTGRES_INSTALL_HINT}. This integration test needs a real PostgreSQL server.`);
  return found;
}
