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
import { afterEach, describe, expect, it } from 'vitest';
import { mysqlTunnel } from '../../src/proxy/tunnels/mysql.js';
import { type StartedMariadb, startMariadb } from '../support/devdb/mariadb.js';
import {
  type Connection,
  DATABASE,
  type DatabaseTls,
  type Engine,
  expectNoDisruption,
  expectOnlyNewKeys,
  expectOnlyOriginalKeys,
  FULL_ROTATION,
  ROLLED_BACK,
  RotationWorld,
  runProof,
  USER,
} from '../support/rotation-proof.js';
import { tempDir } from '../support/temp.js';

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

describe('CA rotation against a real MariaDB server, under load', () => {
  let cleanup: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await cleanup?.();
    cleanup = undefined;
  });

  async function world(): Promise<RotationWorld> {
    const work = await tempDir('rotation-maria');
    const w = new RotationWorld(new MariadbEngine(), work.dir);
    cleanup = async () => {
      await w.stop();
      await work.cleanup();
    };
    await w.start();
    return w;
  }

  it('a full rotation of the client CA, then of the server CA: nothing fails, nothing drops, the old keys are gone', async () => {
    const w = await world();
    const report = await runProof(w, FULL_ROTATION);
    expectNoDisruption(report);
    await expectOnlyNewKeys(w, report);
    await expect(w.engine.direct(report.firstOutput, w.port)).rejects.toThrow();
  }, 240_000);

  it('a rotation rolled back from update_servers: nothing fails, nothing drops, only the original keys remain', async () => {
    const w = await world();
    const report = await runProof(w, ROLLED_BACK);
    expectNoDisruption(report);
    await expectOnlyOriginalKeys(w, report);
  }, 240_000);
});
