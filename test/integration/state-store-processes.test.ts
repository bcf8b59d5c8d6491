/** FileStateStore's lock file across processes: compare-and-swap from several node processes at once. */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileStateStore } from '../../src/state/file-store.js';
import { REPO_ROOT } from '../support/fixtures.js';
import { RUN_MODULE, runConcurrently } from '../support/run.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

describe('FileStateStore: files and permissions', () => {
  it('lands compare-and-swap increments from several processes exactly once each', async () => {
    const dir = path.join(await makeTempDir(), 'state');
    const store = await FileStateStore.create(dir);
    await store.put('counters/shared', 0);
    const srcFile = (file: string) => JSON.stringify(path.join(REPO_ROOT, 'src', file));
    const processes = 3;
    const perProcess = 25;
    const results = await runConcurrently(
      [
        `import { FileStateStore } from ${srcFile('state/file-store.ts')};`,
        `import { startTogether } from ${RUN_MODULE};`,
        'const [dir, count] = process.argv.slice(2);',
        'const store = await FileStateStore.open(dir);',
        // Start together, so the increments really contend instead of running one process after another.
        'await startTogether();',
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
      [dir, String(perProcess)],
      { count: processes, workDir: await makeTempDir() },
    );
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const final = await store.get<number>('counters/shared');
    expect(final).toMatchObject({ value: processes * perProcess, version: processes * perProcess + 1 });
    expect(await readdir(dir)).toEqual(['data']);
  }, 60_000);
});
