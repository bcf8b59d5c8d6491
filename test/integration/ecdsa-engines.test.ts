/**
 * Which key algorithms the database engines accept, against real servers and real drivers on loopback: an
 * ECDSA P-256 client key (what `key_algorithm: ecdsa-p256` makes) signed by an RSA-2048 CA and by an ECDSA
 * P-256 CA (an authority with `caKeyAlgorithm: 'ecdsa-p256'`), and the RSA-2048 key beside it. Each server
 * is set up as `broker auth sign --format=db` sets it up (server certificate from the db-server CA, trust in
 * the service's own client CA, certificate login), and each login must come out as the certificate's user.
 *
 * PostgreSQL (embedded or Debian), MariaDB, Redis and FerretDB (a MongoDB-wire server, Go's crypto/tls, built
 * by .ci/ferretdb.sh) are real servers; these tests fail, never skip, when one is missing. No MongoDB or
 * CockroachDB server can be installed here (README, "Key algorithms").
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { renderDatabaseArtifacts } from '../../src/credentials/formats.js';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { generateKeyPairOf, type KeyAlgorithm } from '../../src/pki/keys.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { type StartedFerretdb, startFerretdb } from '../support/devdb/ferretdb.js';
import { type StartedMariadb, startMariadb } from '../support/devdb/mariadb.js';
import { type StartedRedis, startRedis } from '../support/devdb/redis.js';
import { openssl, writeFiles } from '../support/openssl.js';
import { requirePostgres } from '../support/postgres.js';
import { setupOnce, within } from '../support/proxy.js';
import { tempDir } from '../support/temp.js';

const RESOURCES = `
kind: role
version: v6
metadata: { name: app-role }
spec:
  allow: { db_labels: { '*': '*' }, db_names: [appdb], db_users: [alice] }
---
kind: db
version: v3
metadata: { name: pg-db }
spec: { protocol: postgres, uri: 'localhost:5432', tls: { server_name: localhost } }
---
kind: db
version: v3
metadata: { name: maria-db }
spec: { protocol: mysql, uri: '127.0.0.1:3306', tls: { server_name: localhost } }
---
kind: db
version: v3
metadata: { name: redis-db }
spec: { protocol: redis, uri: 'localhost:6379', tls: { server_name: localhost } }
---
kind: db
version: v3
metadata: { name: mongo-db }
spec: { protocol: mongodb, uri: 'localhost:27017', tls: { server_name: localhost } }
---
kind: bot
version: v1
metadata: { name: app }
spec: { roles: [app-role] }
`;

interface ClientFiles {
  certificatePem: string;
  privateKeyPem: string;
  serverCaPem: string;
}

/** An authority whose CAs have `caAlgorithm` keys, with the engines' db resources. */
async function authorityWith(caAlgorithm: KeyAlgorithm): Promise<Authority> {
  const authority = new Authority({
    store: new MemoryStateStore(),
    audit: new MemoryAuditLog(),
    caKeyAlgorithm: caAlgorithm,
  });
  await authority.initialize('ecdsa');
  await authority.createResources(parseResources(RESOURCES, 'ecdsa-resources.yaml'));
  return authority;
}

/** What a bot output holds: a fresh `keyAlgorithm` key and the certificate the authority issued for it. */
async function issue(
  authority: Authority,
  service: string,
  keyAlgorithm: KeyAlgorithm,
): Promise<ClientFiles> {
  const keys = await generateKeyPairOf(keyAlgorithm);
  const issued = await authority.issueDatabaseCertificate(
    'app',
    { service, database: 'appdb', username: 'alice' },
    keys.publicKeyPem,
  );
  return {
    certificatePem: issued.certificatePem,
    privateKeyPem: keys.privateKeyPem,
    serverCaPem: issued.serverCaPem,
  };
}

const CA_ALGORITHMS: KeyAlgorithm[] = ['rsa2048', 'ecdsa-p256'];
const KEY_ALGORITHMS: KeyAlgorithm[] = ['ecdsa-p256', 'rsa2048'];

describe.each(CA_ALGORITHMS)('CAs with %s keys', (caAlgorithm) => {
  let authority: Authority | undefined;
  let work: { dir: string; cleanup: () => Promise<void> } | undefined;
  let postgres: StartedPostgres | undefined;
  let mariadb: StartedMariadb | undefined;
  let redis: StartedRedis | undefined;
  let ferretdb: StartedFerretdb | undefined;

  setupOnce(async () => {
    await requirePostgres();
    work = await tempDir(`ecdsa-${caAlgorithm}`);
    authority = await authorityWith(caAlgorithm);
    const server = async (service: string) => {
      const s = await authority!.signDatabaseServer(['localhost', '127.0.0.1'], { service });
      return { serverCertPem: s.certificatePem, serverKeyPem: s.privateKeyPem, clientCaPem: s.clientCaPem };
    };
    [postgres, mariadb, redis, ferretdb] = await Promise.all([
      server('pg-db').then((tls) =>
        startPostgres({ baseDir: path.join(work!.dir, 'pg'), tls, users: ['alice'], databases: ['appdb'] }),
      ),
      server('maria-db').then((tls) =>
        startMariadb({
          baseDir: path.join(work!.dir, 'mariadb'),
          tls,
          users: [{ name: 'alice', subject: '/O=app/CN=alice' }],
          databases: ['appdb'],
        }),
      ),
      server('redis-db').then((tls) => startRedis({ baseDir: path.join(work!.dir, 'redis'), tls })),
      server('mongo-db').then((tls) => startFerretdb({ baseDir: path.join(work!.dir, 'ferretdb'), tls })),
    ]);
  });

  afterAll(async () => {
    await Promise.allSettled([postgres?.stop(), mariadb?.stop(), redis?.stop(), ferretdb?.stop()]);
    await work?.cleanup();
  });

  it('the CA certificates carry the configured key and openssl verifies an ECDSA client certificate', async () => {
    const files = await issue(authority!, 'pg-db', 'ecdsa-p256');
    const dir = path.join(work!.dir, 'openssl');
    await mkdir(dir, { recursive: true });
    await writeFiles(dir, {
      'ca.pem': await authority!.dbClientCaBundle('pg-db'),
      'client.pem': files.certificatePem,
    });
    const text = (await openssl(['x509', '-noout', '-text', '-in', 'client.pem'], dir)).stdout;
    expect(text).toMatch(/Public Key Algorithm: id-ecPublicKey/);
    expect(text).toMatch(/NIST CURVE: P-256|ASN1 OID: prime256v1/);
    expect(text).toMatch(
      caAlgorithm === 'ecdsa-p256'
        ? /Signature Algorithm: ecdsa-with-SHA256/
        : /Signature Algorithm: sha256WithRSAEncryption/,
    );
    // An EC key cannot encipher: digitalSignature only.
    expect(text).toMatch(/X509v3 Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    const verified = await openssl(
      ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', 'ca.pem', 'client.pem'],
      dir,
    );
    expect(verified.code, verified.stderr).toBe(0);
  });

  describe.each(KEY_ALGORITHMS)('client key %s', (keyAlgorithm) => {
    it('MongoDB wire (FerretDB, the mongo format, the mongodb driver) answers ping', async () => {
      const files = await issue(authority!, 'mongo-db', keyAlgorithm);
      const dir = path.join(work!.dir, `mongo-${keyAlgorithm}`);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const rendered = renderDatabaseArtifacts('mongo', files);
      await writeFile(path.join(dir, 'mongo.crt'), rendered['mongo.crt'] as string, { mode: 0o600 });
      await writeFile(path.join(dir, 'mongo.cas'), rendered['mongo.cas'] as string, { mode: 0o600 });
      const client = new MongoClient(`mongodb://localhost:${ferretdb!.port}/`, {
        tls: true,
        tlsCertificateKeyFile: path.join(dir, 'mongo.crt'),
        tlsCAFile: path.join(dir, 'mongo.cas'),
        directConnection: true,
        serverSelectionTimeoutMS: 8_000,
        connectTimeoutMS: 5_000,
      });
      try {
        const pong = await within(
          20_000,
          'the MongoDB ping',
          (async () => (await client.connect()).db('admin').command({ ping: 1 }))(),
        );
        expect(pong.ok).toBe(1);
      } finally {
        await client.close(true);
      }
    });

    it('PostgreSQL (cert authentication, node-postgres) logs in as the certificate user', async () => {
      const files = await issue(authority!, 'pg-db', keyAlgorithm);
      const client = new pg.Client({
        host: 'localhost',
        port: postgres!.port,
        database: 'appdb',
        user: 'alice',
        connectionTimeoutMillis: 10_000,
        ssl: {
          ca: files.serverCaPem,
          cert: files.certificatePem,
          key: files.privateKeyPem,
          servername: 'localhost',
          rejectUnauthorized: true,
        },
      });
      client.on('error', () => {});
      await within(20_000, 'the PostgreSQL login', client.connect());
      try {
        const { rows } = await client.query<{ u: string; ssl: boolean }>(
          'SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
        );
        expect(rows[0]).toEqual({ u: 'alice', ssl: true });
      } finally {
        await client.end();
      }
    });

    it('MariaDB (REQUIRE SUBJECT, mysql2) logs in as the certificate user', async () => {
      const files = await issue(authority!, 'maria-db', keyAlgorithm);
      const conn = await within(
        20_000,
        'the MariaDB login',
        mysql.createConnection({
          host: '127.0.0.1',
          port: mariadb!.port,
          user: 'alice',
          database: 'appdb',
          connectTimeout: 10_000,
          ssl: { ca: files.serverCaPem, cert: files.certificatePem, key: files.privateKeyPem },
        }),
      );
      try {
        const [rows] = await conn.query('SELECT CURRENT_USER() AS u');
        expect(String((rows as { u: string }[])[0]?.u)).toMatch(/^alice@/);
      } finally {
        await conn.end();
      }
    });

    it('Redis (tls-auth-clients, ioredis) answers PING', async () => {
      const files = await issue(authority!, 'redis-db', keyAlgorithm);
      const client = new Redis({
        host: '127.0.0.1',
        port: redis!.port,
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        connectTimeout: 5_000,
        disableClientInfo: true,
        tls: {
          ca: files.serverCaPem,
          cert: files.certificatePem,
          key: files.privateKeyPem,
          servername: 'localhost',
        },
      });
      client.on('error', () => {});
      try {
        expect(
          await within(
            15_000,
            'the Redis PING',
            client.connect().then(() => client.ping()),
          ),
        ).toBe('PONG');
      } finally {
        client.disconnect();
      }
    });
  });
});
