/** Runs programs for tests (integration only: unit tests start no child process). */
import { spawn } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from './fixtures.js';

export interface RunResult {
  /** The exit code; null when a signal ended the program. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  /** Added to this process's environment, from which PG* variables are removed (a test names its database). */
  env?: NodeJS.ProcessEnv;
  /** Kills the program and rejects after this long (default: no limit). */
  timeoutMs?: number;
}

/** Runs a program without a shell and reports its exit code and output instead of throwing on failure. */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  const { timeoutMs } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: { ...env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`${file} ${args.join(' ')} did not finish within ${timeoutMs} ms`));
          }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** The module a script run by `runConcurrently` imports `startTogether` from. */
export const RUN_MODULE = JSON.stringify(path.join(REPO_ROOT, 'test/support/run.ts'));

/**
 * Runs `count` node processes of the TypeScript module `source` (through tsx, from the repository root) at
 * once; `process.argv.slice(2)` is `args`. A script calls `await startTogether()` (imported from
 * RUN_MODULE) where the processes should really contend, rather than run one after another.
 */
export async function runConcurrently(
  source: string,
  args: readonly string[],
  options: { count: number; workDir: string; timeoutMs?: number },
): Promise<RunResult[]> {
  const script = path.join(options.workDir, `concurrent-${Math.random().toString(36).slice(2)}.mts`);
  const barrier = `${script}.barrier`;
  await mkdir(barrier);
  await writeFile(script, source);
  return Promise.all(
    Array.from({ length: options.count }, () =>
      run(process.execPath, ['--import', 'tsx', script, ...args], {
        cwd: REPO_ROOT,
        env: { TEST_BARRIER: barrier, TEST_PROCESSES: String(options.count) },
        timeoutMs: options.timeoutMs ?? 60_000,
      }),
    ),
  );
}

/** In a process of `runConcurrently`: returns once every one of them has called it. */
export async function startTogether(): Promise<void> {
  const barrier = process.env.TEST_BARRIER;
  const count = Number(process.env.TEST_PROCESSES);
  if (!barrier || !count) throw new Error('startTogether() runs only in a process of runConcurrently()');
  await writeFile(path.join(barrier, String(process.pid)), '');
  while ((await readdir(barrier)).length < count) await new Promise((r) => setTimeout(r, 5));
}
