import { spawn } from 'node:child_process';
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
import { afterAll, describe, expect, it } from 'vitest';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { type OutputFormat, renderDatabaseArtifacts } from '../../src/credentials/formats.js';
import {
  DestinationError,
  DirectoryDestination,
  readDirectoryOutput,
} from '../../src/destinations/directory.js';
import { makeTempDir, REPO_ROOT, removeTempDirs, run } from './helpers.js';

afterAll(removeTempDirs);

/** A bundle whose every file names its serial, so a mix of two issuances is visible in the contents. */
function bundle(serial: string, format: OutputFormat = '', extraFiles: Record<string, string> = {}) {
  const files = renderDatabaseArtifacts(format, {
    certificatePem: `-----BEGIN CERTIFICATE-----\ncert-${serial}\n-----END CERTIFICATE-----\n`,
    privateKeyPem: `-----BEGIN PRIVATE KEY-----\nkey-${serial}\n-----END PRIVATE KEY-----\n`,
    serverCaPem: `-----BEGIN CERTIFICATE-----\nca-${serial}\n-----END CERTIFICATE-----\n`,
  });
  return {
    kind: 'database-credentials',
    version: 1,
    service: 'example-server',
    protocol: 'postgres',
    endpoint: 'db.internal:5432',
    serverName: 'db.internal',
    database: 'example',
    username: 'alice',
    format,
    serial,
    issuedAt: '2026-01-01T00:00:00.000Z',
    expiresAt: '2026-01-01T01:00:00.000Z',
    files: { ...files, ...extraFiles },
  } satisfies CredentialBundle;
}

const modeOf = async (file: string) => (await stat(file)).mode & 0o777;

/** A fresh output path (not yet created) under a real, symlink-free temp directory. */
async function outputPath(): Promise<string> {
  return path.join(await realpath(await makeTempDir('broker-dest-')), 'out');
}

/** Reads every artifact through its name in the destination, as a client configured with those paths would. */
async function readByName(dir: string, names: readonly string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of names) out[name] = await readFile(path.join(dir, name), 'utf8');
  return out;
}

/** The entries of `.versions`, i.e. the issuances kept on disk. */
const versions = async (dir: string) => (await readdir(path.join(dir, '.versions'))).sort();

/** Asserts that every artifact name resolves to `b`'s content and `read()` returns exactly `b`. */
async function expectCurrent(dir: string, b: CredentialBundle): Promise<void> {
  expect(await readByName(dir, Object.keys(b.files))).toEqual(b.files);
  expect(await readDirectoryOutput(dir)).toEqual(b);
}

describe('DirectoryDestination: layout and modes', () => {
  it('writes every artifact as a link into the current version: files 0600, directories 0700', async () => {
    const dir = await outputPath();
    const b = bundle('0a01');
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
    const b = bundle('0b01', 'cockroach');
    await new DirectoryDestination(dir).write(b);
    expect(await readlink(path.join(dir, 'cockroach'))).toBe('.current/cockroach');
    expect(await modeOf(path.join(dir, 'cockroach'))).toBe(0o700);
    for (const name of ['cockroach/node.crt', 'cockroach/node.key', 'cockroach/ca.crt'])
      expect(await modeOf(path.join(dir, name)), name).toBe(0o600);
    await expectCurrent(dir, b);
  });

  it('widens to 0640 files and 0750 directories with readers: group', async () => {
    const dir = await outputPath();
    const b = bundle('0c01', 'tls');
    await new DirectoryDestination(dir, { readers: 'group' }).write(b);
    for (const name of Object.keys(b.files)) expect(await modeOf(path.join(dir, name)), name).toBe(0o640);
    expect(await modeOf(dir)).toBe(0o750);
    expect(await modeOf(path.join(dir, '.versions'))).toBe(0o750);
    expect(await modeOf(path.join(dir, '.current'))).toBe(0o750);
  });

  it('keeps readers: group modes under a restrictive umask (e.g. systemd UMask=0077)', async () => {
    const dir = await outputPath();
    const b = bundle('0c02', 'cockroach');
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
  });

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
    for (const serial of serials) {
      const b = bundle(serial);
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
        expect(await readFile(path.join(old, 'key'), 'utf8')).toContain(
          `key-${serials[serials.indexOf(serial) - 1]}`,
        );
      }
      previous = current;
    }
  });

  it('removes the links of a previous format but never a file or link of the user', async () => {
    const dir = await outputPath();
    const dest = new DirectoryDestination(dir);
    await dest.write(bundle('2a01', 'tls'));
    expect(await readlink(path.join(dir, 'tls.crt'))).toBe('.current/tls.crt');
    // The user keeps their own things in the output directory.
    await writeFile(path.join(dir, 'notes.txt'), 'mine\n');
    await symlink('/etc/hostname', path.join(dir, 'my-link'));
    await symlink('tlscert', path.join(dir, 'client.crt'));

    const plain = bundle('2a02');
    await dest.write(plain);
    const entries = (await readdir(dir)).sort();
    expect(entries).toEqual(
      ['.current', '.versions', 'client.crt', 'my-link', 'notes.txt', ...Object.keys(plain.files)].sort(),
    );
    expect(await readFile(path.join(dir, 'notes.txt'), 'utf8')).toBe('mine\n');
    expect(await readlink(path.join(dir, 'my-link'))).toBe('/etc/hostname');
    expect(await readFile(path.join(dir, 'client.crt'), 'utf8')).toBe(plain.files.tlscert);
    await expectCurrent(dir, plain);

    await dest.write(bundle('2a03', 'cockroach'));
    expect(await readlink(path.join(dir, 'cockroach'))).toBe('.current/cockroach');
    await dest.write(bundle('2a04', 'mongo'));
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
      const err = await new DirectoryDestination(dir).write(bundle('3a01')).catch((e: unknown) => e);
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

    const b = bundle('3b01');
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
      const good = bundle('4a01', 'tls');
      await dest.write(good);
      const before = await versions(dir);
      const entriesBefore = (await readdir(dir)).sort();

      const err = await dest.write(bundle('4a02', '', { [name]: 'x' })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DestinationError);
      expect((err as Error).message).toContain(dir);
      expect((err as Error).message).toContain('the previous credentials are unchanged');

      await expectCurrent(dir, good);
      expect(await versions(dir)).toEqual(before); // no staging directory left behind
      expect((await readdir(dir)).sort()).toEqual(entriesBefore); // links unchanged, lock released

      // The destination still works afterwards.
      const next = bundle('4a03');
      await dest.write(next);
      await expectCurrent(dir, next);
    });
  }

  it('leaves no output at all when the very first write fails', async () => {
    const dir = await outputPath();
    await expect(
      new DirectoryDestination(dir).write(bundle('4b01', '', { [`${'y'.repeat(300)}`]: 'x' })),
    ).rejects.toThrow(DestinationError);
    expect(await readDirectoryOutput(dir)).toBeUndefined();
    expect((await readdir(dir)).filter((e) => e !== '.versions')).toEqual([]);
  });
});

describe('DirectoryDestination: one writer at a time', () => {
  it('serialises concurrent writers in one process: all complete, the result is one whole bundle', async () => {
    const dir = await outputPath();
    const bundles = Array.from({ length: 8 }, (_, i) => bundle(`5a0${i}`, i % 2 ? 'tls' : ''));
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

  it('serialises writers in several processes', async () => {
    const dir = await outputPath();
    const work = await makeTempDir();
    const script = path.join(work, 'writer.mts');
    const barrier = path.join(work, 'barrier');
    await mkdir(barrier);
    const processes = 3;
    const perProcess = 6;
    await writeFile(
      script,
      [
        "import { readdir, writeFile } from 'node:fs/promises';",
        `import { DirectoryDestination } from ${JSON.stringify(path.join(REPO_ROOT, 'src/destinations/directory.ts'))};`,
        'const [dir, barrier, count, processes] = process.argv.slice(2);',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: this line is the child script's own template literal
        'await writeFile(`${barrier}/${process.pid}`, "");',
        'while ((await readdir(barrier)).length < Number(processes)) await new Promise((r) => setTimeout(r, 5));',
        'for (let i = 0; i < Number(count); i++) {',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: this line is the child script's own template literal
        '  const serial = `${process.pid.toString(16)}f${i}`;',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: this line is the child script's own template literal
        '  const pem = (what) => `-----BEGIN ${what}-----\\n${what}-${serial}\\n-----END ${what}-----\\n`;',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: this line is the child script's own template literal
        "  const files = { tlscert: pem('CERTIFICATE'), key: pem('PRIVATE KEY'), 'teleport-host-ca.crt': pem('CERTIFICATE'), 'teleport-database-ca.crt': pem('CERTIFICATE') };",
        "  await new DirectoryDestination(dir).write({ kind: 'database-credentials', version: 1, service: 's', protocol: 'postgres', endpoint: 'h:1', serverName: 'h', database: 'd', username: 'u', format: '', serial, issuedAt: '2026-01-01T00:00:00Z', expiresAt: '2026-01-01T01:00:00Z', files });",
        '}',
      ].join('\n'),
    );
    const results = await Promise.all(
      Array.from({ length: processes }, () =>
        run(
          process.execPath,
          ['--import', 'tsx', script, dir, barrier, String(perProcess), String(processes)],
          { cwd: REPO_ROOT, timeoutMs: 60_000 },
        ),
      ),
    );
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const final = await readDirectoryOutput(dir);
    expect(final?.files.tlscert).toContain(`CERTIFICATE-${final?.serial}`);
    expect(final?.files.key).toContain(`PRIVATE KEY-${final?.serial}`);
    expect(await readFile(path.join(dir, 'key'), 'utf8')).toBe(final?.files.key);
    expect(await versions(dir)).toHaveLength(2);
    expect((await readdir(dir)).sort()).toEqual([
      '.current',
      '.versions',
      'key',
      'teleport-database-ca.crt',
      'teleport-host-ca.crt',
      'tlscert',
    ]);
  }, 60_000);

  it('gives up with a clear error while a live process holds the lock, and recovers once it is gone', async () => {
    const dir = await outputPath();
    const dest = new DirectoryDestination(dir);
    const good = bundle('5c01');
    await dest.write(good);
    const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    try {
      await writeFile(path.join(dir, '.lock'), `${holder.pid}\n`, { mode: 0o600 });
      const started = Date.now();
      const err = await dest.write(bundle('5c02')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DestinationError);
      expect((err as Error).message).toContain(`pid ${holder.pid}`);
      expect((err as Error).message).toContain(dir);
      expect((err as Error).message).toMatch(/another bot/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(4_000);
      // The other writer's lock is not stolen and the output is untouched.
      expect(await readFile(path.join(dir, '.lock'), 'utf8')).toBe(`${holder.pid}\n`);
      await expectCurrent(dir, good);
    } finally {
      holder.kill('SIGKILL');
      await exited;
    }
    // The holder is gone: its lock is stale and is broken at once.
    const next = bundle('5c03');
    await dest.write(next);
    await expectCurrent(dir, next);
  }, 20_000);
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
