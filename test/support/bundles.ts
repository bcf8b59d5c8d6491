/**
 * The esbuild bundles the CDK apps deploy as Lambda assets, built by scripts/build.mjs. `npm test` builds them
 * before any test runs; a single test file run on its own may find them missing or older than the sources.
 * `ensureFunctionBundles` rebuilds only then, so the tests that synthesize apps do not each rebuild what the
 * run already built (and do not rewrite dist/functions under another test reading it).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './fixtures.js';

/** What the function bundles are built from. */
const INPUTS = ['src', 'functions', 'scripts/build.mjs', 'package-lock.json'];
const OUTPUT = 'dist/functions';

/** Every file under `dir` (or `dir` itself when it is a file), as absolute paths. */
function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  if (!statSync(dir).isDirectory()) return [dir];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name));
}

/**
 * Whether dist/functions holds a build without source maps (the default build, which the synthesized
 * templates must reference) that is newer than every source it is built from.
 */
export function functionBundlesFresh(): boolean {
  const outputs = files(path.join(REPO_ROOT, OUTPUT));
  if (!outputs.some((f) => f.endsWith(`${path.sep}index.mjs`))) return false;
  if (outputs.some((f) => f.endsWith('.map'))) return false;
  const oldestOutput = Math.min(...outputs.map((f) => statSync(f).mtimeMs));
  const newestInput = Math.max(
    ...INPUTS.flatMap((p) => files(path.join(REPO_ROOT, p))).map((f) => statSync(f).mtimeMs),
  );
  return newestInput < oldestOutput;
}

/** Builds the Lambda bundles (no source maps) unless dist/functions is already a fresh default build. */
export function ensureFunctionBundles(): void {
  if (functionBundlesFresh()) return;
  execFileSync(process.execPath, ['scripts/build.mjs', '--target', 'functions', '--quiet'], {
    cwd: REPO_ROOT,
    env: { ...process.env, BROKER_SOURCEMAP: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}
