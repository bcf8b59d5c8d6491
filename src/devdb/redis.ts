/**
 * A throwaway Redis server for tests and the demo, from the distribution's binaries (Debian:
 * `redis-server` and `redis-tools`). It listens on 127.0.0.1 with TLS only (no plain TCP port) and
 * requires a client certificate signed by the given CA (`tls-auth-clients yes`); admin commands go over a
 * unix socket inside the base directory. Nothing is persisted.
 *
 * Redis 7.0 (Debian 12) cannot map a certificate to an ACL user (`tls-auth-clients-user` came later), so
 * every client with a trusted certificate is the `default` user: the certificate is the gate.
 *
 * Redis runs as root if asked to, but as root the server runs as the `redis` OS user when there is one
 * (the base directory is chowned to it).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { freePort } from './postgres.js';

export interface RedisTls {
  serverCertPem: string;
  serverKeyPem: string;
  /** CA bundle that signs client certificates (the broker's database client CA). */
  clientCaPem: string;
}

export interface StartRedisOptions {
  /** Directory for the TLS files, socket and log; created if missing. The caller removes it. */
  baseDir: string;
  tls: RedisTls;
  /** TLS port on 127.0.0.1; 0 or absent picks a free one. */
  port?: number;
  /** Receives each line the server prints. */
  log?: (line: string) => void;
  /** How long to wait for the server to accept connections; default 30 s. */
  startTimeoutMs?: number;
}

export interface StartedRedis {
  host: '127.0.0.1';
  /** The TLS port (there is no plain TCP port). */
  port: number;
  /** Unix socket for admin commands (mode 0700). */
  socketPath: string;
  logFile: string;
  /** e.g. "7.0.15", from `redis-server --version`. */
  version: string;
  /** SIGTERM (no save); resolves once the server has exited. Safe to call twice. */
  stop(): Promise<void>;
  /** Runs `redis-cli` over the unix socket with these arguments; returns its output. Throws on failure. */
  cli(args: readonly string[]): Promise<string>;
}

export const REDIS_INSTALL_HINT =
  'Redis binaries were not found (looked for redis-server and redis-cli in PATH, /usr/bin and /usr/sbin); ' +
  'install them with `apt-get install redis-server redis-tools` (Debian/Ubuntu)';

const LOG_TAIL_LINES = 40;
const MAX_SOCKET_PATH = 107;

/** The Redis server and client programs, or undefined when either is missing. */
export async function findRedisBinaries(): Promise<{ server: string; cli: string } | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/bin', '/usr/sbin'];
  const find = async (name: string) => {
    for (const dir of dirs) {
      const file = path.join(dir, name);
      const ok = await fs.access(file, fs.constants.X_OK).then(
        () => true,
        () => false,
      );
      if (ok) return file;
    }
    return undefined;
  };
  const [server, cli] = await Promise.all([find('redis-server'), find('redis-cli')]);
  return server && cli ? { server, cli } : undefined;
}

function run(
  command: string,
  args: readonly string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}

/** As root: the `redis` OS user's ids, when it exists. */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const [uid, gid] = await Promise.all([run('id', ['-u', 'redis']), run('id', ['-g', 'redis'])]);
  if (uid.code !== 0 || gid.code !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  running.add(child);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of running) c.kill('SIGKILL');
  });
}

/** Starts redis-server with TLS and client-certificate authentication on 127.0.0.1. */
export async function startRedis(opts: StartRedisOptions): Promise<StartedRedis> {
  const bins = await findRedisBinaries();
  if (!bins) throw new Error(REDIS_INSTALL_HINT);
  const versionOut = await run(bins.server, ['--version']);
  const version = /v=(\S+)/.exec(versionOut.stdout)?.[1] ?? 'unknown';

  const baseDir = path.resolve(opts.baseDir);
  const socketPath = path.join(baseDir, 'redis.sock');
  const logFile = path.join(baseDir, 'redis.log');
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH)
    throw new Error(
      `the unix socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter baseDir`,
    );
  await fs.mkdir(baseDir, { recursive: true, mode: 0o700 });
  const certFile = path.join(baseDir, 'server.crt');
  const keyFile = path.join(baseDir, 'server.key');
  const caFile = path.join(baseDir, 'client-ca.crt');
  await fs.writeFile(certFile, opts.tls.serverCertPem, { mode: 0o600 });
  await fs.writeFile(keyFile, opts.tls.serverKeyPem, { mode: 0o600 });
  await fs.writeFile(caFile, opts.tls.clientCaPem, { mode: 0o600 });
  const user = await serverUser();
  if (user) for (const p of [baseDir, certFile, keyFile, caFile]) await fs.chown(p, user.uid, user.gid);

  const logStream = createWriteStream(logFile, { flags: 'a', mode: 0o600 });
  const fixedPort = opts.port !== undefined && opts.port !== 0;
  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  for (let attempt = 1; ; attempt++) {
    const port = fixedPort ? (opts.port as number) : await freePort();
    // Options on the command line; `--save ""` turns snapshots off.
    const args = [
      '--port',
      '0',
      '--tls-port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--tls-cert-file',
      certFile,
      '--tls-key-file',
      keyFile,
      '--tls-ca-cert-file',
      caFile,
      '--tls-auth-clients',
      'yes',
      '--unixsocket',
      socketPath,
      '--unixsocketperm',
      '700',
      '--dir',
      baseDir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--logfile',
      '',
    ];
    const lines: string[] = [];
    let partial = '';
    let onLine: ((line: string) => void) | undefined;
    const child = spawn(bins.server, args, {
      cwd: baseDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    track(child);
    const push = (chunk: Buffer) => {
      logStream.write(chunk);
      const parts = (partial + chunk.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        if (lines.length > LOG_TAIL_LINES) lines.shift();
        opts.log?.(line);
        onLine?.(line);
      }
    };
    child.stdout.on('data', push);
    child.stderr.on('data', push);
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
      new Promise<'ready'>((resolve) => {
        onLine = (line) => {
          if (/Ready to accept connections/.test(line)) resolve('ready');
        };
      }),
      exited.then(() => 'exited' as const),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    onLine = undefined;

    if (outcome === 'ready') {
      let stopping: Promise<void> | undefined;
      const stop = (): Promise<void> => {
        stopping ??= (async () => {
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGTERM');
            const timeout = new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref());
            await Promise.race([exited, timeout]);
            if (child.exitCode === null && child.signalCode === null) {
              child.kill('SIGKILL');
              await exited;
            }
          }
          running.delete(child);
          await new Promise<void>((resolve) => logStream.end(resolve));
        })();
        return stopping;
      };
      const cli = async (cliArgs: readonly string[]): Promise<string> => {
        const r = await run(bins.cli, ['-s', socketPath, ...cliArgs]);
        if (r.code !== 0 || /^(ERR|WRONGTYPE|NOPERM)\b/.test(r.stdout))
          throw new Error(`redis-cli ${cliArgs.join(' ')} failed: ${(r.stderr || r.stdout).trim()}`);
        return r.stdout.replace(/\n$/, '');
      };
      return { host: '127.0.0.1', port, socketPath, logFile, version, stop, cli };
    }

    if (outcome === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
    running.delete(child);
    if (partial) lines.push(partial);
    const tail = lines.join('\n') || '(the server printed nothing)';
    const lost = /Address already in use|Failed listening on port/i.test(tail);
    if (!lost || fixedPort || attempt >= 3) {
      logStream.end();
      const why = spawnError
        ? `could not run ${bins.server}: ${spawnError.message}`
        : outcome === 'timeout'
          ? `redis-server did not accept connections within ${timeoutMs} ms on port ${port}`
          : `redis-server exited during startup (${child.exitCode !== null ? `exit ${child.exitCode}` : child.signalCode}) on port ${port}`;
      throw new Error(`${why}; last lines of the server log:\n${tail}`);
    }
  }
}
