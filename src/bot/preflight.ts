import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config/errors.js';
import { assertSafeParents, refusePseudoFilesystem } from '../destinations/safe-fs.js';
import { errorMessage } from '../errors.js';
import type { BotConfig } from './config.js';
import { StorageError } from './private-dir.js';

/** The nearest path at or above `dir` that exists. */
async function nearestExisting(dir: string): Promise<string> {
  let p = dir;
  while (
    !(await fs.lstat(p).then(
      () => true,
      () => false,
    ))
  )
    p = path.dirname(p);
  return p;
}

/**
 * Checks a directory destination the way its first write will, before anything is spent: not on a
 * pseudo-filesystem, not through a symlink, under parents no other user can swap, and either an existing
 * directory of this user that it can write, or creatable. A destination this user owns that others can write
 * is tightened (`chmod go-w`) rather than refused; `mkdir -p`'s 0755 is fine as it is.
 */
async function checkDirectoryDestination(dir: string, key: string): Promise<string[]> {
  const abs = path.resolve(dir);
  const existing = await nearestExisting(abs);
  try {
    await refusePseudoFilesystem(abs, existing);
    const real = await fs.realpath(existing);
    if (real !== existing)
      throw new StorageError(`destination ${abs} goes through a symlink (${existing} resolves to ${real})`);
    await assertSafeParents(abs, existing === abs ? path.dirname(existing) : existing);
  } catch (err) {
    throw new StorageError(`${key}: ${errorMessage(err)}`, { cause: err });
  }
  const changes: string[] = [];
  if (existing === abs) {
    const st = await fs.lstat(abs);
    if (!st.isDirectory()) throw new StorageError(`${key}: ${abs} exists and is not a directory`);
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid)
      throw new StorageError(
        `${key}: ${abs} is owned by uid ${st.uid}, not by the bot's user (uid ${uid}): chown it to the bot's user (readers get access with the destination's \`readers\`)`,
      );
    if ((st.mode & 0o022) !== 0) {
      await fs.chmod(abs, st.mode & 0o755);
      changes.push(
        `tightened destination ${abs} from ${(st.mode & 0o777).toString(8)} (others could write into it)`,
      );
    }
  }
  try {
    await fs.access(existing, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new StorageError(
      `${key}: the bot's user cannot ${existing === abs ? 'write into' : 'create directories in'} ${existing}: ${errorMessage(err)}`,
      { cause: err },
    );
  }
  return changes;
}

/**
 * What `broker start` checks before it may spend a one-time join token: every output can be issued by this
 * broker, and every directory destination can be written. Returns what it changed.
 */
export async function preflightOutputs(config: BotConfig): Promise<string[]> {
  const changes: string[] = [];
  for (const output of config.outputs) {
    const at = output.origin;
    if (output.username === '')
      throw new ConfigError(
        `${at}.username: not set. Without a Teleport cluster nothing supplies the database user at connect time: the database reads it from the certificate, so the output must name it`,
      );
    if (output.destination.type === 'directory')
      changes.push(...(await checkDirectoryDestination(output.destination.path, `${at}.destination.path`)));
  }
  return changes;
}
