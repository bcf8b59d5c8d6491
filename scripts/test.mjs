// Runs the test suites (vitest) and ends with one plain summary line, "Tests: N passed, N failed, N skipped",
// so any CI can read the outcome. The exit code is vitest's. Extra arguments go to vitest (e.g. test/unit).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const dir = mkdtempSync(path.join(tmpdir(), 'broker-test-'));
const report = path.join(dir, 'results.json');
const vitest = path.join('node_modules', '.bin', 'vitest');
const result = spawnSync(
  vitest,
  ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)],
  {
    stdio: 'inherit',
  },
);
let code = result.status ?? 1;
try {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`Tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  if (r.numTotalTests === 0) {
    console.log('No test ran: that is a failure.');
    code = 1;
  }
} catch {
  console.log('Tests: 0 passed, 1 failed (the test runner produced no report)');
  code = code || 1;
}
rmSync(dir, { recursive: true, force: true });
process.exit(code);
