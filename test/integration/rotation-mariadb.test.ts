/**
 * The CA rotation proof against a real MariaDB server (REQUIRE SUBJECT accounts, require_secure_transport):
 * the client CA and then the server CA rotate phase by phase, the server takes new TLS files with
 * `FLUSH SSL` as the README says, and a client opening a connection every 100 ms and holding one open,
 * through the tunnel proxy and directly with verified TLS, sees no failure and no drop; afterwards every
 * certificate chains only to the new keys. The rollback does the same. Fails with an install message when
 * MariaDB is missing.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { mysqlTunnel } from '../../src/proxy/tunnels/mysql.js';
import { type StartedMariadb, startMariadb } from '../support/devdb/mariadb.js';
import {
  type Connection,
  DATABASE,
  type DatabaseTls,
  type Engine,
  rotationSuite,
  USER,
} from '../support/rotation-proof.js';

function wrap(conn: mysql.Connection): Connection {
  conn.on('error', () => undefined);
  return { ping: async () => void (await conn.query('SELECT 1')), close: () => conn.end() };
}

class MariadbEngine implements Engine {
  readonly protocol = 'mysql' as const;
  readonly handlers = { mysql: mysqlTunnel };
  private server: StartedMariadb | undefined;
  private tlsDir = '';

  async start(baseDir: string, tls: DatabaseTls): Promise<number> {
    this.tlsDir = path.join(baseDir, 'tls');
    // MariaDB compares REQUIRE SUBJECT with OpenSSL's one-line form of the subject: O is the bot, CN the user.
    this.server = await startMariadb({
      baseDir,
      tls,
      users: [{ name: USER, subject: `/O=rotation-bot/CN=${USER}` }],
      databases: [DATABASE],
    });
    return this.server.port;
  }

  /** The README's step: write ssl_cert, ssl_key and ssl_ca in place, then FLUSH SSL (MariaDB 10.4+). */
  async install(tls: DatabaseTls): Promise<void> {
    await writeFile(path.join(this.tlsDir, 'server.crt'), tls.serverCertPem);
    await writeFile(path.join(this.tlsDir, 'server.key'), tls.serverKeyPem);
    await writeFile(path.join(this.tlsDir, 'client-ca.crt'), tls.clientCaPem);
    await (this.server as StartedMariadb).sql('FLUSH SSL;');
  }

  async direct(bundle: { files: Record<string, string | undefined> }, port: number): Promise<Connection> {
    return wrap(
      await mysql.createConnection({
        host: '127.0.0.1',
        port,
        user: USER,
        database: DATABASE,
        connectTimeout: 5_000,
        ssl: {
          cert: bundle.files.tlscert as string,
          key: bundle.files.key as string,
          ca: bundle.files['teleport-database-ca.crt'] as string,
          // Verified against the host, 127.0.0.1, which the server certificate names.
          rejectUnauthorized: true,
        },
      }),
    );
  }

  async tunnel(port: number): Promise<Connection> {
    return wrap(
      await mysql.createConnection({
        host: '127.0.0.1',
        port,
        user: USER,
        database: DATABASE,
        connectTimeout: 5_000,
      }),
    );
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }
}

rotationSuite('a real MariaDB server', () => new MariadbEngine());
