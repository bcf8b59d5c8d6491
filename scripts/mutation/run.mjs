/**
 * `npm run test:mutation [--ci] [--force] [--concurrency N] [files…]`: mutation testing of the security-critical files
 * (targets.mjs) with Stryker and its vitest runner. Each file is mutated on its own and its mutants run only
 * against the unit tests listed for it, chosen per mutant by per-test coverage. A file passes when its score
 * reaches its threshold; survivors that only change the text of a log line or an error message
 * (message-only.mjs) are listed apart and left out of that score. The run fails when any file is below its
 * threshold, or when a test fails without mutants (Stryker's initial run).
 *
 * Results are kept per file in scripts/mutation/incremental/ and committed: a later run (a fresh clone in CI)
 * tests again only the mutants whose code or covering tests changed. --force tests every mutant again.
 * --ci: two workers and plain progress lines; --concurrency N: N workers. A report of every file goes to
 * tmp/mutation/.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Stryker } from '@stryker-mutator/core';
import { messageOnlyClassifier } from './message-only.mjs';
import { TARGETS } from './targets.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
process.chdir(ROOT);
const REPORTS = 'tmp/mutation';

function parseArgs(argv) {
  const options = { ci: false, force: false, concurrency: undefined, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--ci') options.ci = true;
    else if (a === '--force') options.force = true;
    else if (a === '--concurrency') options.concurrency = Number(argv[++i]);
    else if (a.startsWith('-'))
      throw new Error(`unknown option ${a} (allowed: --ci, --force, --concurrency N)`);
    else options.files.push(path.relative(ROOT, path.resolve(a)).split(path.sep).join('/'));
  }
  return options;
}

function selectTargets(files) {
  if (files.length === 0) return TARGETS;
  return files.flatMap((f) => {
    const matching = TARGETS.filter((t) => t.file === f || t.file.startsWith(`${f.replace(/\/$/, '')}/`));
    if (matching.length === 0) {
      throw new Error(
        `${f} is not a mutation target; the targets are listed in scripts/mutation/targets.mjs:\n  ${TARGETS.map((t) => t.file).join('\n  ')}`,
      );
    }
    return matching;
  });
}

const incrementalFile = (target) => `scripts/mutation/incremental/${slug(target.file)}.json`;
const slug = (file) =>
  file
    .replace(/^src\//, '')
    .replace(/\.ts$/, '')
    .replaceAll('/', '-');

function strykerOptions(target, options) {
  for (const t of [...target.tests, ...(target.support ?? [])])
    if (!existsSync(t)) throw new Error(`${target.file}: test file ${t} does not exist`);
  return {
    mutate: [target.file],
    testRunner: 'vitest',
    plugins: ['@stryker-mutator/vitest-runner'],
    vitest: { configFile: 'scripts/mutation/vitest.config.mjs', related: false },
    testFiles: target.tests,
    coverageAnalysis: 'perTest',
    // Mutants that act only while a module loads (module-level constants) are not activated by the vitest
    // runner here: they survive every test, whatever it asserts. They are reported as ignored.
    ignoreStatic: true,
    // Vitest does not type-check, so nothing needs // @ts-nocheck added (which reads every file in the tree).
    disableTypeChecks: false,
    incremental: true,
    incrementalFile: incrementalFile(target),
    force: options.force,
    concurrency:
      options.concurrency ?? (options.ci ? 2 : Math.max(1, Math.min(2, os.availableParallelism() - 1))),
    timeoutMS: 10_000,
    reporters: options.ci ? ['progress-append-only'] : ['progress', 'html'],
    htmlReporter: { fileName: `${REPORTS}/${slug(target.file)}.html` },
    tempDirName: `tmp/stryker-${process.pid}`,
    ignorePatterns: ['/*', '!/src', '!/test', '!/examples', '!/scripts', '!/package.json', '!/tsconfig.json'],
    // Thresholds are checked per file below, without message-only survivors.
    thresholds: { high: target.threshold, low: target.threshold, break: null },
    logLevel: 'warn',
    fileLogLevel: 'off',
  };
}

/**
 * Whether the test/support files listed for `target` are as they were when its results were stored. Stryker
 * follows the test files only, so the run keeps their text beside its results (`supportFiles`).
 */
function supportUnchanged(target) {
  const file = incrementalFile(target);
  const stored = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')).supportFiles ?? {}) : {};
  const support = target.support ?? [];
  if (Object.keys(stored).sort().join('\n') !== [...support].sort().join('\n')) return false;
  return support.every((f) => stored[f].source === readFileSync(f, 'utf8'));
}

function storeSupport(target) {
  if (!target.support) return;
  const file = incrementalFile(target);
  const report = JSON.parse(readFileSync(file, 'utf8'));
  report.supportFiles = Object.fromEntries(
    target.support.map((f) => [f, { source: readFileSync(f, 'utf8') }]),
  );
  writeFileSync(file, JSON.stringify(report, null, 2));
}

/**
 * The stored results of `target` when its file and every one of its test files are exactly as they were
 * when the results were made (Stryker would then reuse every result anyway, after a full initial test run).
 */
function upToDate(target) {
  const file = incrementalFile(target);
  if (!existsSync(file)) return undefined;
  const report = JSON.parse(readFileSync(file, 'utf8'));
  const source = report.files?.[target.file];
  const tests = Object.keys(report.testFiles ?? {}).sort();
  if (!source || source.source !== readFileSync(target.file, 'utf8')) return undefined;
  if (tests.join('\n') !== [...target.tests].sort().join('\n')) return undefined;
  if (!supportUnchanged(target)) return undefined;
  for (const t of tests) if (report.testFiles[t].source !== readFileSync(t, 'utf8')) return undefined;
  if (source.mutants.some((m) => m.status === 'Pending')) return undefined;
  return source.mutants.map((m) => ({ ...m, fileName: target.file }));
}

const DETECTED = new Set(['Killed', 'Timeout']);
const UNDETECTED = new Set(['Survived', 'NoCoverage']);

function summarize(target, results) {
  const text = readFileSync(target.file, 'utf8');
  const messageOnly = messageOnlyClassifier(target.file, text);
  const mine = results.filter((r) => path.resolve(r.fileName) === path.resolve(target.file));
  const detected = mine.filter((r) => DETECTED.has(r.status));
  const undetected = mine.filter((r) => UNDETECTED.has(r.status));
  const messages = undetected.filter(messageOnly);
  const behaviour = undetected.filter((r) => !messageOnly(r));
  const pct = (n, d) => (d === 0 ? 100 : (100 * n) / d);
  return {
    file: target.file,
    threshold: target.threshold,
    mutants: mine.length,
    killed: mine.filter((r) => r.status === 'Killed').length,
    timeout: mine.filter((r) => r.status === 'Timeout').length,
    survived: mine.filter((r) => r.status === 'Survived').length,
    noCoverage: mine.filter((r) => r.status === 'NoCoverage').length,
    invalid: mine.filter((r) => !DETECTED.has(r.status) && !UNDETECTED.has(r.status)).length,
    strykerScore: pct(detected.length, detected.length + undetected.length),
    score: pct(detected.length, detected.length + behaviour.length),
    messageOnly: messages.map(describe),
    survivors: behaviour.map(describe),
  };
}

function describe(r) {
  const replacement = (r.replacement ?? '').replace(/\s+/g, ' ').slice(0, 80);
  return `${r.location.start.line}:${r.location.start.column + 1} ${r.status} ${r.mutatorName} → ${replacement}`;
}

function printSummary(rows) {
  console.log('\nMutation score per file (message-only survivors left out of "score"):');
  for (const r of rows) {
    if (r.survivors.length > 0) {
      console.log(`\n${r.file}: survivors that change behaviour`);
      for (const s of r.survivors) console.log(`  ${s}`);
    }
    if (r.messageOnly.length > 0) {
      console.log(`${r.file}: survivors that only change a log or error message`);
      for (const s of r.messageOnly) console.log(`  ${s}`);
    }
  }
  console.log('');
  const header = [
    'file',
    'mutants',
    'killed',
    'timeout',
    'survived',
    'no cov',
    'msg-only',
    'stryker',
    'score',
    'min',
    '',
  ];
  const lines = rows.map((r) => [
    r.file,
    r.mutants,
    r.killed,
    r.timeout,
    r.survived,
    r.noCoverage,
    r.messageOnly.length,
    `${r.strykerScore.toFixed(1)}%`,
    `${r.score.toFixed(1)}%`,
    `${r.threshold}%`,
    r.error ? `ERROR ${r.error}` : r.score >= r.threshold ? 'ok' : 'BELOW THRESHOLD',
  ]);
  const widths = header.map((h, i) => Math.max(String(h).length, ...lines.map((l) => String(l[i]).length)));
  for (const l of [header, ...lines]) console.log(l.map((c, i) => String(c).padEnd(widths[i])).join('  '));
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const selected = selectTargets(options.files);
  // In CI (no files named) the files still below their thresholds are named, not run.
  const targets = options.ci && options.files.length === 0 ? selected.filter((t) => !t.pending) : selected;
  for (const t of selected)
    if (!targets.includes(t)) console.log(`pending, not run in CI: ${t.file}: ${t.pending}`);
  mkdirSync(REPORTS, { recursive: true });
  const rows = [];
  for (const t of targets.flatMap((target) => target.tests))
    if (!existsSync(t)) throw new Error(`test file ${t} (scripts/mutation/targets.mjs) does not exist`);
  for (const target of targets) {
    console.log(`\n=== ${target.file} (threshold ${target.threshold}%, ${target.tests.length} test files)`);
    try {
      const stored = options.force ? undefined : upToDate(target);
      if (stored) console.log('source and tests unchanged since the stored results: reusing them');
      // A changed support file can change what any test asserts: every mutant is tested again.
      const force = options.force || !supportUnchanged(target);
      const results =
        stored ?? (await new Stryker(strykerOptions(target, { ...options, force })).runMutationTest());
      if (!stored) storeSupport(target);
      rows.push(summarize(target, results));
    } catch (error) {
      rows.push({
        file: target.file,
        threshold: target.threshold,
        error: String(error?.message ?? error).split('\n')[0],
        score: 0,
        strykerScore: 0,
        survivors: [],
        messageOnly: [],
      });
      console.error(error);
    }
  }
  writeFileSync(`${REPORTS}/summary.json`, `${JSON.stringify(rows, null, 2)}\n`);
  printSummary(rows);
  const failed = rows.filter((r) => r.error || r.score < r.threshold);
  console.log(
    failed.length === 0
      ? `\nMutation testing: every file meets its threshold (${rows.length} files).`
      : `\nMutation testing failed: ${failed.map((r) => r.file).join(', ')} (report: ${REPORTS}/).`,
  );
  process.exitCode = failed.length === 0 ? 0 : 1;
}

await main();
