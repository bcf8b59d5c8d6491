import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import {
  asServerUser,
  blockingAncestor,
  confString,
  ident,
  launch,
  type Postmaster,
  signal,
  toolEnv,
} from './postgres-server.js';
import {
  checkSocketPath,
  chownTree,
  failureOutput,
  freePort,
  isExecutable,
  run,
  StartError,
  settles,
  unprivilegedUser,
  userCanReach,
  writeTlsFiles,
} from './process.js';

// Tests and benchmarks import freePort from here.
export { freePort };

/** What the server presents and whom it trusts: PEM strings. */
export interface PostgresTls {
  serverCertPem: string;
  serverKeyPem: string;
  /** CA bundle that signs client certificates (the broker's database client CA). */
  clientCaPem: string;
}

export interface StartedPostgres {
  host: string;
  port: number;
  dataDir: string;
  /** Directory of the unix socket the superuser connects through. */
  socketDir: string;
  /** The server's own output (stderr/stdout), also passed to `log`. */
  logFile: string;
  /** Database superuser (trusted over the unix socket only). */
  superuser: string;
  /** Server version directory, e.g. "15". */
  version: string;
  /** Fast shutdown; resolves once the server has exited. Removes no files. Safe to call twice. */
  stop(): Promise<void>;
  /**
   * Starts the server again after stop(), on the same port and data directory (a database restart, for
   * fault tests). Resolves once it accepts connections; does nothing while it is running.
   */
  start(): Promise<void>;
  /** Runs SQL as the superuser over the unix socket; returns the unaligned, tuples-only output. */
  psql(sql: string, db?: string): Promise<string>;
}

export interface StartPostgresOptions {
  /** Directory for the cluster, socket, TLS files and log; created if missing. The caller removes it. */
  baseDir: string;
  tls: PostgresTls;
  /** Roles created with LOGIN (no password: they log in with certificates). */
  users?: readonly string[];
  /** Databases created, owned by the first user (if any); every user is granted CONNECT. */
  databases?: readonly string[];
  /** TCP port on 127.0.0.1; 0 or absent picks a free one. */
  port?: number;
  /** Receives each line the server prints. */
  log?: (line: string) => void;
  /** How long to wait for the server to accept connections; default 60 s. */
  startTimeoutMs?: number;
  /** Where the versioned server directories are; default /usr/lib/postgresql. */
  installRoot?: string;
  /**
   * Extra postgresql.conf settings, appended after the harness's own (so they win), e.g.
   * `{ max_connections: '1100' }`. Values are written as given: quote strings yourself.
   */
  settings?: Readonly<Record<string, string>>;
}

export const DEFAULT_POSTGRES_ROOT = '/usr/lib/postgresql';
export const POSTGRES_INSTALL_HINT =
  'PostgreSQL server binaries were not found (looked for /usr/lib/postgresql/<version>/bin/postgres); ' +
  'install them with `apt-get install postgresql` (Debian/Ubuntu)';

const SUPERUSER = 'postgres';
const FALLBACK_OS_USER = 'broker-pg';

/** The newest PostgreSQL server installation under /usr/lib/postgresql, or undefined when there is none. */
export async function findPostgresBinaries(
  installRoot: string = DEFAULT_POSTGRES_ROOT,
): Promise<{ binDir: string; version: string } | undefined> {
  let entries: string[];
  try {
    entries = await fs.readdir(installRoot);
  } catch {
    return undefined;
  }
  const versions = entries
    .filter((e) => /^\d+(\.\d+)?$/.test(e))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  for (const version of versions) {
    const binDir = path.join(installRoot, version, 'bin');
    const usable = await Promise.all(
      ['postgres', 'initdb', 'psql'].map((tool) => isExecutable(path.join(binDir, tool))),
    );
    if (usable.every(Boolean)) return { binDir, version };
  }
  return undefined;
}

/**
 * initdb's a new cluster in `opts.baseDir/data`, configures TLS with client-certificate authentication,
 * starts the server on 127.0.0.1 and creates the requested roles and databases.
 */
export async function startPostgres(opts: StartPostgresOptions): Promise<StartedPostgres> {
  const found = await findPostgresBinaries(opts.installRoot);
  if (!found) throw new Error(POSTGRES_INSTALL_HINT);
  const { binDir, version } = found;
  const users = [...(opts.users ?? [])];
  if (users.includes(SUPERUSER))
    throw new Error(`"${SUPERUSER}" is the superuser of the throwaway cluster; choose other user names`);

  const baseDir = path.resolve(opts.baseDir);
  const dataDir = path.join(baseDir, 'data');
  const socketDir = path.join(baseDir, 'run');
  const tlsDir = path.join(baseDir, 'tls');
  const logFile = path.join(baseDir, 'postgres.log');
  await fs.mkdir(baseDir, { recursive: true, mode: 0o700 });
  try {
    const existing = await fs.readdir(dataDir);
    if (existing.length > 0)
      throw new Error(`${dataDir} already holds files; give startPostgres an empty baseDir`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await fs.mkdir(socketDir, { recursive: true, mode: 0o700 });
  await fs.mkdir(tlsDir, { recursive: true, mode: 0o700 });
  const { certFile, keyFile, caFile } = await writeTlsFiles(tlsDir, opts.tls);
  await fs.chmod(keyFile, 0o600);

  const user = await unprivilegedUser('PostgreSQL', 'postgres', FALLBACK_OS_USER);
  const env = toolEnv();
  if (user) {
    await chownTree(baseDir, user.uid, user.gid);
    if (!(await userCanReach(user, baseDir, env))) {
      const blocker = await blockingAncestor(baseDir, user);
      throw new Error(
        `PostgreSQL runs as the OS user "${user.name}", which cannot reach ${baseDir}` +
          (blocker ? ` (${blocker} is not searchable by it)` : '') +
          '; put the base directory under os.tmpdir() or make its parent directories traversable (chmod o+x)',
      );
    }
  }

  const initdb = asServerUser(user, path.join(binDir, 'initdb'), [
    '-D',
    dataDir,
    '-U',
    SUPERUSER,
    '--auth-local=trust',
    '--auth-host=reject',
    '-E',
    'UTF8',
    '--locale=C',
    '--no-sync',
  ]);
  const init = await run(initdb[0], initdb[1], { cwd: baseDir, env });
  if (init.code !== 0)
    throw new Error(
      `initdb failed (exit ${init.code ?? init.signal}) for ${dataDir}:\n${failureOutput(init)}`,
    );

  await fs.writeFile(
    path.join(dataDir, 'pg_hba.conf'),
    [
      '# Written by the broker dev database: the superuser over the unix socket only (setup),',
      '# everyone else over TLS on loopback with a client certificate whose CN is the user name.',
      '# TYPE   DATABASE USER ADDRESS       METHOD',
      `local    all      ${SUPERUSER}                trust`,
      'hostssl  all      all  127.0.0.1/32  cert',
      'hostssl  all      all  ::1/128       cert',
      '',
    ].join('\n'),
  );
  await fs.appendFile(
    path.join(dataDir, 'postgresql.conf'),
    [
      '',
      '# --- broker dev database ---',
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = ${confString(socketDir)}`,
      'unix_socket_permissions = 0700',
      'ssl = on',
      `ssl_cert_file = ${confString(certFile)}`,
      `ssl_key_file = ${confString(keyFile)}`,
      `ssl_ca_file = ${confString(caFile)}`,
      "ssl_min_protocol_version = 'TLSv1.2'",
      'logging_collector = off',
      'log_connections = on',
      // A throwaway cluster: durability costs time and buys nothing.
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      ...Object.entries(opts.settings ?? {}).map(([name, value]) => {
        if (!/^[a-z_][a-z0-9_.]*$/i.test(name) || /[\n\r]/.test(value))
          throw new Error(`invalid PostgreSQL setting ${JSON.stringify(name)} = ${JSON.stringify(value)}`);
        return `${name} = ${value}`;
      }),
      '',
    ].join('\n'),
  );
  if (user) await chownTree(dataDir, user.uid, user.gid);

  let logStream = createWriteStream(logFile, { flags: 'a', mode: 0o600 });
  const fixedPort = opts.port !== undefined && opts.port !== 0;
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  // Reads logStream when called: start() opens a new one.
  const boot = (port: number): Promise<Postmaster> =>
    launch({
      binDir,
      dataDir,
      port,
      user,
      env,
      cwd: baseDir,
      logStream,
      timeoutMs,
      ...(opts.log ? { log: opts.log } : {}),
    });
  let server: Postmaster | undefined;
  for (let attempt = 1; !server; attempt++) {
    const port = fixedPort ? (opts.port as number) : await freePort();
    checkSocketPath(path.join(socketDir, `.s.PGSQL.${port}`));
    try {
      server = await boot(port);
    } catch (err) {
      const lost = err instanceof StartError && /could not bind|Address already in use/i.test(err.tail);
      if (!lost || fixedPort || attempt >= 3) {
        logStream.end();
        throw err instanceof StartError ? new Error(err.message) : err;
      }
    }
  }
  const { port } = server;
  let current = server;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const { child, postmasterPid, tail, exited, forget } = current;
      if (child.exitCode === null && child.signalCode === null) {
        signal(postmasterPid, 'SIGINT'); // fast shutdown: roll back open transactions, disconnect clients
        if (!(await settles(exited, 30_000))) {
          signal(postmasterPid, 'SIGQUIT');
          if (!(await settles(exited, 5_000))) {
            signal(postmasterPid, 'SIGKILL');
            await settles(exited, 5_000);
          }
        }
      }
      forget();
      tail.flush();
      await new Promise<void>((resolve) => logStream.end(resolve));
    })();
    return stopping;
  };

  const psql = async (sql: string, db = 'postgres'): Promise<string> => {
    const result = await run(
      path.join(binDir, 'psql'),
      [
        '-X',
        '-q',
        '-A',
        '-t',
        '-v',
        'ON_ERROR_STOP=1',
        '-h',
        socketDir,
        '-p',
        String(port),
        '-U',
        SUPERUSER,
        '-d',
        db,
        '-f',
        '-',
      ],
      { env, input: sql, cwd: baseDir },
    );
    if (result.code !== 0)
      throw new Error(
        `psql on database "${db}" failed (exit ${result.code ?? result.signal}): ${result.stderr.trim()}`,
      );
    return result.stdout.replace(/\n$/, '');
  };

  try {
    const statements: string[] = [];
    for (const u of users) statements.push(`CREATE ROLE ${ident(u)} LOGIN;`);
    for (const db of opts.databases ?? []) {
      const owner = users[0];
      statements.push(`CREATE DATABASE ${ident(db)}${owner ? ` OWNER ${ident(owner)}` : ''};`);
      for (const u of users) statements.push(`GRANT CONNECT ON DATABASE ${ident(db)} TO ${ident(u)};`);
    }
    if (statements.length) await psql(statements.join('\n'));
  } catch (err) {
    await stop();
    throw err;
  }

  let starting: Promise<void> | undefined;
  const start = (): Promise<void> => {
    if (!stopping) return Promise.resolve();
    starting ??= (async () => {
      await stopping;
      logStream = createWriteStream(logFile, { flags: 'a', mode: 0o600 });
      try {
        current = await boot(port);
      } catch (err) {
        logStream.end();
        throw err instanceof StartError ? new Error(err.message) : err;
      }
      stopping = undefined;
    })().finally(() => {
      starting = undefined;
    });
    return starting;
  };

  return {
    host: '127.0.0.1',
    port,
    dataDir,
    socketDir,
    logFile,
    superuser: SUPERUSER,
    version,
    stop,
    start,
    psql,
  };
}
