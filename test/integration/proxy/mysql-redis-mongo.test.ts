/**
 * `broker proxy db --tunnel` against real MariaDB and Redis servers and a TLS echo server standing in for
 * MongoDB (no MongoDB server can be installed from Debian): clients connect to the proxy without TLS or a
 * password, the proxy opens mutual TLS upstream with the bundle's certificate, and the server sees that
 * certificate. Fails (never skips) with an install hint when mariadb-server or redis-server is missing.
 */
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import { afterAll, describe, expect, it } from 'vitest';
import type { Authority } from '../../../src/authority/authority.js';
import { startRedis } from '../../support/devdb/redis.js';
import {
  addDatabase,
  newAuthority,
  type RunningProxy,
  setupOnce,
  startTunnelProxy,
  type WrittenBundle,
  within,
  writeBundle,
} from '../../support/proxy.js';
import { run } from '../../support/run.js';
import { tempDir } from '../../support/temp.js';
import { mariadbTunnelWorld, tunnelWorld } from '../../support/tunnel-world.js';

type ServerCert = Awaited<ReturnType<Authority['signDatabaseServer']>>;

/** Every error an ioredis client reports: the command's rejection and 'error' events. */
async function redisFailure(port: number): Promise<{ rejection: Error; events: Error[] }> {
  const events: Error[] = [];
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 5_000,
    // ioredis 6 sends CLIENT SETINFO first and ignores its errors, so an error line from the server (or
    // the proxy) in answer to it is never shown; without it, the ready check's INFO gets the error.
    disableClientInfo: true,
  });
  client.on('error', (err: Error) => events.push(err));
  try {
    await within(
      10_000,
      'the Redis command through the proxy',
      client.connect().then(() => client.ping()),
    );
  } catch (err) {
    return { rejection: err as Error, events };
  } finally {
    client.disconnect();
  }
  throw new Error('the Redis command should have failed');
}

describe('proxy tunnel: MariaDB (REQUIRE SUBJECT, real server)', () => {
  const world = mariadbTunnelWorld({ name: 'proxy-mariadb', databases: ['example'], unreachable: true });
  const db = () => world().server;

  it('issues a certificate whose subject is the one the account requires', async () => {
    const crt = path.join(world().dir, 'alice.crt');
    await writeFile(crt, world().alice.bundle.files.tlscert!);
    const out = await run('openssl', ['x509', '-in', crt, '-noout', '-subject', '-nameopt', 'compat']);
    expect(out.stdout.trim()).toBe('subject=/O=example/CN=alice');
    expect(db().version).toMatch(/MariaDB/);
  });

  it('mysql2 without TLS or password through the tunnel is alice over TLS upstream', async () => {
    const conn = await within(10_000, 'mysql2 connect through the proxy', world().mysql());
    try {
      const [who] = await conn.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u, DATABASE() AS d');
      expect(String(who[0]?.u)).toBe('alice@%');
      expect(who[0]?.d).toBe('example');
      const [cipher] = await conn.query<mysql.RowDataPacket[]>("SHOW SESSION STATUS LIKE 'Ssl_cipher'");
      expect(String(cipher[0]?.Value)).not.toBe('');
      const [version] = await conn.query<mysql.RowDataPacket[]>("SHOW SESSION STATUS LIKE 'Ssl_version'");
      expect(String(version[0]?.Value)).toMatch(/^TLSv1\.[23]$/);
      // Past the handshake the proxy relays bytes: a result larger than any handshake packet comes through.
      await conn.query('CREATE TABLE blobs (id INT PRIMARY KEY, body LONGBLOB)');
      const body = Buffer.alloc(3 * 1024 * 1024, 0x61);
      await conn.query('INSERT INTO blobs VALUES (1, ?)', [body]);
      const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT LENGTH(body) AS n, body FROM blobs');
      expect(rows[0]?.n).toBe(body.length);
      expect(Buffer.compare(rows[0]?.body as Buffer, body)).toBe(0);
    } finally {
      await conn.end();
    }
  });

  const cli = (extra: readonly string[]) =>
    run('mariadb', [
      '--no-defaults',
      '--protocol=TCP',
      '-h',
      '127.0.0.1',
      '-P',
      String(world().proxy.port),
      '-u',
      'alice',
      ...extra,
      '--batch',
      '--skip-column-names',
      'example',
      '-e',
      "SELECT CURRENT_USER(), (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_VERSION')",
    ]);

  // The 10.11 client's TLS is on but opportunistic by default: the greeting without CLIENT_SSL makes it
  // go on in plain text, so no flag is needed; --skip-ssl (or --ssl=0) says so explicitly.
  it.each([
    { label: '--skip-ssl', flags: ['--skip-ssl'] },
    { label: '--ssl=0', flags: ['--ssl=0'] },
    { label: 'no TLS flag', flags: [] },
  ])('the mariadb CLI through the tunnel ($label) is alice', async ({ flags }) => {
    const out = await cli(flags);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout.trim()).toMatch(/^alice@%\tTLSv1\.[23]$/);
  });

  it('the mariadb CLI insisting on a verified TLS connection to the tunnel gets a clear error', async () => {
    const out = await cli(['--ssl-verify-server-cert']);
    expect(out.code).toBe(1);
    expect(out.stderr.trim()).toBe(
      'ERROR 2026 (HY000): TLS/SSL error: SSL is required, but the server does not support it',
    );
  });

  it('refuses a client asking for bob with an ERR naming both users, and keeps serving', async () => {
    const err = await world()
      .mysql({ user: 'bob' })
      .then(
        async (c) => {
          await c.end();
          throw new Error('bob should have been refused');
        },
        (e: Error & { errno?: number; sqlState?: string }) => e,
      );
    expect(err.message).toBe(
      'broker proxy: the client asked for user "bob" but the certificate is for user "alice"',
    );
    expect(err.errno).toBe(1045);
    expect(err.sqlState).toBe('28000');
    const conn = await world().mysql();
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
    expect(rows[0]?.u).toBe('alice@%');
    await conn.end();
  });

  it('MariaDB itself refuses alice without the certificate and without TLS (REQUIRE SUBJECT is in force)', async () => {
    const direct = (ssl: mysql.ConnectionOptions['ssl']) =>
      mysql.createConnection({
        host: '127.0.0.1',
        port: db().port,
        user: 'alice',
        database: 'example',
        connectTimeout: 5_000,
        ...(ssl ? { ssl } : {}),
      });
    const serverCa = world().alice.bundle.files['teleport-host-ca.crt']!;
    await expect(direct({ ca: serverCa })).rejects.toThrow(/Access denied for user 'alice'@'127\.0\.0\.1'/);
    // Without TLS the account's X509 requirement fails first, with the same answer.
    await expect(direct(undefined)).rejects.toThrow(/Access denied for user 'alice'@'127\.0\.0\.1'/);
    // The same account with the bundle's certificate logs in directly: the certificate is what admits it.
    const conn = await direct({
      ca: serverCa,
      cert: world().alice.bundle.files.tlscert!,
      key: world().alice.bundle.files.key!,
    });
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
    expect(rows[0]?.u).toBe('alice@%');
    await conn.end();
  });

  it('the dev server refuses TCP without TLS even for an account without a certificate requirement', async () => {
    await db().sql("CREATE USER 'carol'@'%'");
    try {
      const carol = (ssl?: mysql.SslOptions) =>
        mysql.createConnection({
          host: '127.0.0.1',
          port: db().port,
          user: 'carol',
          connectTimeout: 5_000,
          ...(ssl ? { ssl } : {}),
        });
      // MariaDB 10.11 answers a require_secure_transport violation with a plain "Access denied".
      await expect(carol()).rejects.toThrow(/Access denied for user 'carol'@'127\.0\.0\.1'/);
      const conn = await carol({ ca: world().alice.bundle.files['teleport-host-ca.crt']! });
      const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
      expect(rows[0]?.u).toBe('carol@%');
      await conn.end();
    } finally {
      await db().sql("DROP USER 'carol'@'%'");
    }
  });

  it('a database that cannot be reached gives the mysql2 client a broker proxy error, not a hang', async () => {
    const started = Date.now();
    const attempt = mysql.createConnection({
      host: '127.0.0.1',
      port: world().down!.port,
      user: 'alice',
      database: 'example',
      connectTimeout: 8_000,
    });
    const err = await within(
      8_000,
      'mysql2 connect through the proxy to a dead upstream',
      attempt.then(
        async (c) => {
          await c.end();
          throw new Error('the connection should have failed');
        },
        (e: Error) => e,
      ),
    );
    expect(err.message).toMatch(
      /^broker proxy: could not reach maria-down at 127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('proxy tunnel: Redis (TLS client certificates, real server)', () => {
  const world = tunnelWorld({
    name: 'proxy-redis',
    service: 'cache',
    protocol: 'redis',
    host: 'localhost',
    start: (baseDir, tls) => startRedis({ baseDir, tls }),
    unreachable: true,
  });
  const redis = () => world().server;

  it('ioredis without TLS through the tunnel does SET and GET on the real server', async () => {
    expect(redis().version).toMatch(/^\d+\.\d+\.\d+$/);
    const client = new Redis({
      host: '127.0.0.1',
      port: world().proxy.port,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    try {
      await within(10_000, 'ioredis connect through the proxy', client.connect());
      expect(await client.set('greeting', 'hello through the tunnel')).toBe('OK');
      expect(await client.get('greeting')).toBe('hello through the tunnel');
      const big = 'x'.repeat(2 * 1024 * 1024);
      await client.set('big', big);
      expect(await client.strlen('big')).toBe(big.length);
      expect(await client.get('big')).toBe(big);
    } finally {
      client.disconnect();
    }
    // The value is in the server the proxy reached, not somewhere else.
    expect(await redis().cli(['GET', 'greeting'])).toBe('hello through the tunnel');
    // And it arrived over TLS: the server counts the connection on its TLS listener only.
    expect(await redis().cli(['CONFIG', 'GET', 'port'])).toBe('port\n0');
  });

  it('Redis itself refuses a TLS client without a certificate and accepts the bundle certificate', async () => {
    const serverCa = world().alice.bundle.files['teleport-host-ca.crt']!;
    const noCert = new Redis({
      host: '127.0.0.1',
      port: redis().port,
      tls: { ca: serverCa, servername: 'localhost' },
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 5_000,
    });
    const events: Error[] = [];
    noCert.on('error', (e: Error) => events.push(e));
    const refused = await within(
      10_000,
      'a certificate-less TLS client',
      noCert
        .connect()
        .then(() => noCert.ping())
        .then(
          () => undefined,
          (e: Error) => e,
        ),
    );
    noCert.disconnect();
    expect(refused).toBeInstanceOf(Error);
    // TLS 1.3: the server checks the client certificate after the client's handshake finished, and
    // aborts with a "certificate required" alert.
    expect([refused, ...events].map((e) => e?.message).join('\n')).toMatch(
      /certificate required|alert|Connection is closed|ECONNRESET/i,
    );

    const withCert = new Redis({
      host: '127.0.0.1',
      port: redis().port,
      tls: {
        ca: serverCa,
        cert: world().alice.bundle.files.tlscert!,
        key: world().alice.bundle.files.key!,
        servername: 'localhost',
      },
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    try {
      await withCert.connect();
      expect(await withCert.ping()).toBe('PONG');
    } finally {
      withCert.disconnect();
    }
  });

  it('with the database down, ioredis sees a RESP error from the proxy naming it', async () => {
    const { rejection, events } = await redisFailure(world().down!.port);
    const messages = [rejection, ...events].map((e) => e.message);
    expect(messages.join('\n')).toMatch(/broker proxy: .*ECONNREFUSED/);
  });
});

describe('proxy tunnel: MongoDB (TLS from the first byte, against a mutual-TLS echo server)', () => {
  let authority: Authority;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let serverCert: ServerCert;
  let alice: WrittenBundle;
  let echo: tls.Server | undefined;
  let proxy: RunningProxy | undefined;
  const seen: { cn: string | undefined; serial: string; authorized: boolean }[] = [];

  setupOnce(async () => {
    work = await tempDir('proxy-mongo');
    authority = await newAuthority();
    serverCert = await authority.signDatabaseServer(['localhost'], { service: 'docs' });
    const server = tls.createServer(
      {
        cert: serverCert.certificatePem,
        key: serverCert.privateKeyPem,
        ca: serverCert.clientCaPem,
        requestCert: true,
        rejectUnauthorized: true,
      },
      (socket) => {
        const peer = socket.getPeerCertificate();
        const cn = peer.subject?.CN;
        seen.push({
          cn: Array.isArray(cn) ? cn[0] : cn,
          serial: peer.serialNumber,
          authorized: socket.authorized,
        });
        socket.on('error', () => undefined);
        socket.pipe(socket);
      },
    );
    echo = server;
    await new Promise<void>((resolve, reject) =>
      server.once('error', reject).listen(0, '127.0.0.1', resolve),
    );
    const port = (server.address() as net.AddressInfo).port;
    await addDatabase(authority, 'docs', 'mongodb', `localhost:${port}`);
    alice = await writeBundle(
      authority,
      path.join(work.dir, 'out'),
      { service: 'docs', database: 'example' },
      'mongo',
    );
    proxy = await startTunnelProxy(path.join(work.dir, 'out'));
  });

  afterAll(async () => {
    await proxy?.stop();
    await new Promise<void>((resolve) => (echo ? echo.close(() => resolve()) : resolve()));
    await work?.cleanup();
  });

  it('relays a plain TCP client to the server over mutual TLS with the bundle certificate', async () => {
    const payload = Buffer.concat([Buffer.from('hello mongo\n'), Buffer.alloc(256 * 1024, 7)]);
    const echoed = await within(
      10_000,
      'the echo through the proxy',
      new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        let got = 0;
        const socket = net.connect({ host: '127.0.0.1', port: proxy!.port }, () => socket.write(payload));
        socket.on('data', (d: Buffer) => {
          chunks.push(d);
          got += d.length;
          if (got >= payload.length) {
            socket.end();
            resolve(Buffer.concat(chunks));
          }
        });
        socket.on('error', reject);
        socket.on('close', () => reject(new Error(`closed after ${got} of ${payload.length} bytes`)));
      }),
    );
    expect(Buffer.compare(echoed, payload)).toBe(0);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.cn).toBe('alice');
    expect(seen[0]?.authorized).toBe(true);
    expect(BigInt(`0x${seen[0]?.serial}`)).toBe(BigInt(`0x${alice.bundle.serial}`));
  });

  it('writes mongo.crt (certificate then key) and mongo.cas that openssl accepts', async () => {
    const out = path.join(work.dir, 'out');
    const crt = path.join(out, 'mongo.crt');
    const cas = path.join(out, 'mongo.cas');
    const files = alice.bundle.files;
    expect(files['mongo.crt']).toMatch(
      /^-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----\n-----BEGIN/,
    );
    expect(files['mongo.crt']).toMatch(/-----BEGIN (RSA )?PRIVATE KEY-----/);

    const subject = await run('openssl', ['x509', '-in', crt, '-noout', '-subject']);
    expect(subject.code).toBe(0);
    expect(subject.stdout).toMatch(/CN ?= ?alice\b/);
    const key = await run('openssl', ['pkey', '-in', crt, '-noout']);
    expect(key.stderr).toBe('');
    expect(key.code).toBe(0);
    // The key in mongo.crt belongs to the certificate in it.
    const pub = await run('openssl', ['pkey', '-in', crt, '-pubout']);
    expect(pub.stdout.trim()).toBe(
      new X509Certificate(files.tlscert!).publicKey.export({ type: 'spki', format: 'pem' }).toString().trim(),
    );

    const clientCa = path.join(work.dir, 'db-client-ca.crt');
    await writeFile(clientCa, await authority.dbClientCaBundle('docs'));
    const verifyClient = await run('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', clientCa, crt]);
    expect(verifyClient.stdout.trim()).toBe(`${crt}: OK`);
    expect(verifyClient.code).toBe(0);

    const serverCrt = path.join(work.dir, 'server.crt');
    await writeFile(serverCrt, serverCert.certificatePem);
    const verifyServer = await run('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', cas, serverCrt]);
    expect(verifyServer.stdout.trim()).toBe(`${serverCrt}: OK`);
    expect(verifyServer.code).toBe(0);
  });
});
