import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { BrokerError } from '../errors.js';

/** A storage directory or file the bot cannot use as it stands, found before a join token is spent. */
export class StorageError extends BrokerError {
  override name = 'StorageError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('bad_storage', message, options);
  }
}

const octal = (mode: number) => (mode & 0o777).toString(8);

/**
 * Makes `dir` a private directory of this user, the way tbot accepts it: created 0700 when missing, and a
 * directory this user owns that others may read or enter (`mkdir -p` leaves 0755) is tightened to 0700 here
 * rather than refused. What cannot be fixed safely is refused with what to do: a symlink, a file, a
 * directory of another user. Returns what was changed, for the log.
 */
export async function ensurePrivateDirectory(dir: string, key: string): Promise<string[]> {
  const changes: string[] = [];
  let st = await fs.lstat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new StorageError(`${key} ${dir}: cannot inspect it: ${err.message}`, { cause: err });
  });
  if (!st) {
    try {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new StorageError(
        `${key} ${dir} does not exist and cannot be created: ${(err as Error).message}; create it for the bot's user (mkdir -p ${dir})`,
        { cause: err },
      );
    }
    changes.push(`created ${dir} (0700)`);
    st = await fs.lstat(dir);
  }
  if (st.isSymbolicLink())
    throw new StorageError(
      `${key} ${dir} is a symlink; the bot keeps its private key only in a real directory: configure the path it points to`,
    );
  if (!st.isDirectory()) throw new StorageError(`${key} ${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    throw new StorageError(
      `${key} ${dir} is owned by uid ${st.uid}, not by the bot's user (uid ${uid}); it will hold the bot's private key: chown it to the bot's user or configure another path`,
    );
  if ((st.mode & 0o077) !== 0) {
    await fs.chmod(dir, 0o700);
    changes.push(`tightened ${dir} from ${octal(st.mode)} to 700 (it holds the bot's private key)`);
  }
  return changes;
}

/** Tightens a file of this user that others may read to 0600; refuses a symlink or another user's file. */
export async function ensurePrivateFile(file: string, key: string): Promise<string[]> {
  const st = await fs.lstat(file).catch(() => undefined);
  if (!st) return [];
  if (!st.isFile()) throw new StorageError(`${key}: ${file} is not a regular file`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    throw new StorageError(
      `${key}: ${file} is owned by uid ${st.uid}, not by the bot's user (uid ${uid}): chown it to the bot's user`,
    );
  if ((st.mode & 0o077) === 0) return [];
  await fs.chmod(file, 0o600);
  return [`tightened ${file} from ${octal(st.mode)} to 600`];
}

/** Proves that this process can create, write, sync and remove a file in `dir` (a read-only mount, a full disk). */
export async function probeWritable(dir: string, key: string): Promise<void> {
  const probe = path.join(dir, `.write-probe.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await fs.open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await handle.writeFile('probe\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    await fs.rm(probe, { force: true });
    throw new StorageError(`${key} ${dir}: the bot cannot write there: ${(err as Error).message}`, {
      cause: err,
    });
  }
  await fs.rm(probe, { force: true });
}
