/** Memory of a freshly started proxy: idle, with many open tunnelled connections, and after they close. */
import { spawn } from 'node:child_process';
import { processMemory } from '../lib/procfs.js';
import type { ProxyProcess } from './processes.js';
import { DATABASE, type ProxyBenchSetup, USER } from './setup.js';
import { closeConnections, openConnections } from './workloads.js';

/** Handshakes in flight while opening the idle connections. */
const OPEN_PARALLEL = 32;

export type Rss = ReturnType<typeof processMemory>;

export interface MemoryReading {
  idle: Rss;
  open: Rss;
  afterClose: Rss;
  openSeconds: number;
  cpuSecondsToOpen: number;
  connections: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Starts a proxy, reads its memory one second after start, opens `count` PostgreSQL connections through it
 * (each logged in: ReadyForQuery seen; the server must show `count` TLS sessions), reads it again two seconds
 * after the last one opened, closes them and reads it once more.
 */
export async function measureMemory(
  setup: ProxyBenchSetup,
  start: () => Promise<ProxyProcess>,
  count: number,
  procs: ProxyProcess[],
): Promise<MemoryReading> {
  const countServerSessions = async () =>
    Number(
      await setup.pg.psql(
        `SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = '${USER}' AND a.datname = '${DATABASE}' AND s.ssl AND a.application_name = 'bench-idle'`,
      ),
    );
  const proc = await start();
  procs.push(proc);
  await sleep(1000);
  const idle = proc.memory();
  const cpu0 = proc.cpuSeconds();
  const t = performance.now();
  const conns = await openConnections(proc.port, count, OPEN_PARALLEL);
  const openSeconds = (performance.now() - t) / 1000;
  const cpuSecondsToOpen = proc.cpuSeconds() - cpu0;
  const onServer = await countServerSessions();
  if (onServer !== count) {
    closeConnections(conns);
    throw new Error(`${count} connections opened but the server shows ${onServer} TLS sessions`);
  }
  // Let the process settle (timers, GC after the burst of handshakes) before reading its memory.
  await sleep(2000);
  const open = proc.memory();
  closeConnections(conns);
  for (let i = 0; i < 150 && (await countServerSessions()) > 0; i++) await sleep(100);
  await sleep(1000);
  const afterClose = proc.memory();
  await proc.stop();
  return { idle, open, afterClose, openSeconds, cpuSecondsToOpen, connections: count };
}

/** Memory of a Node process that loads no code, one second after start, with the same flags: the floor. */
export async function nodeFloor(flags: readonly string[]): Promise<Rss> {
  const child = spawn(process.execPath, [...flags, '-e', 'setTimeout(() => {}, 60_000)'], {
    stdio: 'ignore',
  });
  try {
    await sleep(1000);
    if (child.pid === undefined) throw new Error('node did not start');
    return processMemory(child.pid);
  } finally {
    child.kill('SIGKILL');
  }
}
