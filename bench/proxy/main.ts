/**
 * bench/proxy: the localhost database proxy in tunnel mode (the sidecar's entry point, which loads only the
 * proxy, run as its own process with the sidecar's V8 flags) against stunnel4 (`protocol = pgsql`), with
 * direct TLS from the client to a real PostgreSQL server for context: pgbench select-only at 1/8/32 clients,
 * a new connection per transaction (`pgbench -C`), a bulk COPY, and the proxy's memory idle and with 1,000
 * open tunnelled connections (DESIGN.md §9).
 *
 * The tunnel and stunnel run in interleaved pairs (A B, then B A in the next round); a pair during which
 * processes outside the benchmark took more than 10% of the machine is thrown out and measured again. When a
 * target is missed, the tunnel runs once more under `node --cpu-prof` and the report shows where its time went.
 *
 * Run through `npm run bench`, or alone: `node bench/run.mjs proxy [--quick] [--rounds N] [--seconds S]`.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { SIDECAR_NODE_FLAGS } from '../../proxy-container/node-flags.js';
import { describeMachine, machineLine } from '../lib/machine.mjs';
import { parseBenchOptions, repoRoot } from '../lib/options.js';
import { busyFraction, cpuReading, foreignFraction } from '../lib/procfs.js';
import { type BenchResult, checkTarget, type TargetCheck, writeResult } from '../lib/result.js';
import { fmt, fmtRatio, median, summarize } from '../lib/stats.js';
import { textTable } from '../lib/table.js';
import {
  CELLS,
  type Cell,
  type CellId,
  CLIENTS,
  CONNECT_CLIENTS,
  COPY_WIDTH,
  judge,
  MAX_FOREIGN,
  SCALE,
  SHARED_CELLS,
  SHARED_WORKERS,
  TARGET_TEXT,
  TARGETS,
} from './config.js';
import { type MemoryReading, measureMemory, nodeFloor } from './memory.js';
import { containerPlacement } from './placement.js';
import { type ProxyProcess, startBrokerTunnel, startStunnel } from './processes.js';
import { type ProfileSummary, summarizeProfile } from './profile.js';
import { renderProxyReport } from './report.js';
import {
  type CellFigures,
  cellFigures,
  measurePair,
  type PairRecord,
  type PathId,
  type RejectPolicy,
  type Sample,
} from './rounds.js';
import { SERVICE, setUpProxyBench, USER } from './setup.js';
import {
  type ConnInfo,
  copyBytes,
  directTlsConnInfo,
  pgbench,
  pgbenchInit,
  plainConnInfo,
  psqlCopy,
  run,
} from './workloads.js';

/** 300,300,000 bytes (300 MB, 286 MiB) per COPY. */
const COPY_ROWS = 300_000;
const IDLE_CONNECTIONS = 1000;
const MB = 1e6;

const log = (line: string) => console.log(`proxy: ${line}`);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The proxy's CPU (user, kernel, both) and run-queue wait since the readings taken before a run. */
function proxyCpu(
  target: ProxyProcess,
  split0: { user: number; system: number },
  wait0: number,
): Pick<Sample, 'proxyCpuSeconds' | 'proxyUserSeconds' | 'proxySystemSeconds' | 'proxyWaitSeconds'> {
  const split = target.cpuSplit();
  const user = split.user - split0.user;
  const system = split.system - split0.system;
  return {
    proxyCpuSeconds: user + system,
    proxyUserSeconds: user,
    proxySystemSeconds: system,
    proxyWaitSeconds: target.runQueueWaitSeconds() - wait0,
  };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const options = parseBenchOptions();
  const quick = options.quick;
  const rounds = options.rounds ?? (quick ? 1 : 5);
  // At least 2 s: on a loaded machine 32 clients may need most of a second just to connect.
  const seconds = Math.max(2, Math.round(options.seconds ?? (quick ? 2 : 4)));
  const copyRows = quick ? COPY_ROWS / 10 : COPY_ROWS;
  const idleConnections = quick ? 100 : IDLE_CONNECTIONS;
  const machine = describeMachine();
  const root = repoRoot();
  const entry = path.join(root, 'dist', 'proxy-container', 'proxy.mjs');
  if (!existsSync(entry))
    throw new Error(`${entry} is missing: run \`npm run build\` first (npm run bench does)`);
  const policy: RejectPolicy = {
    maxForeign: MAX_FOREIGN,
    maxAttempts: quick ? 1 : 3,
    // At most as many repeats as one more round of every cell.
    retryBudget: { left: quick ? 0 : CELLS.length * Math.max(2, Math.ceil(rounds / 2)) },
  };

  log(machineLine(machine));
  log(
    `${rounds} round(s); pgbench -T ${seconds}; COPY of ${fmt(copyBytes(copyRows, COPY_WIDTH) / MB)} MB; ${idleConnections} idle connections for the memory measurement; proxy run as node ${SIDECAR_NODE_FLAGS.join(' ')} ${path.relative(root, entry)}`,
  );

  // Before PostgreSQL starts, so that it and everything else this process starts run in the workload's group.
  const placement = containerPlacement();
  log(
    `placement: ${placement.kind === 'containers' ? placement.description : `none: ${placement.description}`}`,
  );
  const setup = await setUpProxyBench(log).catch((err: unknown) => {
    placement.cleanup();
    throw err;
  });
  const procs: ProxyProcess[] = [];
  try {
    const direct = directTlsConnInfo(setup.pg.port, setup.output);
    const t0 = performance.now();
    await pgbenchInit(setup.binDir, direct, SCALE);
    log(`pgbench -i -s ${SCALE} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // Each proxy in its own scheduler group, as the sidecar container runs.
    const startTunnel = async (
      tag: string,
      extraFlags: readonly string[] = [],
      args: readonly string[] = [],
    ) => {
      const started = await startBrokerTunnel({
        entry,
        nodeFlags: [...SIDECAR_NODE_FLAGS, ...extraFlags],
        output: setup.output,
        service: SERVICE,
        logDir: setup.work,
        tag,
        args,
      });
      placement.place(started.pid, 'tunnel');
      return started;
    };
    const startStunnelPlaced = async (tag: string) => {
      const started = await startStunnel({
        output: setup.output,
        pgPort: setup.pg.port,
        workDir: setup.work,
        tag,
      });
      placement.place(started.pid, 'stunnel');
      return started;
    };
    const tunnel = await startTunnel('throughput');
    procs.push(tunnel);
    const stunnel = await startStunnelPlaced('throughput');
    procs.push(stunnel);
    await sleep(500);
    log(
      `broker tunnel on 127.0.0.1:${tunnel.port} (pid ${tunnel.pid}), stunnel4 on 127.0.0.1:${stunnel.port} (pid ${stunnel.pid})`,
    );
    const conninfo: Record<PathId, ConnInfo> = {
      tunnel: plainConnInfo(tunnel.port),
      stunnel: plainConnInfo(stunnel.port),
      direct,
    };
    const proxyOf: Record<PathId, ProxyProcess | undefined> = { tunnel, stunnel, direct: undefined };

    // ---- every path reaches the server over TLS with the output's certificate ----------------------
    const psql = path.join(setup.binDir, 'psql');
    for (const p of ['tunnel', 'stunnel', 'direct'] as const) {
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
          `${p}: expected ${USER} over TLS with certificate serial ${setup.serial}, got "${r.stdout.trim()}" ${r.stderr.trim()}`,
        );
      await psqlCopy(setup.binDir, conninfo[p], 1000, COPY_WIDTH, true);
    }
    log('each path logs in as alice over TLS with the output certificate, and COPY delivers every byte');

    // ---- measurements ------------------------------------------------------------------------------
    const measure = async (cell: Cell, p: PathId, secs: number, target = proxyOf[p]): Promise<Sample> => {
      const info = target === proxyOf[p] ? conninfo[p] : plainConnInfo((target as ProxyProcess).port);
      const split0 = target?.cpuSplit();
      const wait0 = target?.runQueueWaitSeconds();
      const before = cpuReading();
      let value: number;
      let work: number;
      let wallSeconds: number;
      if (cell.id === 'copy') {
        const r = await psqlCopy(setup.binDir, info, copyRows, COPY_WIDTH);
        value = r.bytes / MB / r.seconds;
        work = r.bytes;
        wallSeconds = r.seconds;
      } else {
        const connect = cell.id === 'connect-8';
        const t = performance.now();
        const r = await pgbench(setup.binDir, info, {
          clients: connect ? CONNECT_CLIENTS : Number(cell.id.split('-')[1]),
          seconds: secs,
          connectPerTransaction: connect,
        });
        value = r.tps;
        work = r.transactions;
        wallSeconds = (performance.now() - t) / 1000;
      }
      const after = cpuReading();
      return {
        value,
        work,
        wallSeconds,
        ...(target && split0 && wait0 !== undefined ? proxyCpu(target, split0, wait0) : {}),
        machineBusy: busyFraction(before.machine, after.machine),
        foreign: foreignFraction(before, after),
      };
    };

    // The diagnostic cells move both proxies into the workload's group for their pair, and back after it.
    const sharedCells = placement.kind === 'containers' ? SHARED_CELLS : [];
    const allCells = [...CELLS, ...sharedCells];
    // The tunnel with more event loops, for its diagnostic cell only (idle otherwise).
    const workersTunnel = sharedCells.length
      ? await startTunnel('workers', [], ['--workers', String(SHARED_WORKERS)])
      : undefined;
    if (workersTunnel) procs.push(workersTunnel);
    // Warm-up: the proxies' first connections, JIT, the server's caches; results discarded.
    for (const cell of CELLS)
      for (const p of ['tunnel', 'stunnel', 'direct'] as const)
        if (cell.id === 'copy') await psqlCopy(setup.binDir, conninfo[p], copyRows / 10, COPY_WIDTH);
        else await measure(cell, p, 2);
    // The tunnel with more event loops too: each loop's first connections and JIT.
    if (workersTunnel) await measure(CELLS[2] as Cell, 'tunnel', 2, workersTunnel);
    log('warm-up done');

    const isShared = (cell: Cell) => sharedCells.includes(cell);
    const tunnelFor = (cell: Cell) => (cell.id === 'select-32-shared-workers' ? workersTunnel : tunnel);
    const placeBoth = (cell: Cell, shared: boolean) => {
      placement.place((tunnelFor(cell) as ProxyProcess).pid, shared ? 'shared' : 'tunnel');
      placement.place(stunnel.pid, shared ? 'shared' : 'stunnel');
    };
    const pairs = new Map<CellId, PairRecord[]>(allCells.map((c) => [c.id, []]));
    const directRuns = new Map<CellId, Sample[]>(allCells.map((c) => [c.id, []]));
    const measureStarted = performance.now();
    for (let r = 0; r < rounds; r++) {
      const cells = r % 2 === 0 ? allCells : [...allCells].reverse();
      const line: string[] = [];
      for (const cell of cells) {
        if (isShared(cell)) placeBoth(cell, true);
        const target = (p: PathId) => (p === 'tunnel' ? tunnelFor(cell) : proxyOf[p]);
        const attempts = await measurePair(r, (p) => measure(cell, p, seconds, target(p)), policy).finally(
          () => {
            if (isShared(cell)) placeBoth(cell, false);
          },
        );
        pairs.get(cell.id)?.push(...attempts);
        // Direct TLS is context, not a target: once per round, after the pair (not for the diagnostic cells).
        if (!isShared(cell)) directRuns.get(cell.id)?.push(await measure(cell, 'direct', seconds));
        const kept = attempts.at(-1) as PairRecord;
        line.push(
          `${cell.id}: ${fmtRatio(kept.tunnel.value / kept.stunnel.value)} (other ${Math.round(kept.foreign * 100)}%${attempts.length > 1 ? `, ${attempts.length - 1} thrown out` : ''})`,
        );
      }
      log(`round ${r + 1}/${rounds}: ${line.join('; ')}`);
    }
    const measureSeconds = (performance.now() - measureStarted) / 1000;
    await tunnel.stop();
    await stunnel.stop();

    const figures = new Map<CellId, CellFigures>(
      allCells.map((c) => [c.id, cellFigures(pairs.get(c.id) ?? [], c.id === 'copy', MAX_FOREIGN)]),
    );
    const fig = (id: CellId) => figures.get(id) as CellFigures;
    const directMedian = (id: CellId) => median((directRuns.get(id) ?? []).map((s) => s.value));

    // ---- memory: fresh processes -------------------------------------------------------------------
    const memory: Record<'tunnel' | 'stunnel', MemoryReading> = {
      tunnel: await measureMemory(setup, () => startTunnel('memory'), idleConnections, procs),
      stunnel: await measureMemory(setup, () => startStunnelPlaced('memory'), idleConnections, procs),
    };
    const floor = await nodeFloor(SIDECAR_NODE_FLAGS);
    log(
      `RSS: broker tunnel ${fmt(memory.tunnel.idle.rss / MB)} MB idle, ${fmt(memory.tunnel.open.rss / MB)} MB with ${idleConnections} open; stunnel ${fmt(memory.stunnel.idle.rss / MB)} and ${fmt(memory.stunnel.open.rss / MB)} MB`,
    );

    // ---- targets -----------------------------------------------------------------------------------
    const targets: TargetCheck[] = [];
    for (const c of CLIENTS) {
      const j = judge(fig(`select-${c}`));
      targets.push(
        checkTarget({
          what: 'tunnel proxy, pgbench select-only, 1/8/32 clients',
          target: `≥ ${TARGET_TEXT.select} stunnel at each`,
          label: `${c} client${c === 1 ? '' : 's'}${j.basis === 'cpu' ? ' (judged on CPU)' : ''}`,
          measured: j.measured,
          threshold: TARGETS.select,
          direction: '>=',
        }),
      );
    }
    for (const c of CLIENTS)
      targets.push(
        checkTarget({
          what: 'proxy CPU per transaction',
          target: `≤ ${TARGET_TEXT.cpu} stunnel's`,
          label: `${c} client${c === 1 ? '' : 's'}`,
          measured: fig(`select-${c}`).cpuRatio.median,
          threshold: TARGETS.cpu,
          direction: '<=',
        }),
      );
    const jc = judge(fig('connect-8'));
    targets.push(
      checkTarget({
        what: 'new connections per second through the proxy (pgbench -C)',
        target: `≥ ${TARGET_TEXT.connect} stunnel`,
        label: `vs stunnel${jc.basis === 'cpu' ? ' (judged on CPU)' : ''}`,
        measured: jc.measured,
        threshold: TARGETS.connect,
        direction: '>=',
      }),
    );
    const jcopy = judge(fig('copy'));
    targets.push(
      checkTarget({
        what: 'bulk COPY through the proxy',
        target: `≥ ${TARGET_TEXT.copy} stunnel`,
        label: `vs stunnel${jcopy.basis === 'cpu' ? ' (judged on CPU)' : ''}`,
        measured: jcopy.measured,
        threshold: TARGETS.copy,
        direction: '>=',
      }),
    );
    const fewer = idleConnections === IDLE_CONNECTIONS ? '' : ` (quick run: ${idleConnections} connections)`;
    targets.push(
      checkTarget({
        what: 'proxy memory',
        target: `≤ ${TARGETS.idleMb} MB idle, ≤ ${TARGETS.openMb} MB at 1,000 open tunnelled connections`,
        label: 'idle',
        measured: memory.tunnel.idle.rss / MB,
        threshold: TARGETS.idleMb,
        direction: '<=',
        unit: 'MB',
      }),
      checkTarget({
        what: 'proxy memory',
        target: `≤ ${TARGETS.idleMb} MB idle, ≤ ${TARGETS.openMb} MB at 1,000 open tunnelled connections`,
        label: `1,000 open${fewer}`,
        measured: memory.tunnel.open.rss / MB,
        threshold: TARGETS.openMb,
        direction: '<=',
        unit: 'MB',
      }),
    );

    // ---- a profile of the tunnel when a throughput or CPU target is missed -------------------------
    const missedCells = CELLS.filter((cell) =>
      targets.some(
        (t) =>
          !t.met &&
          !t.unit &&
          ((cell.id === 'copy' && t.what.startsWith('bulk COPY')) ||
            (cell.id === 'connect-8' && t.what.startsWith('new connections')) ||
            (cell.id.startsWith('select-') && t.label?.startsWith(`${cell.id.split('-')[1]} client`))),
      ),
    );
    const profiles: { cell: Cell; summary: ProfileSummary; cpuPerWork: number; foreign: number }[] = [];
    for (const cell of missedCells.slice(0, 2)) {
      const dir = path.join(root, 'bench', 'results', `proxy-profile-${cell.id}`);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const spawned = performance.now();
      const profiled = await startTunnel(`profile-${cell.id}`, [`--cpu-prof`, `--cpu-prof-dir=${dir}`]);
      procs.push(profiled);
      await measure(cell, 'tunnel', 2, profiled);
      // Only the measured run's samples: start-up and warm-up are left out.
      const skipMs = performance.now() - spawned;
      const s = await measure(cell, 'tunnel', seconds, profiled);
      await profiled.stop();
      const summary = summarizeProfile(dir, skipMs);
      const per =
        cell.id === 'copy'
          ? ((s.proxyCpuSeconds ?? 0) * 1000) / (s.work / MB)
          : ((s.proxyCpuSeconds ?? 0) * 1e6) / s.work;
      profiles.push({ cell, summary, cpuPerWork: per, foreign: s.foreign });
      log(
        `profile of ${cell.label}: ${summary.parts
          .slice(0, 4)
          .map((p) => `${p.part} ${Math.round(p.share * 100)}%`)
          .join('; ')} (bench/results/proxy-profile-${cell.id}/${summary.file})`,
      );
    }

    // ---- output ------------------------------------------------------------------------------------
    const rows = CELLS.map((cell) => {
      const f = fig(cell.id);
      return [
        cell.label,
        fmt(f.tunnel.median),
        fmt(f.stunnel.median),
        fmt(directMedian(cell.id)),
        `${fmtRatio(f.ratio.median)} (${f.ratio.min.toFixed(2)}–${f.ratio.max.toFixed(2)}, ${f.ratioTrust})`,
        `${fmtRatio(f.cpuRatio.median)} (${f.cpuRatio.min.toFixed(2)}–${f.cpuRatio.max.toFixed(2)}, ${f.cpuTrust})`,
        `${Math.round(f.foreign.min * 100)}–${Math.round(f.foreign.max * 100)}%`,
        `${f.rejected}`,
      ];
    });
    console.log('');
    console.log(
      textTable(
        [
          'cell',
          'tunnel',
          'stunnel',
          'direct',
          'tunnel ÷ stunnel',
          'CPU/tx ÷ stunnel',
          'other',
          'thrown out',
        ],
        rows,
      ),
    );
    console.log('');
    for (const t of targets)
      console.log(
        `${t.what}${t.label ? ` (${t.label})` : ''}: ${t.unit ? `${t.measured.toFixed(1)} ${t.unit}` : fmtRatio(t.measured)} — target ${t.direction} ${t.threshold}${t.unit ? ` ${t.unit}` : '×'}: ${t.met ? 'MET' : 'NOT MET'}`,
      );

    const { markdown, artifacts } = renderProxyReport({
      startedAt,
      machine,
      pgVersion: setup.pg.version,
      rounds,
      seconds,
      copyRows,
      idleConnections,
      quick,
      entry: path.relative(root, entry),
      nodeFlags: SIDECAR_NODE_FLAGS,
      figures,
      pairs,
      directMedian,
      placement: { kind: placement.kind, description: placement.description },
      sharedCells,
      memory,
      floor,
      targets,
      profiles,
      measureSeconds,
      policy,
    });
    const result: BenchResult = {
      name: 'proxy',
      title: 'Proxy: tunnel against stunnel',
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
        maxForeign: MAX_FOREIGN,
        maxAttempts: policy.maxAttempts,
        nodeFlags: SIDECAR_NODE_FLAGS,
        postgres: setup.pg.version,
        quick,
      },
      targets,
      markdown,
      artifacts,
      data: {
        placement: { kind: placement.kind, description: placement.description },
        cells: Object.fromEntries(
          allCells.map((cell) => [
            cell.id,
            { figures: fig(cell.id), pairs: pairs.get(cell.id), direct: directRuns.get(cell.id) },
          ]),
        ),
        memory,
        nodeFloor: floor,
        profiles,
        direct: Object.fromEntries(
          CELLS.map((c) => [c.id, summarize((directRuns.get(c.id) ?? []).map((s) => s.value))]),
        ),
      },
    };
    const file = writeResult(root, result);
    console.log(`\nproxy: wrote ${path.relative(process.cwd(), file)}`);
  } finally {
    for (const p of procs) await p.stop();
    await setup.cleanup();
    placement.cleanup();
  }
}

// On SIGINT/SIGTERM, exit through process.exit so the 'exit' hooks stop the proxies and PostgreSQL.
process.once('SIGINT', () => process.exit(130));
process.once('SIGTERM', () => process.exit(143));

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
