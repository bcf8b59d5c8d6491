// The unit project as Stryker's vitest runner sees it: the same setup as vitest.config.ts's unit project,
// and a reporter that turns a test file failing to load into a failed test (load-failure-reporter.mjs).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import LoadFailureReporter from './load-failure-reporter.mjs';

export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    globalSetup: ['test/support/key-pool.ts'],
    include: ['test/unit/**/*.test.ts', 'test/contracts/**/*.test.ts'],
    setupFiles: ['test/support/unit-guard.ts'],
    reporters: [new LoadFailureReporter()],
    isolate: true,
  },
});
