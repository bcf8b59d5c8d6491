import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { ConflictError, StateError } from './errors.js';
import { LockFile } from './lockfile.js';
import { assertValidKey, type Expect, type StateStore, type Versioned } from './store.js';

const LOCK_WAIT_MS = 10_000;
const STALE_LOCK_MS = 30_000;

/** Writes `data` to `file` atomically: a temporary file in the same directory, fsync, rename. */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/** Checks that `dir` exists, is a real directory (not a symlink) owned by us and closed to others. */
export async function assertPrivateDirectory(dir: string, what: string): Promise<void> {
  let st: import('node:fs').Stats;
  try {
    st = await fs.lstat(dir);
  } catch {
    throw new StateError(`${what} ${dir} does not exist; run \`broker init --state-dir ${dir}\` first`);
  }
  if (st.isSymbolicLink() || !st.isDirectory()) throw new StateError(`${what} ${dir} is not a directory`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid())
    throw new StateError(
      `${what} ${dir} is owned by uid ${st.uid}, not by this user (uid ${process.getuid()})`,
    );
  if ((st.mode & 0o077) !== 0)
    throw new StateError(
      `${what} ${dir} has mode ${(st.mode & 0o777).toString(8)}; it holds private keys, so only its owner may use it: chmod 700 ${dir}`,
    );
}

interface Envelope {
  version: number;
  value: unknown;
}

/**
 * StateStore in a state directory: one JSON file per key under `data/`, files 0600, directories 0700.
 * Writes take an exclusive lock file, so compare-and-swap is correct across processes sharing the directory;
 * reads need no lock because every write is an atomic rename.
 */
export class FileStateStore implements StateStore {
  private readonly dataDir: string;
  private readonly lock: LockFile;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(readonly dir: string) {
    this.dataDir = path.join(dir, 'data');
    this.lock = new LockFile(path.join(dir, 'state.lock'), {
      waitMs: LOCK_WAIT_MS,
      staleMs: STALE_LOCK_MS,
    });
  }

  /** Opens an existing state directory after checking its permissions. */
  static async open(dir: string): Promise<FileStateStore> {
    await assertPrivateDirectory(dir, 'state directory');
    await assertPrivateDirectory(path.join(dir, 'data'), 'state data directory');
    return new FileStateStore(dir);
  }

  /** Creates the state directory (0700) if needed and opens it. */
  static async create(dir: string): Promise<FileStateStore> {
    await fs.mkdir(path.join(dir, 'data'), { recursive: true, mode: 0o700 });
    return FileStateStore.open(dir);
  }

  private fileOf(key: string): string {
    assertValidKey(key);
    return path.join(this.dataDir, `${key}.json`);
  }

  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    const env = await this.read(this.fileOf(key));
    return env ? { key, value: env.value as T, version: env.version } : undefined;
  }

  private async read(file: string): Promise<Envelope | undefined> {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StateError(`cannot read state file ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const env = JSON.parse(text) as Envelope;
      if (typeof env.version !== 'number') throw new Error('no version');
      return env;
    } catch (err) {
      throw new StateError(
        `state file ${file} is corrupt (${(err as Error).message}); restore it from a backup`,
        {
          cause: err,
        },
      );
    }
  }

  async put(key: string, value: unknown, expect?: Expect): Promise<number> {
    const file = this.fileOf(key);
    return this.locked(async () => {
      const current = await this.read(file);
      checkExpect(key, current?.version, expect);
      const version = (current?.version ?? 0) + 1;
      await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await writeFileAtomic(file, `${JSON.stringify({ version, value } satisfies Envelope, null, 2)}\n`);
      return version;
    });
  }

  async delete(key: string, expect?: Expect): Promise<boolean> {
    const file = this.fileOf(key);
    return this.locked(async () => {
      const current = await this.read(file);
      checkExpect(key, current?.version, expect);
      if (!current) return false;
      await fs.rm(file);
      return true;
    });
  }

  async list<T>(prefix: string): Promise<Versioned<T>[]> {
    const base = prefix.replace(/\/?$/, '');
    assertValidKey(base);
    const dir = path.join(this.dataDir, base);
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: Versioned<T>[] = [];
    const keys = names
      .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
      .map((n) => n.slice(0, -'.json'.length));
    for (const name of keys.sort()) {
      const key = `${base}/${name}`;
      const env = await this.read(path.join(dir, `${name}.json`));
      if (env) out.push({ key, value: env.value as T, version: env.version });
    }
    return out;
  }

  /** Runs `fn` holding the in-process queue and the cross-process lock file. */
  private locked<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.queue.then(async () => {
      await this.lock.acquire(
        (holder) =>
          new StateError(
            `state directory ${this.dir} stayed locked for ${LOCK_WAIT_MS / 1000}s by pid ${holder} (${this.lock.file})`,
          ),
      );
      try {
        return await fn();
      } finally {
        await this.lock.release();
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
}

export function checkExpect(key: string, actual: number | undefined, expect: Expect): void {
  if (expect === undefined) return;
  if (expect === 'absent') {
    if (actual !== undefined) throw new ConflictError(`${key} already exists`);
    return;
  }
  if (actual !== expect)
    throw new ConflictError(
      `${key} changed concurrently (expected version ${expect}, found ${actual ?? 'none'})`,
    );
}
