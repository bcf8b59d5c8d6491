/**
 * Interleaved rounds with rejection: the tunnel (A) and stunnel (B) run back to back, A B in one round and
 * B A in the next, and a pair during which processes outside the benchmark took too much of the machine is
 * thrown out and measured again. Medians of the kept rounds, their spread and what was thrown out say how
 * much a figure can be trusted.
 */
import { median, type Summary, summarize } from '../lib/stats.js';

export type PathId = 'tunnel' | 'stunnel' | 'direct';

export interface Sample {
  /** TPS or MB/s. */
  value: number;
  /** Transactions (pgbench) or bytes (COPY). */
  work: number;
  wallSeconds: number;
  /** CPU seconds of the proxy process during the run; undefined for direct TLS. */
  proxyCpuSeconds?: number;
  /** The proxy's CPU seconds in user space and in the kernel (together proxyCpuSeconds). */
  proxyUserSeconds?: number;
  proxySystemSeconds?: number;
  /** Seconds the proxy's threads were runnable but waiting for a core (exact for the tunnel only). */
  proxyWaitSeconds?: number;
  /** Fraction of the machine's CPU busy during the run. */
  machineBusy: number;
  /** Fraction of the machine's CPU used by processes outside this benchmark during the run. */
  foreign: number;
}

/** One measurement of the tunnel and stunnel, back to back. */
export interface PairRecord {
  round: number;
  attempt: number;
  order: ['tunnel' | 'stunnel', 'tunnel' | 'stunnel'];
  tunnel: Sample;
  stunnel: Sample;
  /** The larger other-process share of the two runs. */
  foreign: number;
  rejected: boolean;
}

export interface RejectPolicy {
  /** A pair where other processes took more than this share of the machine in either run is measured again. */
  maxForeign: number;
  /** Measurements of one pair at most (the last is kept, marked, when all were disturbed). */
  maxAttempts: number;
  /** Repeats left for the whole run: a busy machine must not make the benchmark run for ever. */
  retryBudget: { left: number };
}

/** Measures one pair, repeating it while it was disturbed. Returns every attempt; the last is the kept one. */
export async function measurePair(
  round: number,
  measure: (path: 'tunnel' | 'stunnel') => Promise<Sample>,
  policy: RejectPolicy,
): Promise<PairRecord[]> {
  const order: PairRecord['order'] = round % 2 === 0 ? ['tunnel', 'stunnel'] : ['stunnel', 'tunnel'];
  const attempts: PairRecord[] = [];
  for (let attempt = 1; ; attempt++) {
    const first = await measure(order[0]);
    const second = await measure(order[1]);
    const byPath = { [order[0]]: first, [order[1]]: second } as Record<'tunnel' | 'stunnel', Sample>;
    const foreign = Math.max(first.foreign, second.foreign);
    const record: PairRecord = {
      round,
      attempt,
      order,
      tunnel: byPath.tunnel,
      stunnel: byPath.stunnel,
      foreign,
      rejected: false,
    };
    attempts.push(record);
    const disturbed = foreign > policy.maxForeign;
    if (!disturbed || attempt >= policy.maxAttempts || policy.retryBudget.left <= 0) return attempts;
    record.rejected = true;
    policy.retryBudget.left--;
  }
}

/** CPU of the proxy per unit of work: µs per transaction, or ms per MB for COPY. */
export function cpuPerWork(s: Sample, copy: boolean): number {
  return perWork(s, s.proxyCpuSeconds, copy);
}

/** Seconds of a sample per unit of work: µs per transaction, or ms per MB for COPY. */
export function perWork(s: Sample, seconds: number | undefined, copy: boolean): number {
  if (seconds === undefined) return Number.NaN;
  return copy ? (seconds * 1000) / (s.work / 1e6) : (seconds * 1e6) / s.work;
}

export type Trust = 'high' | 'medium' | 'low';

/** What a cell's kept pairs say, with how far to trust it. */
export interface CellFigures {
  tunnel: Summary;
  stunnel: Summary;
  /** Per-pair tunnel ÷ stunnel throughput. */
  ratio: Summary;
  tunnelCpu: Summary;
  stunnelCpu: Summary;
  /** Per-pair tunnel CPU ÷ stunnel CPU per unit of work (lower is better). */
  cpuRatio: Summary;
  /** The CPU per unit of work in user space and in the kernel, each proxy. */
  tunnelUser: Summary;
  tunnelSystem: Summary;
  stunnelUser: Summary;
  stunnelSystem: Summary;
  /** The tunnel's time runnable but waiting for a core, per unit of work. */
  tunnelWait: Summary;
  /** Per-pair other-process share (the larger of the two runs). */
  foreign: Summary;
  kept: number;
  rejected: number;
  /** Kept pairs that were still disturbed after every repeat. */
  disturbedKept: number;
  /** (max − min) ÷ median of the per-pair throughput ratios. */
  ratioSpread: number;
  cpuRatioSpread: number;
  ratioTrust: Trust;
  cpuTrust: Trust;
}

function spreadOf(s: Summary): number {
  return s.median > 0 ? (s.max - s.min) / s.median : Number.POSITIVE_INFINITY;
}

/**
 * High: the kept rounds agree within 10% and none was disturbed. Medium: within 25%, at most one disturbed.
 * Low: anything else; a throughput target is then judged on CPU per transaction, which other load moves less.
 */
function trustOf(spread: number, disturbed: number, kept: number): Trust {
  if (kept >= 3 && spread <= 0.1 && disturbed === 0) return 'high';
  if (kept >= 2 && spread <= 0.25 && disturbed <= 1) return 'medium';
  return 'low';
}

export function cellFigures(records: readonly PairRecord[], copy: boolean, maxForeign: number): CellFigures {
  const kept = records.filter((r) => !r.rejected);
  const ratio = summarize(kept.map((r) => r.tunnel.value / r.stunnel.value));
  const cpuRatio = summarize(kept.map((r) => cpuPerWork(r.tunnel, copy) / cpuPerWork(r.stunnel, copy)));
  const disturbedKept = kept.filter((r) => r.foreign > maxForeign).length;
  const ratioSpread = spreadOf(ratio);
  const cpuRatioSpread = spreadOf(cpuRatio);
  return {
    tunnel: summarize(kept.map((r) => r.tunnel.value)),
    stunnel: summarize(kept.map((r) => r.stunnel.value)),
    ratio,
    tunnelCpu: summarize(kept.map((r) => cpuPerWork(r.tunnel, copy))),
    stunnelCpu: summarize(kept.map((r) => cpuPerWork(r.stunnel, copy))),
    cpuRatio,
    tunnelUser: summarize(kept.map((r) => perWork(r.tunnel, r.tunnel.proxyUserSeconds, copy))),
    tunnelSystem: summarize(kept.map((r) => perWork(r.tunnel, r.tunnel.proxySystemSeconds, copy))),
    stunnelUser: summarize(kept.map((r) => perWork(r.stunnel, r.stunnel.proxyUserSeconds, copy))),
    stunnelSystem: summarize(kept.map((r) => perWork(r.stunnel, r.stunnel.proxySystemSeconds, copy))),
    tunnelWait: summarize(kept.map((r) => perWork(r.tunnel, r.tunnel.proxyWaitSeconds, copy))),
    foreign: summarize(kept.map((r) => r.foreign)),
    kept: kept.length,
    rejected: records.length - kept.length,
    disturbedKept,
    ratioSpread,
    cpuRatioSpread,
    ratioTrust: trustOf(ratioSpread, disturbedKept, kept.length),
    cpuTrust: trustOf(cpuRatioSpread, disturbedKept, kept.length),
  };
}

/** The median of a list of samples' field. */
export function medianOf(samples: readonly Sample[], pick: (s: Sample) => number): number {
  return median(samples.map(pick));
}
