/** The built `broker` CLI as a child process, for tests of what only a real process shows (signals, exit codes, logs). */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import path from 'node:path';

export const CLI = path.resolve('dist/broker.mjs');

/** A running `node dist/broker.mjs ...`, its output collected. */
export interface CliProcess {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in the stream, rejecting on timeout or exit. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** Spawns the built CLI with PG* variables removed from its environment. */
export function spawnCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) base[k] = v;
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...base, BROKER_LOG_LEVEL: 'info', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const text = { stdout: '', stderr: '' };
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of [...listeners]) l();
  };
  child.stdout.on('data', (d: Buffer) => {
    text.stdout += d.toString('utf8');
    notify();
  });
  child.stderr.on('data', (d: Buffer) => {
    text.stderr += d.toString('utf8');
    notify();
  });
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>(
    (resolve) => {
      child.on('close', (code, signal) => {
        done = true;
        notify();
        resolve({ code, signal, at: Date.now() });
      });
    },
  );
  const waitFor = (stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs = 10_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = text[stream].match(pattern);
        if (m) {
          finish();
          resolve(m);
        } else if (done) {
          finish();
          reject(
            new Error(
              `broker exited before printing ${pattern}\nstdout: ${text.stdout}\nstderr: ${text.stderr}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(
          new Error(`no ${pattern} within ${timeoutMs} ms\nstdout: ${text.stdout}\nstderr: ${text.stderr}`),
        );
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  return { child, stdout: () => text.stdout, stderr: () => text.stderr, waitFor, exited };
}
