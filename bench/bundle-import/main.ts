/**
 * bench/bundle-import: how long a fresh Node process takes to import each Lambda bundle
 * (dist/functions/{authority,bot}/index.mjs), side by side with a reference bundle built the same way that
 * imports only the same AWS SDK clients (DESIGN.md §9: ≤ 1.3×). Also the bundles' sizes and what they hold.
 *
 * Run through `npm run bench` (it builds dist/ first), or alone: `node bench/run.mjs bundle-import
 * [--quick] [--rounds N]` after `npm run build`.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { describeMachine, machineLine } from '../lib/machine.mjs';
import { parseBenchOptions, repoRoot } from '../lib/options.js';
import { contentionWarning, ForeignLoad, fmtPercent } from '../lib/procfs.js';
import { type BenchResult, checkTarget, writeResult } from '../lib/result.js';
import { fmt, fmtRatio, pairedRatio, type Summary, summarize } from '../lib/stats.js';
import { barChartSvg } from '../lib/svg.js';
import { mdTable, textTable } from '../lib/table.js';
import { bundle, bytesByOrigin, checkBanner } from './build.js';

const TARGET_RATIO = 1.3;
const FUNCTIONS = ['authority', 'bot'] as const;
type Fn = (typeof FUNCTIONS)[number];
const SDK_CLIENTS: Record<Fn, string> = {
  authority: '@aws-sdk/client-dynamodb + @aws-sdk/client-kms',
  bot: '@aws-sdk/client-lambda + @aws-sdk/client-secrets-manager',
};

type Id = Fn | `${Fn}-ref` | 'empty';

interface Module {
  id: Id;
  label: string;
  file: string;
}

interface Sample {
  /** process.hrtime around `await import(...)` inside the child. */
  importMs: number;
  /**
   * process.cpuUsage (user + system) around the same import: what the import costs the CPU, without the time
   * spent waiting for a core, so it moves far less than importMs when other processes load the machine.
   */
  cpuMs: number;
  /** Spawn to exit, seen from here: Node's own start-up, the import, and exit. */
  processMs: number;
}

const KiB = 1024;

/** Imports `file` in a fresh `node` process and returns the time the import took inside it. */
function importOnce(root: string, file: string): Promise<Sample> {
  const url = pathToFileURL(file).href;
  const script = `const c0 = process.cpuUsage(); const t0 = process.hrtime.bigint(); await import(${JSON.stringify(url)}); const t1 = process.hrtime.bigint(); const c = process.cpuUsage(c0); process.stdout.write(String(Number(t1 - t0) / 1e6) + ' ' + String((c.user + c.system) / 1000));`;
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString('utf8');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const processMs = performance.now() - t0;
      const [importMs, cpuMs] = out.split(' ').map(Number) as [number, number];
      if (code !== 0 || !Number.isFinite(importMs) || !Number.isFinite(cpuMs) || out === '')
        reject(new Error(`importing ${file} failed (exit ${code ?? signal}): ${err.trim() || out}`));
      else resolve({ importMs, cpuMs, processMs });
    });
  });
}

function sizes(file: string): { bytes: number; gzip: number } {
  const data = readFileSync(file);
  return { bytes: statSync(file).size, gzip: gzipSync(data, { level: 6 }).length };
}

function isSdk(origin: string): boolean {
  return /^@(aws-sdk|smithy|aws-crypto|aws)\//.test(origin) || origin === 'tslib' || origin === 'bowser';
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const options = parseBenchOptions();
  const rounds = options.rounds ?? (options.quick ? 3 : 20);
  const machine = describeMachine();
  const root = repoRoot();
  const log = (line: string) => console.log(`bundle-import: ${line}`);
  log(machineLine(machine));

  const dist = (fn: Fn) => path.join(root, 'dist', 'functions', fn, 'index.mjs');
  for (const fn of FUNCTIONS) {
    if (!existsSync(dist(fn)))
      throw new Error(`${dist(fn)} is missing: run \`npm run build\` first (npm run bench does)`);
    checkBanner(dist(fn));
  }

  // The references, and the functions again with a metafile (for the breakdown), built as scripts/build.mjs
  // builds the functions.
  const outDir = path.join(root, 'bench', '.build', 'bundle-import');
  mkdirSync(outDir, { recursive: true });
  const refFile = (fn: Fn) => path.join(outDir, `reference-${fn}.mjs`);
  const origins = new Map<string, Map<string, number>>();
  const rebuiltBytes = new Map<Fn, number>();
  for (const fn of FUNCTIONS) {
    const refMeta = await bundle(
      path.join(root, 'bench', 'bundle-import', `reference-${fn}.ts`),
      refFile(fn),
    );
    origins.set(`${fn}-ref`, bytesByOrigin(refMeta));
    // Same file name as in dist/ so the source-map comment, and so the size, match byte for byte.
    const fnOut = path.join(outDir, fn, 'index.mjs');
    const fnMeta = await bundle(path.join(root, 'functions', `${fn}.ts`), fnOut);
    origins.set(fn, bytesByOrigin(fnMeta));
    rebuiltBytes.set(fn, statSync(fnOut).size);
  }
  const emptyFile = path.join(outDir, 'empty.mjs');
  await bundle(path.join(root, 'bench', 'bundle-import', 'empty.ts'), emptyFile);

  const modules: Module[] = [
    ...FUNCTIONS.flatMap((fn): Module[] => [
      { id: fn, label: `${fn} Lambda (dist/functions/${fn}/index.mjs)`, file: dist(fn) },
      { id: `${fn}-ref`, label: `reference: ${SDK_CLIENTS[fn]}`, file: refFile(fn) },
    ]),
    { id: 'empty', label: 'empty module, bundled the same way (the floor)', file: emptyFile },
  ];
  log(`${rounds} round(s) of one fresh node process per module; order rotates each round`);

  // Warm-up: the files into the page cache, V8's code cache for node itself; results discarded.
  for (const m of modules) await importOnce(root, m.file);

  const samples = new Map<Id, Sample[]>(modules.map((m) => [m.id, []]));
  const foreign = new ForeignLoad();
  for (let r = 0; r < rounds; r++) {
    const k = r % modules.length;
    const order = [...modules.slice(k), ...modules.slice(0, k)];
    const line: string[] = [];
    for (const m of order) {
      const s = await foreign.measure(() => importOnce(root, m.file));
      samples.get(m.id)?.push(s);
      line.push(`${m.id} ${fmt(s.importMs)}`);
    }
    if (options.quick || r % 5 === 4 || r === rounds - 1)
      log(`round ${r + 1}/${rounds} (import ms): ${line.join(', ')}`);
  }

  const importMs = (id: Id) => (samples.get(id) ?? []).map((s) => s.importMs);
  const processMs = (id: Id) => (samples.get(id) ?? []).map((s) => s.processMs);
  const cpuMs = (id: Id) => (samples.get(id) ?? []).map((s) => s.cpuMs);
  const cpuSummary = (id: Id): Summary => summarize(cpuMs(id));
  const cpuRatio = (fn: Fn) => pairedRatio(cpuMs(fn), cpuMs(`${fn}-ref`));
  const summary = (id: Id): Summary => summarize(importMs(id));
  const processSummary = (id: Id): Summary => summarize(processMs(id));
  const ratio = (fn: Fn) => pairedRatio(importMs(fn), importMs(`${fn}-ref`));
  const processRatio = (fn: Fn) => pairedRatio(processMs(fn), processMs(`${fn}-ref`));
  const size = new Map<Id, { bytes: number; gzip: number }>(modules.map((m) => [m.id, sizes(m.file)]));
  const targets = FUNCTIONS.map((fn) =>
    checkTarget({
      what: 'Lambda bundle import time',
      target: `≤ ${TARGET_RATIO}× importing ${SDK_CLIENTS[fn]} alone`,
      label: fn,
      measured: ratio(fn).median,
      threshold: TARGET_RATIO,
      direction: '<=',
    }),
  );

  // What each bundle holds beyond its SDK clients.
  const breakdown = (fn: Fn) => {
    const all = origins.get(fn) ?? new Map<string, number>();
    const sdk = [...all].filter(([o]) => isSdk(o)).reduce((a, [, b]) => a + b, 0);
    const refSdk = [...(origins.get(`${fn}-ref`) ?? new Map<string, number>())]
      .filter(([o]) => isSdk(o))
      .reduce((a, [, b]) => a + b, 0);
    const others = [...all]
      .filter(([o]) => !isSdk(o))
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8);
    return { sdk, refSdk, others };
  };

  // ---- stdout ------------------------------------------------------------------------------------
  const range = (s: Summary) => `${fmt(s.min)}–${fmt(s.max)}`;
  const header = ['module', 'import ms', 'range', 'process ms', 'size KiB', 'gzip KiB', '× reference'];
  const rows = modules.map((m) => {
    const fn = FUNCTIONS.find((f) => f === m.id);
    const sz = size.get(m.id) as { bytes: number; gzip: number };
    return [
      m.label,
      fmt(summary(m.id).median),
      range(summary(m.id)),
      fmt(processSummary(m.id).median),
      fmt(sz.bytes / KiB),
      fmt(sz.gzip / KiB),
      fn ? fmtRatio(ratio(fn).median) : m.id === 'empty' ? '' : '1.00×',
    ];
  });
  console.log('');
  console.log(textTable(header, rows));
  console.log('');
  for (const t of targets)
    console.log(
      `${t.label} bundle import / SDK clients alone: ${fmtRatio(t.measured)} (rounds ${ratio(t.label as Fn).min.toFixed(2)}–${ratio(t.label as Fn).max.toFixed(2)}; by CPU time ${fmtRatio(cpuRatio(t.label as Fn).median)}, ${fmt(cpuSummary(t.label as Fn).median)} against ${fmt(cpuSummary(`${t.label as Fn}-ref`).median)} ms) — DESIGN §9 target ≤ ${TARGET_RATIO}×: ${t.met ? 'MET' : 'NOT MET'}`,
    );

  // ---- chart -------------------------------------------------------------------------------------
  const svg = barChartSvg({
    title: 'Lambda bundle import time against importing its AWS SDK clients alone',
    subtitle: `${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}; median of ${rounds} fresh processes each, ${startedAt.toISOString().slice(0, 10)}`,
    unit: 'milliseconds for `await import(bundle)` in a fresh node process',
    valueSuffix: ' ms',
    bars: modules.map((m) => {
      const s = summary(m.id);
      const fn = FUNCTIONS.find((f) => f === m.id);
      return {
        label: m.label,
        value: s.median,
        min: s.min,
        max: s.max,
        series: fn ? 'lambda' : m.id === 'empty' ? 'empty' : 'reference',
        ...(fn ? { note: `${fmtRatio(ratio(fn).median)} reference` } : {}),
      };
    }),
    series: {
      lambda: { colour: '#1d4ed8', label: 'Lambda bundle' },
      reference: { colour: '#9ca3af', label: 'SDK clients alone, bundled the same way' },
      empty: { colour: '#d1d5db', label: 'empty module' },
    },
  });

  // ---- report section ----------------------------------------------------------------------------
  const verdicts = FUNCTIONS.map((fn, i) => {
    const t = targets[i] as (typeof targets)[number];
    const s = summary(fn).median;
    const ref = summary(`${fn}-ref`).median;
    return `- ${t.met ? '**Met**' : '**Not met**'}: the ${fn} bundle imports in ${fmt(s)} ms against ${fmt(ref)} ms for ${SDK_CLIENTS[fn]} alone: ${fmtRatio(t.measured)} (target ≤ ${TARGET_RATIO}×${t.met ? '' : `, over by ${(t.measured - TARGET_RATIO).toFixed(2)}; it would have to import in ${fmt(TARGET_RATIO * ref)} ms, ${fmt(s - TARGET_RATIO * ref)} ms less`}). By CPU time, which waiting for a core does not inflate: ${fmt(cpuSummary(fn).median)} ms against ${fmt(cpuSummary(`${fn}-ref`).median)} ms, ${fmtRatio(cpuRatio(fn).median)} (rounds ${cpuRatio(fn).min.toFixed(2)}–${cpuRatio(fn).max.toFixed(2)}).`;
  }).join('\n');
  const mdRows = modules.map((m) => {
    const fn = FUNCTIONS.find((f) => f === m.id);
    const sz = size.get(m.id) as { bytes: number; gzip: number };
    return [
      fn ? `**${m.label}**` : m.label,
      fmt(summary(m.id).median),
      range(summary(m.id)),
      fmt(cpuSummary(m.id).median),
      fmt(processSummary(m.id).median),
      fmt(sz.bytes / KiB),
      fmt(sz.gzip / KiB),
      fn ? `**${fmtRatio(ratio(fn).median)}**` : m.id === 'empty' ? '—' : '1.00×',
      fn ? fmtRatio(cpuRatio(fn).median) : m.id === 'empty' ? '—' : '1.00×',
      fn ? fmtRatio(processRatio(fn).median) : m.id === 'empty' ? '—' : '1.00×',
    ];
  });
  const breakdownText = FUNCTIONS.map((fn) => {
    const b = breakdown(fn);
    const total = rebuiltBytes.get(fn) as number;
    const parity =
      total === (size.get(fn) as { bytes: number }).bytes
        ? ''
        : ` (the rebuild is ${fmt(total / KiB)} KiB against ${fmt((size.get(fn) as { bytes: number }).bytes / KiB)} KiB in dist/: dist/ may be stale)`;
    return `- **${fn}**: ${fmt(b.sdk / KiB)} KiB of AWS SDK code (the reference has ${fmt(b.refSdk / KiB)} KiB), and beside it ${b.others.map(([o, n]) => `${o} ${fmt(n / KiB)}`).join(', ')} KiB${parity}.`;
  }).join('\n');

  const contention = contentionWarning(foreign);
  if (contention)
    console.log(
      `WARNING: other processes used ${Math.round(foreign.overall * 100)}% of the machine while measuring; numbers are rough`,
    );
  const markdown = `How long a fresh Node process takes to import each Lambda bundle, side by side with a reference module that imports only the same AWS SDK clients, bundled the same way (esbuild: bundled, minified, ESM, node20, the same \`createRequire\` banner as scripts/build.mjs; each reference exports the client classes so they are not tree-shaken away). DESIGN.md §9 target: **Lambda bundle import time ≤ ${TARGET_RATIO}× importing the same SDK clients alone**.

${verdicts}

${contention}- Run: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC; ${machineLine(machine)}. Processes outside the benchmark used ${fmtPercent(foreign.overall)} of the machine's CPU while it measured (measured from /proc; the load average above lags by minutes and includes whatever ran just before, such as the previous benchmark).
- ${rounds} round(s); in each, every module is imported once in its own \`node --input-type=module -e\` process, the order rotating each round, after one warm-up import of each (so the files are in the page cache, as in a warm Lambda host; a first-ever cold start also reads them from disk). **import ms** is \`process.hrtime\` around \`await import(file)\` inside the child; **CPU ms** is \`process.cpuUsage\` (user + system) around the same import, which time spent waiting for a core does not inflate, so it is the figure to trust when the machine is busy; **process ms** is spawn to exit seen from the parent (Node's own start-up included). Medians; ratios are medians of per-round ratios.
- The references are bench/bundle-import/reference-authority.ts (\`DynamoDBClient\`, \`KMSClient\`) and reference-bot.ts (\`LambdaClient\`, \`SecretsManagerClient\`). The Lambda bundles are dist/functions/*/index.mjs as \`npm run build\` made them; importing one defines the handler without running it (no client is created until the first invocation).

![bundle import chart](bundle-import.svg)

${mdTable(['module', 'import ms (median)', 'range', 'CPU ms', 'process ms', 'size KiB', 'gzip KiB', '× reference (import)', '× reference (CPU)', '× reference (process)'], mdRows)}

What importing each bundle loads (KiB of minified output by origin, from an esbuild metafile of the same build; chunks loaded only on first use, such as the YAML library, are left out):

${breakdownText}
`;

  const result: BenchResult = {
    name: 'bundle-import',
    title: 'Lambda bundle import time',
    date: new Date().toISOString(),
    machine,
    settings: { rounds, quick: options.quick },
    targets,
    markdown,
    artifacts: { 'bundle-import.svg': svg },
    data: {
      modules: Object.fromEntries(
        modules.map((m) => [
          m.id,
          {
            label: m.label,
            file: path.relative(root, m.file),
            importMs: summary(m.id),
            cpuMs: cpuSummary(m.id),
            processMs: processSummary(m.id),
            size: size.get(m.id),
          },
        ]),
      ),
      ratios: Object.fromEntries(
        FUNCTIONS.map((fn) => [fn, { import: ratio(fn), cpu: cpuRatio(fn), process: processRatio(fn) }]),
      ),
      origins: Object.fromEntries([...origins].map(([k, v]) => [k, Object.fromEntries(v)])),
      foreignLoad: { overall: foreign.overall, worst: foreign.worst },
    },
  };
  const file = writeResult(root, result);
  console.log(`\nbundle-import: wrote ${path.relative(process.cwd(), file)}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
