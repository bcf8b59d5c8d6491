/** What /proc says about a process and the machine (Linux only). */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticks: number | undefined;
/** Clock ticks per second of the times in /proc/<pid>/stat. */
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** CPU seconds (user + system, every thread) a process has used so far. */
export function processCpuSeconds(pid: number): number {
  const { user, system } = processCpuSplit(pid);
  return user + system;
}

/**
 * CPU seconds a process has used so far (every thread, those that ended included), split into user space
 * (its own code, Node and V8, OpenSSL's ciphers) and the kernel (system calls, the loopback network stack).
 */
export function processCpuSplit(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15)
  return { user: Number(fields[11]) / clockTicks(), system: Number(fields[12]) / clockTicks() };
}

/**
 * Seconds the process's live threads have spent runnable but waiting for a core (the second field of
 * /proc/<pid>/task/<tid>/schedstat, nanoseconds): time the scheduler gave to others while the process had work.
 * Threads that have ended are not counted, so this is exact only for a process whose threads live as long as
 * the measurement (Node's do; stunnel's thread per connection does not).
 */
export function processRunQueueWaitSeconds(pid: number): number {
  let ns = 0;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return Number.NaN;
  }
  for (const tid of tids) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]);
    } catch {
      // The thread ended since the listing.
    }
  }
  return ns / 1e9;
}

/**
 * Resident set size and its peak, in bytes (VmRSS and VmHWM of /proc/<pid>/status), and how VmRSS splits:
 * `anon` is the process's own memory (heap, stacks, native buffers), `file` the pages of mapped files it has
 * touched (mostly the node or stunnel binary and its libraries, shared with every process that maps them).
 */
export function processMemory(pid: number): { rss: number; peak: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rss: kib('VmRSS'), peak: kib('VmHWM'), anon: kib('RssAnon'), file: kib('RssFile') };
}

/** Clock ticks of the whole machine, all CPUs: `busy` (everything but idle and iowait) and `total`. */
export interface MachineCpu {
  busy: number;
  total: number;
}

export function machineCpu(): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** Fraction of the machine's CPU time that was busy between two readings. */
export function busyFraction(before: MachineCpu, after: MachineCpu): number {
  const total = after.total - before.total;
  return total > 0 ? (after.busy - before.busy) / total : Number.NaN;
}

/** A reading to pass to `foreignFraction` later. */
export interface CpuReading {
  machine: MachineCpu;
  /**
   * CPU clock ticks so far (utime + stime + cutime + cstime, so children they reaped count too) of every
   * process outside `rootPid`'s tree and outside the kernel's threads, by `pid:starttime`.
   */
  others: Map<string, number>;
}

/**
 * Reads every process's CPU time from /proc/<pid>/stat and keeps the processes that are neither `rootPid`
 * and its descendants (the benchmark: pgbench, psql, the proxies, PostgreSQL and its backends) nor kernel
 * threads (kthreadd's descendants: ksoftirqd handles much of a loopback benchmark's own traffic).
 * Counting the others directly, rather than subtracting the benchmark's share from the machine's, keeps
 * the benchmark's own processes exiting mid-scan (say, PostgreSQL backends after a pgbench run) from
 * showing up as other work. Pids are read in ascending order, parents before the children they may reap.
 */
export function cpuReading(rootPid: number = process.pid): CpuReading {
  const machine = machineCpu();
  const procs: { pid: number; ppid: number; key: string; ticks: number }[] = [];
  const pids = readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .sort((a, b) => a - b);
  for (const pid of pids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // exited since the listing
    }
    // Fields after the command name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) ... starttime(22).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    procs.push({
      pid,
      ppid: Number(f[1]),
      key: `${pid}:${f[19]}`,
      ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]),
    });
  }
  const children = new Map<number, number[]>();
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const excluded = new Set<number>();
  for (const root of [rootPid, 2]) {
    const queue = [root];
    for (let i = 0; i < queue.length && i < 100_000; i++) {
      const pid = queue[i] as number;
      excluded.add(pid);
      queue.push(...(children.get(pid) ?? []));
    }
  }
  const others = new Map<string, number>();
  for (const p of procs) if (!excluded.has(p.pid)) others.set(p.key, p.ticks);
  return { machine, others };
}

/**
 * The share of the machine's CPU time between two readings that processes outside the benchmark used:
 * other work on the machine competing with the measurement.
 */
export function foreignFraction(before: CpuReading, after: CpuReading): number {
  const total = after.machine.total - before.machine.total;
  if (total <= 0) return Number.NaN;
  let foreign = 0;
  for (const [key, ticks] of after.others) foreign += ticks - (before.others.get(key) ?? 0);
  // A process that ended in between was reaped by its parent, whose cutime now holds the child's whole
  // lifetime: take off what the child had already used at the first reading.
  for (const [key, ticks] of before.others) if (!after.others.has(key)) foreign -= ticks;
  return Math.max(0, foreign) / total;
}

/**
 * Adds up how much of the machine other processes used while measurements ran: wrap each measurement in
 * `measure`. `overall` is weighted by each measurement's wall time.
 */
export class ForeignLoad {
  private weighted = 0;
  private wall = 0;
  /** The highest share seen in a single measurement (noisy for measurements shorter than a second). */
  worst = 0;

  async measure<T>(fn: () => Promise<T>): Promise<T> {
    const before = cpuReading();
    const t0 = performance.now();
    const result = await fn();
    const seconds = (performance.now() - t0) / 1000;
    const share = foreignFraction(before, cpuReading());
    if (Number.isFinite(share)) {
      this.weighted += share * seconds;
      this.wall += seconds;
      this.worst = Math.max(this.worst, share);
    }
    return result;
  }

  /** Share of the machine's CPU that processes outside the benchmark used while it measured. */
  get overall(): number {
    return this.wall > 0 ? this.weighted / this.wall : Number.NaN;
  }

  /** Whether other work took enough of the machine to make the numbers suspect (over 5% overall). */
  get disturbed(): boolean {
    return this.overall > 0.05;
  }
}

/**
 * A Markdown warning (ending in a blank line) when processes outside the benchmark took more than 5% of the
 * machine's CPU while it measured; '' otherwise. (The load average at the start is not used: it lags by
 * minutes and counts the benchmark that ran just before.)
 */
export function contentionWarning(foreign: ForeignLoad): string {
  if (!foreign.disturbed) return '';
  return `> **Warning: other work shared the machine during this run**: processes outside the benchmark used ${Math.round(foreign.overall * 100)}% of the machine's CPU while it measured. Interleaving and per-round ratios cancel steady load, not bursts; treat these numbers as rough and run again on an idle machine.\n\n`;
}

/** A share as a percentage for reports: "0.4%", "12%". */
export function fmtPercent(share: number): string {
  if (!Number.isFinite(share)) return 'n/a';
  const pct = share * 100;
  return pct < 10 ? `${pct.toFixed(1)}%` : `${Math.round(pct)}%`;
}
