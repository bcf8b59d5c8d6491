/**
 * The CA rotation proof against a real PostgreSQL server (`hostssl … cert`): while the database client CA
 * and then the database server CA rotate phase by phase (and the server is reconfigured with
 * `pg_reload_conf()` as the README says), a client opening a new connection every 100 ms and holding one
 * long-lived connection, through the tunnel proxy and directly with verify-full, sees no failed and no
 * dropped connection; afterwards every certificate chains only to the new keys. The rollback does the same.
 * Fails with an install message when the PostgreSQL server binaries are missing.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { requirePostgres } from '../support/postgres.js';
import {
  type Connection,
  DATABASE,
  type DatabaseTls,
  type Engine,
  rotationSuite,
  USER,
} from '../support/rotation-proof.js';

function wrap(client: pg.Client): Connection {
  // A connection the server drops reports it here too; the next ping rejects and counts it.
  client.on('error', () => undefined);
  return { ping: async () => void (await client.query('SELECT 1')), close: () => client.end() };
}

class PostgresEngine implements Engine {
  readonly protocol = 'postgres' as const;
  private server: StartedPostgres | undefined;
  private tlsDir = '';

  async start(baseDir: string, tls: DatabaseTls): Promise<number> {
    await requirePostgres();
    this.tlsDir = path.join(baseDir, 'tls');
    this.server = await startPostgres({ baseDir, tls, users: [USER], databases: [DATABASE] });
    return this.server.port;
  }

  /** The README's step: write ssl_cert_file, ssl_key_file and ssl_ca_file in place, then pg_reload_conf(). */
  async install(tls: DatabaseTls): Promise<void> {
    const server = this.server as StartedPostgres;
    const before = await server.psql('SELECT pg_conf_load_time()');
    await writeFile(path.join(this.tlsDir, 'server.crt'), tls.serverCertPem);
    await writeFile(path.join(this.tlsDir, 'server.key'), tls.serverKeyPem);
    await writeFile(path.join(this.tlsDir, 'client-ca.crt'), tls.clientCaPem);
    await server.psql('SELECT pg_reload_conf()');
    // The postmaster reloads asynchronously; a new session shows when it has.
    for (let i = 0; (await server.psql('SELECT pg_conf_load_time()')) === before; i++) {
      if (i > 100) throw new Error('PostgreSQL did not reload its configuration within 5 s');
      await sleep(50);
    }
  }

  async direct(bundle: { files: Record<string, string | undefined> }, port: number): Promise<Connection> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: USER,
      database: DATABASE,
      connectionTimeoutMillis: 5_000,
      ssl: {
        cert: bundle.files.tlscert as string,
        key: bundle.files.key as string,
        ca: bundle.files['teleport-database-ca.crt'] as string,
        servername: 'localhost',
        rejectUnauthorized: true,
      },
    });
    await client.connect();
    return wrap(client);
  }

  async tunnel(port: number): Promise<Connection> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: USER,
      database: DATABASE,
      ssl: false,
      connectionTimeoutMillis: 5_000,
    });
    await client.connect();
    return wrap(client);
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }
}

rotationSuite('a real PostgreSQL server', () => new PostgresEngine());
