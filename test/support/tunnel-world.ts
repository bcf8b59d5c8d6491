/**
 * The world most tunnel tests start from: a fresh authority, a real database server presenting a
 * certificate the authority issued for `service` and trusting its client CA, the server registered as a `db`
 * resource, alice's bundle for it written as the bot writes it, and `broker proxy db --tunnel` reading that
 * bundle. Optionally a second route and proxy to a port where nothing listens.
 */
import path from 'node:path';
import mysql from 'mysql2/promise';
import { afterAll } from 'vitest';
import type { Authority } from '../../src/authority/authority.js';
import type { DbProtocol } from '../../src/credentials/route.js';
import { freePort } from '../../src/devdb/postgres.js';
import { type StartedMariadb, startMariadb } from './devdb/mariadb.js';
import {
  addDatabase,
  newAuthority,
  type RunningProxy,
  setupOnce,
  startTunnelProxy,
  type WrittenBundle,
  writeBundle,
} from './proxy.js';
import { tempDir } from './temp.js';

export type ServerCert = Awaited<ReturnType<Authority['signDatabaseServer']>>;

/** What the devdb starters take as `tls`. */
export interface ServerTls {
  serverCertPem: string;
  serverKeyPem: string;
  clientCaPem: string;
}

export interface TunnelWorld<S> {
  /** The test's temporary directory (removed afterwards). */
  dir: string;
  authority: Authority;
  serverCert: ServerCert;
  server: S;
  /** alice's bundle for `service` (database example), as written to `<dir>/out`. */
  alice: WrittenBundle;
  /** The tunnel proxy reading `<dir>/out`. */
  proxy: RunningProxy;
  /** With `unreachable`: the same kind of route to a port where nothing listens, and its proxy. */
  down?: RunningProxy | undefined;
  /**
   * A mysql2 connection through the tunnel proxy as a client makes it: no TLS, no password, alice on
   * `example` unless `user`/`database` say otherwise, 5 s to connect.
   */
  mysql(login?: { user?: string; database?: string }): Promise<mysql.Connection>;
}

export interface TunnelWorldSpec<S> {
  /** Names the temporary directory, and the server in the error when it did not start. */
  name: string;
  service: string;
  protocol: DbProtocol;
  /** The host in the resource's URI (the server certificate names localhost). */
  host: 'localhost' | '127.0.0.1';
  /** Starts the server under `baseDir` with the certificate and client CA given. */
  start(baseDir: string, tls: ServerTls): Promise<S>;
  /** Runs before the server is registered (extra accounts, tables…). */
  prepare?(server: S): Promise<unknown>;
  unreachable?: boolean;
}

/**
 * Builds the world once before the tests of the enclosing describe (a failure, such as a missing server
 * binary, fails every test) and tears it down after them. Returns the world's accessor.
 */
export function tunnelWorld<S extends { port: number; stop(): Promise<void> }>(
  spec: TunnelWorldSpec<S>,
): () => TunnelWorld<S> {
  let world: TunnelWorld<S> | undefined;
  const parts: { server?: S; proxies: RunningProxy[]; cleanup?: () => Promise<void> } = { proxies: [] };

  setupOnce(async () => {
    const work = await tempDir(spec.name);
    parts.cleanup = work.cleanup;
    const authority = await newAuthority();
    const serverCert = await authority.signDatabaseServer(['localhost'], { service: spec.service });
    const server = await spec.start(path.join(work.dir, 'server'), {
      serverCertPem: serverCert.certificatePem,
      serverKeyPem: serverCert.privateKeyPem,
      clientCaPem: serverCert.clientCaPem,
    });
    parts.server = server;
    await spec.prepare?.(server);
    await addDatabase(authority, spec.service, spec.protocol, `${spec.host}:${server.port}`);
    const route = { service: spec.service, database: 'example' };
    const alice = await writeBundle(authority, path.join(work.dir, 'out'), route);
    const proxy = await startTunnelProxy(path.join(work.dir, 'out'));
    parts.proxies.push(proxy);
    let down: RunningProxy | undefined;
    if (spec.unreachable) {
      const service = `${spec.service}-down`;
      await addDatabase(authority, service, spec.protocol, `127.0.0.1:${await freePort()}`);
      await writeBundle(authority, path.join(work.dir, 'out-down'), { service, database: 'example' });
      down = await startTunnelProxy(path.join(work.dir, 'out-down'));
      parts.proxies.push(down);
    }
    const viaProxy = (login: { user?: string; database?: string } = {}) =>
      mysql.createConnection({
        host: '127.0.0.1',
        port: proxy.port,
        user: login.user ?? 'alice',
        database: login.database ?? 'example',
        connectTimeout: 5_000,
      });
    world = { dir: work.dir, authority, serverCert, server, alice, proxy, down, mysql: viaProxy };
  });

  afterAll(async () => {
    for (const proxy of parts.proxies) await proxy.stop();
    await parts.server?.stop();
    await parts.cleanup?.();
  });

  return () => {
    if (!world) throw new Error(`${spec.name}: the server did not start (see the first failure)`);
    return world;
  };
}

/**
 * tunnelWorld on MariaDB (service `maria`, 127.0.0.1) whose account alice requires the certificate subject
 * the authority issues for her (`REQUIRE SUBJECT '/O=example/CN=alice'`, compared with OpenSSL's one-line
 * form), with `databases`.
 */
export function mariadbTunnelWorld(
  spec: { name: string; databases: string[] } & Pick<
    TunnelWorldSpec<StartedMariadb>,
    'prepare' | 'unreachable'
  >,
): () => TunnelWorld<StartedMariadb> {
  const { databases, ...rest } = spec;
  return tunnelWorld({
    ...rest,
    service: 'maria',
    protocol: 'mysql',
    host: '127.0.0.1',
    start: (baseDir, tls) =>
      startMariadb({ baseDir, tls, users: [{ name: 'alice', subject: '/O=example/CN=alice' }], databases }),
  });
}
