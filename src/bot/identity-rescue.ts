/**
 * Where a bot identity goes when its storage will not take it: a file beside the storage directory, so an
 * identity the authority issued (a join token spent, or the previous generation made useless by a renewal)
 * survives the process, and the next start with a fixed storage takes it from there without a new token.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { type BotIdentity, botIdentitySchema, serializeIdentity } from '../credentials/identity.js';
import { errorMessage } from '../errors.js';
import { StorageError } from './private-dir.js';

/** `PARENT/.NAME.identity-rescue.json` for the storage directory `PARENT/NAME`. */
export function rescueFileOf(storageDir: string): string {
  const abs = path.resolve(storageDir);
  return path.join(path.dirname(abs), `.${path.basename(abs)}.identity-rescue.json`);
}

/**
 * Why the parent directory is not a safe place for a private key, or undefined when it is: a real directory
 * (no symlink) of this user that no one else can write into (so no one can swap or remove the file).
 */
async function unsafeParent(parent: string): Promise<string | undefined> {
  let st: import('node:fs').Stats;
  try {
    st = await fs.lstat(parent);
  } catch (err) {
    return `cannot inspect ${parent}: ${errorMessage(err)}`;
  }
  if (st.isSymbolicLink() || !st.isDirectory()) return `${parent} is not a real directory`;
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) return `${parent} belongs to uid ${st.uid}, not the bot's user`;
  if ((st.mode & 0o022) !== 0) return `others can write into ${parent}`;
  return undefined;
}

/**
 * Writes the identity to the rescue file beside `storageDir` (0600, created exclusively, synced, renamed
 * into place) and returns its path. Refuses, with the reason, where that would not be safe.
 */
export async function writeRescue(storageDir: string, identity: BotIdentity): Promise<string> {
  const file = rescueFileOf(storageDir);
  const parent = path.dirname(file);
  const unsafe = await unsafeParent(parent);
  if (unsafe) throw new StorageError(`not written beside the storage: ${unsafe}`);
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const handle = await fs.open(tmp, flags, 0o600);
    try {
      await handle.writeFile(`${serializeIdentity(identity)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw new StorageError(`cannot write ${file}: ${errorMessage(err)}`, { cause: err });
  }
  return file;
}

/**
 * The identity in the rescue file beside `storageDir`, if there is one. A rescue file that is not a private
 * regular file of this user, or is not an identity, is refused with what to do (never used, never removed).
 * In a parent others can write into, the bot never writes one (writeRescue refuses), so a file there is not
 * its own: others could swap it between its check and its read, or plant one to stop the start. Ignored.
 */
export async function readRescue(storageDir: string): Promise<BotIdentity | undefined> {
  const file = rescueFileOf(storageDir);
  if (await unsafeParent(path.dirname(file))) return undefined;
  const st = await fs.lstat(file).catch(() => undefined);
  if (!st) return undefined;
  const uid = process.getuid?.();
  if (!st.isFile() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0)
    throw new StorageError(
      `${file} (a bot identity kept when storage failed) is not a private file of the bot's user: check who made it, then remove it or chmod 600 it`,
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch {
    parsed = undefined;
  }
  const result = botIdentitySchema.safeParse(parsed);
  if (!result.success)
    throw new StorageError(`${file} (a bot identity kept when storage failed) is corrupt: move it away`);
  return result.data;
}

/** Removes the rescue file beside `storageDir` (storage holds the identity now, or a newer one). */
export async function removeRescue(storageDir: string): Promise<void> {
  await fs.rm(rescueFileOf(storageDir), { force: true });
}
