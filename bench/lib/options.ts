import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** Options every benchmark accepts; bench/run.mjs passes its own on. */
export interface BenchOptions {
  /** Fewer, shorter rounds: a smoke test of the benchmark itself, not numbers to quote. */
  quick: boolean;
  rounds?: number;
  seconds?: number;
}

export function parseBenchOptions(argv = process.argv.slice(2)): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
    },
    allowPositionals: false,
  });
  const positive = (name: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!(Number.isFinite(n) && n > 0)) throw new Error(`--${name} must be a positive number, not "${text}"`);
    return n;
  };
  const rounds = positive('rounds', values.rounds);
  const seconds = positive('seconds', values.seconds);
  return {
    quick: values.quick === true,
    ...(rounds !== undefined ? { rounds: Math.round(rounds) } : {}),
    ...(seconds !== undefined ? { seconds } : {}),
  };
}

/** The repository root: the nearest directory above this module holding package.json and bench/. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'bench'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}
