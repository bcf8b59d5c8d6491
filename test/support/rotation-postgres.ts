/**
 * The PostgreSQL engine of the CA rotation proofs (test/support/rotation-proof.ts): a real server with
 * certificate login, reconfigured as the README's "Rotating a CA" says. Fails with an install message when
 * the PostgreSQL server binaries are missing.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { requirePostgres } from './postgres.js';
import { type Connection, DATABASE, type DatabaseTls, type Engine, USER } from './rotation-proof.js';

function wrap(client: pg.Client): Connection {
  // A connection the server drops reports it here too; the next ping rejects and counts it.
  client.on('error', () => undefined);
  return { ping: async () => void (await client.query('SELECT 1')), close: () => client.end() };
}

/**
 * PostgreSQL with `hostssl … cert`, reconfigured in place with pg_reload_conf() (the README's step); on
 * `port` when given (a world that must know the port before the server starts), else a free one.
 */
export class PostgresEngine implements Engine {
  readonly protocol = 'postgres' as const;
  private server: StartedPostgres | undefined;
  private tlsDir = '';

  constructor(private readonly port?: number) {}

  async start(baseDir: string, tls: DatabaseTls): Promise<number> {
    await requirePostgres();
    this.tlsDir = path.join(baseDir, 'tls');
    this.server = await startPostgres({
      baseDir,
      ...(this.port === undefined ? {} : { port: this.port }),
      tls,
      users: [USER],
      databases: [DATABASE],
    });
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
