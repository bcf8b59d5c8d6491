// What machine a benchmark ran on. Plain JavaScript so both bench/run.mjs and the bundled TypeScript
// benchmarks can use it; types are in machine.d.mts.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

function cpuinfo() {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

function systemOpenssl() {
  try {
    const text = execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim();
    // "OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)": the library part only when it differs.
    const m = /^(.*?) \(Library: (.*)\)$/.exec(text);
    return m && m[1] === m[2] ? m[1] : text;
  } catch {
    return 'not installed';
  }
}

/** @returns {import('./machine.d.mts').Machine} */
export function describeMachine() {
  const info = cpuinfo();
  const model =
    /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? os.cpus()[0]?.model?.trim() ?? 'unknown';
  const virtualised = /^flags\s*:.*\bhypervisor\b/m.test(info);
  const [load1, load5, load15] = os.loadavg();
  return {
    cpuModel: model,
    cores: os.availableParallelism(),
    virtualised,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    nodeOpenssl: process.versions.openssl ?? 'unknown',
    systemOpenssl: systemOpenssl(),
    loadAverage: [load1 ?? 0, load5 ?? 0, load15 ?? 0].map((x) => Math.round(x * 100) / 100),
  };
}

/**
 * One line for reports.
 * @param {import('./machine.d.mts').Machine} m
 */
export function machineLine(m) {
  return [
    `${m.cpuModel}, ${m.cores} core${m.cores === 1 ? '' : 's'}${m.virtualised ? ' (virtual machine)' : ''}`,
    `${m.memoryGiB} GiB`,
    m.os,
    `Node ${m.node} (bundled OpenSSL ${m.nodeOpenssl})`,
    `system ${m.systemOpenssl}`,
    `load average at start ${m.loadAverage.join(' / ')}`,
  ].join('; ');
}
