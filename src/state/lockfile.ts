import { promises as fs } from 'node:fs';

/** How long a lock file may stay without its owner's pid before it counts as left by a crash. */
const EMPTY_LOCK_GRACE_MS = 1_000;

/**
 * An exclusive lock between processes: a file created with O_EXCL holding the owner's pid. A lock whose
 * owner no longer runs, or that is older than `staleMs`, is broken, so a crashed process never wedges others.
 */
export class LockFile {
  constructor(
    readonly file: string,
    private readonly options: { waitMs: number; staleMs: number },
  ) {}

  /** Takes the lock, waiting up to `waitMs`; throws `onTimeout()` when it stays taken. */
  async acquire(onTimeout: (holder: string) => Error): Promise<void> {
    const deadline = Date.now() + this.options.waitMs;
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      const handle = await fs.open(this.file, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
        return undefined; // taken
      });
      if (handle) {
        try {
          await handle.writeFile(`${process.pid}\n`);
        } catch (err) {
          // An empty lock file (e.g. the disk is full) would hold everyone else off: take it back.
          await handle.close().catch(() => undefined);
          await fs.rm(this.file, { force: true });
          throw err;
        }
        await handle.close();
        return;
      }
      if (await this.breakIfStale()) continue;
      if (Date.now() > deadline) {
        const holder = await fs.readFile(this.file, 'utf8').then(
          (t) => t.trim(),
          () => '?',
        );
        throw onTimeout(holder);
      }
      await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
    }
  }

  async release(): Promise<void> {
    await fs.rm(this.file, { force: true });
  }

  /** Removes a lock whose holder is gone; returns true if it did. */
  private async breakIfStale(): Promise<boolean> {
    try {
      const [text, st] = await Promise.all([fs.readFile(this.file, 'utf8'), fs.stat(this.file)]);
      const pid = Number.parseInt(text, 10);
      let alive = true;
      // The owner writes its pid right after creating the file: a lock without one, older than a moment,
      // was left by a process that died in between.
      if (!(Number.isInteger(pid) && pid > 0)) alive = Date.now() - st.mtimeMs < EMPTY_LOCK_GRACE_MS;
      else if (pid !== process.pid) {
        try {
          process.kill(pid, 0);
        } catch (err) {
          alive = (err as NodeJS.ErrnoException).code === 'EPERM';
        }
      }
      if (alive && Date.now() - st.mtimeMs < this.options.staleMs) return false;
      await fs.rm(this.file, { force: true });
      return true;
    } catch {
      return false;
    }
  }
}
