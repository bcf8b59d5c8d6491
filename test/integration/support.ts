import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { findPostgresBinaries, POSTGRES_INSTALL_HINT } from '../../src/devdb/postgres.js';

/**
 * A fresh directory under os.tmpdir(), mode 0711: others cannot list it but can traverse it, so the
 * `postgres` OS user the dev database runs as (when tests run as root) reaches a base directory inside it.
 * Files written into it keep their own modes (keys 0600). `cleanup()` removes it.
 */
export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `broker-${prefix}-`));
  await chmod(dir, 0o711);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * The PostgreSQL server binaries, or an Error saying what to install. Integration tests fail (never skip)
 * without them: in CI a missing package must be seen, and on a developer machine the message says what
 * to install.
 */
export async function requirePostgres(): Promise<{ binDir: string; version: string }> {
  const found = await findPostgresBinaries();
  if (!found)
    throw new Error(`${POSTGRES_INSTALL_HINT}. This integration test needs a real PostgreSQL server.`);
  return found;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program (no shell) with PG* variables removed from its environment; never throws on exit codes. */
export function runCommand(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CommandResult> {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) base[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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
