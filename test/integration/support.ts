/**
 * The proxy integration tests' former helpers, now defined in test/support (temp.ts, postgres.ts, run.ts);
 * kept until those tests import them from there.
 */
import { type RunResult, run } from '../support/run.js';

export { requirePostgres } from '../support/postgres.js';
export { tempDir } from '../support/temp.js';

export type CommandResult = RunResult;

/** Runs a program (no shell) with PG* variables removed from its environment; never throws on exit codes. */
export function runCommand(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<RunResult> {
  return run(command, args, { env });
}
