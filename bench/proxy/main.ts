/**
 * bench/proxy: the localhost database proxy in tunnel mode (`broker proxy db --tunnel`, run as its own
 * process) side by side with stunnel4 (`protocol = pgsql`) and with direct TLS from the client to a real
 * PostgreSQL server, in one run: pgbench select-only at 1/8/32 clients, a new connection per transaction
 * (`pgbench -C`), a bulk COPY, and the proxy's memory with 1,000 open tunnelled connections
 * (DESIGN.md §9).
 *
 * Run through `npm run bench`, or alone: `node bench/run.mjs proxy [--quick] [--rounds N] [--seconds S]`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describeMachine, machineLine } from '../lib/machine.mjs';
import { parseBenchOptions, repoRoot } from '../lib/options.js';
import { busyFraction, cpuReading, fmtPercent, foreignFraction, processMemory } from '../lib/procfs.js';
import { type BenchResult, checkTarget, type TargetCheck, writeResult } from '../lib/result.js';
import { fmt, fmtRatio, median, pairedRatio, type Summary, summarize } from '../lib/stats.js';
import { type Bar, barChartSvg } from '../lib/svg.js';
import { mdTable, textTable } from '../lib/table.js';
import { type ProxyProcess, startBrokerTunnel, startStunnel } from './processes.js';
import { DATABASE, MAX_CONNECTIONS, SERVICE, setUpProxyBench, USER } from './setup.js';
import {
  type ConnInfo,
  closeConnections,
  copyBytes,
  copySql,
  directTlsConnInfo,
  openConnections,
  pgbench,
  pgbenchInit,
  plainConnInfo,
  psqlCopy,
  run,
} from './workloads.js';

const SCALE = 10;
const CLIENTS = [1, 8, 32] as const;
const CONNECT_CLIENTS = 8;
const COPY_WIDTH = 1000;
/** 300,300,000 bytes (300 MB, 286 MiB) per COPY. */
const COPY_ROWS = 300_000;
const IDLE_CONNECTIONS = 1000;
/** Handshakes in flight while opening the idle connections. */
const OPEN_PARALLEL = 32;
const MB = 1e6;

const TARGET_STUNNEL = 1.0;
const TARGET_DIRECT = 0.9;
const TARGET_CONNECT = 1.0;
const TARGET_COPY = 0.9;
const TARGET_RSS_MB = 100;

type PathId = 'tunnel' | 'stunnel' | 'direct';
const PATHS: PathId[] = ['tunnel', 'stunnel', 'direct'];
const PATH_LABEL: Record<PathId, string> = {
  tunnel: 'broker tunnel',
  stunnel: 'stunnel4',
  direct: 'direct TLS',
};

type CellId = 'select-1' | 'select-8' | 'select-32' | 'connect-8' | 'copy';
interface Cell {
  id: CellId;
  label: string;
  unit: 'TPS' | 'MB/s';
}
const CELLS: Cell[] = [
  ...CLIENTS.map((c) => ({
    id: `select-${c}` as CellId,
    label: `select-only, ${c} client${c === 1 ? '' : 's'}`,
    unit: 'TPS' as const,
  })),
  { id: 'connect-8', label: `select-only -C, ${CONNECT_CLIENTS} clients`, unit: 'TPS' },
  { id: 'copy', label: 'COPY TO STDOUT', unit: 'MB/s' },
];

interface Sample {
  /** TPS or MB/s. */
  value: number;
  /** Transactions (pgbench) or bytes (COPY). */
  work: number;
  wallSeconds: number;
  /** CPU seconds of the proxy process during the run; undefined for direct TLS. */
  proxyCpuSeconds?: number;
  /** Fraction of the machine's CPU busy during the run. */
  machineBusy: number;
  /** Fraction of the machine's CPU used by processes outside this benchmark during the run. */
  foreign: number;
}

interface MemoryReading {
  idle: number;
  open: number;
  peak: number;
  afterClose: number;
  openSeconds: number;
  cpuSecondsToOpen: number;
  connections: number;
}

const log = (line: string) => console.log(`proxy: ${line}`);

function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** RSS of a Node process that loads no code, one second after start: the floor for the broker CLI. */
async function idleNodeRss(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
  try {
    await sleep(1000);
    if (child.pid === undefined) throw new Error('node did not start');
    return processMemory(child.pid).rss;
  } finally {
    child.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const options = parseBenchOptions();
  const quick = options.quick;
  const rounds = options.rounds ?? (quick ? 1 : 5);
  const seconds = Math.max(1, Math.round(options.seconds ?? (quick ? 1 : 4)));
  const copyRows = quick ? COPY_ROWS / 10 : COPY_ROWS;
  const idleConnections = quick ? 100 : IDLE_CONNECTIONS;
  const machine = describeMachine();
  const root = repoRoot();
  const cli = path.join(root, 'dist', 'broker.mjs');
  if (!existsSync(cli))
    throw new Error(`${cli} is missing: run \`npm run build\` first (npm run bench does)`);

  log(machineLine(machine));
  log(
    `${rounds} round(s); pgbench -T ${seconds}; COPY of ${fmt(copyBytes(copyRows, COPY_WIDTH) / MB)} MB; ${idleConnections} idle connections for the memory measurement`,
  );

  const setup = await setUpProxyBench(log);
  const procs: ProxyProcess[] = [];
  try {
    const direct = directTlsConnInfo(setup.pg.port, setup.output);
    const t0 = performance.now();
    await pgbenchInit(setup.binDir, direct, SCALE);
    log(`pgbench -i -s ${SCALE} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // ---- the two proxies, each its own process ----------------------------------------------------
    const tunnel = await startBrokerTunnel({
      cli,
      output: setup.output,
      service: SERVICE,
      logDir: setup.work,
      tag: 'throughput',
    });
    procs.push(tunnel);
    const stunnel = await startStunnel({
      output: setup.output,
      pgPort: setup.pg.port,
      workDir: setup.work,
      tag: 'throughput',
    });
    procs.push(stunnel);
    await sleep(500);
    const idleAtStart = { tunnel: tunnel.memory().rss, stunnel: stunnel.memory().rss };
    log(
      `broker tunnel on 127.0.0.1:${tunnel.port} (pid ${tunnel.pid}, RSS ${fmt(idleAtStart.tunnel / MB)} MB), stunnel4 on 127.0.0.1:${stunnel.port} (pid ${stunnel.pid}, RSS ${fmt(idleAtStart.stunnel / MB)} MB)`,
    );
    const conninfo: Record<PathId, ConnInfo> = {
      tunnel: plainConnInfo(tunnel.port),
      stunnel: plainConnInfo(stunnel.port),
      direct,
    };
    const proxyOf: Record<PathId, ProxyProcess | undefined> = { tunnel, stunnel, direct: undefined };

    // ---- every path reaches the server over TLS with the output's certificate ----------------------
    const psql = path.join(setup.binDir, 'psql');
    for (const p of PATHS) {
      const r = await run(
        psql,
        [
          '-X',
          '-A',
          '-t',
          '-v',
          'ON_ERROR_STOP=1',
          '-d',
          conninfo[p],
          '-c',
          'SELECT current_user, s.ssl, s.client_serial::text FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()',
        ],
        30_000,
      );
      const [user, ssl, serial] = r.stdout.trim().split('|');
      if (
        r.code !== 0 ||
        user !== USER ||
        ssl !== 't' ||
        BigInt(serial ?? '-1') !== BigInt(`0x${setup.serial}`)
      )
        throw new Error(
          `${PATH_LABEL[p]}: expected ${USER} over TLS with certificate serial ${setup.serial}, got "${r.stdout.trim()}" ${r.stderr.trim()}`,
        );
      await psqlCopy(setup.binDir, conninfo[p], 1000, COPY_WIDTH, true);
    }
    log('each path logs in as alice over TLS with the output certificate, and COPY delivers every byte');

    // ---- measurements ------------------------------------------------------------------------------
    const measure = async (cell: Cell, p: PathId, secs: number): Promise<Sample> => {
      const proxy = proxyOf[p];
      const cpu0 = proxy?.cpuSeconds();
      const before = cpuReading();
      let value: number;
      let work: number;
      let wallSeconds: number;
      if (cell.id === 'copy') {
        const r = await psqlCopy(setup.binDir, conninfo[p], copyRows, COPY_WIDTH);
        value = r.bytes / MB / r.seconds;
        work = r.bytes;
        wallSeconds = r.seconds;
      } else {
        const connect = cell.id === 'connect-8';
        const t = performance.now();
        const r = await pgbench(setup.binDir, conninfo[p], {
          clients: connect ? CONNECT_CLIENTS : Number(cell.id.split('-')[1]),
          seconds: secs,
          connectPerTransaction: connect,
        });
        value = r.tps;
        work = r.transactions;
        wallSeconds = (performance.now() - t) / 1000;
      }
      const after = cpuReading();
      const busy = busyFraction(before.machine, after.machine);
      const foreign = foreignFraction(before, after);
      return {
        value,
        work,
        wallSeconds,
        ...(proxy && cpu0 !== undefined ? { proxyCpuSeconds: proxy.cpuSeconds() - cpu0 } : {}),
        machineBusy: busy,
        foreign,
      };
    };

    // Warm-up: the proxies' first connections, JIT, the server's caches; results discarded.
    for (const cell of CELLS)
      for (const p of PATHS)
        if (cell.id === 'copy') await psqlCopy(setup.binDir, conninfo[p], copyRows / 10, COPY_WIDTH);
        else await measure(cell, p, 1);
    log('warm-up done');

    const samples = new Map<string, Sample[]>();
    const key = (cell: CellId, p: PathId) => `${cell}/${p}`;
    for (let r = 0; r < rounds; r++) {
      const cells = r % 2 === 0 ? CELLS : [...CELLS].reverse();
      const line: string[] = [];
      for (const cell of cells) {
        // Every path of a cell runs back to back, in an order that rotates each round.
        const parts: string[] = [];
        for (const p of rotate(PATHS, r)) {
          const s = await measure(cell, p, seconds);
          const k = key(cell.id, p);
          samples.set(k, [...(samples.get(k) ?? []), s]);
          parts.push(`${p} ${fmt(s.value)}`);
        }
        line.push(`${cell.id}: ${parts.join(' ')}`);
      }
      log(`round ${r + 1}/${rounds}: ${line.join('; ')}`);
    }
    const afterRuns = { tunnel: tunnel.memory(), stunnel: stunnel.memory() };
    await tunnel.stop();
    await stunnel.stop();

    // ---- memory with many open connections: fresh processes ----------------------------------------
    const countServerSessions = async () =>
      Number(
        await setup.pg.psql(
          `SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = '${USER}' AND a.datname = '${DATABASE}' AND s.ssl AND a.application_name = 'bench-idle'`,
        ),
      );
    const memoryOf = async (which: 'tunnel' | 'stunnel'): Promise<MemoryReading> => {
      const proc =
        which === 'tunnel'
          ? await startBrokerTunnel({
              cli,
              output: setup.output,
              service: SERVICE,
              logDir: setup.work,
              tag: 'memory',
            })
          : await startStunnel({
              output: setup.output,
              pgPort: setup.pg.port,
              workDir: setup.work,
              tag: 'memory',
            });
      procs.push(proc);
      await sleep(1000);
      const idle = proc.memory().rss;
      const cpu0 = proc.cpuSeconds();
      const t = performance.now();
      const conns = await openConnections(proc.port, idleConnections, OPEN_PARALLEL);
      const openSeconds = (performance.now() - t) / 1000;
      const cpuSecondsToOpen = proc.cpuSeconds() - cpu0;
      const onServer = await countServerSessions();
      if (onServer !== idleConnections) {
        closeConnections(conns);
        throw new Error(
          `${idleConnections} connections opened but the server shows ${onServer} TLS sessions`,
        );
      }
      // Let the process settle (timers, GC after the burst of handshakes) before reading its memory.
      await sleep(2000);
      const { rss: open, peak } = proc.memory();
      closeConnections(conns);
      for (let i = 0; i < 150 && (await countServerSessions()) > 0; i++) await sleep(100);
      await sleep(1000);
      const afterClose = proc.memory().rss;
      await proc.stop();
      return { idle, open, peak, afterClose, openSeconds, cpuSecondsToOpen, connections: idleConnections };
    };
    const memory = { tunnel: await memoryOf('tunnel'), stunnel: await memoryOf('stunnel') };
    const nodeFloor = await idleNodeRss();
    log(
      `RSS with ${idleConnections} open connections: broker tunnel ${fmt(memory.tunnel.open / MB)} MB (idle ${fmt(memory.tunnel.idle / MB)} MB), stunnel ${fmt(memory.stunnel.open / MB)} MB (idle ${fmt(memory.stunnel.idle / MB)} MB)`,
    );

    // ---- summaries ---------------------------------------------------------------------------------
    const values = (cell: CellId, p: PathId) => (samples.get(key(cell, p)) ?? []).map((s) => s.value);
    const summary = (cell: CellId, p: PathId): Summary => summarize(values(cell, p));
    const ratio = (cell: CellId, a: PathId, b: PathId): Summary =>
      pairedRatio(values(cell, a), values(cell, b));
    const cpuPer = (cell: CellId, p: PathId): number => {
      const list = samples.get(key(cell, p)) ?? [];
      // µs of proxy CPU per transaction, or ms per MB for COPY.
      const per = list.map((s) =>
        s.proxyCpuSeconds === undefined
          ? Number.NaN
          : cell === 'copy'
            ? (s.proxyCpuSeconds * 1000) / (s.work / MB)
            : (s.proxyCpuSeconds * 1e6) / s.work,
      );
      return median(per);
    };
    const coresOf = (cell: CellId, p: PathId): number =>
      median((samples.get(key(cell, p)) ?? []).map((s) => (s.proxyCpuSeconds ?? Number.NaN) / s.wallSeconds));
    const busyOf = (cell: CellId, p: PathId): number =>
      median((samples.get(key(cell, p)) ?? []).map((s) => s.machineBusy));
    const foreignOf = (cell: CellId, p: PathId): number =>
      median((samples.get(key(cell, p)) ?? []).map((s) => s.foreign));
    const allSamples = [...samples.values()].flat();
    // Time-weighted share of the machine other processes took while measuring, and the worst single run.
    const foreignOverall =
      allSamples.reduce((a, s) => a + s.foreign * s.wallSeconds, 0) /
      allSamples.reduce((a, s) => a + s.wallSeconds, 0);
    const foreignWorst = Math.max(...allSamples.map((s) => s.foreign));

    const sel8Stunnel = ratio('select-8', 'tunnel', 'stunnel');
    const sel8Direct = ratio('select-8', 'tunnel', 'direct');
    const connectStunnel = ratio('connect-8', 'tunnel', 'stunnel');
    const copyDirect = ratio('copy', 'tunnel', 'direct');
    const rssMb = memory.tunnel.open / MB;
    const targets: TargetCheck[] = [
      checkTarget({
        what: 'tunnel proxy, pgbench select-only, 1/8/32 clients',
        target: `≥ ${TARGET_STUNNEL.toFixed(1)}× stunnel at 8 clients`,
        label: 'vs stunnel',
        measured: sel8Stunnel.median,
        threshold: TARGET_STUNNEL,
        direction: '>=',
      }),
      checkTarget({
        what: 'tunnel proxy, pgbench select-only, 1/8/32 clients',
        target: `≥ ${TARGET_DIRECT}× direct TLS at 8 clients`,
        label: 'vs direct TLS',
        measured: sel8Direct.median,
        threshold: TARGET_DIRECT,
        direction: '>=',
      }),
      checkTarget({
        what: 'new connections per second through the proxy (pgbench -C)',
        target: `≥ ${TARGET_CONNECT.toFixed(1)}× stunnel`,
        label: 'vs stunnel',
        measured: connectStunnel.median,
        threshold: TARGET_CONNECT,
        direction: '>=',
      }),
      checkTarget({
        what: 'bulk COPY through the proxy',
        target: `≥ ${TARGET_COPY}× direct TLS`,
        label: 'vs direct TLS',
        measured: copyDirect.median,
        threshold: TARGET_COPY,
        direction: '>=',
      }),
      checkTarget({
        what: 'proxy memory at 1,000 open tunnelled connections',
        target:
          idleConnections === IDLE_CONNECTIONS
            ? `≤ ${TARGET_RSS_MB} MB RSS`
            : `≤ ${TARGET_RSS_MB} MB RSS (quick run: ${idleConnections} connections only)`,
        measured: rssMb,
        threshold: TARGET_RSS_MB,
        direction: '<=',
        unit: 'MB',
      }),
    ];

    const disturbed = foreignOverall > 0.05 || foreignWorst > 0.2;
    // The single runs other work disturbed most (over 20% of the machine), for the report.
    const disturbedRuns = CELLS.flatMap((cell) =>
      PATHS.flatMap((p) =>
        (samples.get(key(cell.id, p)) ?? []).flatMap((s, i) =>
          s.foreign > 0.2
            ? [`${cell.label}, ${PATH_LABEL[p]}, round ${i + 1}: ${Math.round(s.foreign * 100)}%`]
            : [],
        ),
      ),
    );

    // ---- stdout ------------------------------------------------------------------------------------
    const range = (s: Summary) => `${fmt(s.min)}–${fmt(s.max)}`;
    const rrange = (s: Summary) => `${s.min.toFixed(2)}–${s.max.toFixed(2)}`;
    const rows = CELLS.flatMap((cell) =>
      PATHS.map((p) => {
        const s = summary(cell.id, p);
        return [
          `${cell.label}, ${PATH_LABEL[p]}`,
          `${fmt(s.median)} ${cell.unit}`,
          range(s),
          p === 'direct' ? '1.00×' : fmtRatio(ratio(cell.id, p, 'direct').median),
          p === 'tunnel'
            ? fmtRatio(ratio(cell.id, 'tunnel', 'stunnel').median)
            : p === 'stunnel'
              ? '1.00×'
              : '',
          p === 'direct' ? '' : fmt(cpuPer(cell.id, p)),
          p === 'direct' ? '' : coresOf(cell.id, p).toFixed(2),
          `${Math.round(busyOf(cell.id, p) * 100)}%`,
          `${Math.round(foreignOf(cell.id, p) * 100)}%`,
        ];
      }),
    );
    const header = [
      'measurement',
      'median',
      'range',
      '× direct',
      '× stunnel',
      'proxy CPU µs/tx (ms/MB)',
      'proxy cores',
      'machine busy',
      'other processes',
    ];
    console.log('');
    console.log(textTable(header, rows));
    console.log('');
    for (const t of targets)
      console.log(
        `${t.what}${t.label ? ` (${t.label})` : ''}: ${t.unit ? `${t.measured.toFixed(1)} ${t.unit}` : fmtRatio(t.measured)} — target ${t.direction} ${t.threshold}${t.unit ? ` ${t.unit}` : '×'}: ${t.met ? 'MET' : 'NOT MET'}`,
      );

    // ---- charts ------------------------------------------------------------------------------------
    const bars: Bar[] = [];
    for (const cell of CELLS)
      for (const p of PATHS) {
        const rel = ratio(cell.id, p, 'direct');
        const vsStunnel =
          p === 'tunnel' ? ` · ${fmtRatio(ratio(cell.id, 'tunnel', 'stunnel').median)} stunnel` : '';
        bars.push({
          label: `${cell.label}: ${PATH_LABEL[p]}`,
          value: rel.median * 100,
          ...(p === 'direct' ? {} : { min: rel.min * 100, max: rel.max * 100 }),
          series: p,
          note: `${fmt(summary(cell.id, p).median)} ${cell.unit}${vsStunnel}`,
        });
      }
    const chartSeries = {
      tunnel: { colour: '#1d4ed8', label: 'broker proxy db --tunnel' },
      stunnel: { colour: '#9ca3af', label: 'stunnel4 (protocol = pgsql)' },
      direct: { colour: '#d1d5db', label: 'direct TLS (sslmode=verify-full)' },
    };
    const svg = barChartSvg({
      title: 'Through the tunnel proxy, stunnel and direct TLS: throughput as % of direct TLS',
      subtitle: `${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}, PostgreSQL ${setup.pg.version}; median of ${rounds} round(s) of per-round ratios, ${startedAt.toISOString().slice(0, 10)}`,
      unit: '% of direct TLS in the same round (pgbench TPS; COPY MB/s)',
      bars,
      series: chartSeries,
      valueSuffix: '%',
      markers: [
        {
          value: TARGET_DIRECT * 100,
          label: `target ${TARGET_DIRECT}× direct (8 clients, COPY)`,
          colour: '#dc2626',
        },
      ],
    });
    const memSvg = barChartSvg({
      title: `Proxy memory (RSS): idle, and with ${fmt(idleConnections)} open connections`,
      subtitle: `${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}; /proc/<pid>/status VmRSS, ${startedAt.toISOString().slice(0, 10)}`,
      unit: 'MB (10⁶ bytes) resident',
      valueSuffix: ' MB',
      bars: [
        { label: 'broker tunnel, idle after start', value: memory.tunnel.idle / MB, series: 'tunnel' },
        {
          label: `broker tunnel, ${fmt(idleConnections)} open`,
          value: memory.tunnel.open / MB,
          series: 'tunnel',
          note: `peak ${fmt(memory.tunnel.peak / MB)}`,
        },
        { label: 'stunnel4, idle after start', value: memory.stunnel.idle / MB, series: 'stunnel' },
        {
          label: `stunnel4, ${fmt(idleConnections)} open`,
          value: memory.stunnel.open / MB,
          series: 'stunnel',
          note: `peak ${fmt(memory.stunnel.peak / MB)}`,
        },
      ],
      series: { tunnel: chartSeries.tunnel, stunnel: chartSeries.stunnel },
      markers: [{ value: TARGET_RSS_MB, label: `target ≤ ${TARGET_RSS_MB} MB`, colour: '#dc2626' }],
    });

    // ---- report section ----------------------------------------------------------------------------
    const verdict = (ok: boolean, text: string) => `- ${ok ? '**Met**' : '**Not met**'}: ${text}`;
    const shortBy = (measured: number, threshold: number) =>
      measured >= threshold ? '' : `, short by ${(threshold - measured).toFixed(2)}`;
    // When the rounds fall on both sides of the target, the verdict is parity within noise, not a clear one.
    const spread = (s: Summary, threshold: number) =>
      s.min < threshold && s.max >= threshold
        ? `; per-round ratios ${s.min.toFixed(2)}–${s.max.toFixed(2)}, on both sides of the target`
        : '';
    const [tSel, tDir, tConn, tCopy, tMem] = targets as [
      TargetCheck,
      TargetCheck,
      TargetCheck,
      TargetCheck,
      TargetCheck,
    ];
    const sel8 = (p: PathId) => summary('select-8', p).median;
    const verdicts = [
      verdict(
        tSel.met && tDir.met,
        `pgbench select-only at 8 clients through the tunnel is ${fmtRatio(sel8Stunnel.median)} stunnel (target ≥ ${TARGET_STUNNEL.toFixed(1)}×${shortBy(sel8Stunnel.median, TARGET_STUNNEL)}${spread(sel8Stunnel, TARGET_STUNNEL)}) and ${fmtRatio(sel8Direct.median)} direct TLS (target ≥ ${TARGET_DIRECT}×${shortBy(sel8Direct.median, TARGET_DIRECT)}${spread(sel8Direct, TARGET_DIRECT)}): medians ${fmt(sel8('tunnel'))}, ${fmt(sel8('stunnel'))} and ${fmt(sel8('direct'))} TPS.${tDir.met ? '' : ` Meeting the direct-TLS target needs ${(TARGET_DIRECT / sel8Direct.median).toFixed(2)}× the tunnel's throughput relative to direct TLS.`} For comparison, stunnel is at ${fmtRatio(ratio('select-8', 'stunnel', 'direct').median)} direct TLS in the same rounds; the tunnel process spends ${fmt(cpuPer('select-8', 'tunnel'))} µs of CPU per transaction, stunnel ${fmt(cpuPer('select-8', 'stunnel'))} µs.`,
      ),
      verdict(
        tConn.met,
        `a new connection per transaction (pgbench -C, ${CONNECT_CLIENTS} clients): the tunnel is ${fmtRatio(connectStunnel.median)} stunnel (target ≥ ${TARGET_CONNECT.toFixed(1)}×${shortBy(connectStunnel.median, TARGET_CONNECT)}${spread(connectStunnel, TARGET_CONNECT)}): medians ${fmt(summary('connect-8', 'tunnel').median)} and ${fmt(summary('connect-8', 'stunnel').median)} connections (transactions) per second.`,
      ),
      verdict(
        tCopy.met,
        `bulk COPY through the tunnel is ${fmtRatio(copyDirect.median)} direct TLS (target ≥ ${TARGET_COPY}×${shortBy(copyDirect.median, TARGET_COPY)}${spread(copyDirect, TARGET_COPY)}): medians ${fmt(summary('copy', 'tunnel').median)} and ${fmt(summary('copy', 'direct').median)} MB/s; stunnel is at ${fmtRatio(ratio('copy', 'stunnel', 'direct').median)} direct TLS (${fmt(summary('copy', 'stunnel').median)} MB/s), and the tunnel spends ${fmt(cpuPer('copy', 'tunnel'))} ms of CPU per MB against stunnel's ${fmt(cpuPer('copy', 'stunnel'))}.${coresOf('copy', 'tunnel') >= 0.85 ? ` The tunnel process keeps ${coresOf('copy', 'tunnel').toFixed(2)} cores busy during the COPY: Node decrypts and relays on one thread, so one core is its ceiling.` : ''}`,
      ),
      verdict(
        tMem.met,
        `with ${fmt(idleConnections)} open tunnelled connections the proxy's RSS is ${fmt(rssMb)} MB (target ≤ ${TARGET_RSS_MB} MB${tMem.met ? '' : `, over by ${fmt(rssMb - TARGET_RSS_MB)} MB`}); idle after start it is already ${fmt(memory.tunnel.idle / MB)} MB (a Node process that loads no code: ${fmt(nodeFloor / MB)} MB), and the connections add ${fmt((memory.tunnel.open - memory.tunnel.idle) / MB)} MB (${fmt((memory.tunnel.open - memory.tunnel.idle) / idleConnections / 1024)} KiB each).${quick ? ' (Quick run: fewer connections; not the target measurement.)' : ''}`,
      ),
    ].join('\n');

    const mdRows = CELLS.flatMap((cell) =>
      PATHS.map((p) => {
        const s = summary(cell.id, p);
        const label = `${cell.label}: ${PATH_LABEL[p]}`;
        return [
          p === 'tunnel' ? `**${label}**` : label,
          `${fmt(s.median)}`,
          range(s),
          p === 'direct' ? '1.00×' : fmtRatio(ratio(cell.id, p, 'direct').median),
          p === 'tunnel'
            ? fmtRatio(ratio(cell.id, 'tunnel', 'stunnel').median)
            : p === 'stunnel'
              ? '1.00×'
              : '—',
          p === 'direct' ? '—' : fmt(cpuPer(cell.id, p)),
          p === 'direct' ? '—' : coresOf(cell.id, p).toFixed(2),
          `${Math.round(busyOf(cell.id, p) * 100)}%`,
          `${Math.round(foreignOf(cell.id, p) * 100)}%`,
        ];
      }),
    );
    const ratioRows: string[][] = [
      ...CLIENTS.map((c) => {
        const id = `select-${c}` as CellId;
        const a = ratio(id, 'tunnel', 'stunnel');
        const b = ratio(id, 'tunnel', 'direct');
        const bold = c === 8 ? (x: string) => `**${x}**` : (x: string) => x;
        return [
          `select-only, ${c} client${c === 1 ? '' : 's'}${c === 8 ? ' (target)' : ''}`,
          bold(fmtRatio(a.median)),
          rrange(a),
          bold(fmtRatio(b.median)),
          rrange(b),
        ];
      }),
      [
        `select-only -C, ${CONNECT_CLIENTS} clients (target vs stunnel)`,
        `**${fmtRatio(connectStunnel.median)}**`,
        rrange(connectStunnel),
        fmtRatio(ratio('connect-8', 'tunnel', 'direct').median),
        rrange(ratio('connect-8', 'tunnel', 'direct')),
      ],
      [
        'COPY (target vs direct)',
        fmtRatio(ratio('copy', 'tunnel', 'stunnel').median),
        rrange(ratio('copy', 'tunnel', 'stunnel')),
        `**${fmtRatio(copyDirect.median)}**`,
        rrange(copyDirect),
      ],
    ];
    const mb = (b: number) => fmt(b / MB);
    const memRows = (['tunnel', 'stunnel'] as const).map((w) => {
      const m = memory[w];
      return [
        w === 'tunnel' ? '**broker proxy db --tunnel**' : 'stunnel4',
        mb(m.idle),
        w === 'tunnel' ? `**${mb(m.open)}**` : mb(m.open),
        mb(m.peak),
        fmt((m.open - m.idle) / m.connections / 1024),
        mb(m.afterClose),
        `${m.openSeconds.toFixed(1)} s`,
        fmt((m.cpuSecondsToOpen * 1000) / m.connections),
      ];
    });
    memRows.push([
      'reference: `node -e` with an empty timer (the floor of any Node process)',
      mb(nodeFloor),
      '—',
      '—',
      '—',
      '—',
      '—',
      '—',
    ]);
    // Measured, not guessed from the load average (which lags and counts the benchmark that ran before).
    const contention = !disturbed
      ? ''
      : foreignOverall > 0.05
        ? `> **Warning: other work shared the machine during this run**: processes outside the benchmark used ${Math.round(foreignOverall * 100)}% of the machine's CPU while it measured (${Math.round(foreignWorst * 100)}% during the worst run). Interleaving and per-round ratios cancel steady load, not bursts; treat these numbers as rough and run again on an idle machine.\n\n`
        : `> Note: processes outside the benchmark used ${Math.round(foreignOverall * 100)}% of the machine's CPU over the whole measurement, but more than 20% during ${disturbedRuns.length === 1 ? 'one run' : `${disturbedRuns.length} runs`} (${disturbedRuns.slice(0, 5).join('; ')}${disturbedRuns.length > 5 ? '; …' : ''}). Medians over rounds set a single disturbed round aside.\n\n`;
    if (contention) console.log(`\n${contention.replace(/^> /, '').replace(/\*\*/g, '').trim()}`);
    const markdown = `The localhost proxy in tunnel mode (\`broker proxy db --tunnel\`, the built CLI run as its own process) side by side with stunnel4 in client mode (\`protocol = pgsql\`, the same client certificate and key, \`CAfile\` the server CA, \`verifyChain\`, \`checkHost localhost\`) and with direct TLS from the client to PostgreSQL (\`sslmode=verify-full\` with \`sslcert\`/\`sslkey\`/\`sslrootcert\`), all on this machine over loopback, in one run. DESIGN.md §9 targets: **≥ ${TARGET_STUNNEL.toFixed(1)}× stunnel and ≥ ${TARGET_DIRECT}× direct TLS at 8 clients**; **pgbench -C ≥ ${TARGET_CONNECT.toFixed(1)}× stunnel**; **bulk COPY ≥ ${TARGET_COPY}× direct TLS**; **≤ ${TARGET_RSS_MB} MB RSS at 1,000 open tunnelled connections**.

${verdicts}

${contention}- Run: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC; ${machineLine(machine)}. Processes outside the benchmark used ${fmtPercent(foreignOverall)} of the machine's CPU while it measured (measured from /proc; the load average above lags by minutes and includes whatever ran just before, such as the previous benchmark).
- Server: a throwaway PostgreSQL ${setup.pg.version} (src/devdb/postgres.ts: TLS with client certificates only, \`fsync = off\`, \`max_connections = ${MAX_CONNECTIONS}\`), its certificate and the client certificate from an in-process authority, the client certificate written by \`DirectoryDestination\` as the bot writes it; \`pgbench -i -s ${SCALE}\` (1,000,000 accounts).
- ${rounds} round(s). In each, every cell below runs its three paths back to back, in an order that rotates each round (and the cells in reverse order every other round), after a warm-up. pgbench runs \`-n -S -T ${seconds} -c C -j min(2, C)\` (\`-C\` adds a new connection per transaction); COPY is \`${copySql(copyRows, COPY_WIDTH)}\` read by \`psql\` into /dev/null (${fmt(copyBytes(copyRows, COPY_WIDTH) / MB)} MB, 10⁶ bytes; the time is psql's whole run, connection included). Medians over rounds. Every ratio (the × columns too) is the median of per-round ratios, each path against the others measured seconds apart in the same round, not a ratio of the medians: on a quiet machine the two agree; when other work comes and goes, the paired ratio is the steadier one.
- pgbench, psql, the proxy and PostgreSQL share the machine's ${machine.cores} cores. **proxy CPU** is the proxy process's user + system time (all threads, /proc/<pid>/stat) during the run, per transaction (ms per MB for COPY); **proxy cores** is that over wall time; **machine busy** is the whole machine's non-idle CPU time (/proc/stat) during the run, and **other processes** the part of it charged to processes outside the benchmark's process tree (anything else running on the machine; interrupt and softirq time and kernel threads such as ksoftirqd, mostly this benchmark's own loopback traffic, are not counted as other). When the machine is near 100% busy, CPU the proxy spends is CPU PostgreSQL and pgbench do not get.
- The tunnel and stunnel both log at their default levels (broker: info, one line per connection; stunnel: notice, a few lines per connection), to files.

![proxy throughput chart](proxy.svg)

${mdTable(['measurement', 'median (TPS or MB/s)', 'range over rounds', '× direct TLS', '× stunnel', 'proxy CPU µs per transaction (COPY: ms per MB)', 'proxy cores', 'machine busy', 'other processes'], mdRows)}

| tunnel ratio | ÷ stunnel | range | ÷ direct TLS | range |
|---|---:|---:|---:|---:|
${ratioRows.map((r) => `| ${r.join(' | ')} |`).join('\n')}

### Memory

RSS (\`VmRSS\` of /proc/<pid>/status, MB = 10⁶ bytes) of a freshly started process: idle one second after start, then with ${fmt(idleConnections)} PostgreSQL connections open through it at once (each a raw client that sends a StartupMessage and waits for ReadyForQuery: the proxy has logged in upstream over mutual TLS; the server is checked to show ${fmt(idleConnections)} TLS sessions), read two seconds after the last one opened. The throughput run's processes, for comparison: broker ${mb(idleAtStart.tunnel)} MB idle after start and ${mb(afterRuns.tunnel.rss)} MB after all rounds (peak ${mb(afterRuns.tunnel.peak)} MB); stunnel ${mb(idleAtStart.stunnel)} MB and ${mb(afterRuns.stunnel.rss)} MB.

![proxy memory chart](proxy-memory.svg)

${mdTable(['process', 'idle after start, MB', `${fmt(idleConnections)} open, MB`, 'peak (VmHWM), MB', 'KiB per connection', 'after closing them, MB', `time to open ${fmt(idleConnections)}`, 'CPU ms per connection opened'], memRows)}
`;

    const result: BenchResult = {
      name: 'proxy',
      title: 'Proxy: tunnel against stunnel and direct TLS',
      date: new Date().toISOString(),
      machine,
      settings: {
        rounds,
        seconds,
        scale: SCALE,
        clients: CLIENTS,
        connectClients: CONNECT_CLIENTS,
        copyRows,
        copyWidth: COPY_WIDTH,
        idleConnections,
        openParallel: OPEN_PARALLEL,
        postgres: setup.pg.version,
        quick,
      },
      targets,
      markdown,
      artifacts: { 'proxy.svg': svg, 'proxy-memory.svg': memSvg },
      data: {
        cells: Object.fromEntries(
          CELLS.map((cell) => [
            cell.id,
            {
              label: cell.label,
              unit: cell.unit,
              paths: Object.fromEntries(
                PATHS.map((p) => [
                  p,
                  {
                    value: summary(cell.id, p),
                    samples: samples.get(key(cell.id, p)),
                    ratioToDirect: ratio(cell.id, p, 'direct'),
                    ratioToStunnel: ratio(cell.id, p, 'stunnel'),
                  },
                ]),
              ),
            },
          ]),
        ),
        memory,
        nodeFloorRss: nodeFloor,
        throughputProcesses: { idleAtStart, afterRuns },
        foreignLoad: { overall: foreignOverall, worst: foreignWorst, disturbedRuns },
      },
    };
    const file = writeResult(root, result);
    console.log(`\nproxy: wrote ${path.relative(process.cwd(), file)}`);
  } finally {
    for (const p of procs) await p.stop();
    await setup.cleanup();
  }
}

// On SIGINT/SIGTERM, exit through process.exit so the 'exit' hooks stop the proxies and PostgreSQL.
process.once('SIGINT', () => process.exit(130));
process.once('SIGTERM', () => process.exit(143));

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
