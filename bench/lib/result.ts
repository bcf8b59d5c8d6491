import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Machine } from './machine.mjs';

/** One DESIGN.md §9 target as a benchmark checked it. */
export interface TargetCheck {
  /** What is compared, e.g. "authority certificate signing rate". */
  what: string;
  /** The target as DESIGN.md words it, e.g. "≥ 0.7× openssl speed rsa2048 sign/s". */
  target: string;
  /** The measured ratio (or value) that is checked. */
  measured: number;
  threshold: number;
  /** Whether `measured` must be at least (`>=`) or at most (`<=`) `threshold`. */
  direction: '>=' | '<=';
  met: boolean;
  /**
   * When one DESIGN.md row has several checks (e.g. against stunnel and against direct TLS), what tells
   * them apart in the report, e.g. "vs stunnel". Optional.
   */
  label?: string;
  /** The unit of `measured` and `threshold` when they are not ratios, e.g. "MB". Absent: a ratio (×). */
  unit?: string;
}

/**
 * What every benchmark writes to bench/results/<name>.json. bench/run.mjs reads it to put `markdown` into
 * bench/REPORT.md and to print the target summary.
 */
export interface BenchResult {
  name: string;
  title: string;
  /** ISO time the run finished. */
  date: string;
  machine: Machine;
  settings: Record<string, unknown>;
  targets: TargetCheck[];
  /** The section body for REPORT.md (Markdown, without the section heading). */
  markdown: string;
  /**
   * Files for bench/run.mjs to write next to REPORT.md when it rewrites the report (path relative to bench/ →
   * content), e.g. the chart the section links to. Kept out of the tree on --quick and --no-report runs.
   */
  artifacts?: Record<string, string>;
  /** Raw measurements, benchmark-specific. */
  data: unknown;
}

export function checkTarget(check: Omit<TargetCheck, 'met'>): TargetCheck {
  const met =
    check.direction === '>=' ? check.measured >= check.threshold : check.measured <= check.threshold;
  return { ...check, met };
}

export function writeResult(repoRoot: string, result: BenchResult): string {
  const dir = path.join(repoRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${result.name}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}
