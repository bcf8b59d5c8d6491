/**
 * File system checks and deletes for a destination that a bot (often root) writes while other local users
 * may be hostile: who may own and write the destination and its parents, which file systems are refused,
 * and deletes that cannot be redirected outside the directory the bot opened.
 */
import { type BigIntStats, constants, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { BrokerError } from '../errors.js';

export class DestinationError extends BrokerError {
  override name = 'DestinationError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('destination', message, options);
  }
}

/** statfs(2) magic numbers of the kernel's pseudo-filesystems (linux/magic.h): they hold no files of ours. */
const PSEUDO_MAGIC: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x1cd1, 'devpts'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0xcafe4a11, 'bpf'],
  [0x6165676c, 'pstore'],
  [0xde5e81e4, 'efivarfs'],
  [0x62656570, 'configfs'],
  [0x65735543, 'fusectl'],
  [0x19800202, 'mqueue'],
  [0x42494e4d, 'binfmt_misc'],
  [0xf97cff8c, 'selinuxfs'],
  [0x43415d53, 'smackfs'],
  [0x6e736673, 'nsfs'],
  [0x958458f6, 'hugetlbfs'],
]);
/** The same by mount type name; devtmpfs reports tmpfs's magic to statfs, so only its mount entry tells. */
const PSEUDO_TYPES: ReadonlySet<string> = new Set([...PSEUDO_MAGIC.values(), 'devtmpfs']);

/** The type of the mount holding `file` (the longest mount point above it), from /proc/self/mountinfo. */
async function mountTypeOf(file: string): Promise<string | undefined> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const decode = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  let best: { point: string; type: string } | undefined;
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    const point = decode(left?.split(' ')[4] ?? '');
    const type = right?.split(' ')[0];
    if (!point || !type) continue;
    const under = file === point || file.startsWith(point.endsWith('/') ? point : `${point}/`);
    if (under && point.length >= (best?.point.length ?? 0)) best = { point, type };
  }
  return best?.type;
}

/**
 * Refuses a destination on a kernel pseudo-filesystem (/proc, /sys, /dev, cgroup, ...). There, creating
 * directories fails in odd ways: under /proc a recursive mkdir never returns and keeps a core busy. `existing`
 * is the destination or its nearest existing parent.
 */
export async function refusePseudoFilesystem(dir: string, existing: string): Promise<void> {
  if (process.platform !== 'linux') return;
  const magic = await fs.statfs(existing).then(
    (s) => Number(s.type) >>> 0,
    () => undefined,
  );
  const type = (magic === undefined ? undefined : PSEUDO_MAGIC.get(magic)) ?? (await mountTypeOf(existing));
  if (type !== undefined && PSEUDO_TYPES.has(type))
    throw new DestinationError(
      `destination ${dir} is on ${type} (at ${existing}), a pseudo-filesystem of the kernel that cannot hold the output; configure a directory on a real file system, e.g. under /var/lib or /run`,
    );
}

/** The sticky bit: in such a directory only an entry's owner may rename or delete it. */
const STICKY = 0o1000;
const octal = (mode: number | bigint) => (Number(mode) & 0o7777).toString(8);

/**
 * Refuses a destination below a directory that a user other than root and the bot's user can write: such a
 * user could move the destination away and put a link or a directory of theirs in its place. A
 * world-writable directory with the sticky bit (like /tmp) is fine: there only an entry's owner may move it.
 * `from` is the first existing directory above the destination.
 */
export async function assertSafeParents(dir: string, from: string): Promise<void> {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  for (let p = from; ; p = path.dirname(p)) {
    const st = await fs.lstat(p);
    if (st.uid !== 0 && st.uid !== uid)
      throw new DestinationError(
        `destination ${dir} is inside ${p}, which is owned by uid ${st.uid}, neither root nor the bot's user (uid ${uid}): that user could replace the destination; configure a destination whose parent directories are owned by root or uid ${uid}`,
      );
    if ((st.mode & 0o022) !== 0 && (st.mode & STICKY) === 0)
      throw new DestinationError(
        `destination ${dir} is inside ${p}, mode ${octal(st.mode)}, which others can write: they could replace the destination; chmod go-w ${p} (or configure a destination elsewhere)`,
      );
    if (p === path.dirname(p)) return;
  }
}

const sameFile = (a: BigIntStats, b: BigIntStats) => a.dev === b.dev && a.ino === b.ino;

/**
 * A directory opened once (O_DIRECTORY | O_NOFOLLOW) and held open while the bot works in it.
 *
 * Why: Node's fs has no openat/unlinkat, so a delete of DIR/.versions/OLD resolves the whole path again,
 * and whoever swaps `.versions` for a symlink between the bot's look and its delete makes the bot delete
 * wherever the link points (a root bot: anywhere). So every delete here first re-checks with lstat (which
 * does not follow the last link) that the path still names the very directory opened, by device and inode
 * (held open, that inode cannot be reused), and then, where /proc/self/fd exists, deletes through the
 * open handle itself, so that not even a swap after the check can redirect it. Callers pass only names the
 * bot itself creates.
 */
export class PinnedDirectory {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly id: BigIntStats,
    private readonly viaFd: boolean,
  ) {}

  /** Opens `dir`, which must be a real directory: a symlink in its place fails (ELOOP), as does a file. */
  static async open(dir: string): Promise<PinnedDirectory> {
    return PinnedDirectory.openAt(dir, dir);
  }

  private static async openAt(dir: string, route: string): Promise<PinnedDirectory> {
    const handle = await fs.open(route, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      const id = await handle.stat({ bigint: true });
      const viaFd = await fs.stat(`/proc/self/fd/${handle.fd}`, { bigint: true }).then(
        (st) => sameFile(st, id),
        () => false,
      );
      return new PinnedDirectory(dir, handle, id, viaFd);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** The entry `name` of this very directory: through the open handle where the system allows it. */
  private at(name: string): string {
    return this.viaFd ? `/proc/self/fd/${this.handle.fd}/${name}` : path.join(this.path, name);
  }

  /** Refuses the directory unless the bot's user owns it. */
  async assertOwned(what: string): Promise<void> {
    const st = await this.handle.stat();
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid)
      throw new DestinationError(
        `${what} ${this.path} is owned by uid ${st.uid}, not by the bot's user (uid ${uid}), who alone may write there: chown ${uid} ${this.path}, or configure a directory that uid ${uid} owns`,
      );
  }

  /**
   * Refuses the directory unless the bot's user owns it and no one else may write into it; `fixMode` is the
   * mode the message tells the user to set.
   */
  async assertPrivate(what: string, fixMode: number): Promise<void> {
    await this.assertOwned(what);
    const st = await this.handle.stat();
    if ((st.mode & 0o022) !== 0)
      throw new DestinationError(
        `${what} ${this.path} has mode ${octal(st.mode)}, so others can write into it and swap the bot's files for links: chmod ${fixMode.toString(8)} ${this.path}`,
      );
  }

  /** chmod of the opened directory itself (fchmod), never of where a link at its path points. */
  async chmod(mode: number): Promise<void> {
    await this.handle.chmod(mode);
  }

  /** Throws unless the path still names the directory that was opened (not a link, not another directory). */
  async verify(): Promise<void> {
    const now = await fs.lstat(this.path, { bigint: true }).catch(() => undefined);
    if (now?.isDirectory() && sameFile(now, this.id)) return;
    throw new DestinationError(
      `${this.path} is no longer the directory the bot opened: it was replaced or swapped for a link while the bot worked in it, so the bot stopped and deleted nothing through it; someone else can write to the destination or a directory above it: find out who, then remove ${this.path}`,
    );
  }

  /** The names in the directory, listed through its path and confirmed to come from the opened directory. */
  async list(): Promise<string[]> {
    const names = await fs.readdir(this.path);
    await this.verify();
    return names;
  }

  /** lstat of the entry `name` (not following it). */
  async lstat(name: string): Promise<Stats> {
    return fs.lstat(this.at(name));
  }

  /** Removes the entry `name` (a file or a link, never a directory). */
  async unlink(name: string): Promise<void> {
    await this.verify();
    await fs.unlink(this.at(name));
  }

  /** Removes the directory `name` and everything in it, each delete checked and pinned as above. */
  async removeTree(name: string): Promise<void> {
    await this.verify();
    const child = await PinnedDirectory.openAt(path.join(this.path, name), this.at(name));
    try {
      const entries = await fs.readdir(child.path, { withFileTypes: true });
      await child.verify();
      for (const entry of entries)
        if (entry.isDirectory()) await child.removeTree(entry.name);
        else await child.unlink(entry.name);
    } finally {
      await child.close();
    }
    await this.verify();
    await fs.rmdir(this.at(name));
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}
