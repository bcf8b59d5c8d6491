/** Temporary directories for tests, under the OS temp dir; nothing is left behind. */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

const tempDirs: string[] = [];

/** Creates a fresh directory (mode 0700); `removeTempDirs` (in afterAll) deletes every one created. */
export async function makeTempDir(prefix = 'broker-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

/**
 * A fresh directory, mode 0711: others cannot list it but can traverse it, so the `postgres` OS user the dev
 * database runs as (when tests run as root) reaches a base directory inside it. Files written into it keep
 * their own modes (keys 0600). `cleanup()` removes it.
 */
export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `broker-${prefix}-`));
  await chmod(dir, 0o711);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
