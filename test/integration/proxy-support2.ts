/**
 * Shared pieces for the proxy integration tests: an authority with resources, a bundle written the way the
 * bot writes it, and a tunnel-mode proxy reading it.
 */
import pino from 'pino';
import { beforeAll, beforeEach } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { type OutputFormat, renderDatabaseArtifacts } from '../../src/credentials/formats.js';
import type { DbProtocol } from '../../src/credentials/route.js';
import { DirectoryDestination } from '../../src/destinations/directory.js';
import type { Logger } from '../../src/log.js';
import { generateRsaKeyPair, type KeyPairPem } from '../../src/pki/keys.js';
import { CredentialCache, DirectoryBundleSource } from '../../src/proxy/credentials.js';
import { mysqlTunnel } from '../../src/proxy/protocols/mysql-tunnel.js';
import { DatabaseProxy } from '../../src/proxy/proxy.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';

export const BOT = 'example';

/** Silent unless BROKER_TEST_LOG names a level (e.g. debug), then JSON on stderr. */
export function testLogger(): Logger {
  return pino({ level: process.env.BROKER_TEST_LOG ?? 'silent' }, pino.destination(2));
}

/** An initialized in-memory authority with one role for alice and the bot `example`. */
export async function newAuthority(): Promise<Authority> {
  const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
  await authority.initialize();
  await authority.createResources(
    parseResources(
      `
kind: role
version: v6
metadata: { name: example-role }
spec:
  allow:
    db_labels: { '*': '*' }
    db_names: [example]
    db_users: [alice]
    rules:
      - resources: [db_server, db]
        verbs: [read, list]
---
kind: bot
version: v1
metadata: { name: ${BOT} }
spec: { roles: [example-role] }
`,
      'roles.yaml',
    ),
  );
  return authority;
}

/** Registers a `db` resource (server name localhost, as the server certificate says). */
export async function addDatabase(
  authority: Authority,
  name: string,
  protocol: DbProtocol,
  uri: string,
): Promise<void> {
  await authority.createResources(
    parseResources(
      `
kind: db
version: v3
metadata: { name: ${name}, labels: { env: dev } }
spec:
  protocol: ${protocol}
  uri: '${uri}'
  tls: { server_name: localhost }
`,
      `${name}.yaml`,
    ),
  );
}

export interface WrittenBundle {
  bundle: CredentialBundle;
  keys: KeyPairPem;
}

/** Issues alice's certificate for `service` and writes the output to `dir`, as the bot does. */
export async function writeBundle(
  authority: Authority,
  dir: string,
  route: { service: string; database: string; username?: string },
  format: OutputFormat = '',
): Promise<WrittenBundle> {
  const username = route.username ?? 'alice';
  const keys = await generateRsaKeyPair();
  const issued = await authority.issueDatabaseCertificate(
    BOT,
    { service: route.service, database: route.database, username },
    keys.publicKeyPem,
  );
  const bundle: CredentialBundle = {
    kind: 'database-credentials',
    version: 1,
    service: issued.db.service,
    protocol: issued.db.protocol,
    endpoint: issued.db.uri,
    serverName: issued.db.serverName,
    database: route.database,
    username,
    format,
    serial: issued.serial,
    issuedAt: issued.issuedAt,
    expiresAt: issued.expires,
    files: renderDatabaseArtifacts(format, {
      certificatePem: issued.certificatePem,
      privateKeyPem: keys.privateKeyPem,
      serverCaPem: issued.serverCaPem,
    }),
  };
  await new DirectoryDestination(dir).write(bundle);
  return { bundle, keys };
}

export interface RunningProxy {
  port: number;
  proxy: DatabaseProxy;
  stop(): Promise<void>;
}

/** `broker proxy db --tunnel` on 127.0.0.1 (a free port) reading the directory output `dir`. */
export async function startTunnelProxy(dir: string): Promise<RunningProxy> {
  const log = testLogger();
  const creds = new CredentialCache(new DirectoryBundleSource(dir), { log });
  await creds.start();
  if (!creds.ready) {
    creds.stop();
    throw new Error(`the proxy found no valid bundle in ${dir}`);
  }
  const proxy = new DatabaseProxy({
    creds,
    log,
    tunnel: true,
    listen: { address: '127.0.0.1', port: 0 },
    handlers: { mysql: mysqlTunnel },
    startupTimeoutMs: 5_000,
    dialTimeoutMs: 5_000,
  });
  const address = await proxy.start();
  return {
    port: Number(address.slice(address.lastIndexOf(':') + 1)),
    proxy,
    stop: async () => {
      await proxy.stop(2_000);
      creds.stop();
    },
  };
}

/** Rejects when `p` takes longer than `ms`: a hang becomes a failure that says what hung. */
export async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `setup` once before the tests of the enclosing describe. When it fails (e.g. a database server is
 * not installed) every test fails with its error: vitest reports the tests of a failed beforeAll as
 * skipped, and a missing server must be a failure, never a skip.
 */
export function setupOnce(setup: () => Promise<void>): void {
  let failure: unknown;
  beforeAll(async () => {
    try {
      await setup();
    } catch (err) {
      failure = err;
    }
  });
  beforeEach(() => {
    if (failure) throw failure;
  });
}
