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
import { afterEach, describe, expect, it } from 'vitest';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { opensslVerify } from '../support/openssl.js';
import { requirePostgres } from '../support/postgres.js';
import {
  type Connection,
  DATABASE,
  type DatabaseTls,
  type Engine,
  FULL_ROTATION,
  type ProofReport,
  ROLLED_BACK,
  RotationWorld,
  runProof,
  signers,
  USER,
} from '../support/rotation-proof.js';
import { tempDir } from '../support/temp.js';

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

describe('CA rotation against a real PostgreSQL server, under load', () => {
  let cleanup: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await cleanup?.();
    cleanup = undefined;
  });

  async function world(): Promise<RotationWorld> {
    const work = await tempDir('rotation-pg');
    const w = new RotationWorld(new PostgresEngine(), work.dir);
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
    // The database no longer trusts the client key that left: the first output's certificate is refused.
    await expect(w.engine.direct(report.firstOutput, w.port)).rejects.toThrow();
    expect(
      w.audit.events.filter((e) => e.event === 'ca.rotate' && e.outcome === 'success').map((e) => e.name),
    ).toEqual([...FULL_ROTATION.map(() => 'db-client/rotation-db'), ...FULL_ROTATION.map(() => 'db-server')]);
  }, 180_000);

  it('a rotation rolled back from update_servers: nothing fails, nothing drops, only the original keys remain', async () => {
    const w = await world();
    const report = await runProof(w, ROLLED_BACK);
    expectNoDisruption(report);
    expect(report.clientCa.after).toBe(report.clientCa.before);
    expect(report.serverCa.after).toBe(report.serverCa.before);
    expect(signers(report.finalOutput.files.tlscert as string, report.clientCa.before)).toEqual([0]);
    expect(signers(report.finalServerCertPem, report.serverCa.before)).toEqual([0]);
    expect(report.finalOutput.files['teleport-database-ca.crt']).toBe(report.serverCa.before);
    // The first output still works: its key is the one that stayed.
    const again = await w.engine.direct(report.firstOutput, w.port);
    await again.ping();
    await again.close();
  }, 180_000);
});

function expectNoDisruption(report: ProofReport): void {
  expect(report.failed, 'failed new connections').toEqual([]);
  expect(report.dropped, 'dropped long-lived connections').toEqual([]);
  // Two paths, a new connection every 100 ms, over at least eight phases of a second.
  expect(report.opened).toBeGreaterThan(100);
  expect(report.longLivedPings).toBeGreaterThan(100);
}

async function expectOnlyNewKeys(w: RotationWorld, report: ProofReport): Promise<void> {
  const { clientCa, serverCa, finalOutput } = report;
  expect(clientCa.after).not.toBe(clientCa.before);
  expect(serverCa.after).not.toBe(serverCa.before);
  const cert = finalOutput.files.tlscert as string;
  // The client certificate chains to the new client key only; the server's to the new server key only.
  expect(signers(cert, clientCa.after)).toEqual([0]);
  expect(signers(cert, clientCa.before)).toEqual([]);
  expect(signers(report.finalServerCertPem, serverCa.after)).toEqual([0]);
  expect(signers(report.finalServerCertPem, serverCa.before)).toEqual([]);
  // The CA files the bot and the proxy hand to clients hold only the new server key.
  expect(finalOutput.files['teleport-database-ca.crt']).toBe(serverCa.after);
  expect(w.proxyBundle().files['teleport-database-ca.crt']).toBe(serverCa.after);
  // openssl agrees.
  expect((await opensslVerify(w.workDir, clientCa.after, cert)).code).toBe(0);
  expect((await opensslVerify(w.workDir, clientCa.before, cert)).code).not.toBe(0);
  expect((await opensslVerify(w.workDir, serverCa.after, report.finalServerCertPem)).code).toBe(0);
}
