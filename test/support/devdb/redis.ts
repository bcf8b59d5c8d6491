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
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import {
  checkSocketPath,
  findProgram,
  freePort,
  isRoot,
  killAtExit,
  LogTail,
  lookupUser,
  run,
  spawnServer,
  startOutcome,
  writeTlsFiles,
} from '../../../src/devdb/process.js';

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

/** The Redis server and client programs, or undefined when either is missing. */
export async function findRedisBinaries(): Promise<{ server: string; cli: string } | undefined> {
  const find = (name: string) => findProgram(name, ['/usr/bin', '/usr/sbin']);
  const [server, cli] = await Promise.all([find('redis-server'), find('redis-cli')]);
  return server && cli ? { server, cli } : undefined;
}

/** Starts redis-server with TLS and client-certificate authentication on 127.0.0.1. */
export async function startRedis(opts: StartRedisOptions): Promise<StartedRedis> {
  const bins = await findRedisBinaries();
  if (!bins) throw new Error(REDIS_INSTALL_HINT);
  const versionOut = await run(bins.server, ['--version'], { input: null });
  const version = /v=(\S+)/.exec(versionOut.stdout)?.[1] ?? 'unknown';

  const baseDir = path.resolve(opts.baseDir);
  const socketPath = path.join(baseDir, 'redis.sock');
  const logFile = path.join(baseDir, 'redis.log');
  checkSocketPath(socketPath);
  await fs.mkdir(baseDir, { recursive: true, mode: 0o700 });
  const { certFile, keyFile, caFile } = await writeTlsFiles(baseDir, opts.tls);
  // Redis does not refuse root, so there is no fallback user: as root, the `redis` OS user if there is one.
  const user = isRoot() ? await lookupUser('redis') : undefined;
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
    const tail = new LogTail(logStream, opts.log);
    const { child, exited, spawnError } = spawnServer(
      bins.server,
      args,
      { cwd: baseDir, ...(user ? { uid: user.uid, gid: user.gid } : {}) },
      (d) => tail.push(d),
    );
    const forget = killAtExit(() => child.kill('SIGKILL'));
    const outcome = await startOutcome(tail.waitFor(/Ready to accept connections/), exited, timeoutMs);

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
          forget();
          await new Promise<void>((resolve) => logStream.end(resolve));
        })();
        return stopping;
      };
      const cli = async (cliArgs: readonly string[]): Promise<string> => {
        const r = await run(bins.cli, ['-s', socketPath, ...cliArgs], { input: null });
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
    forget();
    // Unlike the other harnesses, the unterminated last line goes into the error but not to opts.log.
    const lastLines = tail.textWithPartial() || '(the server printed nothing)';
    const lost = /Address already in use|Failed listening on port/i.test(lastLines);
    if (!lost || fixedPort || attempt >= 3) {
      logStream.end();
      const failed = spawnError();
      const why = failed
        ? `could not run ${bins.server}: ${failed.message}`
        : outcome === 'timeout'
          ? `redis-server did not accept connections within ${timeoutMs} ms on port ${port}`
          : `redis-server exited during startup (${child.exitCode !== null ? `exit ${child.exitCode}` : child.signalCode}) on port ${port}`;
      throw new Error(`${why}; last lines of the server log:\n${lastLines}`);
    }
  }
}
