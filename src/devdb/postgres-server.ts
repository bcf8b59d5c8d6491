/**
 * How the throwaway PostgreSQL's tools and postmaster are run: as the server's OS user when we are root, with
 * a clean environment, and the postmaster in the foreground until postmaster.pid says it is ready.
 */
import type { ChildProcess } from 'node:child_process';
import { promises as fs, type WriteStream } from 'node:fs';
import path from 'node:path';
import { killAtExit, LogTail, type OsUser, StartError, settles, spawnServer } from './process.js';

/** The environment for PostgreSQL tools: no PG* variables that could redirect them, English C locale. */
export function toolEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.LC_ALL = 'C';
  env.LANG = 'C';
  return env;
}

/** The argv that runs `bin` as the server user (through runuser when we are root). */
export function asServerUser(
  user: OsUser | undefined,
  bin: string,
  args: readonly string[],
): [string, string[]] {
  return user ? ['runuser', ['-u', user.name, '--', bin, ...args]] : [bin, [...args]];
}

/** The first ancestor of `dir` that `user` cannot traverse, judged from mode bits; for error messages. */
export async function blockingAncestor(dir: string, user: OsUser): Promise<string | undefined> {
  let current = path.dirname(dir);
  const chain: string[] = [];
  for (;;) {
    chain.unshift(current);
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
  }
  for (const d of chain) {
    const st = await fs.stat(d);
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return d;
  }
  return undefined;
}

/** A double-quoted SQL identifier. */
export function ident(name: string): string {
  if (name.length === 0 || name.includes('\0'))
    throw new Error(`invalid PostgreSQL name ${JSON.stringify(name)}`);
  return `"${name.replace(/"/g, '""')}"`;
}

/** A single-quoted postgresql.conf value. */
export function confString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** A running postmaster, as launch() leaves it. */
export interface Postmaster {
  child: ChildProcess;
  postmasterPid: number;
  port: number;
  tail: LogTail;
  exited: Promise<void>;
  /** Takes the postmaster off the list killed at exit (it has stopped). */
  forget: () => void;
}

/**
 * Spawns the postmaster in the foreground (its output is ours) and waits until postmaster.pid says
 * "ready", i.e. it accepts connections — what `pg_ctl -w` waits for.
 */
export async function launch(a: {
  binDir: string;
  dataDir: string;
  port: number;
  user: OsUser | undefined;
  env: NodeJS.ProcessEnv;
  cwd: string;
  logStream: WriteStream;
  timeoutMs: number;
  log?: (line: string) => void;
}): Promise<Postmaster> {
  const [cmd, args] = asServerUser(a.user, path.join(a.binDir, 'postgres'), [
    '-D',
    a.dataDir,
    '-p',
    String(a.port),
  ]);
  const tail = new LogTail(a.logStream, a.log);
  const { child, exited, spawnError } = spawnServer(cmd, args, { cwd: a.cwd, env: a.env }, (d) =>
    tail.push(d),
  );
  const gone = () => spawnError() !== undefined || child.exitCode !== null || child.signalCode !== null;

  const pidFile = path.join(a.dataDir, 'postmaster.pid');
  const deadline = Date.now() + a.timeoutMs;
  for (;;) {
    if (gone()) {
      await exited;
      tail.flush();
      const failed = spawnError();
      if (failed) throw new StartError(`could not run ${cmd}: ${failed.message}`, tail.text());
      throw new StartError(
        `PostgreSQL ${path.basename(path.dirname(a.binDir))} exited during startup (${child.exitCode !== null ? `exit ${child.exitCode}` : child.signalCode}) on port ${a.port}`,
        tail.text(),
      );
    }
    const lines = await fs.readFile(pidFile, 'utf8').then(
      (t) => t.split('\n'),
      () => [] as string[],
    );
    // postmaster.pid: pid, data dir, start time, port, socket dir, listen address, shmem key, status.
    const pid = Number(lines[0]);
    if (lines[7]?.trim() === 'ready' && Number.isInteger(pid) && pid > 0) {
      // Immediate shutdown (SIGQUIT): the process is going away.
      const forget = killAtExit(() => signal(pid, 'SIGQUIT'));
      return { child, postmasterPid: pid, port: a.port, tail, exited, forget };
    }
    if (Date.now() > deadline) {
      const pmPid = Number.isInteger(pid) && pid > 0 ? pid : child.pid;
      if (pmPid) signal(pmPid, 'SIGQUIT');
      await settles(exited, 5_000);
      tail.flush();
      throw new StartError(
        `PostgreSQL did not accept connections within ${a.timeoutMs} ms on port ${a.port}`,
        tail.text(),
      );
    }
    await sleep(50);
  }
}
