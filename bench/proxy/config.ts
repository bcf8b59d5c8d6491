/** What bench/proxy measures and the DESIGN.md §9 targets it checks. */
import type { CellFigures } from './rounds.js';

export const SCALE = 10;
export const CLIENTS = [1, 8, 32] as const;
export const CONNECT_CLIENTS = 8;
export const COPY_WIDTH = 1000;
/** A pair during which other processes took more than this share of the machine is measured again. */
export const MAX_FOREIGN = 0.1;

export const TARGETS = {
  select: 1.0,
  connect: 1.0,
  copy: 0.95,
  cpu: 1.2,
  idleMb: 50,
  openMb: 120,
} as const;

export type CellId =
  | 'select-1'
  | 'select-8'
  | 'select-32'
  | 'connect-8'
  | 'copy'
  | 'select-32-shared'
  | 'select-32-shared-workers';
export interface Cell {
  id: CellId;
  label: string;
  unit: 'TPS' | 'MB/s';
}
export const CELLS: Cell[] = [
  ...CLIENTS.map((c) => ({
    id: `select-${c}` as CellId,
    label: `select-only, ${c} client${c === 1 ? '' : 's'}`,
    unit: 'TPS' as const,
  })),
  { id: 'connect-8', label: `select-only -C, ${CONNECT_CLIENTS} clients`, unit: 'TPS' },
  { id: 'copy', label: 'COPY TO STDOUT', unit: 'MB/s' },
];

/**
 * Diagnostic cells, not targets: 32 clients with both proxies moved into the workload's scheduler group
 * (placement.ts), as a process started beside a busy database on one host would run, once with the tunnel as
 * measured everywhere else and once with `--workers SHARED_WORKERS` (more event loops, more scheduler shares).
 * Measured only when the groups exist.
 */
export const SHARED_WORKERS = 2;
export const SHARED_CELLS: Cell[] = [
  { id: 'select-32-shared', label: "select-only, 32 clients, proxies in the workload's group", unit: 'TPS' },
  {
    id: 'select-32-shared-workers',
    label: `select-only, 32 clients, proxies in the workload's group, tunnel --workers ${SHARED_WORKERS}`,
    unit: 'TPS',
  },
];

export const TARGET_TEXT = {
  select: `${TARGETS.select.toFixed(1)}×`,
  connect: `${TARGETS.connect.toFixed(1)}×`,
  copy: `${TARGETS.copy}×`,
  cpu: `${TARGETS.cpu}×`,
} as const;

/** How a throughput target was judged: on the throughput ratio, or on CPU per transaction when that is too noisy. */
export interface Judged {
  measured: number;
  basis: 'throughput' | 'cpu';
}

/** The throughput ratio when it can be trusted; otherwise stunnel's CPU per unit of work over the tunnel's. */
export function judge(f: CellFigures): Judged {
  if (f.ratioTrust !== 'low' || !Number.isFinite(f.cpuRatio.median))
    return { measured: f.ratio.median, basis: 'throughput' };
  return { measured: 1 / f.cpuRatio.median, basis: 'cpu' };
}
