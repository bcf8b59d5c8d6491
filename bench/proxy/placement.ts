/**
 * Where the benchmark's processes run, as far as the Linux CPU scheduler is concerned.
 *
 * The product runs the proxy as a sidecar container: ECS and Fargate put every container in its own control
 * group, and the scheduler shares the CPU between groups by weight before it shares a group's CPU between its
 * threads. Without groups every runnable thread gets an equal share: with 32 PostgreSQL backends and pgbench
 * on the same 2 cores, a proxy with one thread (one event loop) gets a thirty-fifth of the machine however
 * little CPU it needs, while stunnel's thread per connection gets a share per connection.
 *
 * `containers` places the benchmark itself, and so PostgreSQL and pgbench, which it starts, in a `workload`
 * group and each proxy in a group of its own, all with the same weight: the sidecar's placement, the same for
 * both proxies. `shared` moves a proxy into the workload's group: a process started beside a busy database on
 * one host. Needs root and the cpu controller (cgroup v2, or v1 mounted at /sys/fs/cgroup/cpu); without them
 * everything stays where it is and the report says so.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type ProxyGroup = 'tunnel' | 'stunnel';

export interface Placement {
  /** 'containers' when the groups exist; 'none' when the scheduler's groups could not be made. */
  kind: 'containers' | 'none';
  /** Why there are no groups, or how they are made (for the report). */
  description: string;
  /** Puts a proxy process (every thread) in its own group, or in the workload's (`shared`). */
  place(pid: number, group: ProxyGroup | 'shared'): void;
  /** Moves everything back to the root group and removes the groups. Safe to call twice. */
  cleanup(): void;
}

interface Hierarchy {
  root: string;
  version: 1 | 2;
}

function findHierarchy(): Hierarchy | undefined {
  const v2 = '/sys/fs/cgroup';
  if (existsSync(path.join(v2, 'cgroup.controllers'))) {
    const controllers = readFileSync(path.join(v2, 'cgroup.controllers'), 'utf8').split(/\s+/);
    if (controllers.includes('cpu')) return { root: v2, version: 2 };
  }
  const v1 = '/sys/fs/cgroup/cpu';
  if (existsSync(path.join(v1, 'cpu.shares'))) return { root: v1, version: 1 };
  return undefined;
}

function noPlacement(reason: string): Placement {
  return { kind: 'none', description: reason, place: () => {}, cleanup: () => {} };
}

/** Makes the groups and moves this process into `workload`; call before PostgreSQL starts. */
export function containerPlacement(): Placement {
  if (process.getuid?.() !== 0)
    return noPlacement('not run as root, so every process shares one scheduler group');
  const found = findHierarchy();
  if (!found) return noPlacement('no cpu controller is mounted, so every process shares one scheduler group');
  const top = path.join(found.root, `broker-bench-${process.pid}`);
  const group = (name: string) => path.join(top, name);
  const names = ['workload', 'tunnel', 'stunnel'] as const;
  try {
    mkdirSync(top);
    if (found.version === 2) writeFileSync(path.join(top, 'cgroup.subtree_control'), '+cpu');
    for (const name of names) {
      mkdirSync(group(name));
      // The default weight, written out: every group gets the same share when all want more than they get.
      if (found.version === 2) writeFileSync(path.join(group(name), 'cpu.weight'), '100');
      else writeFileSync(path.join(group(name), 'cpu.shares'), '1024');
    }
    writeFileSync(path.join(group('workload'), 'cgroup.procs'), String(process.pid));
  } catch (err) {
    for (const name of names) rmdirQuietly(group(name));
    rmdirQuietly(top);
    return noPlacement(`the scheduler groups could not be made (${(err as Error).message})`);
  }
  const placed = new Set<number>([process.pid]);
  let cleaned = false;
  // An interrupted run must not leave its groups behind.
  process.once('exit', () => placement.cleanup());
  const placement: Placement = {
    kind: 'containers',
    description: `cgroup v${found.version} cpu groups under ${top}, each weight ${found.version === 2 ? 100 : 1024}: workload (this benchmark, PostgreSQL, pgbench, psql), tunnel, stunnel`,
    place(pid, where) {
      writeFileSync(path.join(group(where === 'shared' ? 'workload' : where), 'cgroup.procs'), String(pid));
      placed.add(pid);
    },
    cleanup() {
      if (cleaned) return;
      cleaned = true;
      for (const pid of placed) {
        try {
          writeFileSync(path.join(found.root, 'cgroup.procs'), String(pid));
        } catch {
          // Already exited.
        }
      }
      for (const name of names) rmdirQuietly(group(name));
      rmdirQuietly(top);
    },
  };
  return placement;
}

function rmdirQuietly(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Missing, or a process is still in it (the kernel removes nothing under a live process).
  }
}
