import { chmod, lstat, mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StateError } from '../../src/state/errors.js';
import { assertPrivateDirectory, FileStateStore, writeFileAtomic } from '../../src/state/file-store.js';
import { casIncrement } from '../contracts/state-store.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

function modeOf(st: { mode: number }): number {
  return st.mode & 0o777;
}

describe('FileStateStore: files and permissions', () => {
  it('creates the state and data directories 0700 and writes files 0600', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    const store = await FileStateStore.create(dir);
    await store.put('roles/example-role', { a: 1 });
    expect(modeOf(await stat(dir))).toBe(0o700);
    expect(modeOf(await stat(path.join(dir, 'data')))).toBe(0o700);
    expect(modeOf(await stat(path.join(dir, 'data', 'roles')))).toBe(0o700);
    expect(modeOf(await stat(path.join(dir, 'data', 'roles', 'example-role.json')))).toBe(0o600);
  });

  it('leaves no temporary or lock files behind after writes', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    const store = await FileStateStore.create(dir);
    await Promise.all(Array.from({ length: 5 }, (_, i) => store.put(`roles/r${i}`, i)));
    await store.delete('roles/r0');
    expect((await readdir(path.join(dir, 'data', 'roles'))).sort()).toEqual([
      'r1.json',
      'r2.json',
      'r3.json',
      'r4.json',
    ]);
    expect(await readdir(dir)).toEqual(['data']);
  });

  it('keeps state across instances opened on the same directory', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    await (await FileStateStore.create(dir)).put('config/cluster', { name: 'c' });
    const reopened = await FileStateStore.open(dir);
    expect(await reopened.get('config/cluster')).toEqual({
      key: 'config/cluster',
      value: { name: 'c' },
      version: 1,
    });
  });

  it('refuses to open a directory that does not exist, saying how to create it', async () => {
    const dir = path.join(await makeTempDir(), 'missing');
    const err = await FileStateStore.open(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateError);
    expect((err as StateError).message).toContain(dir);
    expect((err as StateError).message).toContain('does not exist');
    expect((err as StateError).message).toContain('broker init');
    await expect(lstat(dir)).rejects.toThrow();
  });

  it.each([0o750, 0o770, 0o755, 0o705, 0o701, 0o710])(
    'refuses a state directory with mode %s',
    async (mode) => {
      const dir = path.join(await makeTempDir(), 'state');
      await FileStateStore.create(dir);
      await chmod(dir, mode);
      const err = await FileStateStore.open(dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateError);
      expect((err as StateError).message).toContain(`chmod 700 ${dir}`);
      expect((err as StateError).message).toContain(mode.toString(8));
    },
  );

  it('refuses a data directory that others can read', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    await FileStateStore.create(dir);
    await chmod(path.join(dir, 'data'), 0o755);
    await expect(FileStateStore.open(dir)).rejects.toThrow(/chmod 700/);
  });

  it('refuses a state directory that is a symlink to a private directory', async () => {
    const base = await makeTempDir();
    const real = path.join(base, 'real');
    await FileStateStore.create(real);
    const link = path.join(base, 'link');
    await symlink(real, link);
    const err = await FileStateStore.open(link).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateError);
    expect((err as StateError).message).toContain(link);
  });

  it('refuses a data directory that is a symlink', async () => {
    const base = await makeTempDir();
    const elsewhere = path.join(base, 'elsewhere');
    await mkdir(elsewhere, { mode: 0o700 });
    const dir = path.join(base, 'state');
    await mkdir(dir, { mode: 0o700 });
    await symlink(elsewhere, path.join(dir, 'data'));
    await expect(FileStateStore.open(dir)).rejects.toBeInstanceOf(StateError);
  });

  it('refuses a state path that is a file', async () => {
    const file = path.join(await makeTempDir(), 'state');
    await writeFile(file, '', { mode: 0o600 });
    await expect(FileStateStore.open(file)).rejects.toThrow(/is not a directory/);
  });

  it('names the file of a corrupt state entry, for get and for list', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    const store = await FileStateStore.create(dir);
    await store.put('roles/good', 1);
    await store.put('roles/bad', 1);
    const file = path.join(dir, 'data', 'roles', 'bad.json');
    await writeFile(file, '{"version": 1, "value": ');
    for (const read of [() => store.get('roles/bad'), () => store.list('roles')]) {
      const err = await read().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateError);
      expect((err as StateError).message).toContain(file);
      expect((err as StateError).message).toContain('corrupt');
    }
    // A write over a corrupt entry is refused too rather than silently resetting its version.
    await expect(store.put('roles/bad', 2)).rejects.toBeInstanceOf(StateError);
  });

  it.each([
    ['JSON without a version', '{"value": 1}'],
    ['JSON null', 'null'],
    ['an empty file', ''],
  ])('treats %s as corrupt', async (_name, text) => {
    const dir = path.join(await makeTempDir(), 'state');
    const store = await FileStateStore.create(dir);
    await mkdir(path.join(dir, 'data', 'roles'), { mode: 0o700 });
    await writeFile(path.join(dir, 'data', 'roles', 'x.json'), text, { mode: 0o600 });
    await expect(store.get('roles/x')).rejects.toBeInstanceOf(StateError);
  });

  it('ignores temporary files and non-JSON files in listings', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    const store = await FileStateStore.create(dir);
    await store.put('roles/a', 1);
    await writeFile(path.join(dir, 'data', 'roles', '.a.json.0123.tmp'), 'partial');
    await writeFile(path.join(dir, 'data', 'roles', '.hidden.json'), 'partial');
    await writeFile(path.join(dir, 'data', 'roles', 'notes.txt'), 'hello');
    expect((await store.list('roles')).map((i) => i.key)).toEqual(['roles/a']);
  });

  it('serialises writes of two instances on one directory through the lock file', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    const a = await FileStateStore.create(dir);
    const b = await FileStateStore.open(dir);
    await Promise.all(Array.from({ length: 20 }, (_, i) => casIncrement(i % 2 === 0 ? a : b, 'counters/n')));
    expect(await a.get('counters/n')).toMatchObject({ value: 20, version: 20 });
  });

  it('breaks a lock left behind by a process that no longer exists', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    const store = await FileStateStore.create(dir);
    // A pid far above pid_max on Linux: no such process.
    await writeFile(path.join(dir, 'state.lock'), '99999999\n', { mode: 0o600 });
    expect(await store.put('roles/a', 1)).toBe(1);
  });
});

describe('writeFileAtomic', () => {
  it('writes the data with mode 0600 by default, or the mode given', async () => {
    const dir = await makeTempDir();
    await writeFileAtomic(path.join(dir, 'a'), 'hello');
    await writeFileAtomic(path.join(dir, 'b'), new Uint8Array([1, 2, 3]), 0o640);
    expect(await readFile(path.join(dir, 'a'), 'utf8')).toBe('hello');
    expect([...(await readFile(path.join(dir, 'b')))]).toEqual([1, 2, 3]);
    expect(modeOf(await stat(path.join(dir, 'a')))).toBe(0o600);
    expect(modeOf(await stat(path.join(dir, 'b')))).toBe(0o640);
  });

  it('replaces an existing file and leaves no temporary file', async () => {
    const dir = await makeTempDir();
    const file = path.join(dir, 'bundle.json');
    await writeFileAtomic(file, 'old');
    await writeFileAtomic(file, 'new');
    expect(await readFile(file, 'utf8')).toBe('new');
    expect(await readdir(dir)).toEqual(['bundle.json']);
  });

  it('fails without leaving anything when the directory does not exist', async () => {
    const dir = await makeTempDir();
    await expect(writeFileAtomic(path.join(dir, 'missing', 'f'), 'x')).rejects.toThrow(/ENOENT/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('fails and cleans up when the target is a directory', async () => {
    const dir = await makeTempDir();
    await mkdir(path.join(dir, 'target'));
    await expect(writeFileAtomic(path.join(dir, 'target'), 'x')).rejects.toThrow();
    expect(await readdir(dir)).toEqual(['target']);
  });

  it('never lets a reader see a partly written file', async () => {
    const dir = await makeTempDir();
    const file = path.join(dir, 'big');
    const size = 1 << 20;
    const versions = ['a', 'b', 'c', 'd'].map((c) => c.repeat(size));
    await writeFileAtomic(file, versions[0] as string);
    let writing = true;
    const writer = (async () => {
      for (let i = 1; i <= 12; i++) await writeFileAtomic(file, versions[i % versions.length] as string);
      writing = false;
    })();
    let reads = 0;
    while (writing) {
      const text = await readFile(file, 'utf8');
      expect(text.length).toBe(size);
      expect(text).toBe((text[0] as string).repeat(size));
      reads++;
    }
    await writer;
    expect(reads).toBeGreaterThan(0);
  });
});

describe('assertPrivateDirectory', () => {
  it('accepts a 0700 directory owned by this user', async () => {
    const dir = await makeTempDir();
    await chmod(dir, 0o700);
    await expect(assertPrivateDirectory(dir, 'output directory')).resolves.toBeUndefined();
  });

  it('names what the directory is for in its errors', async () => {
    const dir = await makeTempDir();
    await chmod(dir, 0o711);
    await expect(assertPrivateDirectory(dir, 'output directory')).rejects.toThrow(
      new RegExp(`^output directory ${dir} has mode 711; .*chmod 700 ${dir}$`),
    );
    await expect(assertPrivateDirectory(path.join(dir, 'nope'), 'output directory')).rejects.toThrow(
      /^output directory .*nope does not exist/,
    );
  });
});
