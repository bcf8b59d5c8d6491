/**
 * End to end with a real PostgreSQL server: the authority's database server certificate and client CA
 * configure the server (`hostssl ... cert`), and certificates the authority issues log in with
 * verify-full TLS through the `pg` driver and `psql`. Fails with an install message when the PostgreSQL
 * server binaries are missing.
 */
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { systemClock } from '../../src/clock.js';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { AccessDeniedError } from '../../src/errors.js';
import { createLocalCa } from '../../src/pki/ca.js';
import { buildCertificate } from '../../src/pki/certificate.js';
import { generateRsaKeyPair, type KeyPairPem } from '../../src/pki/keys.js';
import { LocalSigner } from '../../src/pki/signer.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { exampleResourcesYaml } from '../support/fixtures.js';
import { requirePostgres } from '../support/postgres.js';
import { run } from '../support/run.js';
import { tempDir } from '../support/temp.js';

/** The example (its role without a session cap) on the test server. */
const RESOURCES = (port: number) =>
  exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: `localhost:${port}` } });

interface ClientCredentials {
  certificatePem: string;
  privateKeyPem: string;
  caPem: string;
}

describe('PostgreSQL trusts the authority (real server, cert auth, verify-full)', () => {
  const audit = new MemoryAuditLog();
  const authority = new Authority({ store: new MemoryStateStore(), audit });
  let server: StartedPostgres | undefined;
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;
  let serverCertPem = '';
  // alice's certificate, issued once and shared by the tests below
  let alice: { keys: KeyPairPem; certificatePem: string; serial: string; serverCaPem: string };

  const pgServer = (): StartedPostgres => {
    if (!server) throw new Error('the PostgreSQL server did not start (see beforeAll)');
    return server;
  };

  /** Connects over TCP as `user` with verify-full TLS and the given client certificate. */
  async function connect(user: string, creds: ClientCredentials): Promise<pg.Client> {
    const client = new pg.Client({
      host: 'localhost',
      port: pgServer().port,
      database: 'example',
      user,
      connectionTimeoutMillis: 10_000,
      ssl: {
        ca: creds.caPem,
        cert: creds.certificatePem,
        key: creds.privateKeyPem,
        rejectUnauthorized: true,
        servername: 'localhost',
      },
    });
    client.on('error', () => {
      // errors after connect surface through the failing query
    });
    // No client.end() after a failed connect: with pg 8.23 it can wait forever for a close event of the
    // pre-TLS socket after the server aborted the handshake (seen about once in 15 tries with an alert).
    await client.connect();
    return client;
  }

  async function connectionError(user: string, creds: ClientCredentials): Promise<Error> {
    let client: pg.Client | undefined;
    try {
      client = await connect(user, creds);
    } catch (err) {
      return err as Error;
    }
    await client.end();
    throw new Error(`a connection as ${user} should have been refused`);
  }

  beforeAll(async () => {
    await requirePostgres(); // fails (does not skip) with the install command when the server is missing
    work = await tempDir('pg-authority');
    await authority.initialize();
    const serverCert = await authority.signDatabaseServer(['localhost'], { service: 'example-server' });
    serverCertPem = serverCert.certificatePem;
    const logLines: string[] = [];
    server = await startPostgres({
      baseDir: path.join(work.dir, 'pg'),
      tls: { serverCertPem, serverKeyPem: serverCert.privateKeyPem, clientCaPem: serverCert.clientCaPem },
      users: ['alice', 'bob'],
      databases: ['example'],
      log: (line) => logLines.push(line),
    });
    await authority.createResources(parseResources(RESOURCES(server.port), 'resources.yaml'));

    const keys = await generateRsaKeyPair();
    const issued = await authority.issueDatabaseCertificate(
      'example',
      { service: 'example-server', database: 'example', username: 'alice' },
      keys.publicKeyPem,
    );
    alice = {
      keys,
      certificatePem: issued.certificatePem,
      serial: issued.serial,
      serverCaPem: issued.serverCaPem,
    };
    expect(issued.db).toMatchObject({
      service: 'example-server',
      protocol: 'postgres',
      serverName: 'localhost',
    });
  });

  afterAll(async () => {
    await server?.stop();
    await work?.cleanup();
  });

  const aliceCreds = (): ClientCredentials => ({
    certificatePem: alice.certificatePem,
    privateKeyPem: alice.keys.privateKeyPem,
    caPem: alice.serverCaPem,
  });

  it('logs alice in with the issued certificate, and the server sees that certificate', async () => {
    const client = await connect('alice', aliceCreds());
    try {
      const who = await client.query<{ current_user: string; current_database: string }>(
        'SELECT current_user, current_database()',
      );
      expect(who.rows[0]).toEqual({ current_user: 'alice', current_database: 'example' });
      const ssl = await client.query<{ ssl: boolean; client_serial: string; client_dn: string }>(
        'SELECT ssl, client_serial::text AS client_serial, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
      );
      const row = ssl.rows[0]!;
      expect(row.ssl).toBe(true);
      expect(BigInt(row.client_serial)).toBe(BigInt(`0x${alice.serial}`));
      expect(row.client_dn).toContain('CN=alice');
    } finally {
      await client.end();
    }
  });

  it('refuses the alice certificate for user bob', async () => {
    const err = await connectionError('bob', aliceCreds());
    expect(err.message).toMatch(/certificate authentication failed for user "bob"/);
  });

  it('refuses a certificate for alice signed by a foreign CA', async () => {
    const foreign = await createLocalCa('db-client', 'foreign', systemClock);
    const keys = await generateRsaKeyPair();
    const now = new Date();
    const { certificatePem } = await buildCertificate(
      {
        subject: { commonName: 'alice', organization: 'example' },
        publicKeyPem: keys.publicKeyPem,
        issuedAt: now,
        notAfter: new Date(now.getTime() + 3_600_000),
        profile: 'client',
      },
      { certificatePem: foreign.certificatePem, signer: new LocalSigner(foreign.privateKeyPem!) },
    );
    const err = await connectionError('alice', {
      certificatePem,
      privateKeyPem: keys.privateKeyPem,
      caPem: alice.serverCaPem,
    });
    // The server verifies the chain against ssl_ca_file and aborts the handshake with an "unknown ca" alert.
    expect(err.message).toMatch(/alert unknown ca/i);
  });

  it('refuses TCP logins without a client certificate, and without TLS', async () => {
    const err = await connectionError('alice', {
      certificatePem: '',
      privateKeyPem: '',
      caPem: alice.serverCaPem,
    });
    expect(err.message).toBe('connection requires a valid client certificate');
    const plain = new pg.Client({
      host: '127.0.0.1',
      port: pgServer().port,
      database: 'example',
      user: 'alice',
      ssl: false,
    });
    plain.on('error', () => undefined);
    await expect(plain.connect()).rejects.toThrow(
      /no pg_hba\.conf entry for host "127\.0\.0\.1", user "alice", database "example", no encryption/,
    );
  });

  it('denies a certificate for bob by RBAC, with the reason, and audits it', async () => {
    const keys = await generateRsaKeyPair();
    const attempt = authority.issueDatabaseCertificate(
      'example',
      { service: 'example-server', database: 'example', username: 'bob' },
      keys.publicKeyPem,
    );
    await expect(attempt).rejects.toBeInstanceOf(AccessDeniedError);
    await expect(attempt).rejects.toThrow(/database user "bob" is not in allow\.db_users/);
    const denied = audit.events.filter((e) => e.event === 'db_cert.issue' && e.outcome === 'denied');
    expect(denied.at(-1)).toMatchObject({ bot: 'example', route: { username: 'bob' } });
    expect(denied.at(-1)?.reason).toMatch(/db_users/);
  });

  it('issues certificates that openssl verifies against the CA bundles', async () => {
    const dir = work!.dir;
    const files = {
      clientCa: path.join(dir, 'db-client-ca.crt'),
      serverCa: path.join(dir, 'db-server-ca.crt'),
      client: path.join(dir, 'alice.crt'),
      server: path.join(dir, 'server.crt'),
    };
    await writeFile(files.clientCa, await authority.dbClientCaBundle('example-server'));
    await writeFile(files.serverCa, await authority.caBundle('db-server'));
    await writeFile(files.client, alice.certificatePem);
    await writeFile(files.server, serverCertPem);
    const client = await run('openssl', [
      'verify',
      '-purpose',
      'sslclient',
      '-CAfile',
      files.clientCa,
      files.client,
    ]);
    expect(client, client.stderr).toMatchObject({ code: 0 });
    expect(client.stdout).toContain(': OK');
    const server = await run('openssl', [
      'verify',
      '-purpose',
      'sslserver',
      '-verify_hostname',
      'localhost',
      '-CAfile',
      files.serverCa,
      files.server,
    ]);
    expect(server, server.stderr).toMatchObject({ code: 0 });
    // The client CA must not vouch for the server certificate and vice versa.
    const crossed = await run('openssl', ['verify', '-CAfile', files.serverCa, files.client]);
    expect(crossed.code).not.toBe(0);
  });

  it('logs alice in with psql and sslmode=verify-full', async () => {
    const dir = work!.dir;
    const rootCert = path.join(dir, 'psql-root.crt');
    const cert = path.join(dir, 'psql-alice.crt');
    const key = path.join(dir, 'psql-alice.key');
    await writeFile(rootCert, alice.serverCaPem);
    await writeFile(cert, alice.certificatePem);
    await writeFile(key, alice.keys.privateKeyPem, { mode: 0o600 });
    await chmod(key, 0o600);
    const conninfo = [
      'host=localhost',
      `port=${pgServer().port}`,
      'dbname=example',
      'user=alice',
      'sslmode=verify-full',
      `sslrootcert=${rootCert}`,
      `sslcert=${cert}`,
      `sslkey=${key}`,
    ].join(' ');
    const result = await run('psql', ['-X', '-A', '-t', conninfo, '-c', 'select current_user']);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stdout.trim()).toBe('alice');
  });
});
