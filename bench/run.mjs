#!/usr/bin/env node
// Runs the benchmarks in bench/ and regenerates bench/REPORT.md (`npm run bench` calls this after the build).
//
//   node bench/run.mjs [NAME ...] [--quick] [--rounds N] [--seconds S] [--no-report] [--strict] [--list]
//
// A benchmark is a directory bench/NAME/ with a main.ts. Each is bundled with esbuild into bench/.build/NAME.mjs
// and run with plain node in its own process (so one benchmark's JIT state, heap and thread pool cannot colour
// another's), with the working directory at the repository root and --quick/--rounds/--seconds passed on.
// It prints its own table and writes bench/results/NAME.json (the BenchResult shape of bench/lib/result.ts):
// title, machine, date, target checks, a Markdown section for the report and files to write next to it.
// This runner then replaces that benchmark's section of REPORT.md (sections of benchmarks not run this time
// are kept as they were), rewrites the header and prints every target's status.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { machineLine } from './lib/machine.mjs';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(benchDir);
const reportFile = path.join(benchDir, 'REPORT.md');

/**
 * DESIGN.md §9, row by row. `bench` names the benchmark that checks the row; `what` matches the `what` of the
 * TargetCheck it writes. Rows without a benchmark yet are listed in the report as not measured.
 */
const DESIGN_TARGETS = [
  {
    what: 'tunnel proxy, pgbench select-only, 1/8/32 clients',
    target: '≥ 1.0× stunnel at each',
    bench: 'proxy',
  },
  { what: 'proxy CPU per transaction', target: "≤ 1.2× stunnel's", bench: 'proxy' },
  {
    what: 'new connections per second through the proxy (pgbench -C)',
    target: '≥ 1.0× stunnel',
    bench: 'proxy',
  },
  { what: 'bulk COPY through the proxy', target: '≥ 0.95× stunnel', bench: 'proxy' },
  {
    what: 'authority certificate signing rate',
    target: '≥ 0.7× `openssl speed rsa2048` sign/s',
    bench: 'issuance',
  },
  {
    what: 'proxy memory',
    target: '≤ 50 MB idle, ≤ 120 MB at 1,000 open tunnelled connections',
    bench: 'proxy',
  },
  {
    what: 'bot renewal, 10 outputs, ECDSA P-256',
    // The words bench/bot-renewal uses for the same row.
    aliases: ['bot renewal cycle, 10 outputs, ECDSA P-256 keys'],
    target: '≤ 150 ms',
    bench: 'bot-renewal',
  },
  {
    what: 'Lambda bundle import time',
    target: '≤ 1.3× importing the same SDK clients alone',
    bench: 'bundle-import',
  },
];

function usage() {
  return `usage: node bench/run.mjs [NAME ...] [--quick] [--rounds N] [--seconds S] [--no-report] [--strict] [--list]

  NAME          run only these benchmarks (default: all of ${discover().join(', ') || '(none)'})
  --quick       one short round: checks that a benchmark works; numbers not fit to quote
                (implies --no-report)
  --rounds N    rounds per benchmark (issuance default 5)
  --seconds S   seconds per measurement (issuance default 2)
  --no-report   keep bench/REPORT.md and its charts as they are (results still go to bench/results/)
  --from-results  rewrite REPORT.md from the last run's bench/results/ without measuring
  --strict      exit 1 when a measured target is missed (default: report it, exit 0)
  --list        list the benchmarks and exit`;
}

function discover() {
  return readdirSync(benchDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(path.join(benchDir, d.name, 'main.ts')))
    .map((d) => d.name)
    .sort();
}

// ---- REPORT.md sections ----------------------------------------------------------------------------------

const SECTION = /<!-- bench:([\w-]+) start (\{.*?\}) -->\n([\s\S]*?)<!-- bench:\1 end -->\n?/g;

/** Sections of an existing report: name → { meta, text } (text is the whole marked block). */
function readSections() {
  const sections = new Map();
  if (!existsSync(reportFile)) return sections;
  const text = readFileSync(reportFile, 'utf8');
  for (const m of text.matchAll(SECTION)) {
    try {
      sections.set(m[1], { meta: JSON.parse(m[2]), text: m[0].endsWith('\n') ? m[0] : `${m[0]}\n` });
    } catch {
      // A hand-damaged marker: drop the section; the next run of that benchmark writes it again.
    }
  }
  return sections;
}

function sectionFor(result) {
  const meta = {
    title: result.title,
    date: result.date,
    quick: result.settings?.quick === true,
    targets: result.targets,
    machine: machineLine(result.machine),
  };
  return {
    meta,
    text: `<!-- bench:${result.name} start ${JSON.stringify(meta)} -->\n## ${result.title}\n\n${result.markdown.trim()}\n\n<!-- bench:${result.name} end -->\n`,
  };
}

function formatMeasured(t) {
  if (!Number.isFinite(t.measured)) return 'n/a';
  return t.unit ? `${t.measured.toFixed(1)} ${t.unit}` : `${t.measured.toFixed(2)}×`;
}

/** How far a missed check is from its threshold, in the direction that matters. */
function shortfall(t) {
  const gap = t.direction === '<=' ? t.measured - t.threshold : t.threshold - t.measured;
  return `${t.direction === '<=' ? 'over' : 'short'} by ${gap.toFixed(t.unit ? 1 : 2)}${t.unit ? ` ${t.unit}` : ''}`;
}

function renderReport(sections, names, lastRun) {
  const rows = DESIGN_TARGETS.map((row) => {
    const section = sections.get(row.bench);
    // A row may have several checks (e.g. against stunnel and against direct TLS); all must be met.
    const checks =
      section?.meta.targets?.filter((t) => t.what === row.what || row.aliases?.includes(t.what)) ?? [];
    if (!checks.length) return `| ${row.what} | ${row.target} | — | not measured yet |`;
    // A section this run did not refresh (not asked for, or its benchmark failed) is from an older run.
    const stale = !lastRun.names.includes(row.bench);
    const when = `${section.meta.date.slice(0, 10)}${stale ? ', **stale: not refreshed by the last run**' : ''}`;
    const labelled = (t, text) => (t.label ? `${text} ${t.label}` : text);
    const measured = checks.map((t) => labelled(t, formatMeasured(t))).join(', ');
    const missed = checks.filter((t) => !t.met);
    const status = missed.length
      ? `**not met** (${missed.map((t) => (t.label ? `${t.label}: ${shortfall(t)}` : shortfall(t))).join('; ')})`
      : '**met**';
    return `| ${row.what} | ${row.target} | ${measured} ([${row.bench}](#${anchor(section.meta.title)}), ${when}) | ${status} |`;
  });
  const ordered = names.filter((n) => sections.has(n));
  return `# Benchmark report

Generated by \`npm run bench\` (bench/run.mjs); do not edit by hand: a benchmark's section is replaced each time it runs and the header is rewritten. Every benchmark measures a DESIGN.md §9 performance target as a ratio against a reference measured side by side, in the same run, on the same machine; absolute numbers only mean something next to their reference. What each number means: [README.md](README.md).

## Targets

| DESIGN.md §9 | target | measured | status |
|---|---|---|---|
${rows.join('\n')}

## How to run

\`\`\`sh
npm run bench                      # build, run every benchmark, rewrite every section of this report
node bench/run.mjs proxy           # one benchmark; the other sections stay as they are (marked stale)
node bench/run.mjs --quick         # smoke test of the benchmarks themselves; leaves this report alone
\`\`\`

Run on an otherwise idle machine. The proxy benchmark measures in interleaved pairs and throws out a pair during which other processes took more than 10% of the CPU; each figure says how far to trust it.

## Last run

${lastRun.date}: ${lastRun.names.join(', ')}${lastRun.failed.length ? ` (failed: ${lastRun.failed.join(', ')})` : ''}, in ${lastRun.minutes} min, on ${lastRun.machine}.${lastRun.stale.length ? ` Not refreshed by it, so from an earlier run: ${lastRun.stale.join(', ')}.` : ' Every section below is from this run.'} Each section states its own run date and machine.

${ordered.map((n) => sections.get(n).text).join('\n')}`;
}

/** GitHub's heading anchor. */
function anchor(title) {
  return title
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

// ---- main ------------------------------------------------------------------------------------------------

/** What the last full report-writing run was: bench/results/run.json. */
const runFile = path.join(benchDir, 'results', 'run.json');

function lastRunMinutes(started) {
  return ((Date.now() - started.getTime()) / 60_000).toFixed(1);
}

/**
 * `--from-results`: rewrites REPORT.md from the results the last run left in bench/results/ (NAME.json and
 * run.json), without measuring: for a change to the report's layout or its targets table.
 */
function rewriteFromResults(names, all) {
  if (!existsSync(runFile)) {
    console.error(`${path.relative(root, runFile)} is missing: run the benchmarks first`);
    return 1;
  }
  const run = JSON.parse(readFileSync(runFile, 'utf8'));
  const started = new Date(run.started);
  const results = names
    .filter((n) => run.names.includes(n))
    .map((n) => JSON.parse(readFileSync(path.join(benchDir, 'results', `${n}.json`), 'utf8')))
    // Exactly the results that run wrote: a later run of one benchmark (a --quick one, say) is not it.
    .filter((r) => r.date === run.dates?.[r.name]);
  if (!results.length) {
    console.error('no results from the last run to rewrite the report from');
    return 1;
  }
  const sections = readSections();
  for (const result of results) {
    sections.set(result.name, sectionFor(result));
    for (const [file, content] of Object.entries(result.artifacts ?? {}))
      writeFileSync(path.join(benchDir, file), content);
  }
  const refreshed = results.map((r) => r.name);
  writeFileSync(
    reportFile,
    renderReport(sections, all, {
      date: `${started.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      names: refreshed,
      failed: run.failed ?? [],
      stale: all.filter((n) => sections.has(n) && !refreshed.includes(n)),
      minutes: Number(run.minutes).toFixed(1),
      machine: machineLine(results[0].machine),
    }),
  );
  console.log(`rewrote ${path.relative(root, reportFile)} from the results of the run of ${run.started}`);
  return 0;
}

async function main() {
  const { values, positionals } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      'no-report': { type: 'boolean', default: false },
      'from-results': { type: 'boolean', default: false },
      strict: { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(usage());
    return 0;
  }
  const all = discover();
  if (values.list) {
    console.log(all.join('\n'));
    return 0;
  }
  const unknown = positionals.filter((n) => !all.includes(n));
  if (unknown.length) {
    console.error(`unknown benchmark(s) ${unknown.join(', ')}; there are: ${all.join(', ')}`);
    return 2;
  }
  const names = positionals.length ? positionals : all;
  const writeReport = !values.quick && !values['no-report'];
  const forwarded = [
    ...(values.quick ? ['--quick'] : []),
    ...(values.rounds ? ['--rounds', values.rounds] : []),
    ...(values.seconds ? ['--seconds', values.seconds] : []),
  ];

  if (values['from-results']) return rewriteFromResults(names, all);

  const outdir = path.join(benchDir, '.build');
  mkdirSync(outdir, { recursive: true });
  await build({
    entryPoints: Object.fromEntries(names.map((n) => [n, path.join(benchDir, n, 'main.ts')])),
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    sourcemap: true,
    // Dependencies load from node_modules as the CLI loads them.
    packages: 'external',
    logLevel: 'warning',
  });

  const started = new Date();
  const results = [];
  const failed = [];
  for (const name of names) {
    console.log(`\n=== ${name} ===`);
    const t0 = performance.now();
    const run = spawnSync(
      process.execPath,
      ['--enable-source-maps', path.join(outdir, `${name}.mjs`), ...forwarded],
      { cwd: root, stdio: 'inherit' },
    );
    const took = ((performance.now() - t0) / 1000).toFixed(0);
    const resultFile = path.join(benchDir, 'results', `${name}.json`);
    if (run.status !== 0) {
      console.error(`=== ${name} failed (exit ${run.status ?? run.signal}) after ${took} s ===`);
      failed.push(name);
      continue;
    }
    const result = existsSync(resultFile) ? JSON.parse(readFileSync(resultFile, 'utf8')) : undefined;
    if (!result || new Date(result.date) < started) {
      console.error(`=== ${name} finished but wrote no fresh ${path.relative(root, resultFile)} ===`);
      failed.push(name);
      continue;
    }
    console.log(`=== ${name} done in ${took} s ===`);
    results.push(result);
  }

  if (writeReport && results.length) {
    const sections = readSections();
    for (const result of results) {
      sections.set(result.name, sectionFor(result));
      for (const [file, content] of Object.entries(result.artifacts ?? {}))
        writeFileSync(path.join(benchDir, file), content);
    }
    const refreshed = results.map((r) => r.name);
    const report = renderReport(sections, all, {
      date: `${started.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      names: refreshed,
      failed,
      stale: all.filter((n) => sections.has(n) && !refreshed.includes(n)),
      minutes: lastRunMinutes(started),
      machine: machineLine(results[0].machine),
    });
    writeFileSync(reportFile, report);
    writeFileSync(
      runFile,
      `${JSON.stringify({ started: started.toISOString(), minutes: Number(lastRunMinutes(started)), names: refreshed, failed, dates: Object.fromEntries(results.map((r) => [r.name, r.date])) }, null, 2)}\n`,
    );
    console.log(`\nwrote ${path.relative(root, reportFile)}`);
  } else if (!writeReport) {
    console.log('\nbench/REPORT.md left unchanged (--quick or --no-report)');
  }

  let missed = 0;
  console.log('');
  for (const result of results)
    for (const t of result.targets) {
      if (!t.met) missed++;
      console.log(
        `${t.met ? 'MET    ' : 'MISSED '} ${t.what}${t.label ? ` (${t.label})` : ''}: ${formatMeasured(t)} (target ${t.direction} ${t.threshold}${t.unit ? ` ${t.unit}` : '×'})`,
      );
    }
  console.log(`\nall benchmarks took ${((Date.now() - started.getTime()) / 60_000).toFixed(1)} min`);
  if (failed.length) {
    console.error(`benchmark(s) failed: ${failed.join(', ')}`);
    return 1;
  }
  return values.strict && missed > 0 ? 1 : 0;
}

process.exitCode = await main();
