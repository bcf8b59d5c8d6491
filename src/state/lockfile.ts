import { promises as fs } from 'node:fs';

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
      try {
        const handle = await fs.open(this.file, 'wx', 0o600);
        await handle.writeFile(`${process.pid}\n`);
        await handle.close();
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
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
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
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
