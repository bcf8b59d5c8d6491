/**
 * A throwaway MariaDB server for tests and the demo, from the distribution's binaries (Debian:
 * `mariadb-server` and `mariadb-client`). It listens on 127.0.0.1 only, requires TLS on TCP
 * (`require_secure_transport`), and creates users that log in with a client certificate whose subject
 * matches (`REQUIRE SUBJECT`) and no password. The admin account (unix_socket authentication) is reachable
 * only over the unix socket inside the base directory, for setup.
 *
 * mariadbd refuses to run as root: as root, it and mariadb-install-db get `--user=mysql` (or a
 * `broker-mysql` system user created on demand) and drop privileges themselves; the base directory is
 * chowned to that user.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, promises as fs, type WriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  checkSocketPath,
  chownTree,
  failureOutput,
  findProgram,
  freePort,
  killAtExit,
  LogTail,
  run,
  StartError,
  settles,
  spawnServer,
  startOutcome,
  unprivilegedUser,
  userCanReach,
  writeTlsFiles,
} from '../../../src/devdb/process.js';

/** What the server presents and whom it trusts: PEM strings. */
export interface MariadbTls {
  serverCertPem: string;
  serverKeyPem: string;
  /** CA bundle that signs client certificates (the broker's database client CA). */
  clientCaPem: string;
}

export interface MariadbUser {
  name: string;
  /**
   * The client certificate subject the account requires, in OpenSSL's one-line form as MariaDB compares it
   * (`openssl x509 -noout -subject -nameopt compat`), e.g. `/O=example/CN=alice`.
   */
  subject: string;
}

export interface StartMariadbOptions {
  /** Directory for the data, socket, TLS files and log; created if missing. The caller removes it. */
  baseDir: string;
  tls: MariadbTls;
  /** Accounts `'name'@'%'` with no password that require a certificate with this subject. */
  users?: readonly MariadbUser[];
  /** Databases created; every user is granted ALL on each. */
  databases?: readonly string[];
  /** TCP port on 127.0.0.1; 0 or absent picks a free one. */
  port?: number;
  /** Receives each line the server prints. */
  log?: (line: string) => void;
  /** How long to wait for the server to accept connections; default 60 s. */
  startTimeoutMs?: number;
}

export interface StartedMariadb {
  host: '127.0.0.1';
  port: number;
  socketPath: string;
  dataDir: string;
  /** The server's own output, also passed to `log`. */
  logFile: string;
  /** e.g. "10.11.19-MariaDB-0+deb12u1", from SELECT VERSION(). */
  version: string;
  /** Normal shutdown; resolves once the server has exited. Removes no files. Safe to call twice. */
  stop(): Promise<void>;
  /** Runs SQL as the admin account over the unix socket; returns the tab-separated rows, no headers. */
  sql(text: string, db?: string): Promise<string>;
}

export const MARIADB_INSTALL_HINT =
  'MariaDB binaries were not found (looked for mariadbd, mariadb-install-db and mariadb in PATH, /usr/sbin and /usr/bin); ' +
  'install them with `apt-get install mariadb-server mariadb-client` (Debian/Ubuntu)';

const FALLBACK_OS_USER = 'broker-mysql';

export interface MariadbBinaries {
  server: string;
  installDb: string;
  client: string;
}

/** The MariaDB server, installer and client programs, or undefined when any is missing. */
export async function findMariadbBinaries(): Promise<MariadbBinaries | undefined> {
  const find = (name: string) => findProgram(name, ['/usr/sbin', '/usr/bin'], isExecutableFile);
  const [server, installDb, client] = await Promise.all([
    find('mariadbd'),
    find('mariadb-install-db'),
    find('mariadb'),
  ]);
  return server && installDb && client ? { server, installDb, client } : undefined;
}

/** Whether `file` is a regular file this process may execute (a directory on PATH does not count). */
async function isExecutableFile(file: string): Promise<boolean> {
  try {
    await fs.access(file, fs.constants.X_OK);
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

/** The environment for MariaDB tools: no MYSQL_* variables that could redirect them, English C locale. */
function toolEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('MYSQL') && !k.startsWith('MARIADB')) env[k] = v;
  env.LC_ALL = 'C';
  env.LANG = 'C';
  return env;
}

/** A single-quoted SQL string literal (MariaDB escapes: backslash and quote). */
function sqlString(value: string): string {
  if (value.includes('\0')) throw new Error('NUL in an SQL string');
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A backquoted SQL identifier. */
function ident(name: string): string {
  if (name.length === 0 || name.length > 64 || name.includes('\0'))
    throw new Error(`invalid MariaDB name ${JSON.stringify(name)}`);
  return `\`${name.replace(/`/g, '``')}\``;
}

/**
 * Creates a data directory with mariadb-install-db in `opts.baseDir/data`, starts mariadbd on 127.0.0.1
 * with TLS (server certificate, client CA, TLS required on TCP), and creates the databases and the users.
 */
export async function startMariadb(opts: StartMariadbOptions): Promise<StartedMariadb> {
  const bins = await findMariadbBinaries();
  if (!bins) throw new Error(MARIADB_INSTALL_HINT);

  const baseDir = path.resolve(opts.baseDir);
  const dataDir = path.join(baseDir, 'data');
  const tmpDir = path.join(baseDir, 'tmp');
  const tlsDir = path.join(baseDir, 'tls');
  const socketPath = path.join(baseDir, 'mariadbd.sock');
  const pidFile = path.join(baseDir, 'mariadbd.pid');
  const logFile = path.join(baseDir, 'mariadbd.log');
  checkSocketPath(socketPath);
  await fs.mkdir(baseDir, { recursive: true, mode: 0o700 });
  if (
    await fs.readdir(dataDir).then(
      (e) => e.length > 0,
      () => false,
    )
  )
    throw new Error(`${dataDir} already holds files; give startMariadb an empty baseDir`);
  await fs.mkdir(tmpDir, { recursive: true, mode: 0o700 });
  await fs.mkdir(tlsDir, { recursive: true, mode: 0o700 });
  const { certFile, keyFile, caFile } = await writeTlsFiles(tlsDir, opts.tls);

  const user = await unprivilegedUser('mariadbd', 'mysql', FALLBACK_OS_USER);
  const env = toolEnv();
  // The admin account authenticates with unix_socket: the OS user running the client is the account.
  const admin = user ? 'root' : os.userInfo().username;
  if (user) {
    await chownTree(baseDir, user.uid, user.gid);
    if (!(await userCanReach(user, baseDir, env)))
      throw new Error(
        `mariadbd runs as the OS user "${user.name}", which cannot reach ${baseDir}; put the base directory under os.tmpdir() (in a directory with mode 0711) or make its parent directories traversable (chmod o+x)`,
      );
  }

  const install = await run(
    bins.installDb,
    [
      '--no-defaults',
      `--datadir=${dataDir}`,
      '--auth-root-authentication-method=socket',
      `--auth-root-socket-user=${admin}`,
      '--skip-test-db',
      '--skip-name-resolve',
      ...(user ? [`--user=${user.name}`] : []),
    ],
    { cwd: baseDir, env },
  );
  if (install.code !== 0)
    throw new Error(
      `mariadb-install-db failed (exit ${install.code ?? install.signal}) for ${dataDir}:\n${failureOutput(install)}`,
    );

  const logStream = createWriteStream(logFile, { flags: 'a', mode: 0o600 });
  const fixedPort = opts.port !== undefined && opts.port !== 0;
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  let server: Mariadbd | undefined;
  for (let attempt = 1; !server; attempt++) {
    const port = fixedPort ? (opts.port as number) : await freePort();
    const args = [
      '--no-defaults',
      `--datadir=${dataDir}`,
      `--tmpdir=${tmpDir}`,
      `--socket=${socketPath}`,
      `--pid-file=${pidFile}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      '--skip-name-resolve',
      `--ssl-cert=${certFile}`,
      `--ssl-key=${keyFile}`,
      `--ssl-ca=${caFile}`,
      '--require-secure-transport=ON',
      // A throwaway server: durability and instrumentation cost time and buy nothing.
      '--innodb-buffer-pool-size=32M',
      '--innodb-flush-log-at-trx-commit=0',
      '--innodb-doublewrite=0',
      '--performance-schema=OFF',
      ...(user ? [`--user=${user.name}`] : []),
    ];
    try {
      server = await launch({
        bin: bins.server,
        args,
        port,
        env,
        cwd: baseDir,
        logStream,
        timeoutMs,
        log: opts.log,
      });
    } catch (err) {
      const lost = err instanceof StartError && /Address already in use|Bind on TCP\/IP port/i.test(err.tail);
      if (!lost || fixedPort || attempt >= 3) {
        logStream.end();
        throw err;
      }
    }
  }
  const { child, port, tail, exited, forget } = server;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM'); // normal shutdown
        if (!(await settles(exited, 30_000))) {
          child.kill('SIGKILL');
          await settles(exited, 5_000);
        }
      }
      forget();
      tail.flush();
      await new Promise<void>((resolve) => logStream.end(resolve));
    })();
    return stopping;
  };

  const sql = async (text: string, db?: string): Promise<string> => {
    const result = await run(
      bins.client,
      [
        '--no-defaults',
        '--protocol=SOCKET',
        `--socket=${socketPath}`,
        `--user=${admin}`,
        '--batch',
        '--skip-column-names',
        ...(db ? [`--database=${db}`] : []),
      ],
      { env, input: text, cwd: baseDir },
    );
    if (result.code !== 0)
      throw new Error(
        `mariadb${db ? ` on database "${db}"` : ''} failed (exit ${result.code ?? result.signal}): ${result.stderr.trim()}`,
      );
    return result.stdout.replace(/\n$/, '');
  };

  try {
    const statements: string[] = [];
    for (const db of opts.databases ?? []) statements.push(`CREATE DATABASE ${ident(db)};`);
    for (const u of opts.users ?? []) {
      const account = `${sqlString(u.name)}@'%'`;
      statements.push(`CREATE USER ${account} REQUIRE SUBJECT ${sqlString(u.subject)};`);
      for (const db of opts.databases ?? [])
        statements.push(`GRANT ALL PRIVILEGES ON ${ident(db)}.* TO ${account};`);
    }
    const version = await sql(`${statements.join('\n')}\nSELECT VERSION();`);
    return { host: '127.0.0.1', port, socketPath, dataDir, logFile, version, stop, sql };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A running mariadbd, as launch() leaves it. */
interface Mariadbd {
  child: ChildProcess;
  port: number;
  tail: LogTail;
  exited: Promise<void>;
  /** Takes the server off the list killed at exit (it has stopped). */
  forget: () => void;
}

/** Spawns mariadbd in the foreground (its output is ours) and waits for "ready for connections". */
async function launch(a: {
  bin: string;
  args: string[];
  port: number;
  env: NodeJS.ProcessEnv;
  cwd: string;
  logStream: WriteStream;
  timeoutMs: number;
  log: ((line: string) => void) | undefined;
}): Promise<Mariadbd> {
  const tail = new LogTail(a.logStream, a.log);
  const ready = tail.waitFor(/ready for connections/);
  const { child, exited, spawnError } = spawnServer(a.bin, a.args, { cwd: a.cwd, env: a.env }, (d) =>
    tail.push(d),
  );
  // The server and its data are throwaway, and the process is going away.
  const forget = killAtExit(() => child.kill('SIGKILL'));
  const outcome = await startOutcome(ready, exited, a.timeoutMs);
  if (outcome === 'ready') return { child, port: a.port, tail, exited, forget };
  if (outcome === 'timeout') {
    child.kill('SIGKILL');
    await settles(exited, 5_000);
  }
  forget();
  tail.flush();
  const failed = spawnError();
  if (failed) throw new StartError(`could not run ${a.bin}: ${failed.message}`, tail.text());
  throw new StartError(
    outcome === 'timeout'
      ? `mariadbd did not accept connections within ${a.timeoutMs} ms on port ${a.port}`
      : `mariadbd exited during startup (${child.exitCode !== null ? `exit ${child.exitCode}` : child.signalCode}) on port ${a.port}`,
    tail.text(),
  );
}
