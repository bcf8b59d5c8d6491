import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { renderDatabaseArtifacts } from '../../src/credentials/formats.js';
import { DirectoryDestination } from '../../src/destinations/directory.js';
import { findPostgresBinaries, type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { generateRsaKeyPair } from '../../src/pki/keys.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';

export const SERVICE = 'bench-pg';
export const DATABASE = 'bench';
export const USER = 'alice';
/** Room for the 1,000 tunnelled connections of the memory measurement, plus pgbench and setup. */
export const MAX_CONNECTIONS = 1100;

const RESOURCES = (port: number) => `
kind: role
version: v6
metadata: { name: bench-role }
spec:
  allow:
    db_labels: { '*': '*' }
    db_names: [${DATABASE}]
    db_users: [${USER}]
    rules:
      - resources: [db_server, db]
        verbs: [read, list]
---
kind: db
version: v3
metadata: { name: ${SERVICE}, labels: { env: bench } }
spec:
  protocol: postgres
  uri: localhost:${port}
---
kind: bot
version: v1
metadata: { name: bench-bot }
spec: { roles: [bench-role] }
`;

/**
 * The output the bot would write for alice@bench-pg/bench (default format, RSA-2048 key, 8 h), from an
 * initialized authority, with the database at localhost:`port`.
 */
export async function issueBenchBundle(authority: Authority, port: number): Promise<CredentialBundle> {
  await authority.createResources(parseResources(RESOURCES(port), 'bench-resources.yaml'));
  const keys = await generateRsaKeyPair();
  const issued = await authority.issueDatabaseCertificate(
    'bench-bot',
    { service: SERVICE, database: DATABASE, username: USER },
    keys.publicKeyPem,
    8 * 3_600_000,
  );
  return {
    kind: 'database-credentials',
    version: 1,
    service: issued.db.service,
    protocol: issued.db.protocol,
    endpoint: issued.db.uri,
    serverName: issued.db.serverName,
    database: DATABASE,
    username: USER,
    format: '',
    serial: issued.serial,
    issuedAt: issued.issuedAt,
    expiresAt: issued.expires,
    files: renderDatabaseArtifacts('', {
      certificatePem: issued.certificatePem,
      privateKeyPem: keys.privateKeyPem,
      serverCaPem: issued.serverCaPem,
    }),
  };
}

/** The files of the bot's default directory output, as paths (what stunnel and libpq are given). */
export interface OutputFiles {
  dir: string;
  cert: string;
  key: string;
  /** The CA that signed the database server's certificate. */
  ca: string;
}

export interface ProxyBenchSetup {
  work: string;
  pg: StartedPostgres;
  binDir: string;
  output: OutputFiles;
  /** The certificate serial in the output (hex), to check which certificate the server saw. */
  serial: string;
  cleanup(): Promise<void>;
}

/**
 * A throwaway PostgreSQL server (TLS with client certificates only) whose certificate comes from an
 * in-process authority, and one directory output for alice@bench-pg/bench written as the bot writes it.
 */
export async function setUpProxyBench(log: (line: string) => void): Promise<ProxyBenchSetup> {
  const found = await findPostgresBinaries();
  if (!found)
    throw new Error(
      'PostgreSQL server binaries were not found under /usr/lib/postgresql; install `postgresql` (and its `pgbench`)',
    );
  // Under os.tmpdir(), mode 0711: the postgres OS user (the server runs as it when we are root) can traverse.
  const work = await mkdtemp(path.join(os.tmpdir(), 'broker-bench-proxy-'));
  await chmod(work, 0o711);
  let pg: StartedPostgres | undefined;
  try {
    const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
    await authority.initialize('bench');
    const serverCert = await authority.signDatabaseServer(['localhost'], { service: SERVICE });
    pg = await startPostgres({
      baseDir: path.join(work, 'pg'),
      tls: {
        serverCertPem: serverCert.certificatePem,
        serverKeyPem: serverCert.privateKeyPem,
        clientCaPem: serverCert.clientCaPem,
      },
      users: [USER],
      databases: [DATABASE],
      settings: { max_connections: String(MAX_CONNECTIONS), log_connections: 'off' },
    });
    log(`PostgreSQL ${pg.version} on ${pg.host}:${pg.port} (max_connections ${MAX_CONNECTIONS})`);
    const bundle = await issueBenchBundle(authority, pg.port);
    const dir = path.join(work, 'out');
    await new DirectoryDestination(dir).write(bundle);
    const output: OutputFiles = {
      dir,
      cert: path.join(dir, 'tlscert'),
      key: path.join(dir, 'key'),
      ca: path.join(dir, 'teleport-host-ca.crt'),
    };
    const started = pg;
    return {
      work,
      pg: started,
      binDir: found.binDir,
      output,
      serial: bundle.serial,
      cleanup: async () => {
        await started.stop();
        await rm(work, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await pg?.stop();
    await rm(work, { recursive: true, force: true });
    throw err;
  }
}
