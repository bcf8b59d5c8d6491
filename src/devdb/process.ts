/**
 * Process plumbing shared by the throwaway database servers in this directory (postgres.ts, mariadb.ts,
 * redis.ts): finding and running their tools, spawning a server and watching what it prints, the
 * unprivileged OS user a server runs as when we are root, and killing servers left running at exit.
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { promises as fs, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

/** How many lines of a server's or a tool's output an error message quotes. */
export const LOG_TAIL_LINES = 40;
/** sun_path is 108 bytes on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

/** Whether this process may execute `file` (a directory it may search passes too). */
export async function isExecutable(file: string): Promise<boolean> {
  try {
    await fs.access(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first `dir/name` that `usable` accepts, looking in PATH's directories and then in `extraDirs`. */
export async function findProgram(
  name: string,
  extraDirs: readonly string[],
  usable: (file: string) => Promise<boolean> = isExecutable,
): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...extraDirs];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    if (await usable(file)) return file;
  }
  return undefined;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  /** Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed; default ''. null gives the program /dev/null instead of a pipe. */
  input?: string | null;
}

/** Runs a program to completion (no shell), feeding `input` on stdin. Never throws for a non-zero exit. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: [options.input === null ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => stdout.push(d));
    child.stderr?.on('data', (d: Buffer) => stderr.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      }),
    );
    if (child.stdin) {
      child.stdin.on('error', () => {
        // The program may exit without reading its input; its exit status tells what happened.
      });
      child.stdin.end(options.input ?? '');
    }
  });
}

/** What a failed tool printed, for an error message: the last lines of its stderr, or of stdout if that is empty. */
export function failureOutput(result: RunResult): string {
  return (result.stderr || result.stdout).trim().split('\n').slice(-LOG_TAIL_LINES).join('\n');
}

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

/** Whether this process runs as root (and so hands the servers to an unprivileged OS user). */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** The ids of the OS user `name`, or undefined when there is no such user. */
export async function lookupUser(name: string): Promise<OsUser | undefined> {
  const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
  if (uid.code !== 0 || gid.code !== 0) return undefined;
  return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * As root, the OS user for a server that refuses to run as root: `preferred` (the distribution's) when it
 * exists, else `fallback`, created on demand as a system user that cannot log in. Undefined when not root;
 * `server` names the program in the error thrown when the user cannot be created.
 */
export async function unprivilegedUser(
  server: string,
  preferred: string,
  fallback: string,
): Promise<OsUser | undefined> {
  if (!isRoot()) return undefined;
  for (const name of [preferred, fallback]) {
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
    fallback,
  ]);
  const ids = await lookupUser(fallback);
  if (!ids)
    throw new Error(
      `${server} cannot run as root and there is no "${preferred}" OS user; creating the system user "${fallback}" failed: ${created.stderr.trim() || `useradd exited with ${created.code}`}`,
    );
  return ids;
}

/**
 * Whether `user` can write to and traverse `dir`. Asked of the kernel (`test` run as that user) rather
 * than worked out from mode bits, which miss ACLs and the like.
 */
export async function userCanReach(user: OsUser, dir: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const reach = await run('runuser', ['-u', user.name, '--', 'test', '-w', dir, '-a', '-x', dir], { env });
  return reach.code === 0;
}

/** Gives `dir` and everything below it to uid:gid; symbolic links are changed themselves, not followed. */
export async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fs.chown(dir, uid, gid);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(p, uid, gid);
    else await fs.lchown(p, uid, gid);
  }
}

/** Throws when `socketPath` is too long for a unix socket address. */
export function checkSocketPath(socketPath: string): void {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH)
    throw new Error(
      `the unix socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter baseDir`,
    );
}

/** Writes the server certificate, its key and the client CA bundle into `dir` (mode 0600); returns their paths. */
export async function writeTlsFiles(
  dir: string,
  tls: { serverCertPem: string; serverKeyPem: string; clientCaPem: string },
): Promise<{ certFile: string; keyFile: string; caFile: string }> {
  const certFile = path.join(dir, 'server.crt');
  const keyFile = path.join(dir, 'server.key');
  const caFile = path.join(dir, 'client-ca.crt');
  await fs.writeFile(certFile, tls.serverCertPem, { mode: 0o600 });
  await fs.writeFile(keyFile, tls.serverKeyPem, { mode: 0o600 });
  await fs.writeFile(caFile, tls.clientCaPem, { mode: 0o600 });
  return { certFile, keyFile, caFile };
}

/**
 * Asks the kernel for a free TCP port on 127.0.0.1, then releases it. Another process can take it before
 * the server binds it, which is why the harnesses retry a start that lost its port.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}

/** A server process spawned by spawnServer. */
export interface ServerProcess {
  child: ChildProcess;
  /** Resolves once the process has closed, or could not be spawned; never rejects. */
  exited: Promise<void>;
  /** Why the program could not be run, once `exited` has resolved for that reason. */
  spawnError(): Error | undefined;
}

/** Spawns a server in the foreground, stdin on /dev/null, passing each chunk it prints to `output`. */
export function spawnServer(
  command: string,
  args: readonly string[],
  options: Omit<SpawnOptions, 'stdio'>,
  output: (chunk: Buffer) => void,
): ServerProcess {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', output);
  child.stderr?.on('data', output);
  let spawnError: Error | undefined;
  // A spawn failure emits 'error' and possibly no 'close': either one ends the wait.
  const exited = new Promise<void>((resolve) => {
    child.on('error', (err) => {
      spawnError = err;
      resolve();
    });
    child.on('close', () => resolve());
  });
  return { child, exited, spawnError: () => spawnError };
}

/** Whichever comes first while a server starts: it is `ready`, it has `exited`, or `ms` have passed. */
export async function startOutcome(
  ready: Promise<void>,
  exited: Promise<void>,
  ms: number,
): Promise<'ready' | 'exited' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    ready.then(() => 'ready' as const),
    exited.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ms);
    }),
  ]);
  clearTimeout(timer);
  return outcome;
}

/** Whether `p` resolves within `ms`; the timer is cleared either way, so it does not hold the process. */
export async function settles(p: Promise<void>, ms: number): Promise<boolean> {
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

/** How to kill each server started here and not yet stopped. */
const atExit = new Set<() => void>();
let exitHookInstalled = false;

/**
 * Runs `kill` if this process exits while the server is still running, so that no server outlives its
 * tests; returns the function that forgets it, to call once the server has stopped. `kill` runs inside an
 * 'exit' handler, where only synchronous work (sending a signal) gets done.
 */
export function killAtExit(kill: () => void): () => void {
  atExit.add(kill);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const k of atExit) k();
    });
  }
  return () => {
    atExit.delete(kill);
  };
}

/** Keeps the last lines of a server's output for error messages, and watches for one line. */
export class LogTail {
  private readonly lines: string[] = [];
  private partial = '';
  private watcher: { pattern: RegExp; resolve: () => void } | undefined;
  constructor(
    private readonly file: WriteStream,
    private readonly sink?: (line: string) => void,
  ) {}
  /** Appends a chunk of output to the log file and passes each completed line on. */
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
  /** Treats an unterminated last line as complete. */
  flush(): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
  }
  /** The kept lines. */
  text(): string {
    return this.lines.join('\n');
  }
  /** The kept lines and the unterminated last one, without passing that one on as flush() does. */
  textWithPartial(): string {
    return (this.partial ? [...this.lines, this.partial] : this.lines).join('\n');
  }
}

/** A failed start; carries the server's last lines so that callers can tell a lost port from other failures. */
export class StartError extends Error {
  constructor(
    message: string,
    readonly tail: string,
  ) {
    super(`${message}; last lines of the server log:\n${tail || '(the server printed nothing)'}`);
  }
}
