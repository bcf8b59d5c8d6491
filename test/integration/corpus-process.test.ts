/**
 * Deeply nested YAML under plain node: parsing it again and again in one process fails cleanly every time.
 * The rest of the bad-input corpus is unit-tested in test/unit/corpus.test.ts.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/fixtures.js';
import { run } from '../support/run.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

describe('parseResources and parseBotConfig on arbitrary and hostile text', () => {
  it('a plain node process survives parsing deeply nested files again and again', async () => {
    // Under plain node (not the test worker), a stack overflow inside the YAML library left V8 unable to
    // compile regular expressions, and the second deep document aborted the process (a fatal "out of
    // memory" in the RegExp compiler) instead of failing: the authority Lambda retries its bootstrap.
    const work = await makeTempDir('broker-corpus-');
    const script = path.join(work, 'deep.mts');
    await writeFile(
      script,
      [
        `import { parseResources } from ${JSON.stringify(path.join(REPO_ROOT, 'src/authority/resources.ts'))};`,
        `import { parseBotConfig } from ${JSON.stringify(path.join(REPO_ROOT, 'src/bot/config.ts'))};`,
        "const inputs = ['- '.repeat(3000) + '1', '['.repeat(20000) + ']'.repeat(20000), '{a: '.repeat(2000) + '1' + '}'.repeat(2000)];",
        'for (let i = 0; i < 3; i++)',
        '  for (const text of inputs)',
        '    for (const parse of [parseResources, parseBotConfig])',
        "      try { parse(text, 'deep.yaml'); console.log('parsed'); } catch (err) { console.log(err.name); }",
      ].join('\n'),
    );
    const result = await run(process.execPath, ['--import', 'tsx', script], {
      cwd: REPO_ROOT,
      timeoutMs: 60_000,
    });
    expect(result.code, result.stderr.slice(0, 500)).toBe(0);
    expect(result.stdout.trim().split('\n')).toEqual(Array(18).fill('ConfigError'));
  }, 60_000);
});
