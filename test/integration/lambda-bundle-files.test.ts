/**
 * The Lambda bundles keep re2js (the authority's regular expression engine) in a file of their own beside
 * index.mjs (scripts/own-file-plugin.mjs): importing a bundle does not parse it, the first `^…$` pattern
 * requires it synchronously, and the directory the CDK asset ships holds every file the entry requires.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ownFileForRequired } from '../../scripts/own-file-plugin.mjs';
import { ensureFunctionBundles } from '../support/bundles.js';
import { REPO_ROOT } from '../support/fixtures.js';
import { run } from '../support/run.js';
import { tempDir } from '../support/temp.js';

/** A string of re2js's own source (one of its syntax errors): present only where its code is. */
const RE2JS_TEXT = 'invalid nested repetition operator';

/** Imports `entry` in a fresh node process run from `cwd` and prints what `probe` returns, as JSON. */
async function inFreshNode(cwd: string, entry: string, probe: string): Promise<unknown> {
  const script = [
    "import { createRequire } from 'node:module';",
    'const cache = createRequire(import.meta.url).cache;',
    "const engineLoaded = () => Object.keys(cache).some((k) => k.endsWith('re2js.cjs'));",
    `const m = await import(${JSON.stringify(pathToFileURL(entry).href)});`,
    `process.stdout.write(JSON.stringify(await (async () => { ${probe} })()));`,
  ].join('\n');
  const res = await run(process.execPath, ['--input-type=module', '-e', script], { cwd, timeoutMs: 60_000 });
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  return JSON.parse(res.stdout) as unknown;
}

/** The relative files an entry loads: its static and dynamic imports and its `require("./…")` calls. */
function relativeLoads(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  // Minified, `require` has another name: any call or `from` with a relative path.
  const specs = [...text.matchAll(/(?:from\s*|\()"(\.\.?\/[^"]+)"/g)].map((m) => m[1] as string);
  return [...new Set(specs)];
}

describe('re2js in a file of its own', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    work = await tempDir('own-file');
  });
  afterAll(async () => {
    await work?.cleanup();
  });

  it('a bundle built with the plugin matches ^…$ patterns with re2js.cjs beside it, loaded only on the first one', async () => {
    const entry = path.join(work.dir, 'entry.ts');
    const regex = path.join(REPO_ROOT, 'src/authority/rbac/regex.ts');
    await writeFile(
      entry,
      `export { matchString, patternProblem, regexpReplace } from ${JSON.stringify(regex)};\n`,
    );
    const outdir = path.join(work.dir, 'out');
    const result = await build({
      entryPoints: { index: entry },
      outdir,
      outExtension: { '.js': '.mjs' },
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      minify: true,
      splitting: true,
      metafile: true,
      // The bundle's own `require`, as the functions' banner in scripts/build.mjs defines it.
      banner: {
        js: "import { createRequire as __c } from 'node:module'; const require = __c(import.meta.url);",
      },
      plugins: [ownFileForRequired(['re2js'])],
      logLevel: 'silent',
    });
    expect(readdirSync(outdir).sort()).toEqual(['index.mjs', 're2js.cjs']);
    // The metafile lists the file, so the build's clean-up keeps it.
    expect(Object.keys(result.metafile.outputs).some((f) => f.endsWith('re2js.cjs'))).toBe(true);
    expect(readFileSync(path.join(outdir, 'index.mjs'), 'utf8')).not.toContain(RE2JS_TEXT);

    // Run from a directory with no node_modules above it, as a Lambda runs its asset.
    const seen = await inFreshNode(
      work.dir,
      path.join(outdir, 'index.mjs'),
      `const steps = [['imported', engineLoaded()]];
       steps.push(['glob', m.matchString('prod-eu', 'prod-*'), engineLoaded()]);
       steps.push(['regex', m.matchString('prod-eu', '^prod-(eu|us)$'), m.matchString('prod-ap', '^prod-(eu|us)$'), engineLoaded()]);
       steps.push(['replace', m.regexpReplace(['alice@example.com', 'bob@other.org'], '^(.*)@example\\\\.com$', '$1')]);
       steps.push(['invalid', m.patternProblem('^(a$')]);
       return steps;`,
    );
    expect(seen).toEqual([
      ['imported', false],
      ['glob', true, false],
      ['regex', true, false, true],
      ['replace', ['alice']],
      ['invalid', 'invalid regular expression "^(a$": error parsing regexp: missing closing ): `^(a$`'],
    ]);
  });

  it('the built authority bundles ship re2js.cjs beside index.mjs, and importing one does not load it', async () => {
    ensureFunctionBundles();
    for (const fn of ['authority', 'authority-rotate', 'authority-sign', 'bot']) {
      const dir = path.join(REPO_ROOT, 'dist/functions', fn);
      // Every file the entry loads by a relative path is in the directory the asset ships.
      for (const spec of relativeLoads(path.join(dir, 'index.mjs')))
        expect(existsSync(path.join(dir, spec)), `${fn}/index.mjs loads ${spec}`).toBe(true);
      expect(readFileSync(path.join(dir, 'index.mjs'), 'utf8')).not.toContain(RE2JS_TEXT);
    }
    const authority = path.join(REPO_ROOT, 'dist/functions/authority');
    expect(relativeLoads(path.join(authority, 'index.mjs'))).toContain('./re2js.cjs');
    expect(readFileSync(path.join(authority, 're2js.cjs'), 'utf8')).toContain(RE2JS_TEXT);
    const seen = await inFreshNode(
      work.dir,
      path.join(authority, 'index.mjs'),
      'return [typeof m.handler, engineLoaded()];',
    );
    expect(seen).toEqual(['function', false]);
  });
});
