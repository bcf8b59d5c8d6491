/**
 * The Secrets Manager path end to end with a real PostgreSQL server: the authority issues alice's
 * certificate, the `secretsmanager` destination writes the bundle to the Secrets Manager double (real SDK)
 * with a test connection that really logs in, and the Lambda client module reads it back and hands
 * `pgOptions` to `pg`, which logs in with verify-full TLS. Fails with an install message when the
 * PostgreSQL server binaries are missing.
 */
import path from 'node:path';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import {
  type CredentialBundle,
  clearCredentialCache,
  createCredentialClient,
  pgOptions,
} from '../../src/client/index.js';
import { SecretsManagerDestination } from '../../src/destinations/secretsmanager.js';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { generateRsaKeyPair } from '../../src/pki/keys.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { exampleResourcesYaml, issueBundle as issueTestBundle } from '../support/fixtures.js';
import { requirePostgres } from '../support/postgres.js';
import { tempDir } from '../support/temp.js';

/** The example (its role without a session cap) on the test server. */
const RESOURCES = (port: number) =>
  exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: `localhost:${port}` } });

/** Connects with `options`, runs `sql` and closes; a refused login rejects (no end() after a failed connect). */
async function query<T extends pg.QueryResultRow>(
  options: pg.ClientConfig,
  sql: string,
): Promise<T | undefined> {
  const client = new pg.Client({ ...options, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows[0];
  } finally {
    await client.end();
  }
}

describe('Lambda client module with a real PostgreSQL (bundle in the Secrets Manager double)', () => {
  const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
  let server: StartedPostgres | undefined;
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;
  let double: SecretsManagerDouble | undefined;
  let sm: SecretsManagerClient;
  let bundle: CredentialBundle;

  /** Issues alice a certificate (fresh key) and renders the bundle the bot would write. */
  const issueBundle = async () => issueTestBundle(authority, { keys: await generateRsaKeyPair() });

  beforeAll(async () => {
    await requirePostgres(); // fails (does not skip) with the install command when the server is missing
    work = await tempDir('client-pg');
    await authority.initialize();
    // db.example.internal is not resolvable: it exists only as the name the server certificate carries.
    const serverCert = await authority.signDatabaseServer(['db.example.internal'], {
      service: 'example-server',
    });
    server = await startPostgres({
      baseDir: path.join(work.dir, 'pg'),
      tls: {
        serverCertPem: serverCert.certificatePem,
        serverKeyPem: serverCert.privateKeyPem,
        clientCaPem: serverCert.clientCaPem,
      },
      users: ['alice', 'bob'],
      databases: ['example'],
    });
    await authority.createResources(parseResources(RESOURCES(server.port), 'resources.yaml'));
    bundle = await issueBundle();
    double = await SecretsManagerDouble.start();
    sm = double.client();
  });

  afterAll(async () => {
    sm?.destroy();
    await double?.close();
    await server?.stop();
    await work?.cleanup();
  });

  it('writes through a real test connection, then getBundle + pgOptions log alice in with verify-full', async () => {
    const secretId = 'broker/example/postgres';
    const tested: string[] = [];
    const dest = new SecretsManagerDestination({
      client: sm,
      secretId,
      createIfMissing: true,
      testConnection: async (b) => {
        const row = await query<{ current_user: string }>(pgOptions(b), 'SELECT current_user');
        tested.push(row?.current_user ?? '');
      },
    });
    await dest.write(bundle);
    expect(tested).toEqual(['alice']);

    clearCredentialCache();
    const creds = createCredentialClient({ secretId, client: sm });
    const got = await creds.getBundle();
    expect(got).toEqual(bundle);
    const row = await query<{ current_user: string; db: string; ssl: boolean }>(
      pgOptions(got),
      'SELECT current_user, current_database() AS db, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    expect(row).toEqual({ current_user: 'alice', db: 'example', ssl: true });
  });

  it('verifies the server against the bundle serverName, not the endpoint host pg dials', async () => {
    const port = server!.port;
    // The endpoint is an address the certificate also covers; the name checked is serverName.
    const viaIp = { ...bundle, endpoint: `127.0.0.1:${port}`, serverName: 'db.example.internal' };
    expect(await query(pgOptions(viaIp), 'SELECT 1 AS one')).toEqual({ one: 1 });
    // pg would check "localhost" (in the certificate) by itself; the bundle says another name: refused.
    const wrongName = { ...bundle, endpoint: `localhost:${port}`, serverName: 'other.example.internal' };
    await expect(query(pgOptions(wrongName), 'SELECT 1')).rejects.toThrow(
      /Hostname\/IP does not match certificate's altnames: Host: other\.example\.internal/,
    );
  });

  it('keeps AWSCURRENT when the real test connection is refused by the database', async () => {
    const secretId = 'broker/example/postgres-refused';
    const dest = new SecretsManagerDestination({
      client: sm,
      secretId,
      createIfMissing: true,
      testConnection: async (b) => {
        await query(pgOptions(b), 'SELECT 1');
      },
    });
    await dest.write(bundle);
    // A renewal that names another database user than its certificate's CN: PostgreSQL refuses it.
    const renewal = { ...(await issueBundle()), username: 'bob' };
    await expect(dest.write(renewal)).rejects.toThrow(
      /test connection failed: certificate authentication failed for user "bob"; AWSCURRENT is unchanged \(still version /,
    );
    expect(await dest.read()).toEqual(bundle);
  });
});
