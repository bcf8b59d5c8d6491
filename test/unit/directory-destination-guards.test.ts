/**
 * The directory destination's guards and failure paths: what it refuses to write through (`.versions` as a
 * symlink, `.current` that is not its link, a directory at an artifact name), what a failed write leaves
 * behind (no partial key material, the previous output current), which versions pruning keeps after a crash,
 * and mkdir and link-replace failures. Failures are injected at one call of the `node:fs` promise API the
 * destination uses, so each happens at a fixed point of the write.
 */
import { promises as fsp } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  DestinationError,
  DirectoryDestination,
  readDirectoryOutput,
} from '../../src/destinations/directory.js';
import { expectCurrent, outputPath, versions } from '../support/directory-output.js';
import { testBundle } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);
afterEach(() => {
  vi.restoreAllMocks();
});

const current = async (dir: string) => path.basename(await readlink(path.join(dir, '.current')));

/** Every file under `root`, with its content. */
async function filesUnder(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(root, file)] = await readFile(file, 'utf8');
  }
  return out;
}

/** A failure of `method` for the calls where `when` holds (errno `code`); other calls go through. */
function failAt(
  method: 'mkdir' | 'rename' | 'symlink' | 'open',
  when: (target: string) => boolean,
  code = 'EIO',
) {
  const original = fsp[method] as (...args: unknown[]) => Promise<unknown>;
  vi.spyOn(fsp, method).mockImplementation((async (...args: unknown[]) => {
    const target = String(args[method === 'rename' || method === 'symlink' ? 1 : 0]);
    if (when(target))
      throw Object.assign(new Error(`${code}: injected failure, ${method} '${target}'`), { code });
    return original.apply(fsp, args);
  }) as never);
}

async function writtenOnce(serial = '5a01') {
  const dir = await outputPath();
  const dest = new DirectoryDestination(dir);
  const good = await testBundle({ serial, format: 'tls' });
  await dest.write(good);
  return { dir, dest, good };
}

describe('DirectoryDestination: what it refuses to write through', () => {
  it('refuses a .versions that is a symlink, names it, and writes nothing where it points', async () => {
    const dir = await outputPath();
    const elsewhere = await makeTempDir('broker-elsewhere-');
    await mkdir(dir, { mode: 0o700 });
    await symlink(elsewhere, path.join(dir, '.versions'));
    const err = await new DirectoryDestination(dir)
      .write(await testBundle({ serial: '5b01' }))
      .catch((e) => e);
    expect(err).toBeInstanceOf(DestinationError);
    expect((err as Error).message).toBe(
      `${path.join(dir, '.versions')} is a symlink; the broker refuses to write keys through it: remove it`,
    );
    expect(await readdir(elsewhere)).toEqual([]);
    expect(await readDirectoryOutput(dir)).toBeUndefined();
  });

  it.each([
    ['a regular file', (p: string) => writeFile(p, 'not a link\n')],
    ['a directory', (p: string) => mkdir(p)],
  ])('refuses a .current that is %s, names it, and leaves it as it is', async (_what, plant) => {
    const dir = await outputPath();
    await mkdir(dir, { mode: 0o700 });
    await plant(path.join(dir, '.current'));
    const err = await new DirectoryDestination(dir)
      .write(await testBundle({ serial: '5c01' }))
      .catch((e) => e);
    expect(err).toBeInstanceOf(DestinationError);
    expect((err as Error).message).toBe(
      `${path.join(dir, '.current')} is not the broker's link; remove it so the broker can manage the output`,
    );
    expect((await lstat(path.join(dir, '.current'))).isSymbolicLink()).toBe(false);
    expect((await readdir(dir)).filter((e) => e !== '.current' && e !== '.lock')).toEqual([]);
  });

  it('refuses a directory planted at an artifact name with a clear error, keeping the previous output current', async () => {
    const { dir, dest, good } = await writtenOnce('5d01');
    await fsp.unlink(path.join(dir, 'tls.key'));
    await mkdir(path.join(dir, 'tls.key'));
    await writeFile(path.join(dir, 'tls.key', 'mine'), 'the user’s file\n');
    const err = await dest.write(await testBundle({ serial: '5d02', format: 'tls' })).catch((e) => e);
    expect(err).toBeInstanceOf(DestinationError);
    expect((err as Error).message).toBe(
      `${path.join(dir, 'tls.key')} is a directory the broker did not create; move it away so the output can use that name`,
    );
    expect((err as NodeJS.ErrnoException).code).not.toBe('EISDIR');
    expect(await readDirectoryOutput(dir)).toEqual(good);
    expect(await readFile(path.join(dir, 'tls.key', 'mine'), 'utf8')).toBe('the user’s file\n');
  });

  it('replaces a plain file at an artifact name with its link', async () => {
    const { dir, dest } = await writtenOnce('5e01');
    await fsp.unlink(path.join(dir, 'tlscert'));
    await writeFile(path.join(dir, 'tlscert'), 'stale copy\n');
    const next = await testBundle({ serial: '5e02', format: 'tls' });
    await dest.write(next);
    expect(await readlink(path.join(dir, 'tlscert'))).toBe(path.join('.current', 'tlscert'));
    await expectCurrent(dir, next);
  });
});

describe('DirectoryDestination: a write that fails halfway', () => {
  it('leaves no key material in .versions when writing a file fails after others were written', async () => {
    const { dir, dest, good } = await writtenOnce('5f01');
    const before = await versions(dir);
    const next = await testBundle({ serial: '5f02', format: 'tls', slot: 1 });
    expect(next.files.key).not.toBe(good.files.key);
    // tlscert, key, ... are written in order; the fourth file fails (the disk is full).
    let opened = 0;
    const original = fsp.open;
    vi.spyOn(fsp, 'open').mockImplementation((async (...args: Parameters<typeof fsp.open>) => {
      if (String(args[0]).includes('.tmp') && ++opened === 4)
        throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      return original(...args);
    }) as never);
    const err = await dest.write(next).catch((e) => e);
    vi.restoreAllMocks();
    expect(opened).toBeGreaterThanOrEqual(4);
    expect(err).toBeInstanceOf(DestinationError);
    expect((err as Error).message).toMatch(
      /^could not write output to .* ENOSPC .*; the previous credentials are unchanged$/,
    );
    expect(await versions(dir)).toEqual(before);
    const everything = JSON.stringify(await filesUnder(dir));
    expect(everything).not.toContain(next.files.key?.trim().split('\n')[1]);
    await expectCurrent(dir, good);
  });

  it('a failing mkdir of the destination is a clear error naming it', async () => {
    const dir = await outputPath();
    failAt('mkdir', (target) => target === dir, 'EACCES');
    const err = await new DirectoryDestination(dir)
      .write(await testBundle({ serial: '6a01' }))
      .catch((e) => e);
    expect(err).toBeInstanceOf(DestinationError);
    expect((err as Error).message).toMatch(new RegExp(`^cannot create destination ${dir}: EACCES`));
  });

  it('a failing mkdir of .versions leaves the previous output current', async () => {
    const { dir, dest, good } = await writtenOnce('6b01');
    failAt('mkdir', (target) => target === path.join(dir, '.versions'), 'EACCES');
    const err = await dest.write(await testBundle({ serial: '6b02' })).catch((e) => e);
    vi.restoreAllMocks();
    expect(err).toBeInstanceOf(DestinationError);
    expect((err as Error).message).toMatch(
      /^could not write output to .* EACCES .*the previous credentials are unchanged$/,
    );
    await expectCurrent(dir, good);
  });

  it('a failing mkdir of the staging directory leaves the previous output current and nothing staged', async () => {
    const { dir, dest, good } = await writtenOnce('6c01');
    const before = await versions(dir);
    failAt('mkdir', (target) => /\.versions\/\.6c02-[0-9a-f]{6}\.tmp$/.test(target), 'EDQUOT');
    const err = await dest.write(await testBundle({ serial: '6c02' })).catch((e) => e);
    vi.restoreAllMocks();
    expect((err as Error).message).toMatch(/EDQUOT .*the previous credentials are unchanged$/);
    expect(await versions(dir)).toEqual(before);
    await expectCurrent(dir, good);
  });

  it('a failing switch of .current leaves the previous output current and no stray link', async () => {
    const { dir, dest, good } = await writtenOnce('6d01');
    failAt('rename', (target) => target === path.join(dir, '.current'));
    const err = await dest.write(await testBundle({ serial: '6d02', format: 'tls' })).catch((e) => e);
    vi.restoreAllMocks();
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/EIO: injected failure, rename/);
    expect((await readdir(dir)).filter((e) => e.endsWith('.tmp'))).toEqual([]);
    await expectCurrent(dir, good);
    // The next write succeeds and prunes the version that never became current.
    const next = await testBundle({ serial: '6d03', format: 'tls' });
    await dest.write(next);
    await expectCurrent(dir, next);
    expect(await versions(dir)).toHaveLength(2);
  });

  it('a failing link of a new artifact name leaves the previous output current', async () => {
    const { dir, dest, good } = await writtenOnce('6e01');
    failAt('symlink', (target) => path.basename(target).startsWith('mongo.crt.'));
    const err = await dest.write(await testBundle({ serial: '6e02', format: 'mongo' })).catch((e) => e);
    vi.restoreAllMocks();
    expect((err as Error).message).toMatch(/EIO: injected failure, symlink/);
    await expectCurrent(dir, good);
  });
});

describe('DirectoryDestination: pruning after a crash', () => {
  /** Sets the modification time of `.versions/<name>` to `secondsFromNow`. */
  const age = (dir: string, name: string, secondsFromNow: number) => {
    const t = Date.now() / 1000 + secondsFromNow;
    return utimes(path.join(dir, '.versions', name), t, t);
  };

  it('a crashed staging directory is removed and never kept as the previous version', async () => {
    const { dir, dest, good } = await writtenOnce('7001');
    const real = await current(dir);
    const staging = '.7002-abcdef.tmp';
    await mkdir(path.join(dir, '.versions', staging));
    await writeFile(path.join(dir, '.versions', staging, 'key'), 'half a key');
    await age(dir, staging, 3600);
    await age(dir, real, -3600);
    const next = await testBundle({ serial: '7003', format: 'tls' });
    await dest.write(next);
    expect(await versions(dir)).toEqual([real, await current(dir)].sort());
    await expectCurrent(dir, next);
    // The kept previous version is the real one, whole.
    expect(Object.keys(await filesUnder(path.join(dir, '.versions', real))).sort()).toEqual(
      [...Object.keys(good.files), '.broker.json'].sort(),
    );
  });

  it('a version that never became current (a crash before the switch) is not kept in place of the real previous one', async () => {
    const { dir, dest } = await writtenOnce('7101');
    const real = await current(dir);
    // A newer version, written but never switched to (the crash came between the rename and the switch).
    const unswitched = '7102-abcdef';
    await mkdir(path.join(dir, '.versions', unswitched));
    await writeFile(path.join(dir, '.versions', unswitched, 'key'), 'never current');
    await age(dir, unswitched, 3600);
    await age(dir, real, -3600);
    const next = await testBundle({ serial: '7103', format: 'tls' });
    await dest.write(next);
    const now = await current(dir);
    expect(await versions(dir)).toEqual([real, now].sort());
  });

  it('never deletes the current version and keeps exactly one previous one over many writes', async () => {
    const { dir, dest } = await writtenOnce('7201');
    let previous = await current(dir);
    for (const serial of ['7202', '7203', '7204']) {
      const next = await testBundle({ serial, format: 'tls' });
      await dest.write(next);
      const now = await current(dir);
      expect(await versions(dir)).toEqual([previous, now].sort());
      await expectCurrent(dir, next);
      previous = now;
    }
  });
});

describe('DirectoryDestination: leftovers and reading back', () => {
  it('removes temporary links a crashed write left, but not a file of that shape', async () => {
    const { dir, dest } = await writtenOnce('7301');
    await symlink('.current/key', path.join(dir, 'key.0123abcd.tmp'));
    await writeFile(path.join(dir, 'notes.89abcdef.tmp'), 'mine\n');
    await dest.write(await testBundle({ serial: '7302', format: 'tls' }));
    const entries = await readdir(dir);
    expect(entries).not.toContain('key.0123abcd.tmp');
    expect(entries).toContain('notes.89abcdef.tmp');
  });

  it('a version without its .broker.json cannot be read back, and says so', async () => {
    const { dir, dest } = await writtenOnce('7401');
    await fsp.unlink(path.join(dir, '.versions', await current(dir), '.broker.json'));
    const err = await dest.read().catch((e) => e);
    expect(err).toBeInstanceOf(DestinationError);
    expect((err as Error).message).toMatch(
      new RegExp(`^output ${dir} has no readable \\.broker\\.json: ENOENT`),
    );
    expect((err as Error).cause).toMatchObject({ code: 'ENOENT' });
  });

  it('reading back takes only regular files of the version, not links planted in it', async () => {
    const { dir, dest, good } = await writtenOnce('7501');
    const outside = path.join(await makeTempDir('broker-outside-'), 'secret');
    await writeFile(outside, 'not part of the output\n');
    await symlink(outside, path.join(dir, '.versions', await current(dir), 'planted'));
    expect(await dest.read()).toEqual(good);
  });

  it('errors keep their cause and read without doubled spaces', async () => {
    const dir = await outputPath();
    failAt('mkdir', (target) => target === dir, 'EACCES');
    const created = await new DirectoryDestination(dir)
      .write(await testBundle({ serial: '7601' }))
      .catch((e) => e);
    vi.restoreAllMocks();
    expect((created as Error).cause).toMatchObject({ code: 'EACCES' });

    const { dir: out, dest } = await writtenOnce('7602');
    const original = fsp.mkdir;
    vi.spyOn(fsp, 'mkdir').mockImplementation((async (...args: Parameters<typeof fsp.mkdir>) => {
      if (String(args[0]).endsWith('.tmp')) throw new Error('no code here');
      return original(...args);
    }) as never);
    const unchanged = await dest.write(await testBundle({ serial: '7603' })).catch((e) => e);
    vi.restoreAllMocks();
    expect((unchanged as Error).message).toBe(
      `could not write output to ${out}: no code here; the previous credentials are unchanged`,
    );
    expect((unchanged as Error).cause).toBeInstanceOf(Error);

    await writeFile(path.join(out, 'plain'), 'x');
    const notOutput = await readDirectoryOutput(path.join(out, 'plain')).catch((e) => e);
    expect(notOutput).toBeInstanceOf(DestinationError);
    expect((notOutput as Error).cause).toMatchObject({ code: 'ENOTDIR' });
  });
});
