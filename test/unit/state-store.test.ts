import { chmod, lstat, mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConflictError, StateError } from '../../src/errors.js';
import { assertPrivateDirectory, FileStateStore, writeFileAtomic } from '../../src/state/file-store.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import type { StateStore } from '../../src/state/store.js';
import { makeTempDir, REPO_ROOT, removeTempDirs, run } from './helpers.js';

afterAll(removeTempDirs);

const INVALID_KEYS = [
  '',
  '/roles/a',
  'roles/',
  'roles//a',
  '../escape',
  'roles/../../escape',
  'roles/..',
  'roles/a b',
  'Roles/a',
  'roles/.hidden',
  'roles/a\\b',
  'roles/a\n',
];

/** Retries a read-increment-write until its compare-and-swap lands; returns how many conflicts it saw. */
async function casIncrement(store: StateStore, key: string): Promise<number> {
  for (let conflicts = 0; ; conflicts++) {
    const current = await store.get<number>(key);
    try {
      await store.put(key, (current?.value ?? 0) + 1, current ? current.version : 'absent');
      return conflicts;
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }
}

/** The StateStore contract, shared by every implementation. */
function stateStoreContract(name: string, open: () => Promise<StateStore>): void {
  describe(`${name}: StateStore contract`, () => {
    it('returns undefined for a missing key', async () => {
      const store = await open();
      expect(await store.get('roles/missing')).toBeUndefined();
    });

    it('stores a value and returns it with its key and version 1', async () => {
      const store = await open();
      const value = { kind: 'role', metadata: { name: 'a' }, list: [1, 'two', null], nested: { deep: true } };
      expect(await store.put('roles/a', value)).toBe(1);
      expect(await store.get('roles/a')).toEqual({ key: 'roles/a', value, version: 1 });
    });

    it('increases the version by one on every write', async () => {
      const store = await open();
      expect(await store.put('bots/b', 'v1')).toBe(1);
      expect(await store.put('bots/b', 'v2')).toBe(2);
      expect(await store.put('bots/b', 'v3')).toBe(3);
      expect(await store.get('bots/b')).toEqual({ key: 'bots/b', value: 'v3', version: 3 });
    });

    it('keeps versions per key', async () => {
      const store = await open();
      await store.put('bots/a', 1);
      await store.put('bots/a', 2);
      expect(await store.put('bots/b', 1)).toBe(1);
    });

    it("expect 'absent' creates a new key and refuses an existing one with ConflictError", async () => {
      const store = await open();
      expect(await store.put('tokens/t', { n: 1 }, 'absent')).toBe(1);
      await expect(store.put('tokens/t', { n: 2 }, 'absent')).rejects.toBeInstanceOf(ConflictError);
      expect(await store.get('tokens/t')).toEqual({ key: 'tokens/t', value: { n: 1 }, version: 1 });
    });

    it('expect <version> replaces only that version', async () => {
      const store = await open();
      await store.put('botstate/b', { generation: 1 });
      expect(await store.put('botstate/b', { generation: 2 }, 1)).toBe(2);
      const stale = store.put('botstate/b', { generation: 3 }, 1);
      await expect(stale).rejects.toBeInstanceOf(ConflictError);
      await expect(store.put('botstate/b', { generation: 3 }, 3)).rejects.toThrow(
        /expected version 3, found 2/,
      );
      expect(await store.get('botstate/b')).toEqual({
        key: 'botstate/b',
        value: { generation: 2 },
        version: 2,
      });
    });

    it('expect <version> on a missing key is a ConflictError and creates nothing', async () => {
      const store = await open();
      await expect(store.put('botstate/none', 1, 1)).rejects.toBeInstanceOf(ConflictError);
      expect(await store.get('botstate/none')).toBeUndefined();
    });

    it('deletes: true for an existing key, false for a missing one', async () => {
      const store = await open();
      await store.put('locks/a', { reason: 'x' });
      expect(await store.delete('locks/a')).toBe(true);
      expect(await store.get('locks/a')).toBeUndefined();
      expect(await store.delete('locks/a')).toBe(false);
    });

    it('delete with expect <version> refuses a stale version and keeps the value', async () => {
      const store = await open();
      await store.put('tokens/t', 'a');
      await store.put('tokens/t', 'b');
      await expect(store.delete('tokens/t', 1)).rejects.toBeInstanceOf(ConflictError);
      expect(await store.get('tokens/t')).toMatchObject({ value: 'b', version: 2 });
      expect(await store.delete('tokens/t', 2)).toBe(true);
      await expect(store.delete('tokens/t', 2)).rejects.toBeInstanceOf(ConflictError);
    });

    it('a deleted key starts again at version 1', async () => {
      const store = await open();
      await store.put('roles/a', 1);
      await store.put('roles/a', 2);
      await store.delete('roles/a');
      expect(await store.put('roles/a', 3, 'absent')).toBe(1);
    });

    it('returns copies: changing a value read or written does not change the stored value', async () => {
      const store = await open();
      const value = { list: [1, 2] };
      await store.put('roles/a', value);
      value.list.push(3);
      const read = await store.get<{ list: number[] }>('roles/a');
      read?.value.list.push(4);
      expect((await store.get('roles/a'))?.value).toEqual({ list: [1, 2] });
    });

    it('lists the direct children of a prefix with their versions, with or without a trailing slash', async () => {
      const store = await open();
      await store.put('roles/b', 'B');
      await store.put('roles/a', 'A');
      await store.put('roles/a', 'A2');
      await store.put('rolesx/c', 'not a role');
      await store.put('bots/a', 'a bot');
      await store.put('roles/sub/deeper', 'nested');
      const expected = [
        { key: 'roles/a', value: 'A2', version: 2 },
        { key: 'roles/b', value: 'B', version: 1 },
      ];
      expect(await store.list('roles')).toEqual(expected);
      expect(await store.list('roles/')).toEqual(expected);
      expect(await store.list('roles/sub')).toEqual([
        { key: 'roles/sub/deeper', value: 'nested', version: 1 },
      ]);
      expect(await store.list('dbs')).toEqual([]);
    });

    it('lists sorted by key', async () => {
      const store = await open();
      for (const k of ['c', 'a', 'e', 'b', 'd']) await store.put(`tokens/${k}`, k);
      expect((await store.list('tokens')).map((i) => i.key)).toEqual([
        'tokens/a',
        'tokens/b',
        'tokens/c',
        'tokens/d',
        'tokens/e',
      ]);
    });

    it('lists sorted by key in code-unit order, whatever the characters', async () => {
      // The order DynamoDB uses for ASCII sort keys, and what Array.prototype.sort gives.
      const store = await open();
      const keys = ['bots/a', 'bots/a-b', 'bots/a.b', 'bots/B', 'bots/A', 'bots/a_b', 'bots/a@x', 'bots/ab'];
      for (const k of keys) await store.put(k, k);
      expect((await store.list('bots')).map((i) => i.key)).toEqual([...keys].sort());
    });

    it.each(INVALID_KEYS)(
      'rejects the invalid key %j for get, put and delete, writing nothing',
      async (key) => {
        const store = await open();
        await expect((async () => store.get(key))()).rejects.toThrow(/invalid state key/);
        await expect((async () => store.put(key, 'x'))()).rejects.toThrow(/invalid state key/);
        await expect((async () => store.delete(key))()).rejects.toThrow(/invalid state key/);
        expect(await store.list('roles')).toEqual([]);
      },
    );

    it('reports an invalid key as a rejected promise, not a synchronous throw', async () => {
      const store = await open();
      for (const call of [() => store.get('../x'), () => store.put('../x', 1), () => store.delete('../x')]) {
        let promise: Promise<unknown> | undefined;
        expect(() => {
          promise = call();
        }).not.toThrow();
        await expect(promise).rejects.toThrow(/invalid state key/);
      }
    });

    it.each([
      'roles/example-role',
      'tokens/0123abcd',
      'config/cluster',
      'bots/bot@example.com',
      'cas/db-client',
      'x',
    ])('accepts the key %j', async (key) => {
      const store = await open();
      expect(await store.put(key, 1)).toBe(1);
      expect(await store.get(key)).toMatchObject({ key, value: 1 });
    });

    it('lands 20 parallel compare-and-swap increments exactly once each', async () => {
      const store = await open();
      await Promise.all(Array.from({ length: 20 }, () => casIncrement(store, 'counters/n')));
      expect(await store.get('counters/n')).toEqual({ key: 'counters/n', value: 20, version: 20 });
    });

    it("lets exactly one of 10 parallel 'absent' creations win", async () => {
      const store = await open();
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => store.put('tokens/once', i, 'absent')),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
    });

    it('lets exactly one of 10 parallel deletes of the same version win (one-time tokens)', async () => {
      const store = await open();
      await store.put('tokens/t', 'secret-hash');
      const results = await Promise.allSettled(Array.from({ length: 10 }, () => store.delete('tokens/t', 1)));
      const won = results.filter((r) => r.status === 'fulfilled' && r.value === true);
      expect(won).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
    });
  });
}

stateStoreContract('MemoryStateStore', async () => new MemoryStateStore());
stateStoreContract('FileStateStore', async () =>
  FileStateStore.create(path.join(await makeTempDir(), 'state')),
);

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

  it('lands compare-and-swap increments from several processes exactly once each', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    const store = await FileStateStore.create(dir);
    await store.put('counters/shared', 0);
    const work = await makeTempDir();
    const script = path.join(work, 'increment.mts');
    const barrier = path.join(work, 'barrier');
    await mkdir(barrier);
    const srcFile = (file: string) => JSON.stringify(path.join(REPO_ROOT, 'src', file));
    const processes = 3;
    const perProcess = 25;
    await writeFile(
      script,
      [
        "import { readdir, writeFile } from 'node:fs/promises';",
        `import { FileStateStore } from ${srcFile('state/file-store.ts')};`,
        'const [dir, barrier, count, processes] = process.argv.slice(2);',
        'const store = await FileStateStore.open(dir);',
        // Start together, so the increments really contend instead of running one process after another.
        // biome-ignore lint/suspicious/noTemplateCurlyInString: this line is the child script's own template literal
        'await writeFile(`${barrier}/${process.pid}`, "");',
        'while ((await readdir(barrier)).length < Number(processes)) await new Promise((r) => setTimeout(r, 5));',
        'let conflicts = 0;',
        'for (let i = 0; i < Number(count); i++) {',
        '  for (;;) {',
        "    const current = await store.get('counters/shared');",
        '    try {',
        "      await store.put('counters/shared', current.value + 1, current.version);",
        '      break;',
        '    } catch (err) {',
        "      if (err.code !== 'conflict') throw err;",
        '      conflicts++;',
        '    }',
        '  }',
        '}',
        'console.log(JSON.stringify({ conflicts }));',
      ].join('\n'),
    );
    const results = await Promise.all(
      Array.from({ length: processes }, () =>
        run(
          process.execPath,
          ['--import', 'tsx', script, dir, barrier, String(perProcess), String(processes)],
          {
            cwd: REPO_ROOT,
            timeoutMs: 60_000,
          },
        ),
      ),
    );
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const final = await store.get<number>('counters/shared');
    expect(final).toMatchObject({ value: processes * perProcess, version: processes * perProcess + 1 });
    expect(await readdir(dir)).toEqual(['data']);
  }, 60_000);
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
