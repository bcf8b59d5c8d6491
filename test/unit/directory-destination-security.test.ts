/**
 * The directory destination under attack by a local user (issue 13, finding 3 and the `/proc` note): a
 * destination someone else owns or can write is refused, `.versions` swapped for a symlink or another
 * directory while a write is under way makes the bot delete nothing outside the destination, entries of
 * `.versions` the bot did not name are never deleted, and a pseudo-filesystem is refused at once.
 *
 * The swaps happen at a fixed point of the write, not by timing: the test wraps the `node:fs` promise API the
 * destination calls and swaps `.versions` at the exact call where the bot is about to list or delete.
 */
import { promises as fsp } from 'node:fs';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { DestinationError, DirectoryDestination } from '../../src/destinations/directory.js';
import { expectCurrent, outputPath, versions } from '../support/directory-output.js';
import { testBundle } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);
afterEach(() => {
  vi.restoreAllMocks();
});

/** A system user that is not the bot's (tests run as root, here and in CI). */
const NOBODY = 65534;

const modeOf = async (file: string) => (await stat(file)).mode & 0o777;

/** The error a write rejects with (fails the test when it resolves). */
async function refusal(write: Promise<void>): Promise<Error> {
  const err = await write.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the write was expected to be refused').toBeInstanceOf(DestinationError);
  return err as Error;
}

describe('DirectoryDestination: only a destination the bot alone controls', () => {
  for (const mode of [0o777, 0o775, 0o702]) {
    it(`refuses a destination directory others can write (mode ${mode.toString(8)}), saying how to fix it`, async () => {
      const dir = await outputPath();
      await mkdir(dir);
      await chmod(dir, mode);
      const err = await refusal(new DirectoryDestination(dir).write(await testBundle({ serial: '6a01' })));
      expect(err.message).toContain(dir);
      expect(err.message).toContain(mode.toString(8));
      expect(err.message).toContain(`chmod 700 ${dir}`);
      expect(await readdir(dir)).toEqual([]);
      expect(await modeOf(dir)).toBe(mode); // refused, not silently "fixed"
    });
  }

  it('names the group-readable mode in the fix for readers: group', async () => {
    const dir = await outputPath();
    await mkdir(dir);
    await chmod(dir, 0o770);
    const err = await refusal(
      new DirectoryDestination(dir, { readers: 'group' }).write(await testBundle({ serial: '6a02' })),
    );
    expect(err.message).toContain(`chmod 750 ${dir}`);
  });

  it('refuses a destination directory owned by another user, naming the owner and the fix', async () => {
    const dir = await outputPath();
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, NOBODY, NOBODY);
    const err = await refusal(new DirectoryDestination(dir).write(await testBundle({ serial: '6b01' })));
    expect(err.message).toContain(dir);
    expect(err.message).toContain(`uid ${NOBODY}`);
    expect(err.message).toContain(`uid ${process.getuid?.()}`);
    expect(err.message).toMatch(/chown /);
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a .versions directory owned by another user and deletes nothing in it', async () => {
    const dir = await outputPath();
    const dest = new DirectoryDestination(dir);
    await dest.write(await testBundle({ serial: '6b02' }));
    const planted = path.join(dir, '.versions', '6b00-aaaaaa');
    await mkdir(planted);
    await writeFile(path.join(planted, 'key'), 'theirs\n');
    await chown(path.join(dir, '.versions'), NOBODY, NOBODY);
    const err = await refusal(dest.write(await testBundle({ serial: '6b03', slot: 1 })));
    expect(err.message).toContain(path.join(dir, '.versions'));
    expect(err.message).toContain(`uid ${NOBODY}`);
    expect(await readFile(path.join(planted, 'key'), 'utf8')).toBe('theirs\n');
  });

  it('refuses a destination inside a directory others can write without the sticky bit', async () => {
    const base = await realpath(await makeTempDir('broker-dest-'));
    const open = path.join(base, 'shared');
    await mkdir(open);
    await chmod(open, 0o777);
    const dir = path.join(open, 'out');
    const err = await refusal(new DirectoryDestination(dir).write(await testBundle({ serial: '6c01' })));
    expect(err.message).toContain(open);
    expect(err.message).toContain('777');
    expect(await readdir(open)).toEqual([]);
  });

  it('refuses a destination inside a directory owned by another user', async () => {
    const base = await realpath(await makeTempDir('broker-dest-'));
    const theirs = path.join(base, 'theirs');
    await mkdir(theirs, { mode: 0o755 });
    await chown(theirs, NOBODY, NOBODY);
    const dir = path.join(theirs, 'out');
    await mkdir(dir, { mode: 0o700 }); // ours, but they can rename it away and put anything in its place
    const err = await refusal(new DirectoryDestination(dir).write(await testBundle({ serial: '6c02' })));
    expect(err.message).toContain(theirs);
    expect(err.message).toContain(`uid ${NOBODY}`);
    expect(await readdir(dir)).toEqual([]);
  });

  it('still accepts the well-formed cases: a sticky shared parent (like /tmp) and an existing 0755 directory', async () => {
    const base = await realpath(await makeTempDir('broker-dest-'));
    const sticky = path.join(base, 'tmp');
    await mkdir(sticky);
    await chmod(sticky, 0o1777);
    const dir = path.join(sticky, 'out');
    await mkdir(dir);
    await chmod(dir, 0o755);
    const b = await testBundle({ serial: '6d01' });
    await new DirectoryDestination(dir).write(b);
    await expectCurrent(dir, b);
    expect(await modeOf(dir)).toBe(0o755);
  });
});

/** A root-owned directory of 50 files outside the destination, the target of a swapped `.versions`. */
async function victimDirectory(
  extraNames: readonly string[] = [],
): Promise<{ dir: string; names: string[] }> {
  const dir = path.join(await realpath(await makeTempDir('broker-victim-')), 'precious');
  await mkdir(dir, { mode: 0o755 });
  // Half of them named the way the bot names its versions, so that a name check alone cannot save them.
  const names = [
    ...Array.from({ length: 25 }, (_, i) => `file-${i}.txt`),
    ...Array.from({ length: 25 - extraNames.length }, (_, i) => `${(0xf000 + i).toString(16)}-abcdef`),
    ...extraNames,
  ];
  for (const name of names) await writeFile(path.join(dir, name), `${name}\n`, { mode: 0o644 });
  return { dir, names: names.sort() };
}

async function expectIntact(victim: { dir: string; names: string[] }): Promise<void> {
  expect((await readdir(victim.dir)).sort()).toEqual(victim.names);
  for (const name of victim.names)
    expect(await readFile(path.join(victim.dir, name), 'utf8')).toBe(`${name}\n`);
}

/** A destination with three versions written, so the next write has an old version to prune. */
async function writtenThrice(): Promise<{ dir: string; dest: DirectoryDestination }> {
  const dir = await outputPath();
  const dest = new DirectoryDestination(dir);
  for (const [i, serial] of ['7a01', '7a02', '7a03'].entries())
    await dest.write(await testBundle({ serial, slot: i % 2 }));
  expect(await versions(dir)).toHaveLength(2);
  return { dir, dest };
}

type FsName = 'readdir' | 'rm' | 'unlink' | 'rmdir';

/**
 * Runs `swap` once, just before the first call of one of `calls` that `when` picks, then lets the call go
 * on. The destination reaches the file system through `node:fs`'s promise API, so this is the exact
 * moment between the bot's last look and its act.
 */
function swapAt(
  calls: readonly FsName[],
  when: (target: string) => boolean,
  swap: () => Promise<void>,
): void {
  let done = false;
  for (const name of calls) {
    const original = fsp[name] as (...args: unknown[]) => Promise<unknown>;
    vi.spyOn(fsp, name).mockImplementation((async (...args: unknown[]) => {
      if (!done && when(String(args[0]))) {
        done = true;
        await swap();
      }
      return original.apply(fsp, args);
    }) as never);
  }
}

describe('DirectoryDestination: deletes stay inside the destination', () => {
  it('.versions swapped for a symlink when the bot lists it to prune: nothing outside is deleted', async () => {
    const { dir, dest } = await writtenThrice();
    const victim = await victimDirectory();
    const versionsDir = path.join(dir, '.versions');
    swapAt(
      ['readdir'],
      (target) => target === versionsDir,
      async () => {
        await rename(versionsDir, `${versionsDir}.moved`);
        await symlink(victim.dir, versionsDir);
      },
    );
    const outcome = await dest.write(await testBundle({ serial: '7a04' })).catch((e: unknown) => e);
    vi.restoreAllMocks();
    await expectIntact(victim);
    // The bot notices the swap and says so rather than carrying on.
    expect(outcome).toBeInstanceOf(DestinationError);
    expect((outcome as Error).message).toContain(versionsDir);
  });

  it('.versions replaced by another directory when the bot lists it: nothing in that directory is deleted', async () => {
    const { dir, dest } = await writtenThrice();
    const victim = await victimDirectory();
    const versionsDir = path.join(dir, '.versions');
    swapAt(
      ['readdir'],
      (target) => target === versionsDir,
      async () => {
        await rename(versionsDir, `${versionsDir}.moved`);
        await rename(victim.dir, versionsDir);
      },
    );
    const outcome = await dest.write(await testBundle({ serial: '7b04' })).catch((e: unknown) => e);
    vi.restoreAllMocks();
    await rename(versionsDir, victim.dir);
    await expectIntact(victim);
    expect(outcome).toBeInstanceOf(DestinationError);
  });

  it('.versions swapped for a symlink at the very moment of a delete: nothing outside is deleted', async (ctx) => {
    // Closing the moment between the last check and the delete takes deleting through the open handle,
    // which needs /proc/self/fd (Linux); elsewhere only the checks before each delete apply.
    if (
      !(await stat('/proc/self/fd').then(
        () => true,
        () => false,
      ))
    )
      return ctx.skip('no /proc/self/fd on this system');
    const { dir, dest } = await writtenThrice();
    const versionsDir = path.join(dir, '.versions');
    // The version the next write prunes: the oldest of the two kept.
    const current = path.basename(await readlink(path.join(dir, '.current')));
    const doomed = (await versions(dir)).find((v) => v !== current) as string;
    // The victim holds an entry of that very name, with the artifact names inside.
    const victim = await victimDirectory();
    await mkdir(path.join(victim.dir, doomed));
    for (const name of ['key', 'tlscert', '.broker.json'])
      await writeFile(path.join(victim.dir, doomed, name), 'precious\n');
    swapAt(
      ['rm', 'unlink', 'rmdir'],
      () => true,
      async () => {
        await rename(versionsDir, `${versionsDir}.moved`);
        await symlink(victim.dir, versionsDir);
      },
    );
    const outcome = await dest.write(await testBundle({ serial: '7c04' })).catch((e: unknown) => e);
    vi.restoreAllMocks();
    expect((await readdir(victim.dir)).sort()).toEqual([...victim.names, doomed].sort());
    for (const name of ['key', 'tlscert', '.broker.json'])
      expect(await readFile(path.join(victim.dir, doomed, name), 'utf8')).toBe('precious\n');
    // The delete under way went to the directory the bot opened; the next check saw the swap and stopped.
    expect(outcome).toBeInstanceOf(DestinationError);
    expect((outcome as Error).message).toMatch(/wrote the new output .* stopped removing old versions/);
  });

  it('never deletes an entry of .versions whose name the bot does not create', async () => {
    const { dir, dest } = await writtenThrice();
    const versionsDir = path.join(dir, '.versions');
    const outside = await victimDirectory();
    await writeFile(path.join(versionsDir, 'important.txt'), 'keep me\n');
    await mkdir(path.join(versionsDir, 'notes'));
    await writeFile(path.join(versionsDir, 'notes', 'a.txt'), 'keep me\n');
    await mkdir(path.join(versionsDir, '7a00')); // a serial without the bot's suffix
    await symlink(outside.dir, path.join(versionsDir, '7a00-000000')); // the bot's pattern, but a link
    for (const [i, serial] of ['7d01', '7d02', '7d03'].entries())
      await dest.write(await testBundle({ serial, slot: i % 2 }));
    expect(await readFile(path.join(versionsDir, 'important.txt'), 'utf8')).toBe('keep me\n');
    expect(await readFile(path.join(versionsDir, 'notes', 'a.txt'), 'utf8')).toBe('keep me\n');
    expect((await lstat(path.join(versionsDir, '7a00'))).isDirectory()).toBe(true);
    expect(await readlink(path.join(versionsDir, '7a00-000000'))).toBe(outside.dir);
    await expectIntact(outside);
    // The bot's own versions are still pruned to the current one and the one before.
    const own = (await versions(dir)).filter((v) => /^[0-9a-f]+-[0-9a-f]{6}$/.test(v) && v !== '7a00-000000');
    expect(own).toHaveLength(2);
  });
});

/** The mount points of file systems of `type`, from /proc/self/mountinfo (none where it cannot be read). */
async function mountsOfType(type: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  return text
    .split('\n')
    .map((line) => line.split(' - '))
    .filter(([, right]) => right?.split(' ')[0] === type)
    .map(([left]) => left?.split(' ')[4] as string);
}

const mountOfType = async (type: string) => (await mountsOfType(type))[0];

/** The write's outcome, or a failure when it is still running after `ms` (the bot spinning). */
async function within(write: Promise<void>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(new Error(`the write was still running after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([
      write.then(
        () => 'written',
        (e: unknown) => e,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe('DirectoryDestination: pseudo-filesystems', () => {
  const cases: { type: string; dir: () => Promise<string | undefined> }[] = [
    { type: 'proc', dir: async () => '/proc/broker-test-out' },
    { type: 'sysfs', dir: async () => '/sys/broker-test-out' },
    { type: 'cgroup', dir: () => mountOfType('cgroup') },
    { type: 'cgroup2', dir: () => mountOfType('cgroup2') },
    {
      type: 'devtmpfs',
      dir: async () => ((await mountOfType('devtmpfs')) ? '/dev/broker-test-out' : undefined),
    },
  ];
  for (const { type, dir: where } of cases) {
    it(`refuses a destination on ${type} at once, naming the path and the file system`, async (ctx) => {
      const dir = await where();
      if (dir === undefined) return ctx.skip(`no ${type} mount on this machine`);
      const before = await lstat(dir).then(
        () => true,
        () => false,
      );
      const started = Date.now();
      try {
        const outcome = await within(
          new DirectoryDestination(dir).write(await testBundle({ serial: '5e01' })),
          3_000,
        );
        expect(outcome).toBeInstanceOf(DestinationError);
        expect((outcome as Error).message).toContain(dir);
        expect((outcome as Error).message).toContain(type);
        expect((outcome as Error).message).toMatch(/pseudo-filesystem/);
        expect(Date.now() - started).toBeLessThan(1_000);
      } finally {
        // On a device filesystem a write that got through would have left an output behind.
        if (!before && type === 'devtmpfs') await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it('still accepts a tmpfs mounted under /dev (/dev/shm)', async (ctx) => {
    const shm = (await mountsOfType('tmpfs')).includes('/dev/shm') ? '/dev/shm' : undefined;
    if (shm === undefined) return ctx.skip('no tmpfs at /dev/shm');
    const base = await fsp.mkdtemp(path.join(shm, 'broker-dest-'));
    try {
      const dir = path.join(base, 'out');
      const b = await testBundle({ serial: '5e02' });
      await new DirectoryDestination(dir).write(b);
      await expectCurrent(dir, b);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});
