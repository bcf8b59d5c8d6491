/**
 * DirectoryDestination's lock across processes: writers in several node processes, and a live process
 * holding the lock (the write waits its full 5 s before giving up). The rest is unit-tested in
 * test/unit/directory-destination.test.ts.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkBundleKeyPair } from '../../src/credentials/bundle.js';
import {
  DestinationError,
  DirectoryDestination,
  readDirectoryOutput,
} from '../../src/destinations/directory.js';
import { expectCurrent, outputPath, versions } from '../support/directory-output.js';
import { REPO_ROOT, testBundle } from '../support/fixtures.js';
import { RUN_MODULE, runConcurrently } from '../support/run.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

describe('DirectoryDestination: one writer at a time', () => {
  it('serialises writers in several processes', async () => {
    const dir = await outputPath();
    const processes = 3;
    const perProcess = 6;
    const results = await runConcurrently(
      [
        `import { DirectoryDestination } from ${JSON.stringify(path.join(REPO_ROOT, 'src/destinations/directory.ts'))};`,
        `import { testBundle } from ${JSON.stringify(path.join(REPO_ROOT, 'test/support/fixtures.ts'))};`,
        `import { startTogether } from ${RUN_MODULE};`,
        'const [dir, count] = process.argv.slice(2);',
        // Each issuance its own key, so a key and a certificate of two issuances never match.
        'const bundles = [];',
        'for (let i = 0; i < Number(count); i++) bundles.push(await testBundle({ slot: i }));',
        'await startTogether();',
        'for (const bundle of bundles) await new DirectoryDestination(dir).write(bundle);',
      ].join('\n'),
      [dir, String(perProcess)],
      { count: processes, workDir: await makeTempDir() },
    );
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const final = await readDirectoryOutput(dir);
    // Certificate, key and serial are of one issuance.
    expect(() => checkBundleKeyPair(final!)).not.toThrow();
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
    const good = await testBundle({ serial: '5c01' });
    await dest.write(good);
    const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    try {
      await writeFile(path.join(dir, '.lock'), `${holder.pid}\n`, { mode: 0o600 });
      const started = Date.now();
      const err = await dest.write(await testBundle({ serial: '5c02' })).catch((e: unknown) => e);
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
    const next = await testBundle({ serial: '5c03' });
    await dest.write(next);
    await expectCurrent(dir, next);
  }, 20_000);
});
