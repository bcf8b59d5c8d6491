import {
  chmod,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import type { OutputFormat } from '../../src/credentials/formats.js';
import {
  DestinationError,
  DirectoryDestination,
  readDirectoryOutput,
} from '../../src/destinations/directory.js';
import { expectCurrent, outputPath, readByName, versions } from '../support/directory-output.js';
import { testBundle } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

/** A real bundle of the given serial: every issuance's certificate, and so its files, differ. */
const bundle = (serial: string, format: OutputFormat = '', extraFiles: Record<string, string> = {}) =>
  testBundle({ serial, format, files: extraFiles });

const modeOf = async (file: string) => (await stat(file)).mode & 0o777;

describe('DirectoryDestination: layout and modes', () => {
  it('writes every artifact as a link into the current version: files 0600, directories 0700', async () => {
    const dir = await outputPath();
    const b = await bundle('0a01');
    await new DirectoryDestination(dir).write(b);

    const current = await readlink(path.join(dir, '.current'));
    expect(current).toMatch(/^\.versions\/0a01-[0-9a-f]{6}$/);
    for (const name of Object.keys(b.files)) {
      const link = path.join(dir, name);
      expect((await lstat(link)).isSymbolicLink(), name).toBe(true);
      expect(await readlink(link)).toBe(`.current/${name}`);
      expect(await realpath(link)).toBe(path.join(dir, current, name));
      expect(await modeOf(link), name).toBe(0o600);
    }
    expect(await modeOf(dir)).toBe(0o700);
    expect(await modeOf(path.join(dir, '.versions'))).toBe(0o700);
    expect(await modeOf(path.join(dir, current))).toBe(0o700);
    await expectCurrent(dir, b);
    // Nothing else is left beside the artifacts: no lock, no temporary links.
    expect((await readdir(dir)).sort()).toEqual(['.current', '.versions', ...Object.keys(b.files)].sort());
  });

  it('gives a nested format directory 0700 and its files 0600', async () => {
    const dir = await outputPath();
    const b = await bundle('0b01', 'cockroach');
    await new DirectoryDestination(dir).write(b);
    expect(await readlink(path.join(dir, 'cockroach'))).toBe('.current/cockroach');
    expect(await modeOf(path.join(dir, 'cockroach'))).toBe(0o700);
    for (const name of ['cockroach/node.crt', 'cockroach/node.key', 'cockroach/ca.crt'])
      expect(await modeOf(path.join(dir, name)), name).toBe(0o600);
    await expectCurrent(dir, b);
  });

  it('widens to 0640 files and 0750 directories with readers: group', async () => {
    const dir = await outputPath();
    const b = await bundle('0c01', 'tls');
    await new DirectoryDestination(dir, { readers: 'group' }).write(b);
    for (const name of Object.keys(b.files)) expect(await modeOf(path.join(dir, name)), name).toBe(0o640);
    expect(await modeOf(dir)).toBe(0o750);
    expect(await modeOf(path.join(dir, '.versions'))).toBe(0o750);
    expect(await modeOf(path.join(dir, '.current'))).toBe(0o750);
  });

  // process.umask() cannot be set in a worker thread (the pool mutation testing runs tests in).
  it.skipIf(!isMainThread)(
    'keeps readers: group modes under a restrictive umask (e.g. systemd UMask=0077)',
    async () => {
      const dir = await outputPath();
      const b = await bundle('0c02', 'cockroach');
      const old = process.umask(0o077);
      try {
        await new DirectoryDestination(dir, { readers: 'group' }).write(b);
      } finally {
        process.umask(old);
      }
      for (const name of Object.keys(b.files)) expect(await modeOf(path.join(dir, name)), name).toBe(0o640);
      for (const d of [
        dir,
        path.join(dir, '.versions'),
        path.join(dir, '.current'),
        path.join(dir, 'cockroach'),
      ])
        expect(await modeOf(d), d).toBe(0o750);
    },
  );

  it('read() returns undefined before the first write', async () => {
    const dir = await outputPath();
    expect(await new DirectoryDestination(dir).read()).toBeUndefined();
    await mkdir(dir);
    expect(await readDirectoryOutput(dir)).toBeUndefined();
  });
});

describe('DirectoryDestination: switching versions', () => {
  it('switches every name to the new issuance and keeps exactly one previous version', async () => {
    const dir = await outputPath();
    const dest = new DirectoryDestination(dir);
    const serials = ['1a01', '1a02', '1a03', '1a04'];
    let previous: string | undefined;
    let previousBundle: CredentialBundle | undefined;
    for (const serial of serials) {
      const b = await bundle(serial);
      await dest.write(b);
      await expectCurrent(dir, b);
      expect(await dest.read()).toEqual(b);
      const kept = await versions(dir);
      const current = path.basename(await readlink(path.join(dir, '.current')));
      expect(current.startsWith(`${serial}-`)).toBe(true);
      if (previous === undefined) expect(kept).toEqual([current]);
      else {
        // The previous version stays whole for a reader that opened it a moment ago.
        expect(kept).toEqual([current, previous].sort());
        const old = path.join(dir, '.versions', previous);
        const prev = previousBundle as CredentialBundle;
        expect(await readByName(old, Object.keys(prev.files))).toEqual(prev.files);
      }
      previous = current;
      previousBundle = b;
    }
  });

  it('removes the links of a previous format but never a file or link of the user', async () => {
    const dir = await outputPath();
    const dest = new DirectoryDestination(dir);
    await dest.write(await bundle('2a01', 'tls'));
    expect(await readlink(path.join(dir, 'tls.crt'))).toBe('.current/tls.crt');
    // The user keeps their own things in the output directory.
    await writeFile(path.join(dir, 'notes.txt'), 'mine\n');
    await symlink('/etc/hostname', path.join(dir, 'my-link'));
    await symlink('tlscert', path.join(dir, 'client.crt'));

    const plain = await bundle('2a02');
    await dest.write(plain);
    const entries = (await readdir(dir)).sort();
    expect(entries).toEqual(
      ['.current', '.versions', 'client.crt', 'my-link', 'notes.txt', ...Object.keys(plain.files)].sort(),
    );
    expect(await readFile(path.join(dir, 'notes.txt'), 'utf8')).toBe('mine\n');
    expect(await readlink(path.join(dir, 'my-link'))).toBe('/etc/hostname');
    expect(await readFile(path.join(dir, 'client.crt'), 'utf8')).toBe(plain.files.tlscert);
    await expectCurrent(dir, plain);

    await dest.write(await bundle('2a03', 'cockroach'));
    expect(await readlink(path.join(dir, 'cockroach'))).toBe('.current/cockroach');
    await dest.write(await bundle('2a04', 'mongo'));
    await expect(lstat(path.join(dir, 'cockroach'))).rejects.toThrow(/ENOENT/);
    expect(await readlink(path.join(dir, 'mongo.crt'))).toBe('.current/mongo.crt');
    expect(await readFile(path.join(dir, 'notes.txt'), 'utf8')).toBe('mine\n');
  });
});

describe('DirectoryDestination: symlinks', () => {
  it('refuses a destination path that goes through a symlink, naming it, and writes nothing', async () => {
    const base = await realpath(await makeTempDir('broker-dest-'));
    await mkdir(path.join(base, 'real'));
    await symlink(path.join(base, 'real'), path.join(base, 'link'));
    for (const dir of [path.join(base, 'link', 'out'), path.join(base, 'link')]) {
      const err = await new DirectoryDestination(dir).write(await bundle('3a01')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DestinationError);
      expect((err as Error).message).toContain(path.join(base, 'link'));
      expect((err as Error).message).toMatch(/symlink/);
    }
    expect(await readdir(path.join(base, 'real'))).toEqual([]);
  });

  it('replaces a symlink planted at an artifact name instead of writing through it', async () => {
    const base = await realpath(await makeTempDir('broker-dest-'));
    const dir = path.join(base, 'out');
    await mkdir(dir, { mode: 0o700 });
    const victim = path.join(base, 'victim');
    await writeFile(victim, 'precious\n', { mode: 0o644 });
    await symlink(victim, path.join(dir, 'key'));
    await symlink(path.join(base, 'does-not-exist'), path.join(dir, 'tlscert'));
    await symlink(victim, path.join(dir, '.current'));

    const b = await bundle('3b01');
    await new DirectoryDestination(dir).write(b);
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
    expect(await modeOf(victim)).toBe(0o644);
    await expect(lstat(path.join(base, 'does-not-exist'))).rejects.toThrow(/ENOENT/);
    expect(await readlink(path.join(dir, 'key'))).toBe('.current/key');
    expect(await readlink(path.join(dir, 'tlscert'))).toBe('.current/tlscert');
    await expectCurrent(dir, b);
  });
});

describe('DirectoryDestination: failed writes', () => {
  const badNames: Record<string, string> = {
    'a name longer than 255 bytes': `${'x'.repeat(300)}.crt`,
    'a name with a NUL byte': 'bad\0name',
  };
  for (const [what, name] of Object.entries(badNames)) {
    it(`keeps the previous output whole and readable when a write fails (${what})`, async () => {
      const dir = await outputPath();
      const dest = new DirectoryDestination(dir);
      const good = await bundle('4a01', 'tls');
      await dest.write(good);
      const before = await versions(dir);
      const entriesBefore = (await readdir(dir)).sort();

      const err = await dest.write(await bundle('4a02', '', { [name]: 'x' })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DestinationError);
      expect((err as Error).message).toContain(dir);
      expect((err as Error).message).toContain('the previous credentials are unchanged');

      await expectCurrent(dir, good);
      expect(await versions(dir)).toEqual(before); // no staging directory left behind
      expect((await readdir(dir)).sort()).toEqual(entriesBefore); // links unchanged, lock released

      // The destination still works afterwards.
      const next = await bundle('4a03');
      await dest.write(next);
      await expectCurrent(dir, next);
    });
  }

  it('leaves no output at all when the very first write fails', async () => {
    const dir = await outputPath();
    await expect(
      new DirectoryDestination(dir).write(await bundle('4b01', '', { [`${'y'.repeat(300)}`]: 'x' })),
    ).rejects.toThrow(DestinationError);
    expect(await readDirectoryOutput(dir)).toBeUndefined();
    expect((await readdir(dir)).filter((e) => e !== '.versions')).toEqual([]);
  });
});

describe('DirectoryDestination: one writer at a time', () => {
  it('serialises concurrent writers in one process: all complete, the result is one whole bundle', async () => {
    const dir = await outputPath();
    const bundles = await Promise.all(
      Array.from({ length: 8 }, (_, i) => bundle(`5a0${i}`, i % 2 ? 'tls' : '')),
    );
    await Promise.all(bundles.map((b) => new DirectoryDestination(dir).write(b)));
    const final = await readDirectoryOutput(dir);
    const winner = bundles.find((b) => b.serial === final?.serial);
    expect(winner).toBeDefined();
    await expectCurrent(dir, winner!);
    const kept = await versions(dir);
    expect(kept).toHaveLength(2);
    expect(kept.some((v) => v.endsWith('.tmp'))).toBe(false);
    expect((await readdir(dir)).filter((e) => e.endsWith('.tmp') || e === '.lock')).toEqual([]);
  });
});

describe('readDirectoryOutput', () => {
  it('refuses a directory whose .current is not a link, naming the directory', async () => {
    const dir = await outputPath();
    await mkdir(path.join(dir, '.current'), { recursive: true });
    await chmod(dir, 0o700);
    await expect(readDirectoryOutput(dir)).rejects.toThrow(DestinationError);
    await expect(readDirectoryOutput(dir)).rejects.toThrow(dir);
  });
});
