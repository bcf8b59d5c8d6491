/**
 * What a client may do through `broker proxy db --tunnel` once its connection is up, against real MariaDB,
 * Redis and PostgreSQL servers: the tunnel checks the user (and the database, where the output names one)
 * at the start, and the attacks here try to change them afterwards — MySQL COM_CHANGE_USER and COM_INIT_DB,
 * a command smuggled inside another packet while the server reads LOAD DATA LOCAL contents or a change-user
 * authentication reply, Redis AUTH / HELLO AUTH / RESET (also as inline commands), and a PostgreSQL startup
 * naming another database. Each server also has an account the bot must never become (MariaDB `carol` with no
 * password, Redis ACL user `other`), so an attack that gets through shows as that account.
 */
import net from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { Authority } from '../../../src/authority/authority.js';
import { DirectoryDestination } from '../../../src/destinations/directory.js';
import { type StartedPostgres, startPostgres } from '../../../src/devdb/postgres.js';
import { startRedis } from '../../support/devdb/redis.js';
import {
  changeUser,
  describePacket,
  MysqlWire,
  mysqlPacket,
  query,
  WIRE_CAPS,
} from '../../support/mysql-wire.js';
import { requirePostgres } from '../../support/postgres.js';
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

/** What a rejected promise rejected with; fails when it resolves. */
async function rejection<T>(p: Promise<T>, what: string): Promise<Error & Record<string, unknown>> {
  return p.then(
    () => {
      throw new Error(`${what} should have been refused`);
    },
    (e: Error & Record<string, unknown>) => e,
  );
}

describe('tunnel in session: MariaDB', () => {
  const world = mariadbTunnelWorld({
    name: 'proxy-in-session-mariadb',
    databases: ['example', 'secretdb'],
    // An account anyone reaching the server may become: no password, no certificate requirement.
    prepare: (server) =>
      server.sql(
        "CREATE USER 'carol'@'%'; GRANT ALL ON secretdb.* TO 'carol'@'%';" +
          "CREATE TABLE example.t (a TEXT); CREATE TABLE secretdb.s (v TEXT); INSERT INTO secretdb.s VALUES ('the secret');",
      ),
  });
  const db = () => world().server;

  const viaProxy = (database = 'example') =>
    within(10_000, 'mysql2 connect through the proxy', world().mysql({ database }));

  /** Open sessions of `user`, from the server's own process list (no tunnel in between). */
  const sessionsOf = async (user: string) =>
    Number(await db().sql(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '${user}'`));

  it('refuses mysql2 changeUser to another user with an ERR naming both, and closes the connection', async () => {
    const conn = await viaProxy();
    conn.on('error', () => undefined);
    const err = await rejection(conn.changeUser({ user: 'carol' }), 'changeUser to carol');
    expect(err.message).toBe(
      'broker proxy: the client asked to change to user "carol" but the certificate is for user "alice"',
    );
    expect(err.errno).toBe(1045);
    expect(err.sqlState).toBe('28000');
    await expect(conn.query('SELECT CURRENT_USER()')).rejects.toThrow();
    expect(await sessionsOf('carol')).toBe(0);
    const metrics = await world().proxy.proxy.metrics.connections.get();
    expect(metrics.values.find((v) => v.labels.outcome === 'user_mismatch')?.value).toBeGreaterThanOrEqual(1);
  });

  it('refuses a raw COM_CHANGE_USER to a password-less account, which would otherwise log in as it', async () => {
    const { wire } = await MysqlWire.login(world().proxy.port, 'alice', 'example');
    try {
      wire.send(0, changeUser('carol', 'secretdb'));
      const answer = await wire.next();
      // Today's attack: the server asks for carol's (empty) password with an auth switch, and takes it.
      if (answer?.payload[0] === 0xfe) {
        wire.send(2, Buffer.alloc(0));
        await wire.next();
        wire.send(0, query('SELECT CURRENT_USER(), (SELECT v FROM secretdb.s)'));
      }
      expect(answer && describePacket(answer)).toBe(
        'ERR 1045 broker proxy: the client asked to change to user "carol" but the certificate is for user "alice"',
      );
      expect(await wire.closedWithin(2_000)).toBe(true);
      expect(await sessionsOf('carol')).toBe(0);
    } finally {
      wire.destroy();
    }
  });

  it('changeUser to the certificate user still works and resets the session', async () => {
    const conn = await viaProxy();
    try {
      await conn.query('SET @marker = 42');
      await conn.changeUser({ user: 'alice' });
      const [rows] = await conn.query<mysql.RowDataPacket[]>(
        'SELECT CURRENT_USER() AS u, DATABASE() AS d, @marker AS m',
      );
      expect(rows[0]).toEqual({ u: 'alice@%', d: 'example', m: null });
      // And again, naming the output's database.
      await conn.changeUser({ user: 'alice', database: 'example' });
      const [again] = await conn.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
      expect(again[0]?.u).toBe('alice@%');
    } finally {
      await conn.end();
    }
  });

  it('refuses changeUser to the certificate user naming another database', async () => {
    const conn = await viaProxy();
    conn.on('error', () => undefined);
    const err = await rejection(
      conn.changeUser({ user: 'alice', database: 'secretdb' }),
      'changeUser to secretdb',
    );
    expect(err.message).toBe(
      'broker proxy: the client asked for database "secretdb" but the output is for database "example"',
    );
    expect(err.errno).toBe(1044);
    await expect(conn.query('SELECT 1')).rejects.toThrow();
  });

  it('refuses a login naming another database with an ERR naming both, and keeps serving', async () => {
    const err = await rejection(viaProxy('secretdb'), 'a login to secretdb');
    expect(err.message).toBe(
      'broker proxy: the client asked for database "secretdb" but the output is for database "example"',
    );
    expect(err.errno).toBe(1044);
    expect(err.sqlState).toBe('42000');
    const conn = await viaProxy();
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT DATABASE() AS d');
    expect(rows[0]?.d).toBe('example');
    await conn.end();
  });

  it('offers no compression, and refuses a client that asks for it anyway', async () => {
    // mysql2 compresses only when the greeting offers it: through the tunnel it does not.
    const conn = await within(
      10_000,
      'mysql2 with compress: true',
      mysql.createConnection({
        host: '127.0.0.1',
        port: world().proxy.port,
        user: 'alice',
        database: 'example',
        compress: true,
      }),
    );
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT 1 AS one');
    expect(rows[0]?.one).toBe(1);
    await conn.end();
    const CLIENT_COMPRESS = 0x20;
    const { wire, result } = await MysqlWire.login(
      world().proxy.port,
      'alice',
      'example',
      WIRE_CAPS | CLIENT_COMPRESS,
    );
    wire.destroy();
    expect(describePacket(result)).toBe(
      'ERR 1043 broker proxy: the tunnel does not relay compressed connections; connect without compression',
    );
  });

  it("refuses the mariadb CLI's `use secretdb` (COM_INIT_DB) and allows `use example`", async () => {
    const cli = (sql: string) =>
      run('mariadb', [
        '--no-defaults',
        '--protocol=TCP',
        '-h',
        '127.0.0.1',
        '-P',
        String(world().proxy.port),
        '-u',
        'alice',
        '--skip-ssl',
        '--skip-reconnect',
        '--batch',
        '--skip-column-names',
        'example',
        '-e',
        sql,
      ]);
    const refused = await cli('use secretdb; SELECT v FROM s');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      'broker proxy: the client asked for database "secretdb" but the output is for database "example"',
    );
    expect(refused.stdout).not.toContain('the secret');
    const allowed = await cli('use example; SELECT DATABASE()');
    expect(allowed.stderr).toBe('');
    expect(allowed.stdout.trim()).toBe('example');
  });

  it('a command smuggled inside a packet the server would skip while reading LOAD DATA LOCAL never runs', async () => {
    const { wire, result } = await MysqlWire.login(world().proxy.port, 'alice', 'example');
    try {
      expect(result.payload[0]).toBe(0x00);
      wire.send(0, query("LOAD DATA LOCAL INFILE 'x' INTO TABLE t"));
      const answer = await wire.next();
      // The server must not ask for the file: while it reads one, an out-of-order packet makes it skip
      // only the header, and the payload (a command of its own) is read as the next command.
      expect(answer && describePacket(answer)).toMatch(/^ERR \d+ /);
      const smuggled = Buffer.concat([
        mysqlPacket(2, Buffer.alloc(0)),
        mysqlPacket(0, changeUser('carol', 'secretdb')),
      ]);
      wire.send(0, smuggled);
      const after = await wire.drain();
      // The auth switch for carol would be a 0xfe packet: it never comes.
      expect(after.map(describePacket).join('\n')).not.toMatch(/mysql_native_password/);
      wire.send(2, Buffer.alloc(0)); // carol's (empty) password, had the switch come
      wire.send(0, query('SELECT CURRENT_USER()'));
      expect((await wire.drain()).map(describePacket).join('\n')).not.toContain('carol@');
      expect(await sessionsOf('carol')).toBe(0);
    } finally {
      wire.destroy();
    }
  });

  it('a command smuggled inside an out-of-order change-user authentication reply never runs', async () => {
    const { wire } = await MysqlWire.login(world().proxy.port, 'alice', 'example');
    try {
      // Naming another client plugin makes the server ask again (an auth switch) and read a reply.
      wire.send(0, changeUser('alice', 'example', 'client_ed25519'));
      await wire.next();
      wire.send(0, mysqlPacket(0, changeUser('carol', 'secretdb')));
      await wire.drain();
      wire.send(2, Buffer.alloc(0));
      await wire.drain();
      wire.send(0, query('SELECT CURRENT_USER(), (SELECT v FROM secretdb.s)'));
      expect((await wire.drain()).map(describePacket).join('\n')).not.toContain('the secret');
      expect(await sessionsOf('carol')).toBe(0);
    } finally {
      wire.destroy();
    }
  });
});

describe('tunnel in session: Redis', () => {
  const world = tunnelWorld({
    name: 'proxy-in-session-redis',
    service: 'cache',
    protocol: 'redis',
    host: 'localhost',
    start: (baseDir, tls) => startRedis({ baseDir, tls }),
    // Another ACL user, and one named as the certificate's user.
    prepare: async (server) => {
      await server.cli(['ACL', 'SETUSER', 'other', 'on', '>otherpass', '~*', '+@all']);
      await server.cli(['ACL', 'SETUSER', 'alice', 'on', '>alicepass', '~*', '+@all']);
    },
  });
  const redis = () => world().server;

  /** An ioredis client through the proxy; errors after a refusal are expected and kept. */
  async function client(): Promise<{ c: Redis; events: Error[] }> {
    const events: Error[] = [];
    const c = new Redis({
      host: '127.0.0.1',
      port: world().proxy.port,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      disableClientInfo: true,
    });
    c.on('error', (e: Error) => events.push(e));
    await within(10_000, 'ioredis connect through the proxy', c.connect());
    return { c, events };
  }

  /** Users of the server's open client connections, from its own CLIENT LIST. */
  const serverUsers = async () =>
    [...(await redis().cli(['CLIENT', 'LIST'])).matchAll(/ user=(\S+)/g)].map((m) => m[1]);

  const REFUSED_OTHER =
    /broker proxy: the client asked to authenticate as user "other" but the certificate is for user "alice"/;

  it('refuses AUTH as another user and closes the connection', async () => {
    const { c } = await client();
    try {
      expect(await c.ping()).toBe('PONG');
      const err = await rejection(c.call('AUTH', 'other', 'otherpass'), 'AUTH other');
      expect(err.message).toMatch(REFUSED_OTHER);
      expect(await serverUsers()).not.toContain('other');
      await expect(c.ping()).rejects.toThrow();
    } finally {
      c.disconnect();
    }
  });

  it('refuses HELLO 3 AUTH as another user', async () => {
    const { c } = await client();
    try {
      const err = await rejection(c.call('HELLO', '3', 'AUTH', 'other', 'otherpass'), 'HELLO AUTH other');
      expect(err.message).toMatch(REFUSED_OTHER);
      expect(await serverUsers()).not.toContain('other');
    } finally {
      c.disconnect();
    }
  });

  it('refuses AUTH with only a password (the default user) and RESET (back to the default user)', async () => {
    for (const command of [['AUTH', 'anything'], ['RESET']]) {
      const { c } = await client();
      try {
        const err = await rejection(c.call(command[0] as string, ...command.slice(1)), command.join(' '));
        expect(err.message).toMatch(/^ERR broker proxy: .*user "default".*certificate is for user "alice"/);
      } finally {
        c.disconnect();
      }
    }
  });

  it('refuses an inline AUTH as another user, however it is quoted', async () => {
    for (const line of ['AUTH other otherpass', '"AUTH" other otherpass', 'a"uth" "oth\\x65r" otherpass']) {
      const socket = net.connect(world().proxy.port, '127.0.0.1');
      socket.on('error', () => undefined);
      const answer = await within(
        5_000,
        `inline ${line}`,
        new Promise<string>((resolve) => {
          let text = '';
          socket.on('data', (d: Buffer) => {
            text += d.toString('latin1');
          });
          socket.on('close', () => resolve(text));
          socket.write(`${line}\r\nACL WHOAMI\r\n`);
          setTimeout(() => socket.end(), 1_000);
        }),
      );
      expect(answer, line).toMatch(/^-ERR broker proxy: the client asked to authenticate as user "other"/);
      expect(answer, line).not.toContain('other\r\n');
    }
  });

  it('passes AUTH and HELLO AUTH as the certificate user, and everything else', async () => {
    const { c } = await client();
    try {
      expect(await c.call('AUTH', 'alice', 'alicepass')).toBe('OK');
      expect(await c.call('ACL', 'WHOAMI')).toBe('alice');
      await c.call('HELLO', '2', 'AUTH', 'alice', 'alicepass', 'SETNAME', 'tunnelled');
      expect(await c.set('k', 'v'.repeat(100_000))).toBe('OK');
      expect((await c.get('k'))?.length).toBe(100_000);
      const pipeline = c.pipeline();
      for (let i = 0; i < 100; i++) pipeline.incr('counter');
      const results = await pipeline.exec();
      expect(results?.at(-1)).toEqual([null, 100]);
    } finally {
      c.disconnect();
    }
  });
});

describe('tunnel in session: PostgreSQL database', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let server: StartedPostgres | undefined;
  let authority: Authority;
  let alice: WrittenBundle;
  let proxy: RunningProxy | undefined;
  let anyDbProxy: RunningProxy | undefined;

  setupOnce(async () => {
    await requirePostgres();
    work = await tempDir('proxy-in-session-pg');
    authority = await newAuthority();
    const serverCert = await authority.signDatabaseServer(['localhost'], { service: 'pg' });
    server = await startPostgres({
      baseDir: path.join(work.dir, 'pg'),
      tls: {
        serverCertPem: serverCert.certificatePem,
        serverKeyPem: serverCert.privateKeyPem,
        clientCaPem: serverCert.clientCaPem,
      },
      users: ['alice'],
      databases: ['example', 'secretdb'],
    });
    await addDatabase(authority, 'pg', 'postgres', `localhost:${server.port}`);
    alice = await writeBundle(authority, path.join(work.dir, 'out'), { service: 'pg', database: 'example' });
    proxy = await startTunnelProxy(path.join(work.dir, 'out'));
    // The same certificate in an output that names no database (an output of a role whose db_names is '*').
    await new DirectoryDestination(path.join(work.dir, 'out-any')).write({ ...alice.bundle, database: '' });
    anyDbProxy = await startTunnelProxy(path.join(work.dir, 'out-any'));
  });

  afterAll(async () => {
    await proxy?.stop();
    await anyDbProxy?.stop();
    await server?.stop();
    await work?.cleanup();
  });

  async function connect(port: number, database?: string): Promise<pg.Client> {
    const c = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'alice',
      ...(database === undefined ? {} : { database }),
      ssl: false,
      connectionTimeoutMillis: 5_000,
    });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  }

  const currentDb = async (c: pg.Client) =>
    (await c.query<{ d: string }>('SELECT current_database() AS d')).rows[0]?.d;

  it('refuses a startup naming another database with an ErrorResponse naming both, and keeps serving', async () => {
    const err = await rejection(connect(proxy!.port, 'secretdb'), 'a startup for secretdb');
    expect(err.message).toBe(
      'broker proxy: the client asked for database "secretdb" but the output is for database "example"',
    );
    expect(err.code).toBe('28000');
    const c = await connect(proxy!.port, 'example');
    expect(await currentDb(c)).toBe('example');
    await c.end();
    const outcomes = await proxy!.proxy.metrics.connections.get();
    expect(outcomes.values.find((v) => v.labels.outcome === 'database_mismatch')?.value).toBe(1);
  });

  it('an output without a database leaves the choice to the client', async () => {
    const c = await connect(anyDbProxy!.port, 'secretdb');
    expect(await currentDb(c)).toBe('secretdb');
    await c.end();
  });
});
