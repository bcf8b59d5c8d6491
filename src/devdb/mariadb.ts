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
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, promises as fs, type WriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './postgres.js';

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
const LOG_TAIL_LINES = 40;
/** sun_path is 108 bytes on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export interface MariadbBinaries {
  server: string;
  installDb: string;
  client: string;
}

/** The MariaDB server, installer and client programs, or undefined when any is missing. */
export async function findMariadbBinaries(): Promise<MariadbBinaries | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/sbin', '/usr/bin'];
  const find = async (name: string) => {
    for (const dir of dirs) {
      const file = path.join(dir, name);
      if (await isExecutable(file)) return file;
    }
    return undefined;
  };
  const [server, installDb, client] = await Promise.all([
    find('mariadbd'),
    find('mariadb-install-db'),
    find('mariadb'),
  ]);
  return server && installDb && client ? { server, installDb, client } : undefined;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await fs.access(file, fs.constants.X_OK);
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion (no shell), feeding `input` on stdin. Never throws for a non-zero exit. */
function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => stdout.push(d));
    child.stderr.on('data', (d: Buffer) => stderr.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      }),
    );
    child.stdin.on('error', () => {
      // The program may exit without reading its input; its exit status tells what happened.
    });
    child.stdin.end(options.input ?? '');
  });
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

interface ServerUser {
  name: string;
  uid: number;
  gid: number;
}

async function lookupUser(name: string): Promise<ServerUser | undefined> {
  const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
  if (uid.code !== 0 || gid.code !== 0) return undefined;
  return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Resolves (or, as root, creates) the OS user the server runs as; undefined when not root. */
async function serverUser(): Promise<ServerUser | undefined> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  for (const name of ['mysql', FALLBACK_OS_USER]) {
    const ids = await lookupUser(name);
    if (ids) return ids;
  }
  const created = await run('useradd', [
    '--system',
    '--user-group',
    '--no-create-home',
    '--home-dir',
    '/nonexistent',
    '--shell',
    '/usr/sbin/nologin',
    FALLBACK_OS_USER,
  ]);
  const ids = await lookupUser(FALLBACK_OS_USER);
  if (!ids)
    throw new Error(
      `mariadbd cannot run as root and there is no "mysql" OS user; creating the system user "${FALLBACK_OS_USER}" failed: ${created.stderr.trim() || `useradd exited with ${created.code}`}`,
    );
  return ids;
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fs.chown(dir, uid, gid);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(p, uid, gid);
    else await fs.lchown(p, uid, gid);
  }
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

/** Servers started here and not yet stopped: killed if this process exits without stopping them. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  running.add(child);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of running) c.kill('SIGKILL'); // the process is going away; the data is throwaway
  });
}

/** Keeps the last lines of the server's output for error messages, and watches for one line. */
class LogTail {
  private readonly lines: string[] = [];
  private partial = '';
  private watcher: { pattern: RegExp; resolve: () => void } | undefined;
  constructor(
    private readonly file: WriteStream,
    private readonly sink?: (line: string) => void,
  ) {}
  push(chunk: Buffer): void {
    this.file.write(chunk);
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.line(line);
  }
  private line(line: string): void {
    this.lines.push(line);
    if (this.lines.length > LOG_TAIL_LINES) this.lines.shift();
    this.sink?.(line);
    if (this.watcher?.pattern.test(line)) this.watcher.resolve();
  }
  /** Resolves when a line matching `pattern` is printed (from now on). */
  waitFor(pattern: RegExp): Promise<void> {
    return new Promise((resolve) => {
      this.watcher = { pattern, resolve };
    });
  }
  flush(): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
  }
  text(): string {
    return this.lines.join('\n');
  }
}

class StartError extends Error {
  constructor(
    message: string,
    readonly tail: string,
  ) {
    super(`${message}; last lines of the server log:\n${tail || '(the server printed nothing)'}`);
  }
}

async function settles(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
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
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH)
    throw new Error(
      `the unix socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter baseDir`,
    );
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
  const certFile = path.join(tlsDir, 'server.crt');
  const keyFile = path.join(tlsDir, 'server.key');
  const caFile = path.join(tlsDir, 'client-ca.crt');
  await fs.writeFile(certFile, opts.tls.serverCertPem, { mode: 0o600 });
  await fs.writeFile(keyFile, opts.tls.serverKeyPem, { mode: 0o600 });
  await fs.writeFile(caFile, opts.tls.clientCaPem, { mode: 0o600 });

  const user = await serverUser();
  const env = toolEnv();
  // The admin account authenticates with unix_socket: the OS user running the client is the account.
  const admin = user ? 'root' : os.userInfo().username;
  if (user) {
    await chownTree(baseDir, user.uid, user.gid);
    const reach = await run('runuser', ['-u', user.name, '--', 'test', '-w', baseDir, '-a', '-x', baseDir], {
      env,
    });
    if (reach.code !== 0)
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
      `mariadb-install-db failed (exit ${install.code ?? install.signal}) for ${dataDir}:\n${(install.stderr || install.stdout).trim().split('\n').slice(-LOG_TAIL_LINES).join('\n')}`,
    );

  const logStream = createWriteStream(logFile, { flags: 'a', mode: 0o600 });
  const fixedPort = opts.port !== undefined && opts.port !== 0;
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  let server: { child: ChildProcess; port: number; tail: LogTail; exited: Promise<void> } | undefined;
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
  const { child, port, tail, exited } = server;

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
      running.delete(child);
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
}) {
  const tail = new LogTail(a.logStream, a.log);
  const ready = tail.waitFor(/ready for connections/);
  const child = spawn(a.bin, a.args, { cwd: a.cwd, env: a.env, stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  child.stdout?.on('data', (d: Buffer) => tail.push(d));
  child.stderr?.on('data', (d: Buffer) => tail.push(d));
  let spawnError: Error | undefined;
  const exited = new Promise<void>((resolve) => {
    child.on('error', (err) => {
      spawnError = err;
      resolve();
    });
    child.on('close', () => resolve());
  });
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    ready.then(() => 'ready' as const),
    exited.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), a.timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (outcome === 'ready') return { child, port: a.port, tail, exited };
  if (outcome === 'timeout') {
    child.kill('SIGKILL');
    await settles(exited, 5_000);
  }
  running.delete(child);
  tail.flush();
  if (spawnError) throw new StartError(`could not run ${a.bin}: ${spawnError.message}`, tail.text());
  throw new StartError(
    outcome === 'timeout'
      ? `mariadbd did not accept connections within ${a.timeoutMs} ms on port ${a.port}`
      : `mariadbd exited during startup (${child.exitCode !== null ? `exit ${child.exitCode}` : child.signalCode}) on port ${a.port}`,
    tail.text(),
  );
}
