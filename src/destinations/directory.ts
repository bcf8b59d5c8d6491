import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { type BundleMeta, type CredentialBundle, validateBundleShape } from '../credentials/bundle.js';
import { LockFile } from '../state/lockfile.js';
import type { Destination } from './destination.js';
import { assertSafeParents, DestinationError, PinnedDirectory, refusePseudoFilesystem } from './safe-fs.js';

export { DestinationError } from './safe-fs.js';

const META_FILE = '.broker.json';
const CURRENT = '.current';
const VERSIONS = '.versions';
const LOCK = '.lock';
/** A link left under its temporary name (see replaceSymlink) by a write that crashed halfway. */
const STRAY_LINK = /\.[0-9a-f]{8}\.tmp$/;
/** The names the bot gives the entries of `.versions`: `<serial>-<id>`, and `.<serial>-<id>.tmp` while staging. */
const VERSION = /^[0-9a-fA-F]{1,64}-[0-9a-f]{6}$/;
const STAGING = /^\.[0-9a-fA-F]{1,64}-[0-9a-f]{6}\.tmp$/;

/**
 * The `directory` destination. Layout, so that the whole output switches at once:
 *
 *     PATH/.versions/<serial>/   every artifact of one issuance (files 0600, directories 0700)
 *     PATH/.current           -> .versions/<serial>      (replaced with one atomic rename)
 *     PATH/tlscert            -> .current/tlscert        (and one such link per artifact)
 *
 * Opening `PATH/key` resolves through `.current` at that moment, so at every instant all artifact names
 * point into the same issuance; a reader never finds a new certificate beside an old key. The previous
 * version stays on disk for readers that are mid-read. A lock file keeps two bots from writing one path.
 *
 * The destination and `.versions` must be the bot user's and writable by no one else, and no other user may
 * be able to replace a directory above them; pseudo-filesystems (/proc, /sys, /dev, ...) are refused. Deletes
 * go through directories held open (safe-fs.ts) and touch only names the bot creates.
 */
export class DirectoryDestination implements Destination {
  readonly description: string;
  readonly dir: string;
  private readonly fileMode: number;
  private readonly dirMode: number;

  constructor(dir: string, options: { readers?: 'owner' | 'group' } = {}) {
    this.dir = path.resolve(dir);
    this.description = `directory ${dir}`;
    this.fileMode = options.readers === 'group' ? 0o640 : 0o600;
    this.dirMode = options.readers === 'group' ? 0o750 : 0o700;
  }

  /**
   * Refuses, before anything is created, a destination on a pseudo-filesystem, one reached through a symlink
   * (the bot must never write where a link points it) and one below a directory another user can write.
   */
  private async assertPlace(): Promise<void> {
    let existing = this.dir;
    while (
      !(await fs.lstat(existing).then(
        () => true,
        () => false,
      ))
    )
      existing = path.dirname(existing);
    await refusePseudoFilesystem(this.dir, existing);
    const real = await fs.realpath(existing);
    if (real !== existing)
      throw new DestinationError(
        `destination ${this.dir} goes through a symlink (${existing} resolves to ${real}); configure the real path`,
      );
    await assertSafeParents(this.dir, existing === this.dir ? path.dirname(existing) : existing);
  }

  /** Creates the destination if needed and opens it, refusing one another user owns or can write. */
  private async openDestination(): Promise<PinnedDirectory> {
    let created: string | undefined;
    let dir: PinnedDirectory;
    try {
      created = await fs.mkdir(this.dir, { recursive: true, mode: this.dirMode });
      dir = await PinnedDirectory.open(this.dir);
    } catch (err) {
      throw new DestinationError(`cannot create destination ${this.dir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      // Modes are set explicitly after each create: a restrictive umask (systemd UMask=0077) would
      // otherwise silently take away the group access that `readers: group` promises.
      if (created) await dir.chmod(this.dirMode);
      await dir.assertPrivate('destination', this.dirMode);
      return dir;
    } catch (err) {
      await dir.close();
      throw err;
    }
  }

  async write(bundle: CredentialBundle): Promise<void> {
    await this.assertPlace();
    const dir = await this.openDestination();
    try {
      await this.writeIn(dir, bundle);
    } finally {
      await dir.close();
    }
  }

  private async writeIn(dir: PinnedDirectory, bundle: CredentialBundle): Promise<void> {
    const lock = new LockFile(path.join(this.dir, LOCK), { waitMs: 5_000, staleMs: 120_000 });
    try {
      await lock.acquire(
        (holder) =>
          new DestinationError(
            `destination ${this.dir} is being written by another bot (pid ${holder}); two bots must not share one destination`,
          ),
      );
    } catch (err) {
      // Even the lock can fail to be written, e.g. on a full disk (ENOSPC).
      throw err instanceof DestinationError ? err : this.unchanged(err);
    }
    try {
      const versions = await this.openVersions();
      try {
        await this.writeLocked(dir, versions, bundle);
      } finally {
        await versions.close();
      }
    } finally {
      await lock.release();
    }
  }

  /** Creates and opens `.versions`, which must be a real directory of the bot's user. */
  private async openVersions(): Promise<PinnedDirectory> {
    const versions = path.join(this.dir, VERSIONS);
    for (const own of [versions, path.join(this.dir, CURRENT)]) {
      const st = await fs.lstat(own).catch(() => undefined);
      // .current is our link; .versions must be a real directory, or a planted link would redirect the keys.
      if (own === versions && st?.isSymbolicLink())
        throw new DestinationError(
          `${versions} is a symlink; the broker refuses to write keys through it: remove it`,
        );
      if (own !== versions && st && !st.isSymbolicLink())
        throw new DestinationError(
          `${own} is not the broker's link; remove it so the broker can manage the output`,
        );
    }
    let opened: PinnedDirectory;
    try {
      await fs.mkdir(versions, { recursive: true, mode: 0o700 });
      opened = await PinnedDirectory.open(versions);
    } catch (err) {
      throw this.unchanged(err);
    }
    try {
      await opened.assertOwned('the versions directory');
      await opened.chmod(this.dirMode);
      return opened;
    } catch (err) {
      await opened.close();
      throw err;
    }
  }

  private async writeLocked(
    dir: PinnedDirectory,
    pinned: PinnedDirectory,
    bundle: CredentialBundle,
  ): Promise<void> {
    const versions = pinned.path;
    const name = `${bundle.serial}-${randomBytes(3).toString('hex')}`;
    const staging = path.join(versions, `.${name}.tmp`);
    const final = path.join(versions, name);
    const { files, ...meta } = bundle;
    try {
      const entries = [...Object.entries(files), [META_FILE, `${JSON.stringify(meta, null, 2)}\n`] as const];
      // Each directory of the version (the staging one, cockroach/) once, then every file at the same time:
      // each is synced before the rename that publishes them, and the syncs overlap instead of queueing.
      await fs.mkdir(staging, { mode: this.dirMode });
      await fs.chmod(staging, this.dirMode);
      for (const parent of new Set(entries.map(([rel]) => path.dirname(path.join(staging, rel))))) {
        await fs.mkdir(parent, { recursive: true, mode: this.dirMode });
        await fs.chmod(parent, this.dirMode);
      }
      const written = await Promise.allSettled(
        entries.map(([rel, content]) => writeDurable(path.join(staging, rel), content, this.fileMode)),
      );
      // Every write has settled, so none can recreate a file after the cleanup below removes the staging tree.
      const failed = written.find((w) => w.status === 'rejected');
      if (failed) throw failed.reason;
      await fs.rename(staging, final);
    } catch (err) {
      await pinned.removeTree(path.basename(staging)).catch(() => undefined);
      throw this.unchanged(err);
    }

    // Every name of the new issuance gets its link before the switch (a link to .current/<name> that the
    // old version lacks dangles until then), so that a crash or a failure here leaves the previous output
    // whole and current, and after the switch every name resolves.
    const top = new Set(Object.keys(files).map((rel) => rel.split('/')[0] as string));
    for (const entry of top) await this.ensureLink(dir, entry);

    // The switch: one rename of the `.current` link. The version it pointed to stays as the previous one.
    const previous = await fs.readlink(path.join(this.dir, CURRENT)).catch(() => undefined);
    await replaceSymlink(dir, CURRENT, path.join(VERSIONS, name));

    for (const entry of await dir.list()) {
      const link = path.join(this.dir, entry);
      if (STRAY_LINK.test(entry) && (await dir.lstat(entry)).isSymbolicLink()) {
        await dir.unlink(entry); // we hold the lock: no write of ours is using it
        continue;
      }
      if (entry.startsWith('.') || top.has(entry)) continue;
      // Only our own links (into .current) from an earlier format are removed; anything else is the user's.
      if ((await fs.readlink(link).catch(() => '')) === path.join(CURRENT, entry)) await dir.unlink(entry);
    }
    try {
      await this.pruneVersions(pinned, name, previous === undefined ? undefined : path.basename(previous));
    } catch (err) {
      throw new DestinationError(
        `wrote the new output to ${this.dir}, but stopped removing old versions: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** The error of a write that failed before the switch: it names the destination and says nothing changed. */
  private unchanged(err: unknown): DestinationError {
    return new DestinationError(
      `could not write output to ${this.dir}: ${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}; the previous credentials are unchanged`.replace(
        / +/g,
        ' ',
      ),
      { cause: err },
    );
  }

  /** Makes PATH/<entry> a link to .current/<entry>, replacing an older plain file or foreign link atomically. */
  private async ensureLink(dir: PinnedDirectory, entry: string): Promise<void> {
    const link = path.join(this.dir, entry);
    const target = path.join(CURRENT, entry);
    const current = await fs.readlink(link).catch(() => undefined);
    if (current === target) return;
    const st = await fs.lstat(link).catch(() => undefined);
    if (st?.isDirectory())
      throw new DestinationError(
        `${link} is a directory the broker did not create; move it away so the output can use that name`,
      );
    await replaceSymlink(dir, entry, target);
  }

  /**
   * Keeps the current version and the one `.current` pointed to before the switch (a reader may still be
   * reading it) and removes the rest, including staging directories and versions that never became current,
   * left by a crashed write (we hold the lock, so none is in use). Only directories named as the bot names
   * them are touched; anything else in `.versions` is left alone.
   */
  private async pruneVersions(versions: PinnedDirectory, current: string, previous?: string): Promise<void> {
    for (const e of await versions.list()) {
      if (e === current || e === previous || !(VERSION.test(e) || STAGING.test(e))) continue;
      if ((await versions.lstat(e)).isDirectory()) await versions.removeTree(e);
    }
  }

  async read(): Promise<CredentialBundle | undefined> {
    return readDirectoryOutput(this.dir);
  }
}

async function writeDurable(file: string, content: string, mode: number): Promise<void> {
  const handle = await fs.open(
    file,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
  try {
    await handle.chmod(mode);
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces the entry `name` of `dir` with a link to `target`, atomically (a rename over it). */
async function replaceSymlink(dir: PinnedDirectory, name: string, target: string): Promise<void> {
  const tmp = `${name}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.symlink(target, path.join(dir.path, tmp));
  try {
    await fs.rename(path.join(dir.path, tmp), path.join(dir.path, name));
  } catch (err) {
    await dir.unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/**
 * Reads a directory output consistently: `.current` is resolved once and every file is read from that
 * one version. Returns undefined when the directory holds no output yet.
 */
export async function readDirectoryOutput(dir: string): Promise<CredentialBundle | undefined> {
  let version: string;
  try {
    version = path.resolve(dir, await fs.readlink(path.join(dir, CURRENT)));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DestinationError(`${dir} is not a broker output directory: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let meta: unknown;
  try {
    meta = JSON.parse(await fs.readFile(path.join(version, META_FILE), 'utf8'));
  } catch (err) {
    throw new DestinationError(`output ${dir} has no readable ${META_FILE}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const files: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await fs.readdir(path.join(version, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.name === META_FILE) continue;
      if (entry.isDirectory()) await walk(child);
      else if (entry.isFile()) files[child] = await fs.readFile(path.join(version, child), 'utf8');
    }
  };
  await walk('');
  return validateBundleShape({ ...(meta as BundleMeta), files }, `the output in ${dir}`);
}
