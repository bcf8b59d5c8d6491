/** The proxy section of REPORT.md and its charts. */
import { type Machine, machineLine } from '../lib/machine.mjs';
import type { TargetCheck } from '../lib/result.js';
import { fmt, fmtRatio, type Summary } from '../lib/stats.js';
import { type Bar, barChartSvg } from '../lib/svg.js';
import { mdTable } from '../lib/table.js';
import {
  CELLS,
  type Cell,
  type CellId,
  CONNECT_CLIENTS,
  COPY_WIDTH,
  judge,
  MAX_FOREIGN,
  SCALE,
  SHARED_WORKERS,
  TARGET_TEXT,
  TARGETS,
} from './config.js';
import type { MemoryReading, Rss } from './memory.js';
import type { ProfileSummary } from './profile.js';
import type { CellFigures, PairRecord, RejectPolicy } from './rounds.js';
import { cpuPerWork } from './rounds.js';
import { copyBytes, copySql } from './workloads.js';

const MB = 1e6;

export interface ReportInput {
  startedAt: Date;
  machine: Machine;
  pgVersion: string;
  rounds: number;
  seconds: number;
  copyRows: number;
  idleConnections: number;
  quick: boolean;
  entry: string;
  nodeFlags: readonly string[];
  figures: Map<CellId, CellFigures>;
  pairs: Map<CellId, PairRecord[]>;
  directMedian: (id: CellId) => number;
  memory: Record<'tunnel' | 'stunnel', MemoryReading>;
  floor: Rss;
  targets: TargetCheck[];
  profiles: { cell: Cell; summary: ProfileSummary; cpuPerWork: number; foreign: number }[];
  measureSeconds: number;
  policy: RejectPolicy;
  placement: { kind: 'containers' | 'none'; description: string };
  /** Diagnostic cells measured with both proxies in the workload's scheduler group (empty without groups). */
  sharedCells: Cell[];
}

const pct = (x: number) => `${Math.round(x * 100)}%`;
const range2 = (s: Summary) => `${s.min.toFixed(2)}–${s.max.toFixed(2)}`;
const cpuUnit = (cell: Cell) => (cell.id === 'copy' ? 'ms/MB' : 'µs/tx');

function trustText(f: CellFigures, which: 'ratio' | 'cpu'): string {
  const trust = which === 'ratio' ? f.ratioTrust : f.cpuTrust;
  const spread = which === 'ratio' ? f.ratioSpread : f.cpuRatioSpread;
  return f.kept < 2 ? `${trust} (one round)` : `${trust} (±${Math.round((spread * 100) / 2)}%)`;
}

export function renderProxyReport(input: ReportInput): {
  markdown: string;
  artifacts: Record<string, string>;
} {
  const { figures, targets, memory, machine } = input;
  const fig = (id: CellId) => figures.get(id) as CellFigures;

  // ---- verdicts -------------------------------------------------------------------------------------
  const verdict = (checks: TargetCheck[], text: string) =>
    `- ${checks.every((t) => t.met) ? '**Met**' : '**Not met**'}: ${text}`;
  const by = (what: string) => targets.filter((t) => t.what === what);
  const judgedText = (id: CellId, threshold: number) => {
    const f = fig(id);
    const j = judge(f);
    const sides =
      f.ratio.min < threshold && f.ratio.max >= threshold
        ? ', per-round ratios on both sides of the target'
        : '';
    const basis =
      j.basis === 'cpu'
        ? `; too noisy to judge, so judged on CPU per transaction: stunnel's ÷ the tunnel's = **${fmtRatio(j.measured)}**`
        : '';
    return `${fmtRatio(f.ratio.median)} (rounds ${range2(f.ratio)}, trust ${trustText(f, 'ratio')}${sides}${basis})`;
  };
  const select = by('tunnel proxy, pgbench select-only, 1/8/32 clients');
  const cpu = by('proxy CPU per transaction');
  const connect = by('new connections per second through the proxy (pgbench -C)');
  const copy = by('bulk COPY through the proxy');
  const mem = by('proxy memory');
  const idleMb = memory.tunnel.idle.rss / MB;
  const openMb = memory.tunnel.open.rss / MB;
  const perConnKiB = (memory.tunnel.open.rss - memory.tunnel.idle.rss) / memory.tunnel.connections / 1024;
  const verdicts = [
    verdict(
      select,
      `pgbench select-only through the tunnel against stunnel (target ≥ ${TARGET_TEXT.select} at each): 1 client ${judgedText('select-1', TARGETS.select)}; 8 clients ${judgedText('select-8', TARGETS.select)}; 32 clients ${judgedText('select-32', TARGETS.select)}.`,
    ),
    verdict(
      cpu,
      `proxy CPU per transaction, tunnel ÷ stunnel (target ≤ ${TARGET_TEXT.cpu}): ${[1, 8, 32]
        .map((c) => {
          const f = fig(`select-${c}` as CellId);
          return `${c} client${c === 1 ? '' : 's'} ${fmtRatio(f.cpuRatio.median)} (${fmt(f.tunnelCpu.median)} against ${fmt(f.stunnelCpu.median)} µs, rounds ${range2(f.cpuRatio)}, trust ${trustText(f, 'cpu')})`;
        })
        .join('; ')}.`,
    ),
    verdict(
      connect,
      `a new connection per transaction (pgbench -C, ${CONNECT_CLIENTS} clients): ${judgedText('connect-8', TARGETS.connect)} (target ≥ ${TARGET_TEXT.connect}); ${fmt(fig('connect-8').tunnel.median)} against ${fmt(fig('connect-8').stunnel.median)} connections per second; CPU per connection ${fmt(fig('connect-8').tunnelCpu.median)} against ${fmt(fig('connect-8').stunnelCpu.median)} µs.`,
    ),
    verdict(
      copy,
      `bulk COPY: ${judgedText('copy', TARGETS.copy)} (target ≥ ${TARGET_TEXT.copy}); ${fmt(fig('copy').tunnel.median)} against ${fmt(fig('copy').stunnel.median)} MB/s; CPU ${fmt(fig('copy').tunnelCpu.median)} against ${fmt(fig('copy').stunnelCpu.median)} ms per MB.`,
    ),
    verdict(
      mem,
      `the proxy's RSS is ${fmt(idleMb)} MB idle (target ≤ ${TARGETS.idleMb} MB) and ${fmt(openMb)} MB with ${fmt(memory.tunnel.connections)} open tunnelled connections (target ≤ ${TARGETS.openMb} MB; ${fmt(perConnKiB)} KiB per connection). Of the idle RSS, ${fmt(memory.tunnel.idle.file / MB)} MB are pages of the node binary and libraries (shared with every Node process on the host) and ${fmt(memory.tunnel.idle.anon / MB)} MB the process's own; a Node process that loads no code, with the same flags, has ${fmt(input.floor.rss / MB)} MB (${fmt(input.floor.file / MB)} + ${fmt(input.floor.anon / MB)}).${input.quick ? ' (Quick run: fewer connections; not the target measurement.)' : ''}`,
    ),
  ].join('\n');

  // ---- trust --------------------------------------------------------------------------------------------
  const allPairs = [...input.pairs.values()].flat();
  const thrownOut = allPairs.filter((p) => p.rejected).length;
  const disturbedKept = allPairs.filter((p) => !p.rejected && p.foreign > MAX_FOREIGN).length;
  const trustNote = `How far to trust each figure: every cell's tunnel and stunnel runs are paired (back to back, A B then B A), and a pair during which processes outside the benchmark took more than ${pct(MAX_FOREIGN)} of the machine's CPU (from /proc, per run) was thrown out and measured again (at most ${input.policy.maxAttempts} attempts per pair, and ${input.policy.retryBudget.left} repeats were left unused at the end of the run). This run threw out ${thrownOut} of ${allPairs.length} pairs${disturbedKept ? `; ${disturbedKept} kept pair(s) were still disturbed after every repeat (or when the repeat budget ran out) and count against their cell's trust` : ''}. **Trust** is *high* when the kept rounds agree within 10% (± half the range shown) and none was disturbed, *medium* within 25% and at most one disturbed, *low* otherwise. A throughput target whose ratio has low trust is judged on CPU per transaction instead (stunnel's ÷ the tunnel's), which other load moves much less: on ${machine.cores} shared cores, CPU the proxy does not spend is CPU PostgreSQL and pgbench get.`;

  // ---- tables -------------------------------------------------------------------------------------------
  const mainRows = CELLS.map((cell) => {
    const f = fig(cell.id);
    return [
      cell.label,
      `${fmt(f.tunnel.median)} ${cell.unit}`,
      `${fmt(f.stunnel.median)}`,
      `${fmt(input.directMedian(cell.id))}`,
      `**${fmtRatio(f.ratio.median)}** (${range2(f.ratio)})`,
      f.ratioTrust,
      `${fmt(f.tunnelCpu.median)} / ${fmt(f.stunnelCpu.median)} ${cpuUnit(cell)}`,
      `${fmt(f.tunnelUser.median)} + ${fmt(f.tunnelSystem.median)} / ${fmt(f.stunnelUser.median)} + ${fmt(f.stunnelSystem.median)}`,
      `**${fmtRatio(f.cpuRatio.median)}** (${range2(f.cpuRatio)})`,
      f.cpuTrust,
      `${pct(f.foreign.min)}–${pct(f.foreign.max)}`,
      `${f.kept} / ${f.rejected}`,
    ];
  });
  const roundRows = [...CELLS, ...input.sharedCells].map((cell) => {
    const list = input.pairs.get(cell.id) ?? [];
    const runs = list.map((p) => {
      const r = (p.tunnel.value / p.stunnel.value).toFixed(2);
      const c = (
        cpuPerWork(p.tunnel, cell.id === 'copy') / cpuPerWork(p.stunnel, cell.id === 'copy')
      ).toFixed(2);
      const mark = p.rejected ? '~~' : '';
      return `${mark}${p.round + 1}${p.order[0] === 'tunnel' ? 'AB' : 'BA'}: ${r} / ${c} @${pct(p.foreign)}${mark}`;
    });
    return [cell.label, runs.join(' · ')];
  });

  // ---- placement ----------------------------------------------------------------------------------------
  const placementText = placementSection(input, fig);

  // ---- profile ------------------------------------------------------------------------------------------
  const profileText = input.profiles.length
    ? `### Where the tunnel's time goes

For each missed cell (at most two), the tunnel ran once more as \`node ${input.nodeFlags.join(' ')} --cpu-prof ${input.entry} …\` for ${input.seconds} s of the same workload; the profile is in bench/results/ (not in git; open it in Chrome DevTools or speedscope). Shares of the process's sampled busy time:

${input.profiles
  .map(
    ({
      cell,
      summary,
      cpuPerWork: per,
      foreign,
    }) => `**${cell.label}** (${fmt(per)} ${cpuUnit(cell)} while profiled, other processes ${pct(foreign)} of the machine, ${fmt(summary.busyMs)} ms sampled busy time; \`${summary.file}\`):

${mdTable(
  ['part', 'share'],
  summary.parts.map((p) => [p.part, pct(p.share)]),
)}

${mdTable(
  ['function (self time)', 'where', 'share'],
  summary.top.map((f) => [`\`${f.name}\``, f.where ? `\`${f.where}\`` : '—', pct(f.share)]),
)}

${userKernelText(cell, fig(cell.id))}`,
  )
  .join('\n\n')}

Reading it: OpenSSL's record encryption and decryption and the socket system calls are native code called from JavaScript (\`writeBuffer\`/\`writev\` are the socket writes; TLS work shows under the \`_tls_wrap\` functions that call it, or as native time when libuv calls into it); the Node stream and net layers are the JavaScript around each record and each socket read; the proxy bundle's share is the relay's own per-chunk work (src/proxy/relay.ts, minified) and the per-connection logging. stunnel does the same OpenSSL calls from C with none of the JavaScript in between; both make about the same system calls per transaction (under \`strace -c\` at 1 client the tunnel made two reads, two writes and two epoll waits per transaction, stunnel three reads, two writes and four polls), so where the tunnel spends more it is in user space: Node's way from a socket read to a JavaScript callback and back to a socket write (buffer allocation, the stream state, the calls between C++ and JavaScript), which \`perf\` shows spread thinly over hundreds of V8 and Node functions rather than in one that could be removed. The profiler samples the main thread's wall time: when the machine is busy, a sample taken while the thread waits for a core is charged to the function it is in, and a loopback socket write (which wakes the reading process) attracts such samples, so on a busy machine \`writeBuffer\` reads higher than its CPU cost.
`
    : '';

  // ---- memory -------------------------------------------------------------------------------------------
  const mb = (b: number) => fmt(b / MB);
  const memRows = (['tunnel', 'stunnel'] as const).map((w) => {
    const m = memory[w];
    return [
      w === 'tunnel' ? `**broker proxy (${input.entry})**` : 'stunnel4',
      `${mb(m.idle.rss)} (${mb(m.idle.file)} + ${mb(m.idle.anon)})`,
      w === 'tunnel' ? `**${mb(m.open.rss)}**` : mb(m.open.rss),
      mb(m.open.peak),
      fmt((m.open.rss - m.idle.rss) / m.connections / 1024),
      mb(m.afterClose.rss),
      `${m.openSeconds.toFixed(1)} s`,
      fmt((m.cpuSecondsToOpen * 1000) / m.connections),
    ];
  });
  memRows.push([
    `reference: \`node ${input.nodeFlags.join(' ')} -e\` with an empty timer`,
    `${mb(input.floor.rss)} (${mb(input.floor.file)} + ${mb(input.floor.anon)})`,
    '—',
    '—',
    '—',
    '—',
    '—',
    '—',
  ]);

  // ---- charts -------------------------------------------------------------------------------------------
  const bars: Bar[] = [];
  for (const cell of CELLS) {
    const f = fig(cell.id);
    bars.push({
      label: `${cell.label}: throughput`,
      value: f.ratio.median * 100,
      min: f.ratio.min * 100,
      max: f.ratio.max * 100,
      series: 'tps',
      note: `${fmt(f.tunnel.median)} vs ${fmt(f.stunnel.median)} ${cell.unit} (${f.ratioTrust})`,
    });
    bars.push({
      label: `${cell.label}: CPU per ${cell.id === 'copy' ? 'MB' : 'transaction'}`,
      value: f.cpuRatio.median * 100,
      min: f.cpuRatio.min * 100,
      max: f.cpuRatio.max * 100,
      series: 'cpu',
      note: `${fmt(f.tunnelCpu.median)} vs ${fmt(f.stunnelCpu.median)} ${cpuUnit(cell)} (${f.cpuTrust})`,
    });
  }
  const date = input.startedAt.toISOString().slice(0, 10);
  const svg = barChartSvg({
    title:
      'The tunnel proxy as % of stunnel: throughput (higher is better) and CPU per unit of work (lower is better)',
    subtitle: `${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}, PostgreSQL ${input.pgVersion}; medians of ${input.rounds} interleaved round(s), whiskers the range, ${date}`,
    unit: '% of stunnel in the same pair',
    bars,
    series: {
      tps: { colour: '#1d4ed8', label: 'throughput ÷ stunnel (target ≥ 100%; COPY ≥ 95%)' },
      cpu: { colour: '#f59e0b', label: 'proxy CPU ÷ stunnel (target ≤ 120%)' },
    },
    valueSuffix: '%',
    markers: [
      { value: 100, label: 'stunnel', colour: '#6b7280' },
      { value: TARGETS.cpu * 100, label: `CPU target ${TARGET_TEXT.cpu}`, colour: '#dc2626' },
    ],
  });
  const memSvg = barChartSvg({
    title: `Proxy memory (RSS): idle, and with ${fmt(input.idleConnections)} open connections`,
    subtitle: `${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}; /proc/<pid>/status VmRSS, ${date}`,
    unit: 'MB (10⁶ bytes) resident',
    valueSuffix: ' MB',
    bars: [
      { label: 'broker proxy, idle after start', value: idleMb, series: 'tunnel' },
      {
        label: `broker proxy, ${fmt(input.idleConnections)} open`,
        value: openMb,
        series: 'tunnel',
        note: `peak ${fmt(memory.tunnel.open.peak / MB)}`,
      },
      { label: 'stunnel4, idle after start', value: memory.stunnel.idle.rss / MB, series: 'stunnel' },
      {
        label: `stunnel4, ${fmt(input.idleConnections)} open`,
        value: memory.stunnel.open.rss / MB,
        series: 'stunnel',
        note: `peak ${fmt(memory.stunnel.open.peak / MB)}`,
      },
      { label: 'node, no code (floor)', value: input.floor.rss / MB, series: 'floor' },
    ],
    series: {
      tunnel: { colour: '#1d4ed8', label: 'broker proxy db --tunnel' },
      stunnel: { colour: '#9ca3af', label: 'stunnel4' },
      floor: { colour: '#d1d5db', label: 'node floor' },
    },
    markers: [
      { value: TARGETS.idleMb, label: `idle target ≤ ${TARGETS.idleMb} MB`, colour: '#f59e0b' },
      { value: TARGETS.openMb, label: `target ≤ ${TARGETS.openMb} MB at 1,000`, colour: '#dc2626' },
    ],
  });

  const markdown = `The localhost proxy in tunnel mode, run as the sidecar runs it (\`node ${input.nodeFlags.join(' ')} ${input.entry} db --tunnel\`: the proxy's own entry point, which loads only the proxy), side by side with stunnel4 in client mode (\`protocol = pgsql\`, the same client certificate and key, \`CAfile\` the server CA, \`verifyChain\`, \`checkHost localhost\`), both in front of a real PostgreSQL over loopback; direct TLS from the client to PostgreSQL (\`sslmode=verify-full\`) is measured too, for context. DESIGN.md §9 targets: **≥ ${TARGET_TEXT.select} stunnel at 1, 8 and 32 clients and for pgbench -C**, **COPY ≥ ${TARGET_TEXT.copy} stunnel**, **proxy CPU per transaction ≤ ${TARGET_TEXT.cpu} stunnel's**, **≤ ${TARGETS.idleMb} MB idle and ≤ ${TARGETS.openMb} MB at 1,000 open tunnelled connections**; every ratio is the median of interleaved rounds.

${verdicts}

${trustNote}

- Run: ${input.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC; ${machineLine(machine)}. The measured rounds took ${Math.round(input.measureSeconds)} s.
- Server: a throwaway PostgreSQL ${input.pgVersion} (src/devdb/postgres.ts: TLS with client certificates only, \`fsync = off\`), its certificate and the client certificate from an in-process authority, the client certificate written by \`DirectoryDestination\` as the bot writes it; \`pgbench -i -s ${SCALE}\`.
- ${input.rounds} round(s) after a warm-up, the cells in reverse order every other round. In each cell the tunnel (A) and stunnel (B) run as a pair, A B in odd rounds and B A in even ones, then direct TLS once. pgbench runs \`-n -S -T ${input.seconds} -c C -j min(2, C)\` (\`-C\` adds a new connection per transaction); COPY is \`${copySql(input.copyRows, COPY_WIDTH)}\` read by \`psql\` into /dev/null (${fmt(copyBytes(input.copyRows, COPY_WIDTH) / MB)} MB, the time is psql's whole run). Ratios are medians of per-pair ratios (each pair measured seconds apart), not ratios of medians.
- **proxy CPU** is the proxy process's user + system time (all threads, /proc/<pid>/stat) during the run, per transaction (per MB for COPY). **other** is the share of the machine's CPU that processes outside the benchmark's process tree took during the pair (the larger of its two runs; kernel threads such as ksoftirqd, mostly this benchmark's own loopback traffic, are not counted).
- Placement: ${input.placement.kind === 'containers' ? `each proxy runs in its own CPU scheduler group and the benchmark with PostgreSQL, pgbench and psql in another, all of the same weight (${input.placement.description}), as ECS and Fargate run a sidecar container beside the workload's; the [placement](#scheduler-placement) section measures both proxies inside the workload's group too` : `no scheduler groups (${input.placement.description}): both proxies share the CPU with PostgreSQL and pgbench thread by thread, which penalises a proxy with few threads (see README.md)`}.
- **user + kernel** splits the proxy's CPU into user space (for the tunnel: Node, V8, the relay and OpenSSL's ciphers; for stunnel: its C code and OpenSSL) and the kernel (system calls and the loopback network stack), from utime and stime of /proc/<pid>/stat.
- Both proxies log at their default levels (broker: info, one line per connection; stunnel: notice), to files.

![proxy chart](proxy.svg)

${mdTable(
  [
    'cell',
    'tunnel (median)',
    'stunnel',
    'direct TLS',
    'tunnel ÷ stunnel (range)',
    'trust',
    'proxy CPU, tunnel / stunnel',
    'of which user + kernel, tunnel / stunnel',
    'CPU ÷ stunnel (range)',
    'trust',
    'other (kept pairs)',
    'pairs kept / thrown out',
  ],
  mainRows,
)}

Every pair, in order (round, AB or BA: throughput ratio / CPU ratio @ other-process share; struck through: thrown out and measured again):

${mdTable(['cell', 'pairs'], roundRows)}

${placementText}${profileText}
### Memory

RSS (\`VmRSS\` of /proc/<pid>/status, MB = 10⁶ bytes; in brackets the pages of mapped files, i.e. the node or stunnel binary and libraries shared with other processes, + the process's own anonymous memory) of a freshly started process: one second after start, then with ${fmt(input.idleConnections)} PostgreSQL connections open through it at once (each a raw client that sends a StartupMessage and waits for ReadyForQuery: the proxy has logged in upstream over mutual TLS; the server is checked to show ${fmt(input.idleConnections)} TLS sessions), read two seconds after the last one opened, and after they closed.

![proxy memory chart](proxy-memory.svg)

${mdTable(['process', 'idle after start, MB (files + own)', `${fmt(input.idleConnections)} open, MB`, 'peak (VmHWM), MB', 'KiB per connection', 'after closing them, MB', `time to open ${fmt(input.idleConnections)}`, 'CPU ms per connection opened'], memRows)}
`;
  return { markdown, artifacts: { 'proxy.svg': svg, 'proxy-memory.svg': memSvg } };
}

/**
 * The diagnostic cells: the same 32 clients with both proxies in the workload's scheduler group, next to the
 * sidecar placement, and how long the tunnel's thread waited for a core in each.
 */
function placementSection(input: ReportInput, fig: (id: CellId) => CellFigures): string {
  if (input.sharedCells.length === 0) return '';
  const row = (cell: Cell, where: string) => {
    const f = fig(cell.id);
    return [
      cell.label,
      where,
      `${fmt(f.tunnel.median)} / ${fmt(f.stunnel.median)} ${cell.unit}`,
      `**${fmtRatio(f.ratio.median)}** (${range2(f.ratio)})`,
      `${fmt(f.tunnelCpu.median)} / ${fmt(f.stunnelCpu.median)} µs/tx`,
      `${fmt(f.tunnelWait.median)} µs/tx`,
      `${f.kept} / ${f.rejected}`,
    ];
  };
  const sidecar = CELLS.find((c) => c.id === 'select-32') as Cell;
  const shared = input.sharedCells.find((c) => c.id === 'select-32-shared') as Cell;
  const withWorkers = input.sharedCells.find((c) => c.id === 'select-32-shared-workers');
  const own = fig('select-32');
  const both = fig(shared.id);
  const workersText = withWorkers
    ? ` With \`--workers ${SHARED_WORKERS}\` in the same shared group the tunnel is ${fmtRatio(fig(withWorkers.id).ratio.median)} of stunnel (rounds ${range2(fig(withWorkers.id).ratio)}; its threads wait ${fmt(fig(withWorkers.id).tunnelWait.median)} µs per transaction for a core).`
    : '';
  return `### Scheduler placement

The same 32-client cell in each placement: with each proxy in its own CPU scheduler group (the sidecar's placement, as in every cell above) and with both proxies moved into the group of PostgreSQL and pgbench (a process started beside a busy database on the same host), there also with the tunnel on \`--workers ${SHARED_WORKERS}\` (${input.rounds} interleaved pair(s) each, the proxies moved for the pair and back). **waiting for a core** is the time the tunnel's threads were runnable but not running, per transaction (/proc/<pid>/task/*/schedstat; stunnel's per-connection threads end with their connections, so its figure cannot be read the same way).

${mdTable(
  [
    'cell',
    'placement',
    'TPS, tunnel / stunnel',
    'tunnel ÷ stunnel (range)',
    'proxy CPU, tunnel / stunnel',
    'tunnel waiting for a core',
    'pairs kept / thrown out',
  ],
  [
    row(sidecar, 'own groups (sidecar)'),
    row(shared, "workload's group"),
    ...(withWorkers ? [row(withWorkers, `workload's group, --workers ${SHARED_WORKERS}`)] : []),
  ],
)}

In the workload's group the tunnel is ${fmtRatio(both.ratio.median)} of stunnel and its threads wait ${fmt(both.tunnelWait.median)} µs per transaction for a core (${fmt(own.tunnelWait.median)} µs in its own group), against ${fmt(both.tunnelCpu.median)} µs of CPU they use. ${
    both.tunnelWait.median > 1.5 * own.tunnelWait.median
      ? 'The scheduler shares a group’s CPU thread by thread: one event loop gets about one share among 32 busy PostgreSQL backends and pgbench, while stunnel’s thread per connection gets one share per connection.'
      : 'This run does not show the tunnel waiting longer for a core in the shared group than in its own, so it does not explain a difference between the placements.'
  } \`broker proxy db --workers N\` runs N event loops, for a proxy placed like this (README.md).${workersText}

`;
}

/**
 * Where the tunnel's extra CPU is, from the measured rounds: the kernel's part (system calls, the loopback
 * stack) against stunnel's, and user space (Node, V8, the relay, OpenSSL's ciphers) against stunnel's.
 */
function userKernelText(cell: Cell, f: CellFigures): string {
  const unit = cpuUnit(cell);
  const diff = (x: number) => `${fmt(Math.abs(x))} ${unit} ${x >= 0 ? 'more' : 'less'}`;
  return `In the measured rounds (medians) the tunnel spent ${fmt(f.tunnelUser.median)} ${unit} in user space and ${fmt(f.tunnelSystem.median)} in the kernel, stunnel ${fmt(f.stunnelUser.median)} and ${fmt(f.stunnelSystem.median)}: ${diff(f.tunnelUser.median - f.stunnelUser.median)} than stunnel in user space, ${diff(f.tunnelSystem.median - f.stunnelSystem.median)} in the kernel.`;
}
